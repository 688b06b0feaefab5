"""The ``eventscale`` command line. Nothing in the library imports this package.

One module per command (:mod:`~eventscale.cli.evaluate`, :mod:`~eventscale.cli.run`,
:mod:`~eventscale.cli.simulate`, :mod:`~eventscale.cli.demo`,
:mod:`~eventscale.cli.intercept`, :mod:`~eventscale.cli.serve_external`); the parser and
:func:`main` are in ``_main``.
"""

from __future__ import annotations

from eventscale.cli._main import main

__all__ = ("main",)
