"""ScaledJob on ``batch/v1`` Jobs through the Kubernetes API stand-in (TLS, tokens,
label selectors, Status errors), driven through eventscale's real REST client."""

from __future__ import annotations

import pytest

from eventscale.errors import TargetError
from eventscale.jobs import (
    JOB_LABEL,
    REVISION_LABEL,
    JobInfo,
    JobPhase,
    KubernetesJobTarget,
    ScaledJob,
)
from eventscale.kube import KubeConfig
from eventscale.manifests.reader import load_manifests
from eventscale.spec import ScaledJobSpec
from eventscale.testing import StaticScaler
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn

pytestmark = pytest.mark.anyio


def manifest(name: str, *, image: str = "busybox:1", strategy: str = "default") -> str:
    return f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata:
  name: {name}
  labels: {{team: payments}}
  annotations: {{owner: ops}}
spec:
  jobTargetRef:
    backoffLimit: 2
    template:
      metadata:
        labels: {{app: crunch}}
      spec:
        containers: [{{name: crunch, image: "{image}"}}]
        restartPolicy: Never
  maxReplicaCount: 4
  successfulJobsHistoryLimit: 1
  failedJobsHistoryLimit: 1
  rollout: {{strategy: default, propagationPolicy: foreground}}
  scalingStrategy: {{strategy: {strategy}}}
  triggers:
  - type: gauge
    metadata: {{target: "1"}}
