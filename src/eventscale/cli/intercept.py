"""``eventscale intercept``: the interceptor and the controller for the HTTP add-on's kinds.

Reads ``HTTPScaledObject`` and ``InterceptorRoute`` manifests, serves their routes
through an :class:`~eventscale.http.Interceptor`, and runs one ScaledObject per
HTTPScaledObject (an ``http`` trigger on the route's pending requests) and every
ScaledObject whose add-on trigger names an InterceptorRoute (that trigger read in
process) in a :class:`~eventscale.runtime.controller.Controller`, which the interceptor
wakes when it holds a request for an upstream at zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import anyio

from eventscale.cli._common import EXIT_OK, make_target, read_manifest_files
from eventscale.cli._output import REDACTOR, Writable
from eventscale.errors import ConfigError

if TYPE_CHECKING:
    from eventscale.http.interceptor import Route
    from eventscale.http.manifest import HTTPScaledObjectSpec
    from eventscale.http.route import InterceptorRouteSpec
    from eventscale.runtime.scaled_object import ScaledObject

__all__ = ("add_parser", "execute", "parse_address", "parse_upstreams", "run_intercept")


def parse_address(text: str, *, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, or ``PORT``) as a pair; :class:`ConfigError` otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"expected HOST:PORT, got {text!r}", path=option) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port out of range in {text!r}", path=option)
    return host, port


def parse_upstreams(items: list[str] | None) -> dict[str, str]:
    """``--upstream SERVICE=URL`` options as a mapping."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"--upstream takes SERVICE=http://HOST:PORT, got {item!r}", path="--upstream"
            )
        out[name] = url
    return out


def _routes_and_objects(
    args: argparse.Namespace,
) -> tuple[list[Route], list[ScaledObject], dict[str, list[str]]]:
    """The routes, the ScaledObjects and, per route, the objects its held requests wake.

    Each HTTPScaledObject gives a route and (unless it skips it) a ScaledObject of its
    own; each InterceptorRoute gives a route, scaled by the manifests' ScaledObjects
    whose add-on trigger names it (other ScaledObjects are left to ``eventscale run``).
    """
    from eventscale.http.manifest import load_http_scaled_objects
    from eventscale.http.route import bind_scaled_object, load_interceptor_routes, route_references
    from eventscale.manifests.reader import load_manifests
    from eventscale.runtime.scaled_object import ScaledObject

    text = read_manifest_files(args.manifests)
    problems: list[ConfigError] = []
    specs: tuple[HTTPScaledObjectSpec, ...] = ()
    irs: tuple[InterceptorRouteSpec, ...] = ()
    try:
        specs = load_http_scaled_objects(text)
    except ConfigError as exc:
        problems.append(exc)
    try:
        irs = load_interceptor_routes(text)
    except ConfigError as exc:
        problems.append(exc)
    ConfigError.collect(problems, what="invalid manifests")
    if not specs and not irs:
        raise ConfigError(
            "the manifests hold no HTTPScaledObject or InterceptorRoute", path="MANIFEST"
        )
    keys = {s.key for s in specs}
    for ir in irs:
        if ir.key in keys:
            raise ConfigError(
                f"{ir.key!r} is both an HTTPScaledObject and an InterceptorRoute: "
                "keep one of them (the route of a migrated object is the InterceptorRoute)",
                path="InterceptorRoute.metadata.name",
            )
    manifests = load_manifests(text, ignore_unknown_kinds=True)
    for data in manifests.secrets.values():
        REDACTOR.add(data.values())
    host_args = parse_upstreams(args.upstream)
    if args.max_held < 0:
        raise ConfigError("must be >= 0", path="--max-held")
    options = {
        "max_held": args.max_held,
        "hold_timeout": args.hold_timeout,
        "retry_after": args.retry_after,
    }
    routes = [s.to_route(host_args, **options) for s in specs]
    routes += [ir.to_route(host_args, **options) for ir in irs]
    objects: list[ScaledObject] = []
    wakes: dict[str, list[str]] = {}
    for s in specs:
        if s.skip_scaled_object_creation:
            continue
        spec = s.to_scaled_object_spec(polling_interval=args.polling_interval)
        objects.append(ScaledObject(spec, target=make_target(args.target, spec)))
        wakes.setdefault(s.key, []).append(s.key)
    by_key = {ir.key: ir for ir in irs}
    for so in manifests.scaled_objects:
        refs = route_references(so)
        if not refs:
            continue
        spec = bind_scaled_object(so, by_key)
        contexts = manifests.trigger_contexts(spec)
        obj = ScaledObject(spec, target=make_target(args.target, spec), contexts=contexts)
        objects.append(obj)
        for _, name in refs:
            wakes.setdefault(f"{so.namespace}/{name}", []).append(obj.key)
    for ir in irs:
        if ir.key not in wakes:
            sys.stderr.write(
                f"eventscale: no ScaledObject names InterceptorRoute {ir.key!r}: "
                "it is routed, not scaled\n"
            )
    return routes, objects, wakes


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``intercept`` subcommand to the ``eventscale`` parser's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "intercept",
        help="reverse proxy + controller for HTTPScaledObjects (scale web apps from zero)",
        description="Serve the routes of every HTTPScaledObject in the manifests (by Host "
        "header and path prefix), count pending requests per route, hold requests while an "
        "upstream at zero scales up, and scale each workload on its pending requests.",
    )
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="YAML files ('-' for stdin)")
    p.add_argument(
        "--listen", default="0.0.0.0:8080", metavar="HOST:PORT", help="proxy address (0.0.0.0:8080)"
    )
    p.add_argument(
        "--admin",
        default="127.0.0.1:9090",
        metavar="HOST:PORT",
        help="metrics endpoint address (127.0.0.1:9090); 'none' to disable",
    )
    p.add_argument("--target", choices=["kubernetes", "docker", "memory"], default="kubernetes")
    p.add_argument(
        "--upstream",
        action="append",
        metavar="SERVICE=URL",
        help="where a scaleTargetRef.service is reached (repeatable; default http://SERVICE:PORT)",
    )
    p.add_argument(
        "--max-held",
        type=int,
        default=100,
        metavar="N",
        help="requests held per route while its upstream starts; more get 503 (default 100)",
    )
    p.add_argument(
        "--hold-timeout",
        type=float,
        metavar="SECONDS",
        help="override every route's hold timeout (default: the manifest's, else 20)",
    )
    p.add_argument(
        "--retry-after", type=int, default=5, metavar="SECONDS", help="Retry-After sent with 503"
    )
    p.add_argument(
        "--polling-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often each HTTPScaledObject is reconciled besides wake-ups (default 1; "
        "a ScaledObject keeps its pollingInterval)",
    )
    p.set_defaults(execute=execute)
    return p


