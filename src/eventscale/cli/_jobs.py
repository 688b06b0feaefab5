"""``eventscale evaluate`` and ``eventscale simulate`` for ScaledJobs.

:mod:`eventscale.cli._main` calls these when a manifest holds ScaledJobs; they are kept
here so the command module stays about ScaledObjects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from eventscale.errors import ConfigError

if TYPE_CHECKING:
    from eventscale.jobs.base import JobTarget
    from eventscale.manifests.reader import Manifests
    from eventscale.runtime.scaled_job import JobReport
    from eventscale.spec import ScaledJobSpec

__all__ = ("evaluate_scaled_jobs", "simulate_scaled_job", "write_job_reports")


class _Writable(Protocol):
    def write(self, text: str, /) -> int: ...


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _table(rows: Sequence[Sequence[str]], out: _Writable) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


def _job_target(kind: str, spec: ScaledJobSpec) -> JobTarget:
    if kind == "kubernetes":
        from eventscale.jobs.kubernetes import KubernetesJobTarget

        return KubernetesJobTarget.from_spec(spec)
    if kind == "docker":
        from eventscale.jobs.docker import DockerJobTarget

        return DockerJobTarget.from_spec(spec)
    from eventscale.jobs.memory import MemoryJobTarget

    return MemoryJobTarget()


async def evaluate_scaled_jobs(
    manifests: Manifests,
    *,
    env: Mapping[str, str],
    poll_timeout: float,
    target: str = "none",
    running: int | None = None,
) -> list[JobReport]:
    """One dry-run evaluation of every ScaledJob in ``manifests``; nothing is started.

    The running and pending jobs are read from ``target`` (``kubernetes`` or
    ``docker``); with ``none`` (or when ``running`` is given) ``running`` jobs, else
    0, are assumed. A target that cannot be listed is in the report's ``target_error``.
    """
    from eventscale.runtime.scaled_job import ScaledJob

    objects = []
    for spec in manifests.scaled_jobs:
        kind = "none" if running is not None else target
        objects.append(
            ScaledJob(
                spec,
                target=_job_target(kind, spec),
                contexts=manifests.trigger_contexts(spec, env=env),
                poll_timeout=poll_timeout,
            )
        )
    reports = []
    try:
        for obj in objects:
            reports.append(await obj.evaluate(running=running))
    finally:
        for obj in objects:
            await obj.aclose()
    return reports


def write_job_reports(reports: Sequence[JobReport], out: _Writable) -> None:
    """The people's view of :func:`evaluate_scaled_jobs`: one block per ScaledJob."""
    for report in reports:
        state = "active" if report.decision.is_active else "inactive"
        out.write(
            f"ScaledJob {report.key}: {report.counts.running} running "
            f"({report.counts.pending} pending), would start {report.decision.create} ({state})\n"
            f"  reason: {report.decision.reason}\n"
        )
        if report.target_error:
            out.write(f"  target: cannot list jobs ({report.target_error}); assuming 0\n")
        rows = [["#", "TYPE", "NAME", "VALUE", "TARGET", "ACTIVATION", "ACTIVE", "ERROR"]]
        for t in report.triggers:
            rows.append(
                [
                    str(t.index),
                    t.type,
                    t.name or "-",
                    _fmt(t.value),
                    _fmt(t.target),
                    _fmt(t.activation_target),
                    "yes" if t.active else "no",
                    t.error or "",
                ]
            )
        _table(rows, out)


def simulate_scaled_job(
    manifests: Manifests,
    *,
    trace_path: str,
    job_seconds: float | None,
    name: str | None,
    as_json: bool,
    out: _Writable,
) -> int:
    """``eventscale simulate`` for a ScaledJob; returns the exit status (0)."""
    from eventscale.simulation.scaled_job import simulate_jobs
    from eventscale.simulation.scaled_object import Trace

    if job_seconds is None:
        raise ConfigError(
            "a ScaledJob needs --job-seconds (how long each job runs)", path="--job-seconds"
        )
    spec = manifests.scaled_job(name)
    timeline = simulate_jobs(spec, Trace.from_csv(trace_path), job_seconds=job_seconds)
    if as_json:
        out.write(json.dumps(timeline.to_dict(), indent=2) + "\n")
        return 0
    names = [t.name or str(i) for i, t in enumerate(spec.triggers)]
    rows = [["TIME", *[n.upper() for n in names], "RUNNING", "FINISHED", "STARTED", "REASON"]]
    for step in timeline.steps:
        rows.append(
            [
                f"{step.time:g}",
                *[_fmt(step.metrics.get(n)) for n in names],
                str(step.running),
                str(step.finished),
                str(step.started),
                step.reason,
            ]
        )
    _table(rows, out)
    out.write(
        f"{timeline.jobs_started} jobs started, at most {timeline.peak_running} running at once\n"
    )
    return 0


def job_reports_json(reports: Sequence[JobReport]) -> list[dict[str, Any]]:
    """``evaluate --json``'s ``scaledJobs`` list."""
    return [r.to_dict() for r in reports]