"""


def make(
    kube_standin: KubeStandIn, namespace: str, text: str, scaler: StaticScaler
) -> tuple[ScaledJobSpec, KubernetesJobTarget, ScaledJob]:
    spec = load_manifests(text).scaled_job()
    config = KubeConfig.from_kubeconfig(kube_standin.kubeconfig(namespace))
    target = KubernetesJobTarget.from_spec(spec, config=config, namespace=namespace)
    return spec, target, ScaledJob(spec, target=target, scalers=[scaler])


async def test_jobs_from_the_template_counted_finished_and_cleaned(
    kube_standin: KubeStandIn,
) -> None:
    api = kube_standin.api
    namespace = unique_name("ns")
    name = unique_name("crunch")
    scaler = StaticScaler(3)
    _, target, sj = make(kube_standin, namespace, manifest(name, strategy="accurate"), scaler)
    try:
        report = await sj.reconcile()
        assert report.ok
        assert len(report.started) == 3
        job = api.get("apis/batch/v1", "jobs", namespace, report.started[0])
        assert job is not None
        labels = job["metadata"]["labels"]
        assert labels[JOB_LABEL] == name
        assert labels["team"] == "payments"
        assert labels[REVISION_LABEL] == target.revision
        assert job["metadata"]["annotations"] == {"owner": "ops"}
        assert job["spec"]["backoffLimit"] == 2
        pod = job["spec"]["template"]
        assert pod["metadata"]["labels"] == {"app": "crunch", JOB_LABEL: name}
        assert pod["spec"]["containers"][0]["image"] == "busybox:1"

        # all three pending (no ready pod yet): accurate subtracts them from the backlog
        jobs = await target.list_jobs()
        assert [j.phase for j in jobs] == [JobPhase.PENDING] * 3
        report = await sj.reconcile()
        assert (report.counts.running, report.counts.pending) == (3, 3)
        assert report.started == ()

        first, second, third = sorted(j.name for j in jobs)
        api.job_ready(namespace, first)
        api.finish_job(namespace, second, succeeded=True)
        api.finish_job(namespace, third, succeeded=False)
        phases = {j.name: j for j in await target.list_jobs()}
        assert phases[first].phase is JobPhase.RUNNING
        assert phases[second].phase is JobPhase.SUCCEEDED
        assert phases[second].finished is not None
        assert phases[third].phase is JobPhase.FAILED
        assert phases[third].message == "Job has reached the specified backoff limit"

        # another ScaledJob's Job and an unlabelled one are never counted
        api.put(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "other", "namespace": namespace, "labels": {JOB_LABEL: "x"}},
                "spec": {},
                "status": {"active": 1},
            }
        )
        scaler.value = 0
        report = await sj.reconcile()
        assert report.counts.running == 1
        assert report.cleaned == ()  # one of each kind is within the limits of 1
        api.finish_job(namespace, first, succeeded=True)
        report = await sj.reconcile()
        # two succeeded, limit 1: the older goes, with the rollout's propagation policy
        assert len(report.cleaned) == 1
        gone = report.cleaned[0]
        assert api.get("apis/batch/v1", "jobs", namespace, gone) is None
        deletes = [d for d in api.deleted if d[1] == namespace and d[2] == gone]
        assert deletes[0][3]["propagationPolicy"] == ["Foreground"]
        assert api.get("apis/batch/v1", "jobs", namespace, "other") is not None
    finally:
        await sj.aclose()


async def test_a_restart_recounts_and_a_new_template_rolls_out(
    kube_standin: KubeStandIn,
) -> None:
    namespace = unique_name("ns")
    name = unique_name("crunch")
    _, old_target, first = make(kube_standin, namespace, manifest(name), StaticScaler(2))
    try:
        assert len((await first.reconcile()).started) == 2
    finally:
        await first.aclose()
    old_jobs = {j.name for j in await _list(kube_standin, namespace, name)}
    # same manifest, new process: the Jobs are found by label, none are added
    _, _, again = make(kube_standin, namespace, manifest(name), StaticScaler(2))
    try:
        report = await again.reconcile()
        assert (report.counts.running, report.started, report.rolled_out) == (2, (), ())
    finally:
        await again.aclose()
    # a new image: rollout.strategy default deletes the unfinished Jobs of the old one
    _, new_target, updated = make(
        kube_standin, namespace, manifest(name, image="busybox:2"), StaticScaler(2)
    )
    try:
        assert new_target.revision != old_target.revision
        report = await updated.reconcile()
        assert set(report.rolled_out) == old_jobs
        assert len(report.started) == 2
        jobs = await new_target.list_jobs()
        assert {j.revision for j in jobs} == {new_target.revision}
        assert not old_jobs & {j.name for j in jobs}
    finally:
        await updated.aclose()


async def _list(kube_standin: KubeStandIn, namespace: str, name: str) -> tuple[JobInfo, ...]:
    spec = load_manifests(manifest(name)).scaled_job()
    config = KubeConfig.from_kubeconfig(kube_standin.kubeconfig(namespace))
    target = KubernetesJobTarget.from_spec(spec, config=config, namespace=namespace)
    try:
        return tuple(await target.list_jobs())
    finally:
        await target.aclose()


async def test_a_forbidden_create_is_a_target_error_in_the_report(
    kube_standin: KubeStandIn,
) -> None:
    namespace = unique_name("ns")
    name = unique_name("denied")
    kube_standin.api.deny("create", "jobs")
    try:
        _, _target, sj = make(kube_standin, namespace, manifest(name), StaticScaler(2))
        try:
            report = await sj.reconcile()
        finally:
            await sj.aclose()
        assert report.started == ()
        assert report.target_error is not None
        assert "forbidden" in report.target_error
        assert await _list(kube_standin, namespace, name) == ()
    finally:
        with kube_standin.api.lock:
            kube_standin.api.denied.discard(("create", "jobs", None))
    config = KubeConfig.from_kubeconfig(kube_standin.kubeconfig(namespace), context="broken")
    broken = KubernetesJobTarget(name, {"template": {"spec": {}}}, config=config)
    try:
        with pytest.raises(TargetError, match="Unauthorized"):
            await broken.list_jobs()
    finally:
        await broken.aclose()


def conditions_manifest(name: str, conditions: list[str]) -> str:
    listed = ", ".join(f'"{c}"' for c in conditions)
    return f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {{name: {name}}}
spec:
  jobTargetRef:
    template:
      metadata: {{labels: {{app: warm}}}}
      spec:
        containers: [{{name: warm, image: busybox}}]
        readinessGates: [{{conditionType: example.com/Warmed}}]
        restartPolicy: Never
  maxReplicaCount: 10
  scalingStrategy: {{strategy: accurate, pendingPodConditions: [{listed}]}}
  triggers:
  - type: gauge
    metadata: {{target: "1"}}
"""


