"""``eventscale run``: the controller, on the manifests, until interrupted.

Every ScaledObject and ScaledJob is reconciled on its ``pollingInterval`` until Ctrl-C or
SIGTERM: a live table on a terminal, JSON lines otherwise. With ``--shard-leases``
several processes share the objects through Kubernetes Leases
(:class:`~eventscale.runtime.sharding.LeaseSharding`). See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import time
from collections.abc import Sequence
from typing import Any

import anyio

from eventscale.cli._common import (
    EXIT_OK,
    add_env_options,
    job_target,
    load,
    make_target,
    resolve_contexts,
    tidy_reason,
)
from eventscale.cli._output import Writable, fmt, is_terminal, table
from eventscale.errors import ConfigError

__all__ = ("add_parser", "execute", "run")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``run`` subcommand to the ``eventscale`` parser's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run the controller on the manifests until interrupted",
        description="Reconcile every ScaledObject and ScaledJob in the manifests on its "
        "pollingInterval until interrupted (Ctrl-C or SIGTERM). A live table on a terminal, "
        "JSON lines otherwise. With --shard-leases several 'eventscale run' processes on the "
        "same manifests share the objects through Kubernetes Leases: each object is acted on "
        "by one of them, and a dead one's objects move to the others.",
    )
    p.add_argument(
        "manifests",
        nargs="*",
        metavar="MANIFEST",
        help="YAML files ('-' for stdin); optional with --watch",
    )
    p.add_argument(
        "--target",
        choices=["kubernetes", "docker", "memory"],
        default="kubernetes",
        help="where replicas are applied and jobs started: Deployments/Jobs, containers, or "
        "memory (starts at 0 and only records; default kubernetes)",
    )
    p.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    p.add_argument(
        "--job-seconds",
        type=float,
        default=math.inf,
        metavar="SECONDS",
        help="with --target memory: how long each ScaledJob job runs (default: until stopped)",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="the kubeconfig for the kubernetes target and --shard-leases "
        "(default: in-cluster, else $KUBECONFIG or ~/.kube/config)",
    )
    p.add_argument("--context", metavar="NAME", help="the kubeconfig context (default: current)")
    cluster = p.add_argument_group("in a cluster, as KEDA's operator (docs/deploy.md)")
    cluster.add_argument(
        "--watch",
        action="store_true",
        help="list and watch ScaledObjects, ScaledJobs and (Cluster)TriggerAuthentications in "
        "the cluster; write their status and Events",
    )
    cluster.add_argument(
        "--namespace",
        action="append",
        metavar="NS",
        help="with --watch: watch this namespace (repeatable; default: all namespaces)",
    )
    cluster.add_argument(
        "--selector",
        metavar="LABELS",
        help="with --watch: only ScaledObjects and ScaledJobs with these labels (app=web,tier)",
    )
    shard = p.add_argument_group("scale-out over several processes")
    shard.add_argument(
        "--shard-leases",
        action="store_true",
        help="share the objects with the other processes run with this option, through "
        "coordination.k8s.io Leases in the Kubernetes API",
    )
    shard.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="where the Leases live (default: the kubeconfig context's namespace)",
    )
    shard.add_argument(
        "--identity",
        metavar="ID",
        help="this process's identity, unique among the replicas (default: host name and pid)",
    )
    shard.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="a dead replica's objects move after this long (default 15)",
    )
    shard.add_argument(
        "--renew-deadline",
        type=float,
        metavar="SECONDS",
        help="stop acting on an object whose Lease was not renewed for this long "
        "(default 2/3 of the lease duration)",
    )
    shard.add_argument(
        "--retry-period",
        type=float,
        metavar="SECONDS",
        help="how often Leases are renewed and members recounted "
        "(default 2/15 of the lease duration)",
    )
    add_env_options(p)
    p.set_defaults(execute=execute)
    return p


def execute(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Run ``eventscale run`` for parsed ``args``; 0 once interrupted."""
    try:
        return anyio.run(run, args, out)
    except KeyboardInterrupt:
        return EXIT_OK


