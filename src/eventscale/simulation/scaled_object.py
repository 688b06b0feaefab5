"""Replay metric traces through the engine on a virtual clock.

``simulate()`` answers the question users ask most: *what will this ScaledObject do
under this load?* No source is contacted: a :class:`Trace` gives each trigger's value
over time, the engine ticks every ``pollingInterval`` from 0 to the trace's last time,
and each decision is applied at once (``ready_delay`` models pods that take time to
become ready).

A trace CSV has a ``time`` column (seconds from 0) and one column per trigger, named by
the trigger's ``name`` or its index (``0``, ``1``, ...); a value holds until the next
row. An empty cell means "the source failed at that time" (an error, not 0), which is
how a trace shows fallback behaviour.

A ``cpu`` or ``memory`` trigger's column is what every ready pod uses: the
utilization in percent of its request (``Utilization``) or its usage in cores or
bytes (``AverageValue``). The trigger proposes what the HPA's resource calculator
(:func:`~eventscale.engine.resources.resource_replicas`, tolerance 0.1) gives for
that many alike pods, the replicas still starting counting as pending pods; it
never activates from zero, and with no ready pod it fails as the live trigger does
(docs/scalers/cpu-memory.md, "Simulation").

Limits (docs/errors.md, "Limits"): a file is UTF-8 (a byte-order mark is accepted), a
row has at most as many fields as the header, a field at most 128 KiB, a value is a
metric value a scaler could report (finite, ``>= 0``, at most
:data:`~eventscale.metrics.MAX_METRIC_VALUE`), and a simulation runs at most
:data:`MAX_TICKS` ticks. Each is a :class:`~eventscale.errors.ConfigError` naming the
line.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import io
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from eventscale.engine import EngineOptions, ScalingState, TriggerObservation, decide
from eventscale.engine.resources import PodSample, ResourceTarget, resource_replicas
from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    validate_metric_value,
)
from eventscale.spec import ScaledObjectSpec

__all__ = ("MAX_TICKS", "Step", "Timeline", "Trace", "simulate", "trigger_metric_specs")

#: The most ticks (``trace end / pollingInterval + 1``) one simulation runs: a day at
#: 1 s polling fits; beyond it :func:`simulate` raises a ConfigError.
MAX_TICKS = 200_000

#: The longest field of a trace CSV (Python's csv default, stated).
_FIELD_LIMIT = 128 * 1024


@attrs.frozen
class Trace:
    """Trigger values over time: ``rows`` are ``(time, {column: value or None})``, sorted."""

    columns: tuple[str, ...]
    rows: tuple[tuple[float, Mapping[str, float | None]], ...]

    @classmethod
    def from_csv(cls, source: str | Path | io.TextIOBase) -> Trace:
        """Read a trace CSV (a path, or an open text file)."""
        if isinstance(source, (str, Path)):
            try:
                data = Path(source).read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {source}: {exc.strerror}", path=str(source)
                ) from None
            return cls._read(io.StringIO(_decode(data, str(source)), newline=""), str(source))
        return cls._read(source, "<trace>")

    @classmethod
    def from_text(cls, text: str) -> Trace:
        """Read a trace from CSV text."""
        return cls._read(io.StringIO(text, newline=""), "<trace>")

    @classmethod
    def _read(cls, handle: Iterable[str], where: str) -> Trace:
        reader = csv.DictReader(_without_bom(handle), restkey=_EXTRA)
        try:
            return cls._rows(reader, where)
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                message = f"a field is longer than {_FIELD_LIMIT // 1024} KiB"
            else:
                message = f"not a valid CSV line: {exc}"
            # the failing line is not counted yet
            raise ConfigError(message, path=f"{where}:{reader.line_num + 1}") from None

    @classmethod
    def _rows(cls, reader: csv.DictReader[str], where: str) -> Trace:
        with _field_limit():
            fieldnames = reader.fieldnames
        if not fieldnames or "time" not in [f.strip() for f in fieldnames]:
            raise ConfigError("the trace needs a 'time' column", path=where)
        columns = tuple(f.strip() for f in fieldnames if f.strip() != "time")
        rows: list[tuple[float, dict[str, float | None]]] = []
        for raw in _limited(reader):
            line = reader.line_num
            if _EXTRA in raw:
                raise ConfigError(
                    f"the line has {len(fieldnames) + len(raw[_EXTRA])} fields, "
                    f"the header {len(fieldnames)}",
                    path=f"{where}:{line}",
                )
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            try:
                t = float(row["time"])
            except ValueError:
                raise ConfigError(
                    f"time {row['time']!r} is not a number", path=f"{where}:{line}"
                ) from None
            if not math.isfinite(t) or t < 0:
                raise ConfigError("time must be a finite number >= 0", path=f"{where}:{line}")
            if rows and t < rows[-1][0]:
                raise ConfigError("times must not decrease", path=f"{where}:{line}")
            values: dict[str, float | None] = {}
            for col in columns:
                text = row.get(col, "")
                if text == "":
                    values[col] = None
                    continue
                try:
                    value = float(text)
                except ValueError:
                    raise ConfigError(
                        f"value {text!r} of column {col!r} is not a number", path=f"{where}:{line}"
                    ) from None
                problem = validate_metric_value(repr(col), value)
                if problem is not None:
                    raise ConfigError(
                        problem.replace("scaler returned", "the trace has", 1),
                        path=f"{where}:{line}",
                    )
                values[col] = value
            rows.append((t, values))
        if not rows:
            raise ConfigError("the trace has no rows", path=where)
        return cls(columns, tuple(rows))

    @property
    def end(self) -> float:
        """The last time in the trace."""
        return self.rows[-1][0]

    def at(self, t: float) -> Mapping[str, float | None]:
        """The values in force at time ``t`` (those of the last row at or before ``t``)."""
        index = bisect.bisect_right(self.rows, t, key=_row_time) - 1
        if index < 0:
            return dict.fromkeys(self.columns)
        return self.rows[index][1]

    def ticks(self, interval: float) -> int:
        """How many ticks of ``interval`` seconds cover the trace (0 to its end).

        :raises ConfigError: more than :data:`MAX_TICKS`.
        """
        ticks = math.floor(self.end / interval + 1e-9) + 1
        if ticks > MAX_TICKS:
            raise ConfigError(
                f"the trace ends at {self.end:g}s: {ticks} ticks of {interval:g}s, "
                f"more than the limit of {MAX_TICKS} (shorten the trace or poll less often)",
                path="trace",
            )
        return ticks

    def sample(self, interval: float) -> Iterator[tuple[int, Mapping[str, float | None]]]:
        """``(row number, values in force)`` at each tick ``0, interval, 2 * interval...``.

        The row number (``-1`` before the first row) changes exactly when the values
        do. One pass over the rows: time linear in ticks plus rows.
        """
        rows = self.rows
        index = -1
        current: Mapping[str, float | None] = dict.fromkeys(self.columns)
        for n in range(self.ticks(interval)):
            now = n * interval
            while index + 1 < len(rows) and rows[index + 1][0] <= now:
                index += 1
                current = rows[index][1]
            yield index, current


def _row_time(row: tuple[float, Mapping[str, float | None]]) -> float:
    return row[0]


#: The key under which csv.DictReader puts the fields a row has beyond the header.
_EXTRA = "\x00extra"


def _decode(data: bytes, where: str) -> str:
    """UTF-8 text of a trace file (a leading byte-order mark is dropped)."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"the trace is not UTF-8 (byte 0x{data[exc.start]:02x})", path=f"{where}:{line}"
        ) from None