async def test_pending_pod_conditions_are_read_from_the_jobs_pods(
    kube_standin: KubeStandIn,
) -> None:
    """A Job is pending until one of its pods has every listed condition True, whatever
    the Job's own status says (KEDA's pendingPodConditions)."""
    api = kube_standin.api
    namespace = unique_name("ns")
    name = unique_name("warm")
    text = conditions_manifest(name, ["Ready", "example.com/Warmed"])
    spec, target, sj = make(kube_standin, namespace, text, StaticScaler(3))
    assert target.pending_pod_conditions == ("Ready", "example.com/Warmed")
    try:
        report = await sj.reconcile()
        assert len(report.started) == 3
        first, second, third = report.started
        for job in report.started:  # the Job controller made one pod per Job
            (pod,) = api.job_pods(namespace, job)
            owner = pod["metadata"]["ownerReferences"][0]
            created = api.get("apis/batch/v1", "jobs", namespace, job)
            assert created is not None
            assert owner["uid"] == created["metadata"]["uid"]
        mark = len(api.log)
        assert {j.phase for j in await target.list_jobs()} == {JobPhase.PENDING}
        assert (
            "GET",
            f"/api/v1/namespaces/{namespace}/pods",
            api.tokens[kube_standin.token],
        ) in api.log[mark:]

        # Ready alone (the Job's status.ready is 1 now) is not enough: Warmed is missing
        api.job_ready(namespace, first)
        phases = {j.name: j.phase for j in await target.list_jobs()}
        assert phases[first] is JobPhase.PENDING
        api.pod_condition(namespace, first, "example.com/Warmed")
        # Warmed without Ready is not enough either
        api.pod_condition(namespace, second, "example.com/Warmed")
        phases = {j.name: j.phase for j in await target.list_jobs()}
        assert phases == {
            first: JobPhase.RUNNING,
            second: JobPhase.PENDING,
            third: JobPhase.PENDING,
        }
        # accurate: the backlog of 3 less the 2 pending Jobs is 1 more Job (with all 3
        # pending it would be none)
        report = await sj.reconcile()
        assert (report.counts.running, report.counts.pending) == (3, 2)
        assert len(report.started) == 1
        # a finished Job is finished, whatever its pods say
        api.finish_job(namespace, second, succeeded=True)
        phases = {j.name: j.phase for j in await target.list_jobs()}
        assert phases[second] is JobPhase.SUCCEEDED
        # a second pod (a retry) with the conditions counts too
        (pod,) = api.job_pods(namespace, third)
        retry = {**pod, "metadata": {**pod["metadata"], "name": f"{third}-retry", "uid": "r"}}
        retry["status"] = {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "example.com/Warmed", "status": "True"},
            ],
        }
        api.put(retry)
        phases = {j.name: j.phase for j in await target.list_jobs()}
        assert phases[third] is JobPhase.RUNNING
        # deleting a Job takes its pods along
        await target.delete_jobs([first])
        assert api.job_pods(namespace, first) == []
    finally:
        await sj.aclose()
    assert spec.pending_pod_conditions == ("Ready", "example.com/Warmed")


async def test_without_pending_pod_conditions_no_pod_is_read(kube_standin: KubeStandIn) -> None:
    api = kube_standin.api
    namespace = unique_name("ns")
    _, target, sj = make(kube_standin, namespace, manifest(unique_name("plain")), StaticScaler(2))
    try:
        report = await sj.reconcile()
        api.job_ready(namespace, report.started[0])
        mark = len(api.log)
        phases = sorted(j.phase.value for j in await target.list_jobs())
        assert phases == ["pending", "running"]
        assert not [p for _, p, _ in api.log[mark:] if p.endswith("/pods")]
    finally:
        await sj.aclose()


async def test_pods_that_cannot_be_listed_are_a_target_error(kube_standin: KubeStandIn) -> None:
    namespace = unique_name("ns")
    text = conditions_manifest(unique_name("denied"), ["Ready"])
    _, target, sj = make(kube_standin, namespace, text, StaticScaler(1))
    try:
        assert len((await sj.reconcile()).started) == 1
        kube_standin.api.deny("list", "pods")
        try:
            with pytest.raises(TargetError, match="forbidden"):
                await target.list_jobs()
            report = await sj.reconcile()  # an error, never "no job pending"
            assert report.target_error is not None
            assert "pods" in report.target_error
            assert report.started == ()
        finally:
            with kube_standin.api.lock:
                kube_standin.api.denied.discard(("list", "pods", None))
    finally:
        await sj.aclose()
