"""The ``eventscale`` command: evaluate, run, simulate, demo.

Exit codes: 0 success; 1 a trigger could not be read (``evaluate``) or a command failed
at run time; 2 the manifest, the trace or the command line is invalid (the
:class:`~eventscale.errors.ConfigError` with its field path goes to stderr). Output for
people is a table; ``--json`` gives a program one JSON document (``run`` prints JSON
lines when stdout is not a terminal). No secret is ever printed: error messages are
redacted where they are made, and everything the command writes passes through one
more filter that blanks URL passwords, connection-string keys and the values of the
manifest's Secrets.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from eventscale._version import __version__
from eventscale.errors import ConfigError, EventscaleError
from eventscale.redaction import Secret, redact_text

if TYPE_CHECKING:
    from eventscale.jobs.base import JobTarget
    from eventscale.manifests.reader import Manifests
    from eventscale.targets import Target

__all__ = ("main",)

#: Exit status: every trigger was read / the command finished.
EXIT_OK = 0
#: Exit status: a trigger could not be read, or the command failed at run time.
EXIT_FAILED = 1
#: Exit status: invalid manifest, trace or command line.
EXIT_INVALID = 2

# Substrings of --env keys whose values are treated as secrets in the output filter.
_SECRET_ENV_HINTS = ("password", "passwd", "secret", "key", "token", "conn", "credential", "sas")


class _Writable(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


class _Redactor:
    """The last line of defence: scrubs every string the command writes."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add(self, values: Iterable[Secret | str]) -> None:
        for value in values:
            raw = value.reveal() if isinstance(value, Secret) else value
            if len(raw) >= 4:
                self.secrets.add(raw)

    def __call__(self, text: str) -> str:
        # Longest first, so a secret that contains another is blanked whole.
        ordered: list[Secret | str | None] = [
            *sorted(self.secrets, key=lambda s: len(s), reverse=True)
        ]
        return redact_text(text, ordered)


