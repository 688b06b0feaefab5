"""The ``eventscale`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from eventscale._version import __version__

__all__ = ("main",)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventscale",
        description="KEDA-style event-driven autoscaling: evaluate, run and simulate scaled objects.",
    )
    parser.add_argument("--version", action="version", version=f"eventscale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="a self-contained walk from 0 replicas to N and back to 0")
    return parser


def _demo() -> int:
    from eventscale.scalers import registered_types

    print(f"eventscale {__version__}")
    print("trigger types: " + ", ".join(registered_types()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventscale`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo()
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