def _without_bom(lines: Iterable[str]) -> Iterator[str]:
    """``lines`` with a byte-order mark at the start of the first one dropped."""
    first = True
    for line in lines:
        if first:
            first = False
            line = line.removeprefix("\ufeff")
        yield line


@contextlib.contextmanager
def _field_limit() -> Iterator[None]:
    """Read with the csv field limit of :data:`_FIELD_LIMIT`, whatever the process set."""
    limit = csv.field_size_limit(_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


def _limited(reader: csv.DictReader[str]) -> Iterator[dict[str, Any]]:
    """The rows of ``reader``, each read under :func:`_field_limit`."""
    while True:
        with _field_limit():
            row = next(reader, None)
        if row is None:
            return
        yield row


@attrs.frozen(kw_only=True)
class Step:
    """One tick of a simulation.

    ``metrics`` maps each trigger (by name, else index) to the trace value in force, or
    ``None`` where the trace cell was empty (a failed read); ``desired_replicas`` is
    what the engine decided, ``replicas`` how many of them are ready (lower than desired
    while a scale-up waits out ``ready_delay``); ``rule`` and ``reason`` explain the
    decision (``rule`` is the engine's :class:`~eventscale.engine.Rule` value and is not
    part of the JSON shape).
    """

    time: float
    metrics: Mapping[str, float | None]
    desired_replicas: int
    replicas: int
    active: bool
    rule: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the shape ``eventscale simulate --json`` prints)."""
        return {
            "time": self.time,
            "metrics": dict(self.metrics),
            "desiredReplicas": self.desired_replicas,
            "replicas": self.replicas,
            "active": self.active,
            "reason": self.reason,
        }


@attrs.frozen
class Timeline:
    """The result of :func:`simulate`: one :class:`Step` per tick, plus the metric specs."""

    spec: ScaledObjectSpec
    steps: tuple[Step, ...]
    metric_specs: tuple[MetricSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"timeline": [...]}``."""
        return {"timeline": [s.to_dict() for s in self.steps]}

    def plot(self, path: str | Path) -> None:
        """Draw metrics (with targets and activation thresholds) and replicas to ``path``.

        Needs matplotlib (extra ``plot``). See
        :func:`eventscale.simulation.report.plot_timeline`.
        """
        from eventscale.simulation.report import plot_timeline

        plot_timeline(self, str(path))