def execute(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Run ``eventscale intercept`` for parsed ``args``; 0 once interrupted."""
    try:
        return anyio.run(run_intercept, args, out)
    except KeyboardInterrupt:
        return EXIT_OK


async def run_intercept(args: argparse.Namespace, out: Writable) -> int:
    """Run the interceptor and the controller until cancelled."""
    from eventscale.http.interceptor import Interceptor
    from eventscale.runtime.controller import Controller
    from eventscale.runtime.observability import Event, EventKind

    routes, objects, wakes = _routes_and_objects(args)
    host, port = parse_address(args.listen, option="--listen")
    admin = None if args.admin == "none" else parse_address(args.admin, option="--admin")

    def wake(route: str) -> None:
        for key in wakes.get(route, ()):
            ctl.wake(key)

    def on_event(event: Event) -> None:
        if event.kind in (EventKind.SCALE, EventKind.TARGET_ERROR):
            out.write(json.dumps(event.to_dict()) + "\n")
            out.flush()

    async with Controller() as ctl:
        ctl.events.add_hook(on_event)
        for obj in objects:
            ctl.add(obj)
        interceptor = Interceptor(routes, wake=wake)
        try:
            await interceptor.start(
                host,
                port,
                admin_host=admin[0] if admin else None,
                admin_port=admin[1] if admin else None,
            )
            where = f"http://{host}:{interceptor.port}"
            metrics = (
                f", metrics at http://{admin[0]}:{interceptor.admin_port}/_eventscale/metrics"
                if admin
                else ""
            )
            out.write(
                json.dumps(
                    {
                        "listening": where,
                        "admin": interceptor.admin_port,
                        "routes": [r.name for r in routes],
                    }
                )
                + "\n"
            )
            out.flush()
            sys.stderr.write(f"eventscale: intercepting on {where}{metrics}\n")
            await ctl.run_until_cancelled()
        finally:
            await interceptor.aclose()
    return EXIT_OK
