"""Task runner: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``.

Every session installs into its own virtualenv (uv when available), so a fresh
machine needs only ``pip install nox uv``. Test servers that are not already
running are installed and started by the test suite itself (tests/servers/).
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = "3.11"


def _groups(*names: str) -> list[str]:
    deps: list[str] = []
    for name in names:
        deps.extend(nox.project.dependency_groups(PYPROJECT, name))
    return deps


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite against real servers."""
    session.install("-e", ".[all]", *_groups("test"))
    args = session.posargs or ["-q"]
    if os.environ.get("CI"):
        args = [*args, "-p", "no:cacheprovider"]
    session.run("pytest", *args)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*_groups("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src, tests, benchmarks and this file."""
    session.install("-e", ".[all]", *_groups("test", "typecheck"), "nox")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site (strict: broken links fail)."""
    session.install("-e", ".", *_groups("docs"))
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks and rewrite their figures in docs/benchmarks.md."""
    session.install("-e", ".[all]", *_groups("test"))
    session.run("python", "-m", "benchmarks", "--write", "docs/benchmarks.md", *session.posargs)