_DEFAULT_TARGETS: Mapping[str, tuple[Sequence[str], float, Sequence[str]]] = {
    # trigger type -> (target parameter names, default target, activation parameter names)
    "kafka": (("lagThreshold",), 10, ("activationLagThreshold",)),
    "rabbitmq": (("value", "queueLength"), 20, ("activationValue",)),
    "redis": (("listLength",), 5, ("activationListLength",)),
    "redis-cluster": (("listLength",), 5, ("activationListLength",)),
    "redis-sentinel": (("listLength",), 5, ("activationListLength",)),
    "redis-streams": (
        ("pendingEntriesCount", "streamLength", "lagCount"),
        5,
        ("activationLagCount",),
    ),
    "azure-queue": (("queueLength",), 5, ("activationQueueLength",)),
    "azure-servicebus": (("messageCount",), 5, ("activationMessageCount",)),
    # the cron scaler reports desiredReplicas against a target of 1 (scalers/cron.py)
    "cron": ((), 1, ()),
    "gauge": (("target",), 1, ("activationTarget",)),
    "apache-kafka": (("lagThreshold",), 10, ("activationLagThreshold",)),
    "prometheus": (("threshold",), math.nan, ("activationThreshold",)),
    "metrics-api": (("targetValue",), math.nan, ("activationTargetValue",)),
    "postgresql": (("targetQueryValue",), math.nan, ("activationTargetQueryValue",)),
    "mysql": (("queryValue",), math.nan, ("activationQueryValue",)),
    "nats-jetstream": (("lagThreshold",), 10, ("activationLagThreshold",)),
    "celery": (("value",), 5, ("activationValue",)),
    "rq": (("value",), 5, ("activationValue",)),
    "dramatiq": (("value",), 5, ("activationValue",)),
}


