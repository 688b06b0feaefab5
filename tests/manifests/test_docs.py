"""The Python examples in docs/manifests.md run and their assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent.parent / "docs" / "manifests.md"


def test_manifests_doc_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    # The last example prints the round-tripped manifest.
    out = capsys.readouterr().out
    assert "kind: ScaledObject" in out
    assert "name: orders-worker" in out
