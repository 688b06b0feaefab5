"""``eventscale run``: the controller, on the manifests, until interrupted.

Every ScaledObject and ScaledJob is reconciled on its ``pollingInterval`` until Ctrl-C or
SIGTERM: a live table on a terminal, JSON lines otherwise. The manifest files (or
folders) are read again when they change and on SIGHUP
(:class:`~eventscale.runtime.reload.ManifestReloader`); ``--metrics-address`` serves
KEDA's and eventscale's Prometheus metrics and the health probes. ``--watch`` lists and
watches KEDA's kinds in the cluster and writes their status and Events
(:class:`~eventscale.runtime.cluster.reconciler.ClusterReconciler`). With
``--shard-leases`` several processes share the objects through Kubernetes Leases
(:class:`~eventscale.runtime.sharding.LeaseSharding`). See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
from typing import Any

import anyio

from eventscale.cli._common import (
    EXIT_OK,
    add_env_options,
    environment,
    job_target,
    make_target,
    read_manifest_files,
)
from eventscale.cli._output import Writable, is_terminal
from eventscale.cli._run_parts import ObjectFactory, metrics_server
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
        help="YAML files or folders of them ('-' for stdin); read again when they change; "
        "optional with --watch",
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
    ops = p.add_argument_group("live files, metrics and health")
    ops.add_argument(
        "--reload-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often the manifest files are checked for changes (default 2; 0: only on SIGHUP)",
    )
    ops.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics (KEDA's keda_* names and eventscale_*) on /metrics "
        "and the probes /healthz and /readyz, e.g. :8080 (needs the prometheus extra)",
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
    from eventscale.runtime.controller import Controller
    from eventscale.runtime.reload import ManifestReloader

    watch = bool(getattr(args, "watch", False))
    if not args.manifests and not watch:
        raise ConfigError("give manifest files, or --watch", path="MANIFEST")
    if not watch and (args.namespace or args.selector):
        raise ConfigError("needs --watch", path="--namespace" if args.namespace else "--selector")
    if watch:
        environment(args)  # a malformed --env is refused before anything starts
    live = is_terminal(out) and not args.json
    if args.job_seconds < 0:
        raise ConfigError("must be >= 0", path="--job-seconds")
    timing = _lease_timing(args) if args.shard_leases else None
    if args.metrics_address:
        from eventscale.runtime.metrics_server import parse_address

        parse_address(args.metrics_address)  # a bad address before anything starts
    files = [path for path in args.manifests if path != "-"]
    stdin_text = read_manifest_files(["-"]) if "-" in args.manifests else ""
    client = None
    if args.target == "kubernetes" or args.shard_leases or watch:
        from eventscale.kube import KubeClient, KubeConfig

        client = KubeClient(KubeConfig.load(args.kubeconfig, args.context))
    try:
        sharding = None
        if timing is not None:
            from eventscale.runtime.sharding import LeaseSharding

            duration, renew, retry = timing
            assert client is not None
            sharding = LeaseSharding(
                client,
                identity=args.identity,
                namespace=args.lease_namespace,
                lease_duration=duration,
                renew_deadline=renew,
                retry_period=retry,
            )
        ctl = Controller(ownership=sharding)
        reloader = ManifestReloader(
            ctl,
            files,
            ObjectFactory(args, client),
            interval=args.reload_interval,
            fixed_text=stdin_text,
        )
        if args.manifests:
            # with --watch the files may hold only what the watched objects use
            await reloader.load(required=not watch)
        return await _run_objects(args, out, ctl, reloader, live, sharding, client)
    finally:
        if client is not None:
            await client.aclose()


async def _run_objects(
    args: argparse.Namespace,
    out: Writable,
    ctl: Any,
    reloader: Any,
    live: bool,
    sharding: Any,
    client: Any,
) -> int:
    from eventscale.cli._live import LiveView
    from eventscale.runtime.health import Health, controller_checks
    from eventscale.runtime.observability import Event, EventKind

    shown = (
        EventKind.SCALE,
        EventKind.DECISION,
        EventKind.TARGET_ERROR,
        EventKind.POLL,
        EventKind.CONFIG_ERROR,
        EventKind.RELOAD,
    )
    extra: dict[str, str] = {} if sharding is None else {"identity": sharding.identity}
    watching: list[Any] = []  # the --watch reconciler, once made

    def kind_of(key: str) -> str:
        kind = reloader.kinds.get(key)
        if kind is None and watching:
            kind = watching[0].kind_of(key)
        return str(kind or "ScaledObject")

    view = LiveView(kind_of)
    for key in reloader.kinds:
        view.add(key)

    stop = anyio.CancelScope()
    reader_gone: list[BrokenPipeError] = []

    def on_event(event: Event) -> None:
        if live:
            view(event)
            return
        if event.kind in shown and not reader_gone:
            line = event.to_dict()
            if event.kind not in (EventKind.RELOAD, EventKind.CONFIG_ERROR):
                line["objectKind"] = kind_of(event.scaled_object)
            line.update(extra)
            try:
                out.write(json.dumps(line) + "\n")
                out.flush()
            except BrokenPipeError as exc:  # `eventscale run ... | head`: stop quietly
                reader_gone.append(exc)
                stop.cancel()

    async def on_signals(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    reloader.request()
                    continue
                scope.cancel()
                return

    health = Health()
    checks = controller_checks(health, ctl)
    ctl.events.add_hook(on_event)
    try:
        server = await metrics_server(args, ctl, reloader, health, kind_of)
    except BaseException:
        # (a port in use): close the objects loaded into the controller that never ran
        with anyio.CancelScope(shield=True):
            async with ctl:
                pass
        raise

    async def control() -> None:
        async with ctl:
            if args.manifests:
                tg.start_soon(reloader.run)
            if args.watch:
                from eventscale.runtime.cluster.reconciler import ClusterReconciler

                reconciler = ClusterReconciler.for_cli(
                    args,
                    client,
                    ctl,
                    sharding,
                    env=environment(args),
                    make_target=lambda spec: make_target(args.target, spec, client=client),
                    make_job_target=lambda spec: job_target(
                        args.target, spec, client=client, job_seconds=args.job_seconds
                    ),
                )
                watching.append(reconciler)
                health.add_check("watch", ready=reconciler.ready, live=reconciler.live)
                tg.start_soon(reconciler.run)
            with checks.running_while():
                if not live:
                    await ctl.run_until_cancelled()
                who = "" if sharding is None else f", replica {sharding.identity}"
                while True:
                    notes = {}
                    if sharding is not None:
                        notes = {
                            key: "owned by another replica"
                            for key in view.rows
                            if key in ctl and not ctl.status(key).owned
                        }
                    title = f"eventscale run ({len(view.rows)} objects{who}, Ctrl-C to stop)"
                    view.render(out, title, notes)
                    await anyio.sleep(1)

    try:
        with stop:
            async with anyio.create_task_group() as tg:
                tg.start_soon(on_signals, stop)
                if sharding is None:
                    await control()
                else:
                    async with sharding:
                        await control()
    finally:
        if server is not None:
            await server.aclose()
    if reader_gone:
        raise reader_gone[0]  # main() ends quietly on a broken pipe
    return EXIT_OK
