"""Running the Python examples of docs/ as a reader would: ``python example.py``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import eventscale

DOCS = Path(__file__).resolve().parents[1] / "docs"
_FENCE = re.compile(r"^([ \t]*)```python\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    """The ```` ```python ```` blocks of ``page``, dedented (a block may sit in a list)."""
    return [textwrap.dedent(m.group(2)) for m in _FENCE.finditer(page.read_text())]


def run_script(code: str, cwd: Path, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as ``python example.py`` in ``cwd``, with the eventscale under test."""
    script = cwd / "example.py"
    script.write_text(code)
    src = str(Path(eventscale.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
