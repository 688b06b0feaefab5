"""KEDA's documentation examples for the prometheus and metrics-api triggers simulate.

The manifests are KEDA's own (tests/data/manifests, hosts changed); a short trace drives
each through ``simulate()`` with the trigger's own target parameter (``threshold``,
``targetValue``) read from its metadata.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventscale.manifests import load_manifests
from eventscale.simulation import Trace, simulate, trigger_metric_specs

DATA = Path(__file__).resolve().parents[1] / "data" / "manifests"
EXAMPLES = sorted(
    p.name for p in DATA.glob("*.yaml") if p.name.startswith(("prometheus", "metrics-api"))
)


@pytest.mark.parametrize("name", EXAMPLES)
def test_keda_example_simulates(name: str) -> None:
    manifests = load_manifests((DATA / name).read_text())
    (spec,) = manifests.scaled_objects
    specs = trigger_metric_specs(spec)
    (metric,) = specs
    target = float(
        spec.triggers[0].metadata.get("threshold") or spec.triggers[0].metadata["targetValue"]
    )
    assert metric.target == target
    # a value of 4x the target for a while, then nothing: out, then back in
    column = spec.triggers[0].name or "0"
    # the total is 4x the target: AverageValue asks for 4 replicas (KEDA's default type)
    trace = Trace.from_text(f"time,{column}\n0,{4 * target}\n600,0\n900,0\n")
    timeline = simulate(spec, trace, initial_replicas=1)
    peak = max(step.desired_replicas for step in timeline.steps)
    assert peak == min(spec.max_replica_count, 4)
    assert timeline.steps[-1].desired_replicas < peak  # and back in once the value drops