def _lease_timing(args: argparse.Namespace) -> tuple[float, float, float]:
    """``--lease-duration``, ``--renew-deadline`` and ``--retry-period``, the last two
    derived from the first (2/3 and 2/15 of it, client-go's 15/10/2) when not given."""
    duration = args.lease_duration
    renew = args.renew_deadline if args.renew_deadline is not None else duration * 2 / 3
    retry = args.retry_period if args.retry_period is not None else duration * 2 / 15
    if not 0 < retry < renew < duration:
        raise ConfigError(
            f"needs 0 < retry period ({retry:g}) < renew deadline ({renew:g}) "
            f"< lease duration ({duration:g})",
            path="--lease-duration",
        )
    return duration, renew, retry


async def run(args: argparse.Namespace, out: Writable) -> int:
    """Reconcile every object of ``args.manifests`` until cancelled."""
    from eventscale.runtime.controller import Reconcilable
    from eventscale.runtime.scaled_job import ScaledJob
    from eventscale.runtime.scaled_object import ScaledObject

    workloads: list[dict[str, Any]] = []
    watch = getattr(args, "watch", False)
    if not args.manifests and not watch:
        raise ConfigError("give manifest files, or --watch", path="MANIFEST")
    if not watch and (args.namespace or args.selector):
        raise ConfigError("needs --watch", path="--namespace" if args.namespace else "--selector")
    if args.manifests:
        manifests = load(args.manifests, jobs=True, workloads=workloads)
    else:
        from eventscale.manifests.reader import Manifests

        manifests = Manifests()  # --watch alone
    live = is_terminal(out) and not args.json
    if args.job_seconds < 0:
        raise ConfigError("must be >= 0", path="--job-seconds")
    timing = _lease_timing(args) if args.shard_leases else None
    client = None
    if args.target == "kubernetes" or args.shard_leases or watch:
        from eventscale.kube import KubeClient, KubeConfig

        client = KubeClient(KubeConfig.load(args.kubeconfig, args.context))
    objects: list[Reconcilable] = []
    kinds: dict[str, str] = {}
    try:
        for spec in manifests.scaled_objects:
            target = make_target(args.target, spec, client=client)
            try:
                contexts = await resolve_contexts(
                    manifests, spec, args, client, workloads, target=target
                )
            except BaseException:
                await target.aclose()
                raise
            objects.append(ScaledObject(spec, target=target, contexts=contexts))
            kinds[objects[-1].key] = "ScaledObject"
        for job_spec in manifests.scaled_jobs:
            job = ScaledJob(
                job_spec,
                target=job_target(
                    args.target, job_spec, client=client, job_seconds=args.job_seconds
                ),
                contexts=await resolve_contexts(manifests, job_spec, args, client, workloads),
            )
            objects.append(job)
            if job.key in kinds:
                raise ConfigError(
                    f"a ScaledObject and a ScaledJob are both named {job.key}; "
                    "eventscale run needs distinct names",
                    path=f"ScaledJob {job.key}",
                )
            kinds[job.key] = "ScaledJob"
    except BaseException:
        for obj in objects:
            await obj.aclose()
        if client is not None:
            await client.aclose()
        raise
    try:
        return await _run_objects(args, out, objects, kinds, live, client, timing)
    finally:
        if client is not None:
            await client.aclose()