def trigger_metric_specs(spec: ScaledObjectSpec) -> tuple[MetricSpec, ...]:
    """Each trigger's metric spec, read from its metadata without building a scaler.

    Uses the scaler's own target parameter (``lagThreshold``, ``listLength``,
    ``queueLength``...) and KEDA's defaults; triggers of other types must carry
    ``target`` (and optionally ``activationTarget``) in their metadata to be simulated.
    """
    out = []
    for i, trig in enumerate(spec.triggers):
        if trig.type in _RESOURCE_TYPES:
            out.append(_resource_spec(spec, i))
            continue
        names, default, activation_names = _DEFAULT_TARGETS.get(
            trig.type, (("target",), math.nan, ("activationTarget",))
        )
        target = _first_number(trig.metadata, names, default, f"spec.triggers[{i}].metadata")
        if math.isnan(target):
            raise ConfigError(
                f"cannot simulate trigger type {trig.type!r} without a "
                f"{names[0]!r} in its metadata",
                path=f"spec.triggers[{i}].metadata.{names[0]}",
            )
        activation = _first_number(
            trig.metadata, activation_names, 0.0, f"spec.triggers[{i}].metadata"
        )
        out.append(
            MetricSpec(
                name=metric_name(i, trig.name or trig.type),
                target=target,
                metric_type=trig.metric_type,
                activation_target=activation,
            )
        )
    return tuple(out)


#: The trigger types whose metric spec comes from the cpu/memory scaler's own parsing.
_RESOURCE_TYPES = frozenset({"cpu", "memory"})


def _resource_spec(spec: ScaledObjectSpec, index: int) -> MetricSpec:
    """The metric spec of a cpu/memory trigger, parsed as the live scaler parses it."""
    from eventscale.scalers.params import TriggerContext
    from eventscale.scalers.resource import ResourceScaler

    trig = spec.triggers[index]
    ctx = TriggerContext(
        metadata=trig.metadata,
        index=index,
        name=trig.name,
        trigger_type=trig.type,
        metric_type=trig.metric_type,
        path=f"spec.triggers[{index}]",
    )
    (mspec,) = ResourceScaler.from_context(ctx).metric_specs()
    return mspec


def _resource_observation(
    index: int,
    mspec: MetricSpec,
    value: float,
    *,
    ready: int,
    desired: int,
    name: str | None = None,
) -> TriggerObservation:
    """A cpu/memory trigger's observation when every ready pod uses ``value``.

    ``value`` is the utilization percent (``mspec.metric_type`` ``Utilization``) or the
    usage per pod (``AverageValue``); ``ready`` pods report it, ``desired - ready`` are
    still starting (pending, as the HPA sees them), and the current count is
    ``desired``. The report is the HPA's proposal, never active; without a ready pod
    the observation is a failure, as the live trigger's read is.
    """
    utilization = mspec.metric_type is MetricType.UTILIZATION
    kind = ResourceTarget.UTILIZATION if utilization else ResourceTarget.AVERAGE_VALUE
    usage = value / 100 if utilization else value
    pods = [PodSample(name=f"pod-{n}", request=1.0, usage=usage) for n in range(ready)]
    pods += [
        PodSample(name=f"starting-{n}", request=1.0, phase="Pending")
        for n in range(max(0, desired - ready))
    ]
    try:
        # alike pods past their start-up: the cpu readiness rules do not apply
        answer = resource_replicas(
            pods, target=mspec.target, kind=kind, current=desired, now=0.0, cpu=False
        )
    except ValueError as exc:
        return TriggerObservation.failure(index, (mspec,), ScalerError(str(exc)), name=name)
    report = ScalerReport.single(mspec.name, answer.replicas, is_active=False)
    return TriggerObservation.success(index, (mspec,), report, name=name)


def _first_number(
    meta: Mapping[str, str], names: Sequence[str], default: float, path: str
) -> float:
    for name in names:
        raw = (meta.get(name) or "").strip()
        if raw:
            try:
                return float(raw)
            except ValueError:
                raise ConfigError(f"{raw!r} is not a number", path=f"{path}.{name}") from None
    return default


def _column_for(spec: ScaledObjectSpec, index: int, trace: Trace) -> str:
    trig = spec.triggers[index]
    if trig.name and trig.name in trace.columns:
        return trig.name
    if str(index) in trace.columns:
        return str(index)
    wanted = f"{trig.name!r} or {str(index)!r}" if trig.name else repr(str(index))
    label = f"{trig.type} trigger {trig.name!r}" if trig.name else f"{trig.type} trigger #{index}"
    have = ", ".join(repr(c) for c in trace.columns) or "none"
    raise ConfigError(
        f"the trace has no column {wanted} for the {label} (columns: {have})",
        path=f"spec.triggers[{index}]",
    )


