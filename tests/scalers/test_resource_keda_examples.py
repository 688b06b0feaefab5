"""KEDA's documentation examples for ``cpu`` and ``memory`` load and evaluate as written.

The manifests are those of keda-docs ``content/docs/2.x/scalers/cpu.md`` and
``memory.md`` (the current ``metricType`` form and the 2.0 ``metadata.type`` form), and
the cron example of ``cron.md`` with a cpu trigger beside it. They are evaluated
against the memory target with usage set by the test.
"""

from __future__ import annotations

import pytest

from eventscale.errors import ConfigError
from eventscale.manifests.reader import load_manifests
from eventscale.metrics import MetricType
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.targets.memory import MemoryTarget

pytestmark = pytest.mark.anyio

CPU = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: cpu-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: my-deployment
  triggers:
  - type: cpu
    metricType: Utilization # Allowed types are 'Utilization' or 'AverageValue'
    metadata:
      value: "50"
"""

CPU_CONTAINER = CPU.replace('value: "50"', 'value: "50"\n      containerName: "foo"')
MEMORY = CPU.replace("cpu-scaledobject", "memory-scaledobject").replace("type: cpu", "type: memory")
MEMORY_CONTAINER = CPU_CONTAINER.replace("type: cpu", "type: memory")

CPU_2_0 = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: cpu-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: my-deployment
  triggers:
  - type: cpu
    metadata:
      type: Utilization
      value: "50"
"""

CRON_CPU = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: cron-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: my-deployment
  minReplicaCount: 0
  cooldownPeriod: 300
  triggers:
  - type: cron
    metadata:
      timezone: Asia/Kolkata
      start: 0 6 * * *
      end: 0 20 * * *
      desiredReplicas: "10"
  - type: cpu
    metricType: Utilization
    metadata:
      value: "50"
