"""The command line at its edges: a closed pipe, a missing optional package, log lines,
durations in reasons."""

from __future__ import annotations

import io
import logging
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from cli._runner import Runner, command, write
from eventscale.cli._common import tidy_reason
from eventscale.cli._output import setup_logging

MANIFEST = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: piped}
spec:
  scaleTargetRef: {name: piped}
  pollingInterval: 1
  triggers:
    - type: redis
      name: queue
      metadata: {address: "127.0.0.1:1", listName: l, listLength: "5"}
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    rows = "\n".join(f"{t},{t % 37}" for t in range(20000))
    return {
        "manifest": write(tmp_path / "m.yaml", MANIFEST),
        "trace": write(tmp_path / "t.csv", "time,queue\n" + rows + "\n"),
        "dir": str(tmp_path),
    }


def test_a_closed_pipe_ends_quietly(files: dict[str, str]) -> None:
    # `eventscale simulate ... | head -1`: the reader leaves after the first line
    proc = subprocess.Popen(
        [*command(), "simulate", files["manifest"], "--trace", files["trace"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline().startswith(b"TIME")
    proc.stdout.close()
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert stderr == ""  # no "unexpected BrokenPipeError", no "Exception ignored"
    assert code == 141  # what a shell reports for a process ended by SIGPIPE


CRON = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: piped-run}
spec:
  scaleTargetRef: {name: piped-run}
  pollingInterval: 1
  triggers:
    - type: cron
      metadata: {timezone: UTC, start: "0 * * * *", end: "59 * * * *", desiredReplicas: "3"}
"""


def test_run_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    # `eventscale run --json ... | head -1`: run stops instead of logging every event
    manifest = write(tmp_path / "cron.yaml", CRON)
    proc = subprocess.Popen(
        [*command(), "run", "--target", "memory", "--json", manifest],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline().startswith(b"{")
    proc.stdout.close()
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert stderr == ""
    assert code == 141


def test_plot_without_matplotlib_is_a_run_time_failure(
    cli: Runner, files: dict[str, str], tmp_path: Path
) -> None:
    # A directory first on the path whose matplotlib cannot be imported: as if missing.
    fake = tmp_path / "nompl"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text(
        "raise ModuleNotFoundError('No module named matplotlib', name='matplotlib')\n"
    )
    path = os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])
    png = Path(files["dir"]) / "p.png"
    result = cli(
        "simulate",
        files["manifest"],
        "--trace",
        files["trace"],
        "--plot",
        str(png),
        env={"PYTHONPATH": path},
    )
    assert result.code == 1, result.output  # docs/cli.md: exit 1, a run-time failure
    assert "eventscale[plot]" in result.stderr
    assert result.stdout == ""  # it failed before simulating
    assert not png.exists()


def test_log_lines_have_timestamps() -> None:
    out = io.StringIO()
    restore = setup_logging(1, out)
    try:
        logging.getLogger("eventscale.tests.edges").warning("a line to read")
    finally:
        restore()
    [line] = out.getvalue().splitlines()
    # 2026-12-07 01:42:42,123 WARNING eventscale.tests.edges: a line to read
    date, clock, rest = line.split(" ", 2)
    assert datetime.strptime(f"{date} {clock}", "%Y-%m-%d %H:%M:%S,%f").year >= 2024
    assert rest == "WARNING eventscale.tests.edges: a line to read"


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("inactive; cooldownPeriod 300s not over (7.99955s elapsed)", "(8s elapsed)"),
        ("inactive for 300.0001s (>= cooldownPeriod 300s)", "inactive for 300s ("),
        ("held for 12.345s", "held for 12.3s"),
        ("wait 0.5s", "wait 0.5s"),
        ("version v1.234s stays", "v1.234s"),
    ],
)
def test_durations_in_reasons_are_rounded(reason: str, shown: str) -> None:
    assert shown in tidy_reason(reason)
