"""The ``eventscale`` command: evaluate, run, simulate, demo.

Exit codes: 0 success; 1 a trigger or target could not be read (``evaluate``); 2 the
manifest or the command line is invalid (the :class:`~eventscale.errors.ConfigError`
with its field path goes to stderr). Output for people is a table; ``--json`` gives a
program one JSON document (``run`` prints JSON lines when stdout is not a terminal).
No secret is ever printed: every error message was redacted where it was made.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio

from eventscale._version import __version__
from eventscale.errors import ConfigError, EventscaleError

__all__ = ("main",)


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


def _env(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = dict(os.environ) if not args.no_os_env else {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env takes KEY=VALUE, got {item!r}", path="--env")
        env[key] = value
    return env


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def _make_target(kind: str, spec: Any, *, replicas: int = 0) -> Any:
    if kind == "memory":
        from eventscale.targets.memory import MemoryTarget

        return MemoryTarget(replicas=replicas)
    if kind == "kubernetes":
        from eventscale.targets.kubernetes import KubernetesTarget

        return KubernetesTarget.from_ref(spec.scale_target_ref, namespace=spec.namespace)
    if kind == "docker":
        from eventscale.targets.docker import DockerTarget

        return DockerTarget(spec.scale_target_ref.name)
    raise ConfigError(f"unknown target {kind!r} (kubernetes, docker or memory)", path="--target")


# --------------------------------------------------------------------------- evaluate


async def _evaluate(args: argparse.Namespace, out: TextIO) -> int:
    from eventscale.manifest import load_manifests
    from eventscale.runtime import ScaledObject
    from eventscale.targets.memory import MemoryTarget

    manifests = load_manifests(_read_manifest_files([args.manifest]), ignore_unknown_kinds=True)
    if not manifests.scaled_objects:
        raise ConfigError("the manifest holds no ScaledObject", path=args.manifest)
    env = _env(args)
    objects = []
    for spec in manifests.scaled_objects:
        target: Any
        if args.current_replicas is not None or args.target == "none":
            target = MemoryTarget(replicas=args.current_replicas or 0)
        else:
            target = _make_target(args.target, spec)
        contexts = manifests.trigger_contexts(spec, env=env)
        objects.append(
            ScaledObject(spec, target=target, contexts=contexts, poll_timeout=args.timeout)
        )
    reports = []
    try:
        for obj in objects:
            report = await obj.evaluate()
            if report.target_error is not None:
                # "else 0": decide from zero when the target cannot be read.
                report = await obj.evaluate(current_replicas=0)
                report = _with_target_error(report, "target unreachable; assumed 0 replicas")
            reports.append(report)
    finally:
        for obj in objects:
            await obj.aclose()
    failed = any(t.error is not None for r in reports for t in r.triggers)
    if args.json:
        json.dump({"scaledObjects": [r.to_dict() for r in reports]}, out, indent=2)
        out.write("\n")
    else:
        for report in reports:
            state = "active" if report.decision.is_active else "inactive"
            out.write(
                f"ScaledObject {report.key}: {report.current_replicas} -> "
                f"{report.decision.replicas} replicas ({state})\n"
                f"  reason: {report.decision.reason}\n"
            )
            if report.target_error:
                out.write(f"  target: {report.target_error}\n")
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
    return 1 if failed else 0


def _with_target_error(report: Any, message: str) -> Any:
    import attrs

    return attrs.evolve(report, target_error=message)


# --------------------------------------------------------------------------- simulate


def _simulate(args: argparse.Namespace, out: TextIO) -> int:
    from eventscale.manifest import load_manifests
    from eventscale.simulate import Trace, simulate

    manifests = load_manifests(_read_manifest_files([args.manifest]), ignore_unknown_kinds=True)
    spec = manifests.scaled_object(args.name)
    trace = Trace.from_csv(args.trace)
    timeline = simulate(
        spec, trace, initial_replicas=args.current_replicas or 0, ready_delay=args.ready_delay
    )
    if args.plot:
        timeline.plot(args.plot)
    if args.json:
        json.dump(timeline.to_dict(), out, indent=2)
        out.write("\n")
        return 0
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
    return 0


# --------------------------------------------------------------------------- run


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    from eventscale.controller import Controller
    from eventscale.manifest import load_manifests
    from eventscale.observability import Event, EventKind
    from eventscale.runtime import ScaledObject

    manifests = load_manifests(_read_manifest_files(args.manifests), ignore_unknown_kinds=True)
    if not manifests.scaled_objects:
        raise ConfigError("the manifests hold no ScaledObject", path="MANIFEST")
    env = _env(args)
    live = out.isatty() and not args.json
    objects = [
        ScaledObject(
            spec,
            target=_make_target(args.target, spec),
            contexts=manifests.trigger_contexts(spec, env=env),
        )
        for spec in manifests.scaled_objects
    ]
    rows: dict[str, list[str]] = {o.key: [o.key, "?", "?", "-", "starting"] for o in objects}

    def on_event(event: Event) -> None:
        row = rows.get(event.scaled_object)
        if not live:
            if event.kind in (
                EventKind.SCALE,
                EventKind.DECISION,
                EventKind.TARGET_ERROR,
                EventKind.POLL,
            ):
                out.write(json.dumps(event.to_dict()) + "\n")
                out.flush()
            return
        if row is None:
            return
        if event.kind is EventKind.POLL:
            row[3] = ", ".join(
                f"{t.name or t.index}={'error' if t.error else _fmt(t.value)}"
                for t in event.triggers
            )
            if event.current_replicas is not None:
                row[1] = str(event.current_replicas)
        elif event.kind is EventKind.DECISION:
            row[2] = str(event.desired_replicas)
            row[4] = event.reason or ""
        elif event.kind is EventKind.SCALE:
            row[1] = str(event.to_replicas)
        elif event.kind is EventKind.TARGET_ERROR:
            row[4] = f"target error: {event.error}"

    async with Controller() as ctl:
        ctl.events.add_hook(on_event)
        for obj in objects:
            ctl.add(obj)
        if live:
            while True:
                table = [["OBJECT", "REPLICAS", "DESIRED", "METRICS", "REASON"], *rows.values()]
                out.write(
                    "\x1b[2J\x1b[H"
                    + time.strftime("%H:%M:%S")
                    + f"  eventscale run ({len(rows)} objects)\n\n"
                )
                _table(table, out)
                out.flush()
                await anyio.sleep(1)
        else:
            await ctl.run_until_cancelled()
    return 0


# --------------------------------------------------------------------------- demo


async def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from eventscale.demo import run_demo

    await run_demo(
        out, seconds=args.seconds, speed=args.speed, live=out.isatty() and not args.plain
    )
    return 0


# --------------------------------------------------------------------------- parser


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventscale",
        description="KEDA-style event-driven autoscaling: evaluate, run, simulate ScaledObjects.",
    )
    parser.add_argument("--version", action="version", version=f"eventscale {__version__}")
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
    ev.add_argument("manifest", metavar="MANIFEST", help="YAML file ('-' for stdin)")
    ev.add_argument(
        "--current-replicas", type=int, metavar="N", help="assume the target holds N replicas"
    )
    ev.add_argument(
        "--target",
        choices=["none", "kubernetes", "docker"],
        default="none",
        help="read current replicas from this target (default none: 0 unless --current-replicas)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON document")
    ev.add_argument("--timeout", type=float, default=10.0, help="seconds per trigger (default 10)")
    env_options(ev)

    run = sub.add_parser(
        "run",
        help="run the controller on the manifests until interrupted",
        description="Reconcile every ScaledObject in the manifests on its pollingInterval until "
        "interrupted. A live table on a terminal, JSON lines otherwise.",
    )
    run.add_argument("manifests", nargs="+", metavar="MANIFEST")
    run.add_argument("--target", choices=["kubernetes", "docker", "memory"], default="kubernetes")
    run.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    env_options(run)

    sim = sub.add_parser(
        "simulate",
        help="replay a metric trace through the engine on a virtual clock",
        description="Replay TRACE (CSV: a 'time' column in seconds and one column per trigger, "
        "named by the trigger's name or index) through the engine, ticking every pollingInterval. "
        "No source is contacted. An empty cell is a failed read.",
    )
    sim.add_argument("manifest", metavar="MANIFEST")
    sim.add_argument("--trace", required=True, metavar="TRACE.csv")
    sim.add_argument(
        "--plot", metavar="OUT.png", help="draw metrics and replicas (needs eventscale[plot])"
    )
    sim.add_argument("--json", action="store_true", help="print the timeline as JSON")
    sim.add_argument(
        "--ready-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pods take this long to be ready",
    )
    sim.add_argument(
        "--current-replicas", type=int, metavar="N", help="replicas at time 0 (default 0)"
    )
    sim.add_argument("--name", help="the ScaledObject to simulate when the file holds several")

    demo = sub.add_parser(
        "demo",
        help="a self-contained walk from 0 replicas to N and back to 0",
        description="An in-memory queue with a bursty producer and a worker pool on a memory "
        "target: activation from 0, scale out, cooldown and the return to 0. No server needed.",
    )
    demo.add_argument(
        "--seconds", type=float, default=60.0, help="length of the story in demo time (default 60)"
    )
    demo.add_argument(
        "--speed", type=float, default=1.0, help="run this many times faster than real time"
    )
    demo.add_argument(
        "--plain", action="store_true", help="one line per second instead of a live view"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Entry point of the ``eventscale`` command; returns the exit status."""
    stream = out if out is not None else sys.stdout
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "evaluate":
            return anyio.run(_evaluate, args, stream)
        if args.command == "simulate":
            return _simulate(args, stream)
        if args.command == "run":
            try:
                return anyio.run(_run, args, stream)
            except KeyboardInterrupt:
                return 0
        if args.command == "demo":
            try:
                return anyio.run(_demo, args, stream)
            except KeyboardInterrupt:
                return 0
    except ConfigError as exc:
        sys.stderr.write(f"eventscale: invalid configuration: {exc}\n")
        return 2
    except EventscaleError as exc:
        sys.stderr.write(f"eventscale: {exc}\n")
        return 1
    parser.print_help(stream)
    return 2


def _unused(_: Mapping[str, Any]) -> None:  # pragma: no cover
    pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