"""


def _pods(target: MemoryTarget, resource: str, request: float, *usage: float) -> None:
    target.set_usage(
        *({resource: u} for u in usage),
        requests={resource: request},
        container="foo",
    )


@pytest.mark.parametrize(
    ("text", "resource", "amount", "usage", "expected"),
    [
        pytest.param(CPU, "cpu", 0.5, (0.5, 0.5), 4, id="cpu"),
        pytest.param(CPU_CONTAINER, "cpu", 0.5, (0.5, 0.5), 4, id="cpu-container"),
        pytest.param(CPU_2_0, "cpu", 0.5, (0.1, 0.1), 1, id="cpu-2.0-metadata-type"),
        pytest.param(MEMORY, "memory", 128 * 2**20, (64 * 2**20, 64 * 2**20), 2, id="memory"),
        pytest.param(MEMORY_CONTAINER, "memory", 1e8, (1.5e8, 1.5e8), 6, id="memory-container"),
    ],
)
async def test_keda_examples_evaluate_against_the_memory_target(
    text: str, resource: str, amount: float, usage: tuple[float, ...], expected: int
) -> None:
    spec = load_manifests(text).scaled_object()
    assert spec.triggers[0].metric_type is MetricType.UTILIZATION or "type" in (
        spec.triggers[0].metadata
    )
    target = MemoryTarget(len(usage))
    _pods(target, resource, amount, *usage)
    async with ScaledObject.from_manifest(text, target=target) as obj:
        report = await obj.evaluate()
    assert report.ok, report.triggers
    assert report.decision.raw_replicas == expected  # before stabilization and limits
    assert report.decision.is_active  # only resource triggers: always active


async def test_cron_plus_cpu_uses_the_larger_proposal() -> None:
    target = MemoryTarget(2)
    _pods(target, "cpu", 0.5, 0.5, 0.5)  # 100% of a 50% target -> 4
    async with ScaledObject.from_manifest(CRON_CPU, target=target) as obj:
        report = await obj.evaluate()
    assert report.ok, report.triggers
    by_type = {t.type: t for t in report.triggers}
    assert by_type["cpu"].value == 4
    assert by_type["cpu"].active is False
    assert report.decision.raw_replicas in (4, 10)  # 10 inside the cron window


async def test_without_pod_usage_the_trigger_errs_and_the_decision_holds() -> None:
    target = MemoryTarget(3)  # no usage set: like `evaluate --target none`
    async with ScaledObject.from_manifest(CPU, target=target) as obj:
        report = await obj.evaluate()
    (trigger,) = report.triggers
    assert trigger.error is not None
    assert "pod resources" in trigger.error
    assert trigger.value is None
    assert report.decision.replicas == 3


def test_only_resource_triggers_cannot_have_min_replica_count_zero() -> None:
    text = CPU.replace("spec:\n", "spec:\n  minReplicaCount: 0\n", 1)
    with pytest.raises(ConfigError) as info:
        load_manifests(text)
    assert "spec.minReplicaCount" in info.value.all_paths()
    one = load_manifests(CPU.replace("spec:\n", "spec:\n  minReplicaCount: 1\n", 1))
    assert one.scaled_object().min_replica_count == 1
    # a cron trigger beside it: 0 is fine
    assert load_manifests(CRON_CPU).scaled_object().min_replica_count == 0


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param(
            CPU.replace("metricType: Utilization", "metricType: Value"),
            "spec.triggers[0]",
            id="value-metric-type",
        ),
        pytest.param(
            CPU.replace(
                "    metricType: Utilization # Allowed types are 'Utilization' or 'AverageValue'\n",
                "",
            ),
            "spec.triggers[0].metricType",
            id="no-metric-type",
        ),
        pytest.param(
            CRON_CPU.replace("  - type: cpu\n    metricType: Utilization", "  - type: cpu"),
            "spec.triggers[1].metricType",
            id="no-metric-type-mixed",
        ),
    ],
)
def test_metric_type_errors(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        ScaledObject.from_manifest(text, target=MemoryTarget(1))
    assert any(p.startswith(path) for p in info.value.all_paths()), info.value.all_paths()


def test_utilization_is_still_rejected_for_other_triggers() -> None:
    text = CRON_CPU.replace("  - type: cron\n", "  - type: cron\n    metricType: Utilization\n")
    with pytest.raises(ConfigError, match="only for cpu/memory") as info:
        load_manifests(text)
    assert "spec.triggers[0].metricType" in info.value.all_paths()


def test_the_docs_page_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "scalers" / "cpu-memory.md"
    (block,) = re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)
    exec(compile(block, str(page), "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out.strip() == "4"


def test_scaled_jobs_cannot_use_cpu_or_memory() -> None:
    text = """
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {name: crunch}
spec:
  jobTargetRef:
    template:
      spec:
        containers: [{name: crunch, image: busybox}]
  triggers:
  - type: memory
    metricType: Utilization
    metadata: {value: "50"}
"""
    with pytest.raises(ConfigError, match="ScaledObjects only") as info:
        load_manifests(text)
    assert "spec.triggers[0].type" in info.value.all_paths()


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        # 2 pods at 100% of a 50% target -> 4
        pytest.param(CPU, "100", 4, id="cpu"),
        pytest.param(CPU_CONTAINER, "100", 4, id="cpu-container"),
        pytest.param(CPU_2_0, "100", 4, id="cpu-2.0-metadata-type"),
        pytest.param(MEMORY, "100", 4, id="memory"),
        # 2 pods at 20% of 50% -> ceil(0.4 * 2) = 1
        pytest.param(MEMORY_CONTAINER, "20", 1, id="memory-container"),
    ],
)
def test_keda_examples_simulate(text: str, column: str, expected: int) -> None:
    from eventscale.simulation import Trace, simulate

    spec = load_manifests(text).scaled_object()
    timeline = simulate(spec, Trace.from_text(f"time,0\n0,{column}\n"), initial_replicas=2)
    (step,) = timeline.steps
    assert step.metrics == {"0": float(column)}
    assert step.desired_replicas == expected
    assert step.active  # only resource triggers: always active


def test_cron_plus_cpu_simulates() -> None:
    from eventscale.simulation import Trace, simulate

    spec = load_manifests(CRON_CPU).scaled_object()
    # inside the cron window (10) with cpu at 100% of 50% over 6 pods (12): 12
    trace = Trace.from_text("time,0,1\n0,10,100\n")
    (step,) = simulate(spec, trace, initial_replicas=6).steps
    assert step.desired_replicas == 12
    assert step.active
