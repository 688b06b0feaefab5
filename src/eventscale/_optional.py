"""Import optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from eventscale.errors import MissingExtraError

__all__ = ("import_optional",)


def import_optional(module: str, *, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``eventscale[extra]``.

    ``what`` says who needs it ("the kafka scaler").
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name != top and not exc.name.startswith(top + "."):
            raise  # the package is there but one of *its* dependencies is broken
        raise MissingExtraError(what, extra, top) from exc
