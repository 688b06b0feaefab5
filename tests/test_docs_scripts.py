"""Every Python example in docs/ is a complete script: it compiles as a module (no
top-level ``await``), every name it uses is defined or imported in it (or in an earlier block of its page), and an ``async def
main`` is called. The ones that need no outside service run here as scripts, in a
subprocess, as a reader would run them (``python example.py``).

A ```` ```py ```` fence marks a fragment that is not meant to run (a signature).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import symtable
from pathlib import Path

import pytest

from docs_run import DOCS, python_blocks, run_script


def _all_blocks() -> list[tuple[str, int, str, frozenset[str]]]:
    """(page, index, code, names the page's earlier blocks define) per block: a page
    may build one example up over several blocks, run in one namespace."""
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        earlier: set[str] = set()
        for i, code in enumerate(python_blocks(page)):
            out.append((str(page.relative_to(DOCS)), i, code, frozenset(earlier)))
            with contextlib.suppress(SyntaxError):  # reported by the test of that block
                earlier |= _defined(symtable.symtable(code, "block", "exec"))
    return out


def _defined(top: symtable.SymbolTable) -> set[str]:
    return {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}


def _undefined(code: str, name: str, earlier: frozenset[str]) -> set[str]:
    """Global names the code reads but neither it nor an earlier block of its page
    defines or imports (builtins aside)."""
    top = symtable.symtable(code, name, "exec")
    defined = _defined(top) | earlier
    used: set[str] = set()
    todo = [top]
    while todo:
        table = todo.pop()
        todo.extend(table.get_children())
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (table is top or symbol.is_global()):
                used.add(symbol.get_name())
    return used - defined - set(dir(builtins))


def _calls_main(tree: ast.Module) -> bool:
    """Whether the module runs ``main`` (at the top level or under ``if __name__ ...``)."""
    body = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
            body.extend(node.body)
    for node in body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            text = ast.unparse(node.value)
            if text in ("anyio.run(main)", "asyncio.run(main())", "main()"):
                return True
    return False


BLOCKS = _all_blocks()


@pytest.mark.parametrize(
    ("page", "index", "code", "earlier"), BLOCKS, ids=[f"{p}#{i}" for p, i, _, _ in BLOCKS]
)
def test_every_python_example_is_a_complete_script(
    page: str, index: int, code: str, earlier: frozenset[str]
) -> None:
    name = f"docs/{page} (python block {index})"
    compile(code, name, "exec")  # top-level await is a SyntaxError here
    tree = ast.parse(code)
    missing = _undefined(code, name, earlier)
    assert not missing, f"{name} uses names nothing defines: {sorted(missing)}"
    defines_main = any(
        isinstance(node, (ast.AsyncFunctionDef, ast.FunctionDef)) and node.name == "main"
        for node in tree.body
    )
    if defines_main:
        assert _calls_main(tree), f"{name} defines main() but never runs it"


def test_the_blocks_were_found() -> None:
    pages = {p for p, _, _, _ in BLOCKS}
    assert {"runtime.md", "targets/memory.md", "scalers/cron.md"} <= pages
    assert len(BLOCKS) > 30


# (page, block index, what stdout must be)
SELF_CONTAINED = [
    ("runtime.md", 0, "3\n3\n"),
    (
        "targets/memory.md",
        0,
        "0\n3\n(ReplicaChange(at=0.0, old=0, new=3, reason='queue at 30'),)\n",
    ),
    ("scalers/cron.md", 0, "4.0 True\n"),
    (
        "engine.md",
        0,
        (
            "4 scale-from-zero activated by queue: scaling from 0 to 4; "
            "metrics ask for 5 (scale-up policy)\n"
        ),
    ),
]


@pytest.mark.parametrize(("page", "index", "stdout"), SELF_CONTAINED)
def test_self_contained_examples_run_as_scripts(
    page: str, index: int, stdout: str, tmp_path: Path
) -> None:
    code = python_blocks(DOCS / page)[index]
    result = run_script(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == stdout
