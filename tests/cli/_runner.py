"""Helpers for the CLI tests: run ``eventscale`` as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen
class Result:
    """What one run of the command gave."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """``stdout`` parsed as one JSON document."""
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        """stdout and stderr together (for "no secret anywhere" checks)."""
        return self.stdout + self.stderr


Runner = Callable[..., Result]


def command(how: str = "module") -> list[str]:
    """The command line prefix: ``python -m eventscale.cli``, ``python -m eventscale`` or
    the installed ``eventscale`` script next to this interpreter."""
    if how == "module":
        return [sys.executable, "-m", "eventscale.cli"]
    if how == "package":
        return [sys.executable, "-m", "eventscale"]
    script = Path(sys.executable).parent / "eventscale"
    assert script.exists(), f"the eventscale entry point is not installed at {script}"
    return [str(script)]


def run_cli(
    *args: str,
    how: str = "module",
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 90,
) -> Result:
    """Run ``eventscale ARGS...`` and wait for it."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [*command(how), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write(path: Path, text: str) -> str:
    """Write ``text`` to ``path``; return the path as a string for the command line."""
    path.write_text(text)
    return str(path)


def assert_no_secret(result: Result, secrets: Sequence[str]) -> None:
    """None of ``secrets`` appears anywhere in the command's output."""
    for secret in secrets:
        assert secret not in result.output, f"secret leaked: {result.output}"
