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

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

import eventscale.simulation._plotting as _plotting
from eventscale.engine import EngineOptions, ScalingState, TriggerObservation, decide
from eventscale.engine.resources import PodSample, ResourceTarget, resource_replicas
from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
)
from eventscale.simulation.trace import MAX_TICKS, Trace
from eventscale.spec import ScaledObjectSpec

__all__ = (
    "MAX_TICKS",
    "Step",
    "Timeline",
    "Trace",
    "plot_timeline",
    "simulate",
    "trigger_metric_specs",
)


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
        :func:`plot_timeline`.
        """

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


def plot_timeline(timeline: Timeline, path: str) -> None:
    """Draw an open-loop ScaledObject run to the image file ``path``."""
    from eventscale.engine import FormulaError, compile_formula
    from eventscale.metrics import MetricType

    plt = _plotting.pyplot("simulate --plot")
    spec = timeline.spec
    steps = timeline.steps
    times = [s.time for s in steps]
    mods = spec.advanced.scaling_modifiers
    rows = 3 if mods is not None else 2
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(10, 3 * rows))
    top, bottom = axes[0], axes[-1]
    for i, trig in enumerate(spec.triggers):
        label = trig.name or str(i)
        ys = [math.nan if (v := s.metrics.get(label)) is None else v for s in steps]
        (line,) = top.step(times, ys, where="post", label=f"{label} ({trig.type})")
        mspec = timeline.metric_specs[i]
        colour = line.get_color()
        if mspec.metric_type is MetricType.AVERAGE_VALUE and mods is None:
            # the HPA sizes replicas so that the total is at most target x replicas
            top.step(
                times,
                [mspec.target * max(1, s.desired_replicas) for s in steps],
                where="post",
                color=colour,
                linestyle="--",
                linewidth=0.8,
                label=f"{label} target {mspec.target:g} x replicas",
            )
        elif mods is None:
            top.axhline(
                mspec.target,
                color=colour,
                linestyle="--",
                linewidth=0.8,
                label=f"{label} target {mspec.target:g}",
            )
        if mspec.activation_target > 0:
            top.axhline(
                mspec.activation_target,
                color=colour,
                linestyle=":",
                linewidth=0.8,
                label=f"{label} activation {mspec.activation_target:g}",
            )
    interval = spec.polling_interval
    _plotting.failed_spans(
        top, times, [any(v is None for v in s.metrics.values()) for s in steps], interval
    )
    top.set_ylabel("metric")
    top.legend(loc="upper right", fontsize="small")
    if mods is not None:
        middle = axes[1]
        names = [t.name for t in spec.triggers if t.name]
        formula = compile_formula(mods.formula, names)
        values = []
        for s in steps:
            try:
                value = formula.evaluate({n: s.metrics.get(n) for n in names})
            except FormulaError:
                value = None
            values.append(math.nan if value is None else value)
        middle.step(
            times, values, where="post", color="tab:purple", label=f"composite: {mods.formula}"
        )
        if mods.metric_type is MetricType.AVERAGE_VALUE:
            middle.step(
                times,
                [mods.target * max(1, s.desired_replicas) for s in steps],
                where="post",
                color="tab:purple",
                linestyle="--",
                linewidth=0.8,
                label=f"target {mods.target:g} x replicas",
            )
        else:
            middle.axhline(
                mods.target,
                color="tab:purple",
                linestyle="--",
                linewidth=0.8,
                label=f"target {mods.target:g}",
            )
        if mods.activation_target > 0:
            middle.axhline(
                mods.activation_target,
                color="tab:purple",
                linestyle=":",
                linewidth=0.8,
                label=f"activation {mods.activation_target:g}",
            )
        middle.set_ylabel("scalingModifiers")
        middle.legend(loc="upper right", fontsize="small")
    bottom.step(times, [s.desired_replicas for s in steps], where="post", label="desired")
    bottom.step(times, [s.replicas for s in steps], where="post", label="ready", linestyle="--")
    _plotting.fit_replicas(
        bottom, max((s.desired_replicas for s in steps), default=0), spec.max_replica_count
    )
    bottom.set_ylabel("replicas")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right", fontsize="small")
    fig.suptitle(f"ScaledObject {spec.name}")
    _plotting.save(plt, fig, path)
