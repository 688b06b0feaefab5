"""``eventscale serve-external``: serve eventscale scalers to KEDA over gRPC.

``SOURCE`` is a manifest file (every trigger of every ScaledObject in it is served, see
:func:`~eventscale.external.server.scalers_from_manifest` for the names) or
``module:attribute`` (see :func:`~eventscale.external.server.load_server_target`). The
server runs until SIGINT or SIGTERM, then shuts down gracefully.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import anyio

from eventscale.cli._common import EXIT_OK, add_env_options, environment
from eventscale.cli._output import Writable
from eventscale.errors import ConfigError

__all__ = ("add_parser", "execute", "run_serve_external")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve-external`` subcommand to the ``eventscale`` parser's subparsers."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve-external",
        help="serve scalers to KEDA as an external scaler (gRPC; needs eventscale[external])",
        description="Expose eventscale scalers as a KEDA external scaler "
        "(externalscaler.ExternalScaler, plus grpc.health.v1). A KEDA trigger of type external "
        "or external-push selects one with scalerMetadata scalerName (or scalerType, when "
        "allowed). Runs until SIGINT/SIGTERM, then drains gracefully.",
    )
    p.add_argument(
        "source",
        metavar="MANIFEST|module:factory",
        help="a YAML manifest whose triggers are served, or module:attribute naming a scaler, "
        "scaler class, mapping of scalers, server, or a function returning one",
    )
    p.add_argument("--host", default="[::]", help="address to listen on (default [::])")
    p.add_argument("--port", type=int, default=6000, help="port to listen on (default 6000)")
    p.add_argument(
        "--allow-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="let requests build scalers of this trigger type from scalerMetadata.scalerType "
        "(repeatable; '*' for every type). Default: none",
    )
    p.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument(
        "--client-ca", metavar="PEM", help="require client certificates signed by this CA (mTLS)"
    )
    p.add_argument(
        "--stream-poll-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="StreamIsActive re-reads scalers without push support this often (default 1)",
    )
    p.add_argument(
        "--cache-ttl",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="one read answers GetMetrics and IsActive for this long (default 1; 0 disables)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on shutdown, in-flight calls get this long to finish (default 5)",
    )
    add_env_options(p)
    p.set_defaults(execute=execute)
    return p


def execute(args: argparse.Namespace, out: Writable, err: Writable) -> int:
    """Run ``eventscale serve-external`` for parsed ``args``; 0 after a signal."""
    try:
        return anyio.run(run_serve_external, args, out)
    except KeyboardInterrupt:
        return EXIT_OK


async def run_serve_external(args: argparse.Namespace, out: Writable) -> int:
    """Run the server for parsed ``args``; returns the exit status (0 after a signal)."""
    from eventscale.external.server import (
        ExternalScalerServer,
        ServerTLS,
        build_server,
        serve_external,
    )

    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together", path="--tls-key")
    if args.client_ca and not args.tls_cert:
        raise ConfigError("--client-ca needs --tls-cert and --tls-key", path="--client-ca")
    for option in ("stream_poll_interval", "cache_ttl", "grace"):
        if getattr(args, option) < 0:
            raise ConfigError("must be >= 0", path="--" + option.replace("_", "-"))
    tls = None
    if args.tls_cert:
        try:
            tls = ServerTLS.from_files(args.tls_cert, args.tls_key, args.client_ca)
        except OSError as exc:
            raise ConfigError(
                f"cannot read {exc.filename}: {exc.strerror}", path="--tls-cert"
            ) from None
    allow: bool | frozenset[str] = True if "*" in args.allow_type else frozenset(args.allow_type)
    source: Any = args.source
    if source == "-":
        source = sys.stdin.read()

    def ready(server: ExternalScalerServer) -> None:
        names = ", ".join(server.names) or "none"
        types = "any" if isinstance(allow, bool) else (", ".join(sorted(allow)) or "none")
        out.write(
            f"serving on {args.host}:{server.port} "
            f"({'TLS' if tls else 'plaintext'}); scalers: {names}; buildable types: {types}\n"
        )
        out.flush()

    server = build_server(
        source,
        env=environment(args),
        allow_types=allow,
        stream_poll_interval=args.stream_poll_interval,
        cache_ttl=args.cache_ttl,
    )
    try:
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(on_signal)
            await serve_external(
                server, host=args.host, port=args.port, tls=tls, grace=args.grace, ready=ready
            )
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # one failure (a port in use...): report it as itself
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise
    return EXIT_OK
