"""The examples of docs/scalers/cron.md run as written."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import yaml

from docs_run import run_script
from eventscale.scalers import create_scaler
from eventscale.scalers.cron import CronScaler
from eventscale.scalers.params import TriggerContext

DOC = Path(__file__).parents[2] / "docs" / "scalers" / "cron.md"


def block(lang: str) -> str:
    found = re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(found) == 1, f"expected one {lang} block in {DOC}"
    return str(found[0])


def test_yaml_example_builds_a_working_scaler() -> None:
    manifest = yaml.safe_load(block("yaml"))
    trigger = manifest["spec"]["triggers"][0]
    scaler = create_scaler(
        TriggerContext(metadata=trigger["metadata"], trigger_type=trigger["type"])
    )
    assert isinstance(scaler, CronScaler)
    # Monday 2026-01-05: 07:30 UTC is 08:30 in Berlin (inside), 17:30 UTC is 18:30 (outside)
    assert scaler.is_inside(datetime(2026, 1, 5, 7, 30, tzinfo=UTC))
    assert not scaler.is_inside(datetime(2026, 1, 5, 17, 30, tzinfo=UTC))
    assert not scaler.is_inside(datetime(2026, 1, 10, 9, 0, tzinfo=UTC))  # Saturday


def test_python_example_runs_as_a_script(tmp_path: Path) -> None:
    result = run_script(block("python"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4.0 True"
