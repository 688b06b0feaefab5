"""The ``eventscale`` command line. Nothing in the library imports this package."""

from __future__ import annotations

from eventscale.cli._main import main

__all__ = ("main",)
