"""Docker one-shot containers as ScaledJob jobs.

Each job is one container created from a
:class:`~eventscale.targets.docker.ContainerTemplate` and started; it runs to
completion and stays (stopped) until history clean-up deletes it, so its exit code is
recorded: exit 0 is a succeeded job, anything else a failed one. Containers carry
``scaledjob.keda.sh/name=<name>`` and the template revision as labels, and the jobs
are always found by those labels, so a new process recounts what an old one started
and a container without them is never touched.

Phases: a container that is ``created`` but not started is *pending*; ``running``,
``restarting`` or ``paused`` is *running*; ``exited`` or ``dead`` is finished (the
exit code and ``FinishedAt`` come from an inspection, cached per container since a
finished container does not change).

The Engine API is spoken with aiohttp over the daemon's unix socket, ``ssh://`` or
``tcp://`` with TLS, found as the ``docker`` CLI finds it, as the Docker target does
(docs/targets/docker.md).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from eventscale._docker_api import DockerAPI, container_name_prefix
from eventscale.errors import ConfigError, TargetError
from eventscale.jobs.base import JOB_LABEL, REVISION_LABEL, JobInfo, JobPhase, template_revision
from eventscale.targets.docker import CREATED_LABEL, ContainerTemplate

if TYPE_CHECKING:
    from eventscale.spec import ScaledJobSpec

__all__ = ("DockerJobTarget", "template_from_job_target_ref")

log = logging.getLogger("eventscale.jobs.docker")

_RUNNING = frozenset({"running", "restarting", "paused"})
_FINISHED = frozenset({"exited", "dead"})


def _parse_time(text: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds -> epoch seconds (``None`` for the zero time)."""
    if not text or text.startswith("0001-01-01"):
        return None
    stamp = text.replace("Z", "+00:00")
    # Python parses at most microseconds: drop the extra fraction digits.
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp)
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def template_from_job_target_ref(
    ref: Mapping[str, Any], *, container: str | None = None, **overrides: Any
) -> ContainerTemplate:
    """A container template from a ScaledJob's ``jobTargetRef`` pod template.

    Reads ``template.spec.containers[]`` (``container`` by name, else the first):
    ``image``; ``command`` becomes the entrypoint and ``args`` the command, as
    Kubernetes maps them onto an image; ``env`` entries with a ``value``;
    ``workingDir``. ``overrides`` are further :class:`ContainerTemplate` fields
    (``network_mode="host"``, ``memory=...``).

    :raises ConfigError: no container, no image, or an ``env`` entry with
        ``valueFrom`` (a Secret or ConfigMap reference Docker cannot resolve).
    """
    base = "spec.jobTargetRef.template.spec.containers"
    template = ref.get("template")
    pod = template.get("spec") if isinstance(template, Mapping) else None
    containers = pod.get("containers") if isinstance(pod, Mapping) else None
    if not isinstance(containers, list) or not containers:
        raise ConfigError("the job template has no containers", path=base)
    index = 0
    if container is not None:
        names = [c.get("name") if isinstance(c, Mapping) else None for c in containers]
        if container not in names:
            raise ConfigError(f"no container named {container!r}", path=base)
        index = names.index(container)
    chosen = containers[index]
    path = f"{base}[{index}]"
    if not isinstance(chosen, Mapping) or not chosen.get("image"):
        raise ConfigError("the container has no image", path=f"{path}.image")
    env: dict[str, str] = {}
    for i, item in enumerate(chosen.get("env") or ()):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError("an env entry needs a name", path=f"{path}.env[{i}]")
        if "valueFrom" in item:
            raise ConfigError(
                "valueFrom cannot be resolved for Docker jobs; give a value",
                path=f"{path}.env[{i}].valueFrom",
            )
        env[str(item["name"])] = str(item.get("value", ""))
    fields: dict[str, Any] = {
        "image": str(chosen["image"]),
        "entrypoint": chosen.get("command"),
        "command": chosen.get("args"),
        "env": env,
        "working_dir": chosen.get("workingDir"),
    }
    fields.update(overrides)
    return ContainerTemplate(**fields)


