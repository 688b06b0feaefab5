"""docs/simulation.md, run as a reader would: its files, its commands, its Python."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from cli._runner import run_cli
from cli.test_docs import blocks, sessions

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "simulation.md"


def test_the_page_runs_as_written(tmp_path: Path) -> None:
    found = blocks(PAGE)
    for _, title, body in found:
        if title is not None:
            (tmp_path / title).write_text(body)
    # the simulate example runs the manifest the tune example writes
    ran = []
    tune_first = sorted(
        (b for b in found if b[0] == "console"), key=lambda b: "eventscale tune" not in b[2]
    )
    for _, _, body in tune_first:
        for command, expected in sessions(body):
            argv = shlex.split(command)
            assert argv[0] == "eventscale"
            result = run_cli(*argv[1:], cwd=tmp_path)
            assert result.code == 0, result.output
            assert result.stdout == expected, command
            ran.append(argv[1])
    assert ran == ["tune", "simulate", "simulate"]
    tuned = (tmp_path / "tuned.yaml").read_text()
    assert "listLength: '5'" in tuned
    assert "value: 20" in tuned
    # the Python example, on a shorter day so the test stays quick
    (python,) = [body for lang, _, body in found if lang == "python"]
    code = python.replace(
        "sine_day(mean=20, amplitude=15)", "sine_day(mean=20, amplitude=15, duration=7200)"
    )
    assert code != python
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0].split()
    assert len(first) == 2
    assert float(first[1]) > 0


def test_the_page_is_in_the_nav_and_its_plots_exist() -> None:
    assert "simulation.md" in (ROOT / "mkdocs.yml").read_text()
    for name in ("simulation-closed-loop.png", "simulation-tradeoff.png"):
        assert f"](img/{name})" in PAGE.read_text()
        assert (ROOT / "docs" / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
