"""One helper for the lazy re-exports of the package ``__init__`` modules.

A package lists which public name lives in which module; the module is imported the
first time the name is read (PEP 562), so ``import eventscale`` and
``import eventscale.scalers`` stay cheap and load no broker client. Every package
with lazy names uses this helper, so they all behave alike: the value is cached in the
package's namespace after the first lookup, an unknown name raises the usual
``AttributeError``, and ``dir()`` lists the lazy names too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ("lazy_exports",)


def lazy_exports(
    package: str, names: Mapping[str, str], public: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for *package*.

    *names* maps each lazy name to the module that defines it (an absolute module
    name). *public* is the package's ``__all__``, added to ``dir()``.
    """
    listed = tuple(public)

    def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562 hook)
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807 (PEP 562 hook)
        return sorted({*vars(sys.modules[package]), *names, *listed})

    return __getattr__, __dir__