class DockerJobTarget:
    """Runs ScaledJob jobs as one-shot Docker containers.

    :param name: the ScaledJob's name (the ``scaledjob.keda.sh/name`` label).
    :param template: what each job runs. Its restart policy is left as given (the
        default, ``no``, is what a job wants); ``AutoRemove`` must not be set, or the
        exit code would be lost.
    :param url: ``unix:///path``, ``tcp://host:port`` or ``ssh://[user@]host[:port]``
        (like ``docker -H``); default:
        as the ``docker`` CLI finds it (``DOCKER_HOST``, ``DOCKER_CONTEXT``, the current
        context).
    :param timeout: seconds allowed for each API call.
    :param name_prefix: container names are ``<prefix>-<10 hex>``; default ``name``.
    """

    def __init__(
        self,
        name: str,
        template: ContainerTemplate,
        *,
        url: str | None = None,
        timeout: float = 30.0,
        name_prefix: str | None = None,
    ) -> None:
        if not name:
            raise ConfigError("the ScaledJob name must not be empty", path="metadata.name")
        if template.host_config.get("AutoRemove"):
            raise ConfigError(
                "AutoRemove would discard the exit code", path="template.host_config.AutoRemove"
            )
        if not timeout > 0:
            raise ConfigError("timeout must be > 0", path="timeout")
        self._docker = DockerAPI(url, owner=name, timeout=timeout, what="Docker jobs")
        self.name = name
        self.template = template
        self.timeout = timeout
        self.url = self._docker.url
        self.name_prefix = container_name_prefix(name_prefix or name, "job")
        self._revision = template_revision(template.create_body())
        self._finished: dict[str, tuple[float | None, int | None, str | None]] = {}

    @classmethod
    def from_spec(
        cls, spec: ScaledJobSpec, *, container: str | None = None, **kwargs: Any
    ) -> DockerJobTarget:
        """A target for ``spec``: its name and its ``jobTargetRef`` container.

        ``kwargs`` go to the constructor (``url``, ``timeout``, ``name_prefix``) or,
        for :class:`ContainerTemplate` fields (``network_mode``...), to the template.
        """
        own = {k: kwargs.pop(k) for k in ("url", "timeout", "name_prefix") if k in kwargs}
        template = template_from_job_target_ref(
            spec.job_target_ref, container=container or spec.env_source_container_name, **kwargs
        )
        return cls(spec.name, template, **own)

    def __repr__(self) -> str:
        return f"DockerJobTarget({self.name!r}, url={self.url!r})"

    @property
    def revision(self) -> str:
        """A hash of the container template."""
        return self._revision

    # -- the JobTarget protocol --------------------------------------------------------

    async def list_jobs(self) -> Sequence[JobInfo]:
        """Every container labelled for this ScaledJob, oldest first."""
        listing = await self._docker.list_labelled({JOB_LABEL: self.name})
        jobs: list[JobInfo] = []
        seen: set[str] = set()
        for item in listing:
            labels = item.get("Labels") or {}
            cid = str(item["Id"])
            seen.add(cid)
            name = str((item.get("Names") or ["/" + cid[:12]])[0]).lstrip("/")
            stamp = str(labels.get(CREATED_LABEL, ""))
            created = int(stamp) / 1e9 if stamp.isdigit() else float(item.get("Created", 0))
            state = str(item.get("State", ""))
            revision = str(labels.get(REVISION_LABEL, ""))
            if state in _FINISHED:
                finished, code, error = await self._outcome(cid)
                failed = state == "dead" or code != 0
                jobs.append(
                    JobInfo(
                        name=name,
                        phase=JobPhase.FAILED if failed else JobPhase.SUCCEEDED,
                        created=created,
                        finished=finished,
                        exit_code=code,
                        revision=revision,
                        message=error,
                    )
                )
            elif state == "removing":
                continue  # on its way out: neither running nor history
            else:
                phase = JobPhase.RUNNING if state in _RUNNING else JobPhase.PENDING
                jobs.append(JobInfo(name=name, phase=phase, created=created, revision=revision))
        for cid in set(self._finished) - seen:
            del self._finished[cid]
        jobs.sort(key=lambda j: (j.created, j.name))
        return tuple(jobs)

    async def _outcome(self, cid: str) -> tuple[float | None, int | None, str | None]:
        cached = self._finished.get(cid)
        if cached is not None:
            return cached
        status, info = await self._docker.inspect(cid, ok=(404,))
        if status == 404:
            return None, None, "the container is gone"
        state = info.get("State") or {}
        code = state.get("ExitCode")
        outcome = (
            _parse_time(state.get("FinishedAt")),
            int(code) if isinstance(code, int) else None,
            str(state.get("Error") or "") or None,
        )
        self._finished[cid] = outcome
        return outcome

    async def start_jobs(self, count: int) -> Sequence[str]:
        """Create and start ``count`` containers, concurrently; return their names.

        A container that was created but could not be started is removed again; the
        first error is raised after the others were attempted.
        """
        if type(count) is not int or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        names: list[str] = []
        errors: list[TargetError] = []

        async def one() -> None:
            try:
                names.append(await self._start_one())
            except TargetError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
        if errors:
            raise errors[0]
        if names:
            log.info("%s: started %d job containers", self.name, len(names))
        return tuple(names)

    async def _start_one(self) -> str:
        body = self.template.create_body()
        body["Labels"] = {
            **body.get("Labels", {}),
            JOB_LABEL: self.name,
            REVISION_LABEL: self._revision,
            CREATED_LABEL: str(time.time_ns()),
        }
        name = f"{self.name_prefix}-{uuid.uuid4().hex[:10]}"
        await self._docker.create_and_start(
            name, body, noun="a job container", pull_hint="images are not pulled"
        )
        return name

    async def delete_jobs(self, names: Sequence[str]) -> None:
        """Remove the named containers (killing those still running)."""

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(self._docker.remove, name)

    async def aclose(self) -> None:
        """Close the HTTP session (the containers are left as they are)."""
        await self._docker.aclose()
