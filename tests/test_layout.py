"""The layout rules of docs/development.md, checked on the source tree.

Imports point one way (cli -> runtime -> manifests/authentication ->
scalers/engine/targets -> metrics/errors); there is no import circle; no module
imports a private module or name of a sibling package; nothing in the library imports
the CLI. The rules read the module-level imports of every file under src/eventscale
(imports inside functions are deferred loads and do not make a circle; imports under
``if TYPE_CHECKING:`` are annotations only).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "eventscale"

# Layers, lowest first. A module may import its own layer and the layers below.
# The most specific prefix decides a module's layer.
LAYERS: dict[str, int] = {
    "eventscale._version": 0,
    "eventscale._optional": 0,
    "eventscale._lazy": 0,
    "eventscale._compat": 0,
    "eventscale._resource": 0,
    "eventscale._faults": 0,
    "eventscale.errors": 0,
    "eventscale.redaction": 0,
    "eventscale.metrics": 1,
    "eventscale.spec": 2,
    "eventscale.kube": 3,
    "eventscale._docker_api": 3,
    "eventscale._docker_ssh": 3,
    "eventscale.scalers": 4,
    "eventscale.engine": 4,
    "eventscale.targets": 4,
    "eventscale.jobs": 4,
    "eventscale.http": 4,
    "eventscale.external": 4,
    "eventscale.external.client": 4,
    "eventscale.external._proto": 4,
    "eventscale.authentication": 5,
    "eventscale.manifests": 6,
    "eventscale.http.manifest": 6,
    "eventscale.http.route": 6,
    "eventscale.external.server": 6,
    "eventscale.runtime": 7,
    "eventscale.simulation": 7,
    "eventscale.testing": 7,
    "eventscale.cli": 9,
    "eventscale.__main__": 9,
}

# Packages whose __init__ re-exports lower and higher layers for convenience: their
# own module-level imports are not layer arrows (they only name things).
FACADES = {"eventscale", "eventscale.external", "eventscale.http", "eventscale.jobs"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "_generated" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    def walk(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                yield from walk(node.body)
                for handler in node.handlers:
                    yield from walk(handler.body)

    return walk(tree.body)


def _imports(
    name: str, path: Path, modules: dict[str, Path], *, everywhere: bool = False
) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for each eventscale import."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = ast.walk(tree) if everywhere else _top_level_imports(tree)
    is_package = path.name == "__init__.py"
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("eventscale"):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if not source.startswith("eventscale"):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in modules:
                    yield full, None, node.lineno
                else:
                    yield source, alias.name, node.lineno


def _layer(module: str) -> int:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    assert best, f"{module} has no layer in tests/test_layout.py: add it"
    return LAYERS[best]


def _is_alias(path: Path) -> bool:
    return "from eventscale._compat import moved" in path.read_text()


def test_every_module_has_a_layer() -> None:
    for module, path in _modules().items():
        if module != "eventscale" and not _is_alias(path):
            _layer(module)


def test_imports_point_down_the_layers() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        if name in FACADES or name == "eventscale" or _is_alias(path):
            continue
        for target, _, line in _imports(name, path, modules):
            if target == "eventscale":
                continue
            if _layer(target) > _layer(name):
                wrong.append(f"{path.relative_to(SRC)}:{line} {name} -> {target}")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_nothing_in_the_library_imports_the_cli() -> None:
    modules = _modules()
    wrong = [
        f"{path.relative_to(SRC)}:{line}"
        for name, path in modules.items()
        if not name.startswith(("eventscale.cli", "eventscale.__main__"))
        for target, _, line in _imports(name, path, modules, everywhere=True)
        if target == "eventscale.cli" or target.startswith("eventscale.cli.")
    ]
    assert not wrong


def _owner(module: str) -> str:
    """The package a private module or name belongs to."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return module


def test_no_private_module_or_name_of_a_sibling_package() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for target, imported, line in _imports(name, path, modules, everywhere=True):
            owner = _owner(target)
            if owner != target and not (package + ".").startswith(owner + "."):
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {target}")
            if imported and imported.startswith("_") and not imported.startswith("__"):
                home = target if modules.get(target, Path()).name == "__init__.py" else None
                home = home or target.rsplit(".", 1)[0]
                if not (package + ".").startswith(home + "."):
                    wrong.append(f"{path.relative_to(SRC)}:{line} imports {target}.{imported}")
    assert not wrong, "private imports across packages:\n" + "\n".join(wrong)


def _all_edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports, anywhere in the file (functions and
    ``if TYPE_CHECKING:`` included); ``from pkg import mod`` also imports ``pkg``."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            out.add(source)
            out.update(f"{source}.{a.name}" for a in node.names)
    return {m for m in out if m in modules and m != name}


def test_no_import_circle() -> None:
    # The strictest reading: every import counts, wherever it stands, and a package
    # __init__ is a module like any other (the lazy-export maps are strings, not imports).
    modules = _modules()
    graph = {name: _all_edges(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("limit", [650])
def test_no_module_is_a_house_of_many_rooms(limit: int) -> None:
    # About 600 lines at most; a longer module must hold a single concept (listed here
    # with the reason).
    single_concept = {
        "eventscale/http/interceptor.py": "one reverse proxy",
        "eventscale/external/server.py": "one gRPC service",
        "eventscale/scalers/kafka/config.py": "one trigger's settings, read group by group",
    }
    long = [
        f"{path.relative_to(SRC)}: {len(path.read_text().splitlines())}"
        for path in PACKAGE.rglob("*.py")
        if "_generated" not in path.parts
        and str(path.relative_to(SRC)) not in single_concept
        and len(path.read_text().splitlines()) > limit
    ]
    assert not long, "modules over the limit:\n" + "\n".join(long)
