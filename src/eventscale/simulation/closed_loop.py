"""Closed-loop simulation: a workload, a queue, and the replicas the engine decides.

:func:`simulate_closed_loop` answers *how long does work wait under this ScaledObject,
and what does it cost?* Unlike :func:`~eventscale.simulation.scaled_object.simulate`,
which replays what the triggers read, the triggers here read a
:class:`~eventscale.simulation.queue_model.QueueModel` that the simulated replicas
drain: scaling out shortens the queue, and the next reading shows it.

Every ``pollingInterval`` (from 0) each trigger reads the queue (its
:class:`~eventscale.simulation.queue_model.MetricKind`, from its type or given), the
engine's :func:`~eventscale.engine.decide` (the step ``eventscale run`` makes) decides,
and the decision is applied: new replicas take work ``startup`` seconds later, removed
ones stop at once. A read inside a failure window is an error, as a live scaler's would
be (fallback and holding on errors apply). See docs/simulation.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

import eventscale.simulation._plotting as _plotting
from eventscale.engine import Engine, EngineOptions, ScalingState, TriggerObservation
from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import MetricSpec, ScalerReport
from eventscale.simulation.queue_model import MetricKind, QueueModel
from eventscale.simulation.scaled_object import MAX_TICKS, trigger_metric_specs
from eventscale.simulation.workload import Workload
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec, TriggerSpec

__all__ = (
    "ClosedLoopResult",
    "ClosedLoopStep",
    "Summary",
    "check_windows",
    "metric_kind",
    "metric_kinds",
    "plot_closed_loop",
    "simulate_closed_loop",
)


def metric_kind(trigger: TriggerSpec) -> MetricKind | None:
    """What a trigger of this type reads from a queue, as KEDA's scaler reads it.

    ``redis`` (and its cluster and sentinel forms), ``azure-servicebus``: items waiting.
    ``kafka``, ``redis-streams``, ``azure-queue`` (its approximate count includes
    invisible messages): waiting plus in progress. ``rabbitmq``: ``MessageRate`` mode
    reads the rate; otherwise the management API's ``messages`` (with unacked) over
    HTTP, the ready count over AMQP or with ``excludeUnacknowledged``. ``None`` for
    other types (pass the kind explicitly).
    """
    kind = trigger.type
    meta = trigger.metadata
    if kind in ("redis", "redis-cluster", "redis-sentinel", "azure-servicebus"):
        return MetricKind.LENGTH
    if kind in ("kafka", "redis-streams", "azure-queue"):
        return MetricKind.LAG
    if kind == "rabbitmq":
        if meta.get("mode", "").strip() == "MessageRate":
            return MetricKind.RATE
        protocol = meta.get("protocol", "auto").strip().lower()
        host = meta.get("host", "") + meta.get("hostFromEnv", "")
        http = protocol == "http" or (protocol == "auto" and host.startswith("http"))
        excluded = meta.get("excludeUnacknowledged", "").strip().lower() == "true"
        return MetricKind.LAG if http and not excluded else MetricKind.LENGTH
    return None


@attrs.frozen(kw_only=True)
class ClosedLoopStep:
    """One poll: what the queue held, what the triggers read, what the engine decided."""

    time: float
    arrival_rate: float
    backlog: float
    oldest_age: float
    metrics: Mapping[str, float | None]
    desired_replicas: int
    replicas: int
    active: bool
    rule: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "time": self.time,
            "arrivalRate": self.arrival_rate,
            "backlog": self.backlog,
            "oldestAge": self.oldest_age,
            "metrics": dict(self.metrics),
            "desiredReplicas": self.desired_replicas,
            "replicas": self.replicas,
            "active": self.active,
            "reason": self.reason,
        }


@attrs.frozen(kw_only=True)
class Summary:
    """What a run cost and how long work waited (seconds, items, replica-seconds).

    ``replica_seconds`` counts desired replicas (a starting pod is paid for);
    ``ready_replica_seconds`` those taking work. ``wait_*`` are per-item waits from
    arrival until a replica takes the item; items left at the end count with the
    wait they reached. ``scale_actions`` counts polls that changed the replica count.
    """

    duration: float
    items_arrived: float
    items_left: float
    wait_p50: float
    wait_p95: float
    wait_p99: float
    wait_max: float
    peak_backlog: float
    replica_seconds: float
    ready_replica_seconds: float
    scale_actions: int
    time_at_zero: float
    peak_replicas: int

    @classmethod
    def of_run(
        cls,
        workload: Workload,
        model: QueueModel,
        *,
        replica_seconds: float,
        ready_replica_seconds: float,
        scale_actions: int,
        time_at_zero: float,
        peak_replicas: int,
    ) -> Summary:
        """The summary of a finished run: counts the items left in ``model`` and its waits."""
        left = model.waiting
        model.finish(len(workload.rates))
        waits = model.waits
        return cls(
            duration=workload.duration,
            items_arrived=workload.total,
            items_left=left,
            wait_p50=waits.percentile(0.50),
            wait_p95=waits.percentile(0.95),
            wait_p99=waits.percentile(0.99),
            wait_max=waits.maximum,
            peak_backlog=model.peak,
            replica_seconds=replica_seconds,
            ready_replica_seconds=ready_replica_seconds,
            scale_actions=scale_actions,
            time_at_zero=time_at_zero,
            peak_replicas=peak_replicas,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (camelCase keys)."""
        return {
            "duration": self.duration,
            "itemsArrived": self.items_arrived,
            "itemsLeft": self.items_left,
            "waitP50": self.wait_p50,
            "waitP95": self.wait_p95,
            "waitP99": self.wait_p99,
            "waitMax": self.wait_max,
            "peakBacklog": self.peak_backlog,
            "replicaSeconds": self.replica_seconds,
            "readyReplicaSeconds": self.ready_replica_seconds,
            "scaleActions": self.scale_actions,
            "timeAtZero": self.time_at_zero,
            "peakReplicas": self.peak_replicas,
        }

    def rows(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs for a table."""
        return [
            ("items arrived", f"{self.items_arrived:.0f}"),
            ("items left at the end", f"{self.items_left:.0f}"),
            ("wait p50", f"{self.wait_p50:g}s"),
            ("wait p95", f"{self.wait_p95:g}s"),
            ("wait p99", f"{self.wait_p99:g}s"),
            ("wait max (oldest age)", f"{self.wait_max:g}s"),
            ("peak backlog", f"{self.peak_backlog:.0f}"),
            ("replica-seconds", f"{self.replica_seconds:.0f}"),
            ("ready replica-seconds", f"{self.ready_replica_seconds:.0f}"),
            ("peak replicas", str(self.peak_replicas)),
            ("scale actions", str(self.scale_actions)),
            ("time at zero", f"{self.time_at_zero:g}s"),
        ]


@attrs.frozen
class ClosedLoopResult:
    """The result of :func:`simulate_closed_loop`: the summary and, if kept, one step per poll.

    ``backlog`` and ``replicas`` are per workload bin (for plots): items waiting and
    desired replicas at the start of each bin.
    """

    spec: ScaledObjectSpec
    summary: Summary
    steps: tuple[ClosedLoopStep, ...]
    metric_specs: tuple[MetricSpec, ...]
    workload: Workload
    kinds: tuple[MetricKind, ...]
    backlog: tuple[float, ...] = ()
    replicas: tuple[int, ...] = ()

    def to_dict(self, *, timeline: bool = True) -> dict[str, Any]:
        """``{"summary": {...}, "timeline": [...]}`` (the timeline only if asked and kept)."""
        out: dict[str, Any] = {"kind": "ScaledObject", "summary": self.summary.to_dict()}
        if timeline:
            out["timeline"] = [s.to_dict() for s in self.steps]
        return out

    def plot(self, path: str) -> None:
        """Draw arrivals, backlog, replicas and waits to ``path`` (needs eventscale[plot])."""

        plot_closed_loop(self, path)


def check_windows(failures: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Failure windows, checked (``0 <= start < end``, finite) and sorted.

    :raises ConfigError: a window that is not, named ``failures[i]``.
    """
    out = []
    for i, (start, end) in enumerate(failures):
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise ConfigError(
                "a failure window is (start, end) with 0 <= start < end", path=f"failures[{i}]"
            )
        out.append((float(start), float(end)))
    return tuple(sorted(out))


def metric_kinds(
    spec: ScaledObjectSpec | ScaledJobSpec, kinds: Sequence[MetricKind | str] | None
) -> tuple[MetricKind, ...]:
    """What each trigger reads: ``kinds[i]`` where given, else :func:`metric_kind`.

    :raises ConfigError: an unknown kind (``metric[i]``), or a trigger type without a
        default and no kind given (``spec.triggers[i]``).
    """
    if kinds is not None and len(kinds) > len(spec.triggers):
        raise ConfigError(
            f"{len(kinds)} metric kinds for {len(spec.triggers)} triggers", path="metric"
        )
    out: list[MetricKind] = []
    for i, trig in enumerate(spec.triggers):
        if trig.type in ("cpu", "memory"):  # docs/scalers/cpu-memory.md, "Simulation"
            raise ConfigError(
                "the closed loop does not model cpu/memory use: simulate this object "
                "with --trace (a column of the pods' usage)",
                path=f"spec.triggers[{i}]",
            )
        given = kinds[i] if kinds is not None and i < len(kinds) else None
        if given is not None:
            try:
                out.append(MetricKind(given))
            except ValueError:
                raise ConfigError(
                    f"{given!r} is not one of length, lag, age, rate", path=f"metric[{i}]"
                ) from None
            continue
        kind = metric_kind(trig)
        if kind is None:
            raise ConfigError(
                f"cannot tell what a {trig.type!r} trigger reads from a queue: "
                "give its metric kind (length, lag, age or rate)",
                path=f"spec.triggers[{i}]",
            )
        out.append(kind)
    return tuple(out)


def simulate_closed_loop(
    spec: ScaledObjectSpec,
    workload: Workload,
    *,
    throughput: float,
    startup: float = 0.0,
    failures: Sequence[tuple[float, float]] = (),
    kinds: Sequence[MetricKind | str] | None = None,
    initial_replicas: int = 0,
    options: EngineOptions | None = None,
    metric_specs: Sequence[MetricSpec] | None = None,
    keep_timeline: bool = True,
) -> ClosedLoopResult:
    """Run ``spec`` against ``workload`` with replicas draining the queue; return the result.

    :param throughput: items per second one ready replica takes (1 / work per item).
    :param startup: seconds from a scale-up until the new replicas take work.
    :param failures: ``(start, end)`` seconds during which every trigger read fails.
    :param kinds: per trigger, what it reads (default: :func:`metric_kind` of its type).
    :param keep_timeline: keep one :class:`ClosedLoopStep` per poll (off for searches).
    :raises ConfigError: a bad argument, a trigger without a kind, too many polls.
    """
    if not (math.isfinite(throughput) and throughput > 0):
        raise ConfigError("must be a finite number > 0", path="throughput")
    if not (math.isfinite(startup) and startup >= 0):
        raise ConfigError("must be a finite number >= 0", path="startup")
    if initial_replicas < 0:
        raise ConfigError("must be >= 0", path="initial_replicas")
    windows = check_windows(failures)
    specs = tuple(metric_specs) if metric_specs is not None else trigger_metric_specs(spec)
    kinds_read = metric_kinds(spec, kinds)
    interval = spec.polling_interval
    res = workload.resolution
    n_bins = len(workload.rates)
    polls = math.ceil(workload.duration / interval - 1e-9)
    if polls > MAX_TICKS:
        raise ConfigError(
            f"{polls} polls of {interval:g}s, more than the limit of {MAX_TICKS}",
            path="spec.pollingInterval",
        )
    if res > interval + 1e-9:
        raise ConfigError(
            f"the workload's resolution ({res:g}s) must not exceed the pollingInterval "
            f"({interval:g}s)",
            path="workload.resolution",
        )
    model = QueueModel(workload.arrivals(), res)
    per_replica = throughput * res
    names = tuple(t.name or str(i) for i, t in enumerate(spec.triggers))
    trigger_names = tuple(t.name for t in spec.triggers)
    failure = ScalerError("the source is failing (a failure window of the simulation)")
    failed = tuple(
        TriggerObservation.failure(t, (specs[t],), failure, name=trigger_names[t])
        for t in range(len(specs))
    )
    failed_shown: Mapping[str, float | None] = dict.fromkeys(names)
    last_values: tuple[float, ...] | None = None
    observations: tuple[TriggerObservation, ...] = ()
    shown: Mapping[str, float | None] = {}
    engine = Engine(spec, options)
    state = ScalingState.new(created_at=0.0)
    desired = ready = initial_replicas
    pending: list[tuple[int, int]] = []  # (bin when ready, count)
    steps: list[ClosedLoopStep] = []
    backlog_bins: list[float] = []
    replica_bins: list[int] = []
    replica_seconds = ready_seconds = time_at_zero = 0.0
    peak_replicas = desired
    actions = 0
    next_poll_bin = 0
    poll = 0
    i = 0
    while i < n_bins:
        if pending and min(b for b, _ in pending) <= i:
            ready = min(desired, max(ready, max(c for b, c in pending if b <= i)))
            pending = [(b, c) for b, c in pending if b > i]
        if i >= next_poll_bin:
            now = poll * interval
            if windows and any(start <= now < end for start, end in windows):
                observations = failed
                shown = failed_shown
                last_values = None
            else:
                values = tuple([model.read(kind, i) for kind in kinds_read])
                if values != last_values:
                    # a new reading (the queue is often unchanged: idle, or at a steady level)
                    last_values = values
                    shown = dict(zip(names, values, strict=True))
                    observations = tuple(
                        [
                            TriggerObservation.success(
                                t,
                                (specs[t],),
                                ScalerReport.single(
                                    specs[t].name,
                                    value,
                                    is_active=value > specs[t].activation_target,
                                ),
                                name=trigger_names[t],
                            )
                            for t, value in enumerate(values)
                        ]
                    )
            state, decision = engine.decide(state, observations, desired, now, ready_replicas=ready)
            new = decision.replicas
            if new != desired:
                actions += 1
            if new > desired and startup > 0:
                pending.append((i + math.ceil(startup / res - 1e-9), new))
            elif new > desired:
                ready = new
            else:
                ready = min(ready, new)
                pending = [(b, min(c, new)) for b, c in pending]
            desired = new
            peak_replicas = max(peak_replicas, desired)
            if keep_timeline:
                steps.append(
                    ClosedLoopStep(
                        time=now,
                        arrival_rate=workload.rates[i],
                        backlog=model.waiting,
                        oldest_age=model.oldest_age(i),
                        metrics=shown,
                        desired_replicas=desired,
                        replicas=ready,
                        active=decision.is_active,
                        rule=decision.rule.value,
                        reason=decision.reason,
                    )
                )
            poll += 1
            next_poll_bin = min(n_bins, math.ceil(poll * interval / res - 1e-9))
        # the next bin where something changes: a poll, or pending replicas ready
        stop = next_poll_bin
        if pending:
            stop = min(stop, min(b for b, _ in pending))
        stop = max(stop, i + 1)
        if keep_timeline:
            for j in range(i, stop):
                backlog_bins.append(model.waiting)
                model.advance(j, j + 1, ready, per_replica)
            replica_bins.extend([desired] * (stop - i))
        else:
            model.advance(i, stop, ready, per_replica)
        span = (stop - i) * res
        replica_seconds += desired * span
        ready_seconds += ready * span
        if desired == 0:
            time_at_zero += span
        i = stop
    summary = Summary.of_run(
        workload,
        model,
        replica_seconds=replica_seconds,
        ready_replica_seconds=ready_seconds,
        scale_actions=actions,
        time_at_zero=time_at_zero,
        peak_replicas=peak_replicas,
    )
    return ClosedLoopResult(
        spec,
        summary,
        tuple(steps),
        specs,
        workload,
        kinds_read,
        tuple(backlog_bins),
        tuple(replica_bins),
    )


#: Shaded spans: rule values -> (label, colour).
_WINDOWS = {
    "cooldown": ("cooldown", "tab:blue"),
    "scale-down-stabilization": ("scale-down stabilization", "tab:orange"),
    "scale-up-stabilization": ("scale-up stabilization", "tab:olive"),
    "hold-on-error": ("read failed", "tab:red"),
    "error-blocks-scale-down": ("read failed", "tab:red"),
    "fallback": ("fallback", "tab:red"),
}


def _spans(steps: Sequence[ClosedLoopStep], end: float) -> Iterator[tuple[str, float, float]]:
    """``(rule, start, end)`` runs of consecutive polls under one shaded rule."""
    current: str | None = None
    start = 0.0
    for step in steps:
        rule = step.rule if step.rule in _WINDOWS else None
        if rule != current:
            if current is not None:
                yield current, start, step.time
            current, start = rule, step.time
    if current is not None:
        yield current, start, end


def _cooldowns(
    steps: Sequence[ClosedLoopStep], cooldown: float
) -> Iterator[tuple[str, float, float]]:
    """The cooldown windows: from the last active poll until scale-to-zero is allowed.

    Drawn while replicas are up and the triggers inactive (the window the engine waits
    out before scaling to zero; docs/engine.md).
    """
    last_active: float | None = None
    for step in steps:
        if step.active:
            last_active = step.time
        elif last_active is not None and step.desired_replicas > 0:
            yield "cooldown", last_active, min(last_active + cooldown, step.time + 1e-9)
    return


def plot_closed_loop(result: ClosedLoopResult, path: str) -> None:
    """Draw ``result`` (run with its timeline kept) to the image file ``path``."""
    plt = _plotting.pyplot("simulate --plot")
    workload = result.workload
    res = workload.resolution
    times = [i * res for i in range(len(workload.rates))]
    fig, (arrivals, backlog, replicas, metric) = plt.subplots(4, 1, sharex=True, figsize=(11, 9))
    arrivals.step(times, workload.rates, where="post", color="tab:gray")
    arrivals.set_ylabel("arrivals / s")
    if result.backlog:
        backlog.step(times, result.backlog, where="post", color="tab:purple", label="waiting")
    steps = result.steps
    poll_times = [s.time for s in steps]
    _plotting.age_axis(backlog, poll_times, [s.oldest_age for s in steps])
    backlog.set_ylabel("backlog")
    backlog.legend(loc="upper right", fontsize="small")
    replicas.step(poll_times, [s.desired_replicas for s in steps], where="post", label="desired")
    replicas.step(
        poll_times, [s.replicas for s in steps], where="post", linestyle="--", label="ready"
    )
    peak = max((s.desired_replicas for s in steps), default=0)
    replicas.set_ylim(0, max(1, peak) * 1.15 + 0.5)
    replicas.set_ylabel("replicas")
    for i, trig in enumerate(result.spec.triggers):
        label = trig.name or str(i)
        ys = [math.nan if (v := s.metrics.get(label)) is None else v for s in steps]
        (line,) = metric.step(
            poll_times, ys, where="post", label=f"{label} ({result.kinds[i].value})"
        )
        mspec = result.metric_specs[i]
        metric.axhline(
            mspec.target,
            color=line.get_color(),
            linestyle="--",
            linewidth=0.8,
            label=f"{label} target {mspec.target:g}",
        )
    metric.set_ylabel("trigger reads")
    metric.set_xlabel("seconds")
    seen: set[str] = set()
    windows = [
        *_spans(steps, workload.duration),
        *_plotting.merged(_cooldowns(steps, result.spec.cooldown_period)),
    ]
    for rule, start, end in windows:
        label, colour = _WINDOWS[rule]
        replicas.axvspan(
            start,
            end,
            color=colour,
            alpha=0.12,
            linewidth=0,
            label=label if label not in seen else "_nolegend_",
        )
        seen.add(label)
    replicas.legend(loc="upper right", fontsize="small")
    metric.legend(loc="upper right", fontsize="small")
    s = result.summary
    fig.suptitle(
        f"ScaledObject {result.spec.name}: p95 wait {s.wait_p95:g}s, max {s.wait_max:g}s, "
        f"{s.replica_seconds:.0f} replica-seconds"
    )
    _plotting.save(plt, fig, path)
