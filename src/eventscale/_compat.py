"""Old import paths that keep working for one release after a module moved.

An alias module (for example ``eventscale/manifest.py``) calls :func:`moved` with its
new home. The alias then *is* the new module in ``sys.modules``: every name,
private ones included, resolves as before and ``monkeypatch`` on the old path patches
the new module. A :class:`DeprecationWarning` names the new path.
"""

from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ("moved",)


def moved(old: str, new: str) -> None:
    """Make module *old* an alias of module *new* and warn that *old* is deprecated."""
    warnings.warn(
        f"{old} moved to {new}; the old import path will be removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