class _Output:
    """A text stream wrapper that redacts what goes through it."""

    def __init__(self, stream: _Writable, redactor: _Redactor) -> None:
        self._stream = stream
        self._redact = redactor

    def write(self, text: str, /) -> int:
        self._stream.write(self._redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (AttributeError, ValueError):
            return False


class _RedactingFilter(logging.Filter):
    def __init__(self, redactor: _Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks of library errors may quote connection strings.
            text = "".join(traceback.format_exception(*record.exc_info))
            record.msg = f"{record.msg}\n{self._redact(text).rstrip()}"
            record.exc_info = None
            record.exc_text = None
        return True


def _setup_logging(verbosity: int, err: _Output) -> Callable[[], None]:
    """Log to stderr through the redactor; return a function that undoes it.

    By default only eventscale's warnings are shown (broker client libraries log the
    same connection failures the report already carries); ``-v`` shows eventscale's
    info and every library's warnings, ``-vv`` debug output. :func:`main` restores the
    previous logging setup when it returns, so calling it in-process (tests, an
    embedding application) leaves logging as it found it.
    """
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter(_current_redactor))
    root = logging.getLogger()
    library = logging.getLogger("eventscale")
    # librdkafka's own log, relayed under eventscale's name: a driver's chatter that
    # repeats every connection attempt the trigger's error already sums up.
    driver = logging.getLogger("eventscale.scalers.kafka.librdkafka")
    saved_handlers = list(root.handlers)
    saved_levels = [(logger, logger.level) for logger in (root, library, driver)]

    def restore() -> None:
        root.handlers[:] = saved_handlers
        for logger, level in saved_levels:
            logger.setLevel(level)

    root.handlers[:] = [handler]
    if verbosity <= 0:
        root.setLevel(logging.CRITICAL + 1)
        library.setLevel(logging.WARNING)
        driver.setLevel(logging.CRITICAL + 1)
    elif verbosity == 1:
        root.setLevel(logging.WARNING)
        library.setLevel(logging.INFO)
        driver.setLevel(logging.WARNING)
    else:
        root.setLevel(logging.DEBUG)
        library.setLevel(logging.DEBUG)
        driver.setLevel(logging.DEBUG)
    return restore


_current_redactor = _Redactor()


# --------------------------------------------------------------------------- helpers


def _read_manifest_files(paths: Sequence[str]) -> str:
    texts = []
    for path in paths:
        if path == "-":
            texts.append(sys.stdin.read())
            continue
        try:
            texts.append(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}", path=path) from None
    return "\n---\n".join(texts)


def _load(paths: Sequence[str], *, jobs: bool = False) -> Manifests:
    from eventscale.manifests.reader import load_manifests

    manifests = load_manifests(_read_manifest_files(paths), ignore_unknown_kinds=True)
    for data in manifests.secrets.values():
        _current_redactor.add(data.values())
    if not manifests.scaled_objects and not (jobs and manifests.scaled_jobs):
        kinds = "ScaledObject or ScaledJob" if jobs else "ScaledObject"
        raise ConfigError(f"the manifest holds no {kinds}", path=", ".join(paths))
    return manifests


def _env(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = dict(os.environ) if not args.no_os_env else {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            # The item may hold a secret: do not echo it.
            raise ConfigError("takes KEY=VALUE (an item has no '=' or no key)", path="--env")
        env[key] = value
        if any(hint in key.lower() for hint in _SECRET_ENV_HINTS):
            _current_redactor.add([value])
    return env


def _table(rows: Sequence[Sequence[str]], out: _Writable) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def _make_target(kind: str, spec: Any, *, replicas: int = 0, client: Any = None) -> Target:
    if kind == "memory":
        from eventscale.targets.memory import MemoryTarget

        return MemoryTarget(replicas=replicas, name=spec.scale_target_ref.name)
    if kind == "kubernetes":
        from eventscale.targets.kubernetes import KubernetesTarget

        return KubernetesTarget.from_ref(
            spec.scale_target_ref, namespace=spec.namespace, client=client
        )
    if kind == "docker":
        from eventscale.targets.docker import DockerTarget

        return DockerTarget(spec.scale_target_ref.name)
    raise ConfigError(f"unknown target {kind!r} (kubernetes, docker or memory)", path="--target")


# --------------------------------------------------------------------------- evaluate


async def _current_replicas(target: Target, limit: float) -> tuple[int, str | None]:
    """What the target holds, or 0 and the reason it could not be read."""
    try:
        with anyio.fail_after(limit):
            return await target.get_replicas(), None
    except TimeoutError:
        return 0, f"the target did not answer within {limit:g}s"
    except Exception as exc:
        return 0, f"{type(exc).__name__}: {redact_text(str(exc))}"


async def _evaluate(args: argparse.Namespace, out: _Writable, err: _Writable) -> int:
    from eventscale.runtime.scaled_object import ScaledObject
    from eventscale.targets.memory import MemoryTarget

    manifests = _load([args.manifest], jobs=True)
    env = _env(args)
    objects = []
    # Build every object (and so check every trigger's metadata) before polling any.
    for spec in manifests.scaled_objects:
        target: Target
        if args.current_replicas is not None or args.target == "none":
            target = MemoryTarget(replicas=args.current_replicas or 0)
        else:
            target = _make_target(args.target, spec)
        contexts = manifests.trigger_contexts(spec, env=env)
        objects.append(
            ScaledObject(spec, target=target, contexts=contexts, poll_timeout=args.timeout)
        )
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
    from eventscale.cli import _jobs as jobs_cli

    job_reports = await jobs_cli.evaluate_scaled_jobs(
        manifests,
        env=env,
        poll_timeout=args.timeout,
        target=args.target,
        running=args.current_replicas,
    )
    failed = failed or any(not r.ok for r in job_reports)
    if args.json:
        doc: dict[str, Any] = {"scaledObjects": [r.to_dict() for r in reports]}
        if job_reports:
            doc["scaledJobs"] = jobs_cli.job_reports_json(job_reports)
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        jobs_cli.write_job_reports(job_reports, out)
        for report in reports:
            state = "active" if report.decision.is_active else "inactive"
            out.write(
                f"ScaledObject {report.key}: {report.current_replicas} -> "
                f"{report.decision.replicas} replicas ({state})\n"
                f"  reason: {report.decision.reason}\n"
            )
            if report.key in notes:
                out.write(f"  target: {notes[report.key]}\n")
            rows = [["#", "TYPE", "NAME", "VALUE", "TARGET", "ACTIVATION", "ACTIVE", "ERROR"]]
            for t in report.triggers:
                rows.append(
                    [
                        str(t.index),
                        t.type,
                        t.name or "-",
                        _fmt(t.value),
                        f"{_fmt(t.target)} ({t.metric_type})" if t.target is not None else "-",
                        _fmt(t.activation_target),
                        "yes" if t.active else "no",
                        t.error or "",
                    ]
                )
            _table(rows, out)
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------- simulate


def _simulate(args: argparse.Namespace, out: _Writable) -> int:
    from eventscale.simulation.scaled_object import Trace, simulate

    manifests = _load([args.manifest], jobs=True)
    if not manifests.scaled_objects or args.job_seconds is not None:
        from eventscale.cli._jobs import simulate_scaled_job

        return simulate_scaled_job(
            manifests,
            trace_path=args.trace,
            job_seconds=args.job_seconds,
            name=args.name,
            as_json=args.json,
            out=out,
        )
    spec = manifests.scaled_object(args.name)
    trace = Trace.from_csv(args.trace)
    if args.ready_delay < 0:
        raise ConfigError("must be >= 0", path="--ready-delay")
    timeline = simulate(
        spec, trace, initial_replicas=args.current_replicas or 0, ready_delay=args.ready_delay
    )
    if args.plot:
        timeline.plot(args.plot)
    if args.json:
        out.write(json.dumps(timeline.to_dict(), indent=2) + "\n")
        return EXIT_OK
    names = [t.name or str(i) for i, t in enumerate(spec.triggers)]
    rows = [["TIME", *[n.upper() for n in names], "DESIRED", "READY", "ACTIVE", "REASON"]]
    for step in timeline.steps:
        rows.append(
            [
                f"{step.time:g}",
                *[_fmt(step.metrics.get(n)) for n in names],
                str(step.desired_replicas),
                str(step.replicas),
                "yes" if step.active else "no",
                step.reason,
            ]
        )
    _table(rows, out)
    if args.plot:
        out.write(f"plot written to {args.plot}\n")
    return EXIT_OK


# --------------------------------------------------------------------------- run


def _job_target(kind: str, spec: Any, *, client: Any, job_seconds: float) -> JobTarget:
    """The job backend ``--target`` names, for one ScaledJob."""
    if kind == "memory":
        from eventscale.jobs.memory import MemoryJobTarget

        return MemoryJobTarget(duration=job_seconds, name=spec.name)
    if kind == "kubernetes":
        from eventscale.jobs.kubernetes import KubernetesJobTarget

        return KubernetesJobTarget.from_spec(spec, client=client)
    if kind == "docker":
        from eventscale.jobs.docker import DockerJobTarget

        return DockerJobTarget.from_spec(spec)
    raise ConfigError(f"unknown target {kind!r} (kubernetes, docker or memory)", path="--target")


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


async def _run(args: argparse.Namespace, out: _Writable) -> int:
    from eventscale.runtime.controller import Reconcilable
    from eventscale.runtime.scaled_job import ScaledJob
    from eventscale.runtime.scaled_object import ScaledObject

    manifests = _load(args.manifests, jobs=True)
    env = _env(args)
    live = out.isatty() and not args.json
    if args.job_seconds < 0:
        raise ConfigError("must be >= 0", path="--job-seconds")
    timing = _lease_timing(args) if args.shard_leases else None
    client = None
    if args.target == "kubernetes" or args.shard_leases:
        from eventscale.targets.kubernetes import KubeClient, KubeConfig

        client = KubeClient(KubeConfig.load(args.kubeconfig, args.context))
    objects: list[Reconcilable] = []
    kinds: dict[str, str] = {}
    try:
        for spec in manifests.scaled_objects:
            objects.append(
                ScaledObject(
                    spec,
                    target=_make_target(args.target, spec, client=client),
                    contexts=manifests.trigger_contexts(spec, env=env),
                )
            )
            kinds[objects[-1].key] = "ScaledObject"
        for job_spec in manifests.scaled_jobs:
            job = ScaledJob(
                job_spec,
                target=_job_target(
                    args.target, job_spec, client=client, job_seconds=args.job_seconds
                ),
                contexts=manifests.trigger_contexts(job_spec, env=env),
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
    out: _Writable,
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

    def on_event(event: Event) -> None:
        if not live:
            if event.kind in shown:
                line = event.to_dict()
                line["objectKind"] = kinds.get(event.scaled_object, "ScaledObject")
                line.update(extra)
                out.write(json.dumps(line) + "\n")
                out.flush()
            return
        row = rows.get(event.scaled_object)
        if row is None:
            return
        if event.kind is EventKind.POLL:
            row[4] = ", ".join(
                f"{t.name or t.index}={'error' if t.error else _fmt(t.value)}"
                for t in event.triggers
            )
            if event.current_replicas is not None:
                row[2] = str(event.current_replicas)
        elif event.kind is EventKind.DECISION:
            row[3] = str(event.desired_replicas)
            row[5] = event.reason or ""
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
            if not live:
                await ctl.run_until_cancelled()
            who = "" if sharding is None else f", replica {sharding.identity}"
            while True:
                if sharding is not None:
                    for key, row in rows.items():
                        if key in ctl and not ctl.status(key).owned:
                            row[5] = "owned by another replica"
                table = [
                    ["OBJECT", "KIND", "REPLICAS", "DESIRED", "METRICS", "REASON"],
                    *rows.values(),
                ]
                out.write(
                    "\x1b[2J\x1b[H"
                    + time.strftime("%H:%M:%S")
                    + f"  eventscale run ({len(rows)} objects{who}, Ctrl-C to stop)\n\n"
                )
                _table(table, out)
                out.flush()
                await anyio.sleep(1)

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_sigterm, scope)
            if sharding is None:
                await control()
            else:
                async with sharding:
                    await control()
    return EXIT_OK


# --------------------------------------------------------------------------- demo


async def _demo(args: argparse.Namespace, out: _Writable) -> int:
    from eventscale.cli.demo import run_demo

    if not args.speed > 0:
        raise ConfigError("must be > 0", path="--speed")
    if not args.seconds > 0:
        raise ConfigError("must be > 0", path="--seconds")
    await run_demo(
        out, seconds=args.seconds, speed=args.speed, live=out.isatty() and not args.plain
    )
    return EXIT_OK


# --------------------------------------------------------------------------- intercept


def _intercept(args: argparse.Namespace, out: _Writable) -> int:
    from eventscale.cli.intercept import run_intercept

    try:
        return anyio.run(run_intercept, args, out)
    except KeyboardInterrupt:
        return EXIT_OK


# --------------------------------------------------------------------------- serve-external


def _serve_external(args: argparse.Namespace, out: _Writable) -> int:
    from eventscale.cli.serve_external import run_serve_external

    try:
        return anyio.run(run_serve_external, args, out)
    except KeyboardInterrupt:
        return EXIT_OK


# --------------------------------------------------------------------------- parser


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventscale",
        description="KEDA-style event-driven autoscaling: evaluate, run and simulate "
        "ScaledObjects from their YAML manifests.",
        epilog="Exit codes: 0 success, 1 a trigger or the command failed, "
        "2 invalid manifest, trace or options.",
    )
    parser.add_argument("--version", action="version", version=f"eventscale {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log to stderr: -v eventscale info and library warnings, -vv debug",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def env_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--env",
            action="append",
            metavar="KEY=VALUE",
            help="an environment variable for ...FromEnv parameters (repeatable); "
            "the process environment is used too unless --no-os-env",
        )
        p.add_argument(
            "--no-os-env", action="store_true", help="do not read the process environment"
        )

    ev = sub.add_parser(
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
    env_options(ev)

    run = sub.add_parser(
        "run",
        help="run the controller on the manifests until interrupted",
        description="Reconcile every ScaledObject and ScaledJob in the manifests on its "
        "pollingInterval until interrupted (Ctrl-C or SIGTERM). A live table on a terminal, "
        "JSON lines otherwise. With --shard-leases several 'eventscale run' processes on the "
        "same manifests share the objects through Kubernetes Leases: each object is acted on "
        "by one of them, and a dead one's objects move to the others.",
    )
    run.add_argument("manifests", nargs="+", metavar="MANIFEST", help="YAML files ('-' for stdin)")
    run.add_argument(
        "--target",
        choices=["kubernetes", "docker", "memory"],
        default="kubernetes",
        help="where replicas are applied and jobs started: Deployments/Jobs, containers, or "
        "memory (starts at 0 and only records; default kubernetes)",
    )
    run.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    run.add_argument(
        "--job-seconds",
        type=float,
        default=math.inf,
        metavar="SECONDS",
        help="with --target memory: how long each ScaledJob job runs (default: until stopped)",
    )
    run.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="the kubeconfig for the kubernetes target and --shard-leases "
        "(default: in-cluster, else $KUBECONFIG or ~/.kube/config)",
    )
    run.add_argument("--context", metavar="NAME", help="the kubeconfig context (default: current)")
    shard = run.add_argument_group("scale-out over several processes")
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
    env_options(run)

    sim = sub.add_parser(
        "simulate",
        help="replay a metric trace through the engine on a virtual clock",
        description="Replay TRACE (CSV: a 'time' column in seconds and one column per trigger, "
        "named by the trigger's name or index) through the engine, ticking every pollingInterval "
        "from 0 to the last time. No source is contacted. A value holds until the next row; an "
        "empty cell is a failed read (so fallback can be simulated).",
    )
    sim.add_argument("manifest", metavar="MANIFEST", help="YAML file with the ScaledObject")
    sim.add_argument("--trace", required=True, metavar="TRACE.csv", help="the metric trace")
    sim.add_argument(
        "--plot", metavar="OUT.png", help="draw metrics and replicas (needs eventscale[plot])"
    )
    sim.add_argument("--json", action="store_true", help="print the timeline as JSON")
    sim.add_argument(
        "--ready-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="new replicas become ready this long after a scale-up (default 0)",
    )
    sim.add_argument(
        "--current-replicas", type=int, metavar="N", help="replicas at time 0 (default 0)"
    )
    sim.add_argument("--name", help="the ScaledObject to simulate when the file holds several")
    sim.add_argument(
        "--job-seconds",
        type=float,
        metavar="SECONDS",
        help="simulate the ScaledJob (--name) instead: each job runs this long",
    )

    demo = sub.add_parser(
        "demo",
        help="a self-contained walk from 0 replicas to N and back to 0",
        description="An in-memory queue with a bursty producer and a worker pool on a memory "
        "target: activation from 0, scale out, cooldown and the return to 0. No server needed.",
    )
    demo.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="length of the story in demo time (default 60)",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="run this many times faster than real time (default 1)",
    )
    demo.add_argument(
        "--plain", action="store_true", help="one line per second instead of a live view"
    )
    from eventscale.cli.intercept import add_parser as add_intercept_parser

    add_intercept_parser(sub)
    from eventscale.cli.serve_external import add_parser as add_serve_external_parser

    add_serve_external_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, out: _Writable | None = None) -> int:
    """Entry point of the ``eventscale`` command; returns the exit status."""
    stdout = _Output(out if out is not None else sys.stdout, _current_redactor)
    stderr = _Output(sys.stderr, _current_redactor)
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    restore_logging = _setup_logging(args.verbose, stderr)
    try:
        if args.command == "evaluate":
            return anyio.run(_evaluate, args, stdout, stderr)
        if args.command == "simulate":
            return _simulate(args, stdout)
        if args.command == "run":
            try:
                return anyio.run(_run, args, stdout)
            except KeyboardInterrupt:
                return EXIT_OK
        if args.command == "intercept":
            return _intercept(args, stdout)
        if args.command == "serve-external":
            return _serve_external(args, stdout)
        try:
            return anyio.run(_demo, args, stdout)
        except KeyboardInterrupt:
            return EXIT_OK
    except ConfigError as exc:
        stderr.write(f"eventscale: invalid configuration: {exc}\n")
        return EXIT_INVALID
    except EventscaleError as exc:
        stderr.write(f"eventscale: {exc}\n")
        return EXIT_FAILED
    except Exception as exc:
        # A bug: say so without a traceback that might quote a connection string.
        stderr.write(f"eventscale: unexpected {type(exc).__name__}: {exc}\n")
        if args.verbose:
            stderr.write("".join(traceback.format_exception(exc)))
        return EXIT_FAILED
    finally:
        restore_logging()
