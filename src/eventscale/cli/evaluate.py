"""``eventscale evaluate``: poll every trigger once and show the decision (a dry run).

Every ScaledObject and ScaledJob in the manifest is built (so every trigger's metadata
is checked) before any is polled; nothing is applied. Exit 0 when every trigger was
read, 1 when any failed, 2 for an invalid manifest. See docs/cli.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from eventscale.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    add_env_options,
    environment,
    job_target,
    load,
    make_target,
    resolve_contexts,
    tidy_reason,
)
from eventscale.cli._output import Writable, fmt, table, write_json
from eventscale.redaction import redact_text

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests
    from eventscale.runtime.scaled_job import JobReport
    from eventscale.scalers.params import TriggerContext
    from eventscale.targets import Target

__all__ = ("add_parser", "evaluate", "evaluate_scaled_jobs", "execute", "write_job_reports")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to the ``eventscale`` parser's subparsers."""
    ev: argparse.ArgumentParser = sub.add_parser(
        "evaluate",
        help="dry run: poll every trigger once and show the decision; nothing is applied",
        description="Poll every trigger of every ScaledObject in MANIFEST once against the live "
        "sources and print what the engine would decide. Nothing is applied. Exit 0 when every "
        "trigger was read, 1 when any failed, 2 for an invalid manifest.",
    )
    ev.add_argument(
        "manifest",
        metavar="MANIFEST",
        help="YAML file with ScaledObjects, TriggerAuthentications and Secrets ('-' for stdin)",
    )
    ev.add_argument(
        "--current-replicas",
        type=int,
        metavar="N",
        help="decide as if the target held N replicas (default: read it from --target, else 0)",
    )
    ev.add_argument(
        "--target",
        choices=["none", "kubernetes", "docker"],
        default="none",
        help="read current replicas from this target; 0 if it cannot be read (default none: 0)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON document")
    ev.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest wait for each trigger and the target (default 10)",
    )
    ev.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="the kubeconfig for --target kubernetes, which also reads Secrets, ConfigMaps, "
        "TriggerAuthentications and pod templates the file lacks (default: in-cluster, "
        "$KUBECONFIG, ~/.kube/config)",
    )
    ev.add_argument("--context", metavar="NAME", help="the kubeconfig context (default: current)")
    add_env_options(ev)
    ev.set_defaults(execute=execute)
    return ev


