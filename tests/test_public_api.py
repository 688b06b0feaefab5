"""Every public module's ``__all__``, both ways (in the manner of anyio's own test).

A public module is one whose dotted path has no part starting with ``_``. Its
``__all__`` lists names that exist and carry a docstring (classes and functions); every
class or function the module defines under a public name is listed. Old import paths
(alias modules) resolve to their new home and warn.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from types import ModuleType

import pytest

import eventscale

OPTIONAL_CLIENTS = {"grpc"}


def _public_modules() -> list[str]:
    names = ["eventscale"]
    for info in pkgutil.walk_packages(eventscale.__path__, "eventscale."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        names.append(info.name)
    return sorted(names)


def _is_alias(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    assert spec is not None
    assert spec.origin is not None
    with open(spec.origin) as f:
        return "from eventscale._compat import moved" in f.read()


PUBLIC = [name for name in _public_modules() if not _is_alias(name)]
ALIASES = [name for name in _public_modules() if _is_alias(name)]


def _load(name: str) -> ModuleType:
    return importlib.import_module(name)


@pytest.mark.parametrize("name", PUBLIC)
def test_all_lists_existing_documented_names(name: str) -> None:
    module = _load(name)
    assert module.__doc__, f"{name} has no docstring"
    listed = getattr(module, "__all__", None)
    assert isinstance(listed, tuple), f"{name}.__all__ is not a tuple"
    assert len(set(listed)) == len(listed), f"{name}.__all__ repeats a name"
    for attr in listed:
        assert hasattr(module, attr), f"{name}.__all__ lists {attr!r}, which does not exist"
        obj = getattr(module, attr)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name}.{attr} has no docstring"


@pytest.mark.parametrize("name", PUBLIC)
def test_public_definitions_are_listed(name: str) -> None:
    module = _load(name)
    listed = set(getattr(module, "__all__", ()))
    missing = sorted(
        attr
        for attr, obj in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
        and attr not in listed
    )
    assert not missing, f"{name} defines public names missing from __all__: {missing}"


@pytest.mark.parametrize("name", ALIASES)
def test_old_paths_warn_and_resolve_to_the_new_module(name: str) -> None:
    import sys

    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        module = importlib.import_module(name)
    # Every name the new home lists is readable through the old path.
    for attr in getattr(module, "__all__", ()):
        assert hasattr(module, attr), f"{name}.{attr}"


def test_top_level_simulate_is_the_function_even_after_the_old_module_is_imported() -> None:
    from eventscale.simulation import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module("eventscale.simulate")
    assert callable(eventscale.simulate)
    assert eventscale.simulate.__doc__ is not None
    assert inspect.signature(simulate) is not None