def simulate(
    spec: ScaledObjectSpec,
    trace: Trace,
    *,
    initial_replicas: int = 0,
    ready_delay: float = 0.0,
    options: EngineOptions | None = None,
    metric_specs: Sequence[MetricSpec] | None = None,
) -> Timeline:
    """Run ``spec`` over ``trace`` on a virtual clock; return the timeline.

    Ticks at ``0, pollingInterval, 2 * pollingInterval, ...`` up to the trace's end.
    ``ready_delay`` seconds after a scale-up the new replicas count as ready (the
    ``replicas`` column); scale-downs take effect at once.
    """
    specs = tuple(metric_specs) if metric_specs is not None else trigger_metric_specs(spec)
    columns = [_column_for(spec, i, trace) for i in range(len(spec.triggers))]
    resource_types = (options or EngineOptions()).resource_trigger_types
    resource = frozenset(i for i, t in enumerate(spec.triggers) if t.type in resource_types)
    state = ScalingState.new(created_at=0.0)
    desired = initial_replicas
    # (time ready, count) of pending scale-ups
    ready = initial_replicas
    pending: list[tuple[float, int]] = []
    steps: list[Step] = []
    interval = spec.polling_interval
    # Per trace row (not per tick): the values shown and the observations, shared by
    # every tick the row is in force, so memory grows with the steps kept, not with
    # copies of the trace.
    # (cpu/memory triggers read the pods too: their observations follow the replicas)
    seen: tuple[int, int, int] = (-2, 0, 0)
    shown: Mapping[str, float | None] = {}
    observations: tuple[TriggerObservation, ...] = ()
    for n, (row, values) in enumerate(trace.sample(interval)):
        now = n * interval
        pending.sort()
        while pending and pending[0][0] <= now:
            _, count = pending.pop(0)
            ready = min(desired, count)
        key = (row, ready, desired) if resource else (row, 0, 0)
        if key != seen:
            seen = key
            shown, observations = _observe(
                spec, specs, columns, values, resource=resource, ready=ready, desired=desired
            )
        state, decision = decide(
            spec, state, observations, desired, now, options=options, ready_replicas=ready
        )
        new = decision.replicas
        if new > desired and ready_delay > 0:
            pending.append((now + ready_delay, new))
        elif new > desired:
            ready = new
        else:
            ready = min(ready, new)
            pending = [(t, min(c, new)) for t, c in pending]
        desired = new
        steps.append(
            Step(
                time=now,
                metrics=shown,
                desired_replicas=desired,
                replicas=ready,
                active=decision.is_active,
                rule=decision.rule.value,
                reason=decision.reason,
            )
        )
    return Timeline(spec, tuple(steps), specs)


def _observe(
    spec: ScaledObjectSpec,
    specs: Sequence[MetricSpec],
    columns: Sequence[str],
    values: Mapping[str, float | None],
    *,
    resource: frozenset[int] = frozenset(),
    ready: int = 0,
    desired: int = 0,
) -> tuple[Mapping[str, float | None], tuple[TriggerObservation, ...]]:
    """What the triggers read while ``values`` are in force: shown values, observations."""
    observations = []
    shown: dict[str, float | None] = {}
    for i, col in enumerate(columns):
        value = values.get(col)
        shown[spec.triggers[i].name or str(i)] = value
        mspec = specs[i]
        if value is None:
            observations.append(
                TriggerObservation.failure(
                    i, (mspec,), ScalerError("no value in the trace"), name=spec.triggers[i].name
                )
            )
        elif i in resource:
            observations.append(
                _resource_observation(
                    i, mspec, value, ready=ready, desired=desired, name=spec.triggers[i].name
                )
            )
        else:
            report = ScalerReport.single(
                mspec.name, value, is_active=value > mspec.activation_target
            )
            observations.append(
                TriggerObservation.success(i, (mspec,), report, name=spec.triggers[i].name)
            )
    return shown, tuple(observations)