def execute(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Run ``eventscale evaluate`` for parsed ``args``; return the exit status."""
    return anyio.run(evaluate, args, out, err)


async def _current_replicas(target: Target, limit: float) -> tuple[int, str | None]:
    """What the target holds, or 0 and the reason it could not be read."""
    try:
        with anyio.fail_after(limit):
            return await target.get_replicas(), None
    except TimeoutError:
        return 0, f"the target did not answer within {limit:g}s"
    except Exception as exc:
        return 0, f"{type(exc).__name__}: {redact_text(str(exc))}"


async def evaluate(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Evaluate every ScaledObject and ScaledJob of ``args.manifest`` once."""
    workloads: list[dict[str, Any]] = []
    manifests = load([args.manifest], jobs=True, workloads=workloads)
    env = environment(args)
    client = None
    if args.target == "kubernetes":
        from eventscale.kube import KubeClient, KubeConfig

        client = KubeClient(KubeConfig.load(args.kubeconfig, args.context))
    try:
        return await _evaluate(args, out, err, manifests, env, client, workloads)
    finally:
        if client is not None:
            await client.aclose()


async def _evaluate(
    args: argparse.Namespace,
    out: Writable,
    err: Writable,
    manifests: Manifests,
    env: Mapping[str, str],
    client: Any,
    workloads: list[dict[str, Any]],
) -> int:
    from eventscale.engine.checks import check_spec
    from eventscale.runtime.scaled_object import ScaledObject
    from eventscale.targets.memory import MemoryTarget

    objects = []
    # Build every object (and so check every trigger's metadata) before polling any.
    for spec in manifests.scaled_objects:
        target: Target
        if args.current_replicas is not None or args.target == "none":
            target = MemoryTarget(replicas=args.current_replicas or 0)
        else:
            target = make_target(args.target, spec, client=client)
        contexts = await resolve_contexts(manifests, spec, args, client, workloads, target=target)
        objects.append(
            ScaledObject(spec, target=target, contexts=contexts, poll_timeout=args.timeout)
        )
    for obj in objects:
        for warning in check_spec(obj.spec, options=obj.options):
            err.write(f"eventscale: warning: {obj.key}: {warning}\n")
    reports = []
    notes: dict[str, str] = {}
    try:
        for obj in objects:
            current, problem = await _current_replicas(obj.target, args.timeout)
            if problem is not None:
                notes[obj.key] = f"cannot read the target ({problem}); assuming 0 replicas"
                err.write(f"eventscale: {obj.key}: {notes[obj.key]}\n")
            reports.append(await obj.evaluate(current_replicas=current))
    finally:
        for obj in objects:
            await obj.aclose()
    failed = any(t.error is not None for r in reports for t in r.triggers)
    job_contexts = {
        spec.name: await resolve_contexts(manifests, spec, args, client, workloads)
        for spec in manifests.scaled_jobs
    }
    job_reports = await evaluate_scaled_jobs(
        manifests,
        env=env,
        poll_timeout=args.timeout,
        target=args.target,
        running=args.current_replicas,
        contexts=job_contexts,
    )
    failed = failed or any(not r.ok for r in job_reports)
    if args.json:
        doc: dict[str, Any] = {"scaledObjects": [r.to_dict() for r in reports]}
        if job_reports:
            doc["scaledJobs"] = [r.to_dict() for r in job_reports]
        write_json(doc, out)
    else:
        write_job_reports(job_reports, out)
        for report in reports:
            state = "active" if report.decision.is_active else "inactive"
            out.write(
                f"ScaledObject {report.key}: {report.current_replicas} -> "
                f"{report.decision.replicas} replicas ({state})\n"
                f"  reason: {tidy_reason(report.decision.reason)}\n"
            )
            if report.key in notes:
                out.write(f"  target: {notes[report.key]}\n")
            _trigger_table(
                report.triggers,
                lambda t: f"{fmt(t.target)} ({t.metric_type})" if t.target is not None else "-",
                out,
            )
    return EXIT_FAILED if failed else EXIT_OK


async def evaluate_scaled_jobs(
    manifests: Manifests,
    *,
    env: Mapping[str, str],
    poll_timeout: float,
    target: str = "none",
    running: int | None = None,
    contexts: Mapping[str, tuple[TriggerContext, ...]] | None = None,
) -> list[JobReport]:
    """One dry-run evaluation of every ScaledJob in ``manifests``; nothing is started.

    ``contexts`` gives resolved trigger contexts by ScaledJob name (else they are
    resolved from ``manifests`` and ``env``).

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
                target=job_target(kind, spec),
                contexts=(contexts or {}).get(spec.name)
                or manifests.trigger_contexts(spec, env=env),
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


def write_job_reports(reports: Sequence[JobReport], out: Writable) -> None:
    """The people's view of :func:`evaluate_scaled_jobs`: one block per ScaledJob."""
    for report in reports:
        state = "active" if report.decision.is_active else "inactive"
        out.write(
            f"ScaledJob {report.key}: {report.counts.running} running "
            f"({report.counts.pending} pending), would start {report.decision.create} ({state})\n"
            f"  reason: {tidy_reason(report.decision.reason)}\n"
        )
        if report.target_error:
            out.write(f"  target: cannot list jobs ({report.target_error}); assuming 0\n")
        _trigger_table(report.triggers, lambda t: fmt(t.target), out)


def _trigger_table(triggers: Iterable[Any], target: Callable[[Any], str], out: Writable) -> None:
    """One row per trigger report; ``target`` formats the TARGET cell."""
    rows = [["#", "TYPE", "NAME", "VALUE", "TARGET", "ACTIVATION", "ACTIVE", "ERROR"]]
    for t in triggers:
        rows.append(
            [
                str(t.index),
                t.type,
                t.name or "-",
                fmt(t.value),
                target(t),
                fmt(t.activation_target),
                "yes" if t.active else "no",
                t.error or "",
            ]
        )
    table(rows, out)
