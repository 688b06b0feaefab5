"""How long ``import eventscale`` takes, in a fresh interpreter each time."""

from __future__ import annotations

import statistics
import subprocess
import sys

TITLE = "Import time"

CODE = "import time; t = time.perf_counter(); import eventscale; print(time.perf_counter() - t)"
BASELINE = (
    "import time; t = time.perf_counter(); import attrs, anyio; print(time.perf_counter() - t)"
)


def _measure(code: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        out.append(float(proc.stdout.strip()) * 1000)
    return out


def run(quick: bool) -> str:
    runs = 5 if quick else 20
    ours = _measure(CODE, runs)
    base = _measure(BASELINE, runs)
    return (
        f"`import eventscale` in a fresh interpreter, {runs} runs (milliseconds):\n\n"
        "| what | median | min | max |\n| --- | ---: | ---: | ---: |\n"
        f"| `import eventscale` | {statistics.median(ours):.1f} | {min(ours):.1f} | {max(ours):.1f} |\n"
        f"| `import attrs, anyio` (its floor) | {statistics.median(base):.1f} | {min(base):.1f} | {max(base):.1f} |\n\n"
        "No broker client is imported (a test checks `sys.modules`); scalers import theirs on first use."
    )
