"""The 'Writing a scaler' page: its example runs as shown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import eventscale as es
from eventscale import scalers
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.testing import MemoryTarget

PAGE = Path(__file__).resolve().parents[2] / "docs" / "scalers" / "index.md"


def _load_example() -> dict[str, Any]:
    block = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(block.group(1), str(PAGE), "exec"), namespace)
    return namespace


@pytest.fixture
def spool_scaler() -> Any:
    try:
        yield _load_example()["SpoolScaler"]
    finally:
        scalers._registered.pop("spool", None)


@pytest.mark.anyio
async def test_example_scaler_from_a_manifest(spool_scaler: Any, tmp_path: Path) -> None:
    for i in range(23):
        (tmp_path / f"job-{i}").write_text("x")
    manifest = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: spool-worker}}
spec:
  scaleTargetRef: {{name: spool-worker}}
  triggers:
    - type: spool
      metadata: {{directory: "{tmp_path}", filesPerReplica: "10"}}
"""
    so = ScaledObject.from_manifest(manifest, target=MemoryTarget(replicas=1))
    report = await so.evaluate()
    assert report.triggers[0].value == 23
    assert report.decision.replicas == 3


@pytest.mark.anyio
async def test_example_scaler_errors_are_errors(spool_scaler: Any, tmp_path: Path) -> None:
    scaler = spool_scaler(str(tmp_path / "missing"))
    with pytest.raises(es.ScalerError, match="cannot list"):
        await scaler.get_metrics()


def test_example_scaler_collects_config_errors(spool_scaler: Any) -> None:
    with pytest.raises(es.ConfigError) as info:
        es.create_scaler(
            es.TriggerContext(
                trigger_type="spool", metadata={"filesPerReplica": "0"}, path="spec.triggers[0]"
            )
        )
    assert info.value.all_paths() == [
        "spec.triggers[0].metadata.directory",
        "spec.triggers[0].metadata.filesPerReplica",
    ]
