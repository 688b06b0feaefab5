"""Kubernetes ``batch/v1`` Jobs as ScaledJob jobs.

Each job is a Job built from the ScaledJob's ``jobTargetRef`` (its ``spec``, verbatim)
with the ScaledJob's labels and annotations, plus ``scaledjob.keda.sh/name`` (on the
Job and its pod template, as KEDA labels them), the template revision and
``app.kubernetes.io/managed-by: eventscale``. Jobs are found with a label selector, so
a restarted controller recounts the Jobs an earlier one created.

Phases: a ``Complete`` condition is *succeeded* (finished at ``completionTime``), a
``Failed`` condition *failed*. An unfinished Job is *running* or *pending*:

* with ``scalingStrategy.pendingPodConditions`` (KEDA's rule), it is running once one
  of its pods has every listed condition ``True`` and pending until then. The pods are
  read with one list per listing (``GET /api/v1/namespaces/<ns>/pods`` selected by the
  ScaledJob's label, which the pod template carries) and matched to their Job by the
  controller ``ownerReference`` (or the ``batch.kubernetes.io/job-name`` /
  ``job-name`` label); KEDA lists the pods of each Job separately, one request per Job.
* without it, from the Job's status alone: running with a ready pod (``status.ready``),
  pending without. KEDA looks at the pods' phase (``Running``/``Succeeded``);
  ``status.ready`` gives the same answer for pods without readiness probes, and saves a
  pod listing per Job.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import attrs

from eventscale.errors import ConfigError, TargetError, TargetNotFound
from eventscale.jobs.base import JOB_LABEL, REVISION_LABEL, JobInfo, JobPhase, template_revision
from eventscale.kube import KubeClient, KubeConfig

if TYPE_CHECKING:
    import os

    from eventscale.spec import ScaledJobSpec

__all__ = ("KubernetesJobTarget",)

log = logging.getLogger("eventscale.jobs.kubernetes")

_POLICIES = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}


def _time(text: Any) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _owning_job(pod: Mapping[str, Any], by_uid: Mapping[str, str]) -> str | None:
    """The name of the listed Job ``pod`` belongs to, if any."""
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "Job":
            return by_uid.get(str(ref.get("uid")))
    labels = meta.get("labels") or {}
    name = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    return str(name) if name is not None and str(name) in by_uid.values() else None


class KubernetesJobTarget:
    """Creates ``batch/v1`` Jobs for one ScaledJob.

    :param name: the ScaledJob's name (the ``scaledjob.keda.sh/name`` label value and
        the Job name prefix).
    :param job_target_ref: the Job ``spec`` (``template``, ``backoffLimit``...).
    :param namespace: where Jobs are created; default: the configuration's namespace.
    :param labels, annotations: put on every Job (the ScaledJob's own).
    :param propagation_policy: ``background`` (default), ``foreground`` or ``orphan``:
        how deleting a Job treats its pods.
    :param config, kubeconfig, context, client: where the API is, as for
        :class:`~eventscale.targets.kubernetes.KubernetesTarget` (a given ``client``
        is shared and not closed here).
    :param timeout: seconds allowed for each API call.
    :param pending_pod_conditions: pod condition types (``Ready``, ``PodScheduled``, a
        readiness gate's type...): an unfinished Job is pending until one of its pods
        has all of them ``True`` (``scalingStrategy.pendingPodConditions``). Empty (the
        default): pending until ``status.ready``, without reading pods.
    """

    def __init__(
        self,
        name: str,
        job_target_ref: Mapping[str, Any],
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        propagation_policy: str = "background",
        config: KubeConfig | None = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        client: KubeClient | None = None,
        timeout: float = 10.0,
        pending_pod_conditions: Sequence[str] = (),
    ) -> None:
        if not name:
            raise ConfigError("the ScaledJob name must not be empty", path="metadata.name")
        template = job_target_ref.get("template")
        if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
            raise ConfigError("needs a pod template", path="spec.jobTargetRef.template")
        policy = _POLICIES.get(propagation_policy.lower())
        if policy is None:
            raise ConfigError(
                "must be background, foreground or orphan", path="spec.rollout.propagationPolicy"
            )
        self._owns_client = client is None
        if client is None:
            client = KubeClient(config or KubeConfig.load(kubeconfig, context), timeout=timeout)
        self.client = client
        self.name = name
        self.namespace = namespace or client.namespace
        self.job_target_ref = copy.deepcopy(dict(job_target_ref))
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.propagation_policy = policy
        self.timeout = timeout
        self.pending_pod_conditions = tuple(pending_pod_conditions)
        self._revision = template_revision(self.job_target_ref)
        # Job names are DNS labels (<= 63 characters): prefix + "-" + 5 hex.
        self._prefix = name[:57].rstrip("-.")

    @classmethod
    def from_spec(cls, spec: ScaledJobSpec, **kwargs: Any) -> KubernetesJobTarget:
        """A target for ``spec``: its name, namespace, labels, annotations, template and
        ``rollout.propagationPolicy``."""
        annotations = {
            k: v for k, v in spec.annotations.items() if not k.startswith("autoscaling.keda.sh/")
        }
        kwargs.setdefault("namespace", spec.namespace)
        kwargs.setdefault("propagation_policy", spec.rollout.propagation_policy)
        kwargs.setdefault("pending_pod_conditions", spec.pending_pod_conditions)
        return cls(
            spec.name,
            spec.job_target_ref,
            labels=spec.labels,
            annotations=annotations,
            **kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"KubernetesJobTarget({self.namespace}/{self.name!r}, "
            f"server={self.client.config.server!r})"
        )

    @property
    def revision(self) -> str:
        """A hash of ``jobTargetRef``."""
        return self._revision

    @property
    def _path(self) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/jobs"

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            return await self.client.request(
                method, path, body=body, params=params, timeout=self.timeout
            )
        except TargetError as exc:
            if exc.target is None:
                exc.target = f"ScaledJob/{self.namespace}/{self.name}"
            raise

    # -- the JobTarget protocol --------------------------------------------------------

    async def list_jobs(self) -> Sequence[JobInfo]:
        """The Jobs labelled ``scaledjob.keda.sh/name=<name>``, oldest first."""
        listing = await self._call(
            "GET", self._path, params={"labelSelector": f"{JOB_LABEL}={self.name}"}
        )
        items = [
            item
            for item in listing.get("items") or ()
            if ((item.get("metadata") or {}).get("labels") or {}).get(JOB_LABEL) == self.name
        ]
        jobs = [self._info(item) for item in items]
        if self.pending_pod_conditions and any(not j.phase.finished for j in jobs):
            started = await self._jobs_with_conditions_met(items)
            jobs = [
                j
                if j.phase.finished
                else attrs.evolve(
                    j, phase=JobPhase.RUNNING if j.name in started else JobPhase.PENDING
                )
                for j in jobs
            ]
        jobs.sort(key=lambda j: (j.created, j.name))
        return tuple(jobs)

    async def _jobs_with_conditions_met(self, items: Sequence[Mapping[str, Any]]) -> set[str]:
        """Names of the Jobs with a pod whose every ``pending_pod_conditions`` is True."""
        by_uid = {
            str((item.get("metadata") or {}).get("uid")): str(
                (item.get("metadata") or {}).get("name")
            )
            for item in items
        }
        pods = await self._call(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/pods",
            params={"labelSelector": f"{JOB_LABEL}={self.name}"},
        )
        wanted = set(self.pending_pod_conditions)
        started: set[str] = set()
        for pod in pods.get("items") or ():
            job = _owning_job(pod, by_uid)
            if job is None or job in started:
                continue
            true = {
                str(c.get("type"))
                for c in (pod.get("status") or {}).get("conditions") or ()
                if c.get("status") == "True"
            }
            if wanted <= true:
                started.add(job)
        return started

    def _info(self, item: Mapping[str, Any]) -> JobInfo:
        meta = item.get("metadata") or {}
        status = item.get("status") or {}
        created = _time(meta.get("creationTimestamp")) or 0.0
        revision = str((meta.get("labels") or {}).get(REVISION_LABEL, ""))
        name = str(meta.get("name"))
        done = _condition(status, "Complete")
        if done is not None:
            finished = _time(status.get("completionTime")) or _time(done.get("lastTransitionTime"))
            return JobInfo(
                name=name,
                phase=JobPhase.SUCCEEDED,
                created=created,
                finished=finished,
                revision=revision,
            )
        failed = _condition(status, "Failed")
        if failed is not None:
            return JobInfo(
                name=name,
                phase=JobPhase.FAILED,
                created=created,
                finished=_time(failed.get("lastTransitionTime")),
                revision=revision,
                message=str(failed.get("message") or failed.get("reason") or "") or None,
            )
        ready = status.get("ready")
        running = int(ready) > 0 if ready is not None else int(status.get("active") or 0) > 0
        return JobInfo(
            name=name,
            phase=JobPhase.RUNNING if running else JobPhase.PENDING,
            created=created,
            revision=revision,
        )

    def job_body(self, name: str) -> dict[str, Any]:
        """The Job object :meth:`start_jobs` creates under ``name``."""
        spec = copy.deepcopy(self.job_target_ref)
        template = spec["template"]
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), JOB_LABEL: self.name}
        labels = {
            **self.labels,
            "app.kubernetes.io/managed-by": "eventscale",
            JOB_LABEL: self.name,
            REVISION_LABEL: self._revision,
        }
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": labels}
        if self.annotations:
            metadata["annotations"] = dict(self.annotations)
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}

    async def start_jobs(self, count: int) -> Sequence[str]:
        """Create ``count`` Jobs, concurrently; return their names.

        The first error is raised after the other creations were attempted (the Jobs
        that were created stay and are counted next time).
        """
        if type(count) is not int or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        names: list[str] = []
        errors: list[TargetError] = []

        async def one() -> None:
            name = f"{self._prefix}-{uuid.uuid4().hex[:5]}"
            try:
                await self._call("POST", self._path, self.job_body(name))
            except TargetError as exc:
                errors.append(exc)
            else:
                names.append(name)

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
        if names:
            log.info("%s/%s: created %d Jobs", self.namespace, self.name, len(names))
        if errors:
            raise errors[0]
        return tuple(names)

    async def delete_jobs(self, names: Sequence[str]) -> None:
        """Delete the named Jobs with the propagation policy (gone already is fine)."""

        async def one(name: str) -> None:
            with contextlib.suppress(TargetNotFound):
                await self._call(
                    "DELETE",
                    f"{self._path}/{quote(name)}",
                    params={"propagationPolicy": self.propagation_policy},
                )

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)

    async def aclose(self) -> None:
        """Close the HTTP session if this target created its client."""
        if self._owns_client:
            await self.client.aclose()
