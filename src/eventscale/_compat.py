"""Old import paths that keep working for one release after a module moved.

An alias module (for example ``eventscale/manifest.py``) calls :func:`moved` with its
new home. The alias then *is* the new module in ``sys.modules``: every name,
private ones included, resolves as before and ``monkeypatch`` on the old path patches
the new module. A :class:`DeprecationWarning` names the new path.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from typing import Any

__all__ = ("moved",)


def moved(old: str, new: str, *, call: str | None = None) -> None:
    """Make module *old* an alias of module *new* and warn that *old* is deprecated.

    With *call*, the old path is also a name of the package above it that is now a
    function (``eventscale.simulate``): the alias stays a module object that forwards
    attribute reads to *new* and calls to ``new.<call>``, so both uses keep working.
    """
    warnings.warn(
        f"{old} moved to {new}; the old import path will be removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    target = importlib.import_module(new)
    if call is None:
        sys.modules[old] = target
        return
    alias = sys.modules[old]
    alias.__class__ = _callable_alias(target, getattr(target, call))


def _callable_alias(target: types.ModuleType, function: Any) -> type[types.ModuleType]:
    class _CallableAlias(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(target, name)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

    return _CallableAlias
