"""The ``eventscale`` command's parser and :func:`main`.

Exit codes: 0 success; 1 a trigger could not be read (``evaluate``) or a command failed
at run time; 2 the manifest, the trace or the command line is invalid (the
:class:`~eventscale.errors.ConfigError` with its field path goes to stderr). Each
command lives in its own module (``evaluate``, ``run``, ``simulate``, ``demo``,
``intercept``, ``serve-external``), which adds its subparser and sets the ``execute``
function :func:`main` calls. Everything a command writes passes through the redacting
writer of :mod:`eventscale.cli._output`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

import eventscale.cli.demo as demo
import eventscale.cli.evaluate as evaluate
import eventscale.cli.intercept as intercept
import eventscale.cli.run as run
import eventscale.cli.serve_external as serve_external
import eventscale.cli.simulate as simulate
import eventscale.cli.tune as tune
from eventscale._version import __version__
from eventscale.cli._common import EXIT_FAILED, EXIT_INVALID
from eventscale.cli._output import REDACTOR, RedactingWriter, Writable, setup_logging
from eventscale.errors import ConfigError, EventscaleError

__all__ = ("main",)

# In the order `eventscale --help` lists them.
_COMMANDS = (evaluate, run, simulate, tune, demo, intercept, serve_external)


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
    for command in _COMMANDS:
        command.add_parser(sub)
    return parser


#: The status a process killed by SIGPIPE has in a shell (128 + 13).
EXIT_BROKEN_PIPE = 141


def _broken_pipe(exc: BaseException) -> bool:
    """Whether ``exc`` is a broken pipe (alone or as every leaf of an exception group)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_broken_pipe(e) for e in exc.exceptions)
    return isinstance(exc, BrokenPipeError)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (tests, an embedding application)
        pass


def main(argv: Sequence[str] | None = None, *, out: Writable | None = None) -> int:
    """Entry point of the ``eventscale`` command; returns the exit status."""
    stdout = RedactingWriter(out if out is not None else sys.stdout, REDACTOR)
    stderr = RedactingWriter(sys.stderr, REDACTOR)
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    restore_logging = setup_logging(args.verbose, stderr)
    try:
        code: int = args.execute(args, stdout, stderr)
        return code
    except ConfigError as exc:
        stderr.write(f"eventscale: invalid configuration: {exc}\n")
        return EXIT_INVALID
    except EventscaleError as exc:
        stderr.write(f"eventscale: {exc}\n")
        return EXIT_FAILED
    except Exception as exc:
        if _broken_pipe(exc):
            # The reader went away (`eventscale ... | head`): stop quietly, as Unix tools
            # do. stdout goes to /dev/null so the interpreter's last flush cannot fail.
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        # A bug: say so without a traceback that might quote a connection string.
        stderr.write(f"eventscale: unexpected {type(exc).__name__}: {exc}\n")
        if args.verbose:
            stderr.write("".join(traceback.format_exception(exc)))
        return EXIT_FAILED
    finally:
        restore_logging()
