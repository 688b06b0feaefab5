"""Open-loop ``simulate`` fixes: cron targets, ScaledJob plots, what evaluate rejects."""

from __future__ import annotations

from pathlib import Path

from cli._runner import run_cli, write
from eventscale.simulation import Trace, simulate, trigger_metric_specs
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec

CRON = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: office}
spec:
  scaleTargetRef: {name: office}
  pollingInterval: 10
  triggers:
    - type: cron
      name: hours
      metadata: {timezone: UTC, start: "0 8 * * *", end: "0 18 * * *", desiredReplicas: "10"}
"""

JOB = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {name: batch}
spec:
  jobTargetRef: {template: {spec: {containers: [{name: c, image: busybox}]}}}
  pollingInterval: 10
  triggers:
    - type: redis
      name: q
      metadata: {address: 127.0.0.1:6379, listName: batch, listLength: "1"}
"""


def test_cron_asks_for_its_desired_replicas() -> None:
    # the live cron scaler reports desiredReplicas against a target of 1
    spec = ScaledObjectSpec(
        name="office",
        scale_target_ref=ScaleTargetRef(name="office"),
        triggers=[TriggerSpec(type="cron", name="hours", metadata={"desiredReplicas": "10"})],
        polling_interval=10,
    )
    assert trigger_metric_specs(spec)[0].target == 1
    timeline = simulate(spec, Trace.from_text("time,hours\n0,10\n60,10\n"))
    # (the HPA's default scale-up policy gets there in steps: 4, then 8, then 10)
    assert timeline.steps[0].reason.startswith(
        "activated by hours: scaling from 0 to 4; metrics ask for 10"
    )
    assert timeline.steps[-1].desired_replicas == 10


def test_cron_from_the_command_line(tmp_path: Path) -> None:
    manifest = write(tmp_path / "cron.yaml", CRON)
    trace = write(tmp_path / "t.csv", "time,hours\n0,10\n60,10\n")
    result = run_cli("simulate", manifest, "--trace", trace, "--json")
    assert result.code == 0, result.stderr
    assert [s["desiredReplicas"] for s in result.json()["timeline"]][-1] == 10


def test_a_scaled_job_plot_is_written_and_said(tmp_path: Path) -> None:
    manifest = write(tmp_path / "job.yaml", JOB)
    trace = write(tmp_path / "t.csv", "time,q\n0,3\n30,0\n")
    out = tmp_path / "jobs.png"
    result = run_cli(
        "simulate", manifest, "--trace", trace, "--job-seconds", "15", "--plot", str(out)
    )
    assert result.code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot written to {out}" in result.stdout


def test_simulate_rejects_what_evaluate_rejects(tmp_path: Path) -> None:
    trace = write(tmp_path / "t.csv", "time,q\n0,3\n")
    workload = ("--workload", "constant:rate=1,duration=20", "--throughput", "1")
    unknown = CRON.replace("type: cron", "type: cronn").replace("desiredReplicas", "target")
    bad = JOB.replace("kind: ScaledJob", "kind: ScaledObject").replace(
        "jobTargetRef: {template: {spec: {containers: [{name: c, image: busybox}]}}}",
        "scaleTargetRef: {name: batch}",
    )
    no_list = bad.replace("listName: batch, ", "")
    for text, where in ((unknown, "spec.triggers[0].type"), (no_list, "listName")):
        manifest = write(tmp_path / "so.yaml", text)
        evaluated = run_cli("evaluate", manifest)
        assert evaluated.code == 2, evaluated.output
        for extra in (("--trace", trace), workload):
            simulated = run_cli("simulate", manifest, *extra)
            assert simulated.code == 2, simulated.output
            assert where in simulated.stderr
    # and the same object with its list named simulates
    manifest = write(tmp_path / "so.yaml", bad)
    assert run_cli("simulate", manifest, "--trace", trace).code == 0