async def _run_objects(
    args: argparse.Namespace,
    out: Writable,
    objects: Sequence[Any],
    kinds: dict[str, str],
    live: bool,
    client: Any,
    timing: tuple[float, float, float] | None,
) -> int:
    from eventscale.runtime.controller import Controller
    from eventscale.runtime.observability import Event, EventKind

    rows: dict[str, list[str]] = {
        o.key: [o.key, kinds[o.key], "?", "?", "-", "starting"] for o in objects
    }
    shown = (EventKind.SCALE, EventKind.DECISION, EventKind.TARGET_ERROR, EventKind.POLL)
    sharding = None
    if timing is not None:
        from eventscale.runtime.sharding import LeaseSharding

        duration, renew, retry = timing
        sharding = LeaseSharding(
            client,
            identity=args.identity,
            namespace=args.lease_namespace,
            lease_duration=duration,
            renew_deadline=renew,
            retry_period=retry,
        )
    extra: dict[str, str] = {} if sharding is None else {"identity": sharding.identity}

    stop = anyio.CancelScope()
    watch = getattr(args, "watch", False)
    spawn: list[Any] = []  # the task group's start_soon, for the --watch reconciler
    watching: list[Any] = []  # the --watch reconciler
    reader_gone: list[BrokenPipeError] = []

    def on_event(event: Event) -> None:
        if not live:
            if event.kind in shown and not reader_gone:
                line = event.to_dict()
                line["objectKind"] = kinds.get(event.scaled_object) or (
                    watching[0].kind_of(event.scaled_object) if watching else "ScaledObject"
                )
                line.update(extra)
                try:
                    out.write(json.dumps(line) + "\n")
                    out.flush()
                except BrokenPipeError as exc:  # `eventscale run ... | head`: stop quietly
                    reader_gone.append(exc)
                    stop.cancel()
            return
        row = rows.get(event.scaled_object)
        if event.kind is EventKind.OBJECT_ADDED and row is None:  # found by --watch
            kind = watching[0].kind_of(event.scaled_object) if watching else "?"
            rows[event.scaled_object] = [event.scaled_object, kind, "?", "?", "-", "starting"]
            return
        if event.kind is EventKind.OBJECT_REMOVED and event.scaled_object not in kinds:
            rows.pop(event.scaled_object, None)
            return
        if row is None:
            return
        if event.kind is EventKind.POLL:
            row[4] = ", ".join(
                f"{t.name or t.index}={'error' if t.error else fmt(t.value)}"
                for t in event.triggers
            )
            if event.current_replicas is not None:
                row[2] = str(event.current_replicas)
        elif event.kind is EventKind.DECISION:
            row[3] = str(event.desired_replicas)
            row[5] = tidy_reason(event.reason or "")
        elif event.kind is EventKind.SCALE:
            row[2] = str(event.to_replicas)
        elif event.kind is EventKind.TARGET_ERROR:
            row[5] = f"target error: {event.error}"

    async def stop_on_sigterm(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                scope.cancel()
                return

    async def control() -> None:
        async with Controller(ownership=sharding) as ctl:
            ctl.events.add_hook(on_event)
            for obj in objects:
                ctl.add(obj)
            if watch:
                from eventscale.runtime.cluster.reconciler import ClusterReconciler

                reconciler = ClusterReconciler.for_cli(
                    args,
                    client,
                    ctl,
                    sharding,
                    make_target=lambda spec: make_target(args.target, spec, client=client),
                    make_job_target=lambda spec: job_target(
                        args.target, spec, client=client, job_seconds=args.job_seconds
                    ),
                )
                watching.append(reconciler)  # ready() / live() for the health endpoints
                spawn[0](reconciler.run)
            if not live:
                await ctl.run_until_cancelled()
            who = "" if sharding is None else f", replica {sharding.identity}"
            while True:
                if sharding is not None:
                    for key, row in rows.items():
                        if key in ctl and not ctl.status(key).owned:
                            row[5] = "owned by another replica"
                view = [
                    ["OBJECT", "KIND", "REPLICAS", "DESIRED", "METRICS", "REASON"],
                    *rows.values(),
                ]
                out.write(
                    "\x1b[2J\x1b[H"
                    + time.strftime("%H:%M:%S")
                    + f"  eventscale run ({len(rows)} objects{who}, Ctrl-C to stop)\n\n"
                )
                table(view, out)
                out.flush()
                await anyio.sleep(1)

    with stop:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_sigterm, stop)
            spawn.append(tg.start_soon)
            if sharding is None:
                await control()
            else:
                async with sharding:
                    await control()
    if reader_gone:
        raise reader_gone[0]  # main() ends quietly on a broken pipe
    return EXIT_OK
