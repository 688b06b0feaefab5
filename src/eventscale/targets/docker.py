"""The Docker target: a set of containers that share a label.

The set is every container labelled ``eventscale.target=<name>`` (or, for a Compose
service, ``com.docker.compose.project=<project>`` and
``com.docker.compose.service=<service>``). Scaling out creates containers from a
:class:`ContainerTemplate`, or clones an existing member when there is no template
(at zero, one stopped member is kept as the clone source).
Scaling in stops the newest members first, giving each ``stop_timeout`` seconds to
exit after SIGTERM, and removes them. The count is always read back from the labels,
so a new target object (after a restart) finds the containers an earlier one made,
and a container without the set's labels is never touched.

The Engine API is spoken directly with aiohttp over the daemon's unix socket,
``tcp://`` with TLS or ``ssh://`` (as the CLI: ``ssh HOST docker system dial-stdio``),
the daemon found as the ``docker`` CLI finds it (``DOCKER_HOST``,
Docker contexts): see docs/targets/docker.md.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio
import attrs

from eventscale._docker_api import DockerAPI, container_name_prefix
from eventscale.errors import ConfigError, TargetError
from eventscale.targets import TargetBase
from eventscale.targets._docker_stats import member_resources
from eventscale.targets.resources import PodResources, WorkloadResources

__all__ = (
    "COMPOSE_PROJECT",
    "COMPOSE_SERVICE",
    "CREATED_LABEL",
    "TARGET_LABEL",
    "ContainerTemplate",
    "DockerTarget",
)

log = logging.getLogger("eventscale.targets.docker")

TARGET_LABEL: Final = "eventscale.target"
"""The label that makes a container a member of a target's set."""
CREATED_LABEL: Final = "eventscale.created"
"""Nanosecond creation stamp the target writes, to find the newest members exactly."""
COMPOSE_PROJECT: Final = "com.docker.compose.project"
COMPOSE_SERVICE: Final = "com.docker.compose.service"
_COMPOSE_NUMBER: Final = "com.docker.compose.container-number"

_LIVE_STATES: Final = frozenset({"running", "restarting", "paused"})


def _str_map(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _opt_tuple(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class ContainerTemplate:
    """What a new member looks like.

    :param image: the image reference; it must already be on the Docker host (the
        target does not pull).
    :param command: ``Cmd``; default: the image's.
    :param entrypoint: ``Entrypoint``; default: the image's.
    :param env: environment variables.
    :param labels: extra labels (the target adds its own).
    :param working_dir: ``WorkingDir``. :param user: ``User``.
    :param memory: memory limit in bytes. :param cpus: CPU limit (``1.5`` CPUs).
    :param network_mode: ``bridge``, ``host``, ``none``, ``container:<id>`` or a
        network name; default: the daemon's default.
    :param host_config: further ``HostConfig`` fields, passed to the API as given
        (``{"RestartPolicy": {"Name": "on-failure"}}``).
    """

    image: str = attrs.field(validator=attrs.validators.min_len(1))
    command: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple)
    entrypoint: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple)
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map)
    working_dir: str | None = None
    user: str | None = None
    memory: int | None = None
    cpus: float | None = None
    network_mode: str | None = None
    host_config: Mapping[str, Any] = attrs.field(factory=dict)

    def create_body(self) -> dict[str, Any]:
        """The ``POST /containers/create`` body, without the target's labels."""
        body: dict[str, Any] = {
            "Image": self.image,
            "Env": [f"{k}={v}" for k, v in self.env.items()],
            "Labels": dict(self.labels),
        }
        if self.command is not None:
            body["Cmd"] = list(self.command)
        if self.entrypoint is not None:
            body["Entrypoint"] = list(self.entrypoint)
        if self.working_dir:
            body["WorkingDir"] = self.working_dir
        if self.user:
            body["User"] = self.user
        host: dict[str, Any] = {}
        if self.network_mode:
            host["NetworkMode"] = self.network_mode
        if self.memory is not None:
            host["Memory"] = int(self.memory)
        if self.cpus is not None:
            host["NanoCpus"] = int(self.cpus * 1e9)
        host.update(self.host_config)
        body["HostConfig"] = host
        return body


@attrs.frozen
class _Member:
    id: str
    name: str
    state: str
    stamp: int
    labels: Mapping[str, str]


class DockerTarget(TargetBase):
    """Scales a labelled set of containers on one Docker host.

    :param name: the set's name: members carry ``eventscale.target=<name>``.
    :param template: how to create members; without it, new members are clones of the
        oldest live member (its image, command, env, labels and host config, minus
        published ports), and scaling to 0 stops the oldest member and keeps it (not
        counted) as the clone source of the next scale-out.
    :param compose_project, compose_service: select the members of a Compose service
        instead (both or neither); new members are clones unless a template is given.
    :param url: the daemon: ``unix:///path``, ``ssh://[user@]host[:port]`` or
        ``tcp://host:port`` (like ``docker -H``,
        TLS from ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``); default: as the ``docker``
        CLI finds it (``DOCKER_HOST``, ``DOCKER_CONTEXT``, the current context).
    :param stop_timeout: seconds a member gets to exit after SIGTERM before it is
        killed, on scale-in.
    :param timeout: seconds allowed for each API call (a stop gets ``stop_timeout``
        on top).
    :param name_prefix: container names are ``<prefix>-<8 hex>``; default: ``name``.
    """

    def __init__(
        self,
        name: str,
        *,
        template: ContainerTemplate | None = None,
        compose_project: str | None = None,
        compose_service: str | None = None,
        url: str | None = None,
        stop_timeout: float = 10.0,
        timeout: float = 60.0,
        name_prefix: str | None = None,
    ) -> None:
        if not name:
            raise ConfigError("the target name must not be empty", path="name")
        if (compose_project is None) != (compose_service is None):
            raise ConfigError(
                "compose_project and compose_service go together", path="compose_service"
            )
        if stop_timeout < 0 or not timeout > 0:
            raise ConfigError("stop_timeout must be >= 0 and timeout > 0", path="timeout")
        self._docker = DockerAPI(url, owner=name, timeout=timeout, what="the Docker target")
        self.name = name
        self.template = template
        self.compose = (compose_project, compose_service) if compose_project else None
        self.url = self._docker.url
        self.stop_timeout = stop_timeout
        self.timeout = timeout
        self.name_prefix = container_name_prefix(name_prefix or name, "eventscale")
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"DockerTarget({self.name!r}, url={self.url!r})"

    @property
    def selector(self) -> dict[str, str]:
        """The labels that define membership."""
        if self.compose is not None:
            project, service = self.compose
            return {COMPOSE_PROJECT: str(project), COMPOSE_SERVICE: str(service)}
        return {TARGET_LABEL: self.name}

    # -- members -----------------------------------------------------------------------

    async def members(self) -> list[_Member]:
        """Every container of the set (live or not), oldest first."""
        out: list[_Member] = []
        for item in await self._docker.list_labelled(self.selector):
            labels = _str_map(item.get("Labels"))
            stamp_text = labels.get(CREATED_LABEL, "")
            stamp = int(stamp_text) if stamp_text.isdigit() else int(item.get("Created", 0)) * 10**9
            names = item.get("Names") or ["/" + item["Id"][:12]]
            out.append(
                _Member(
                    id=str(item["Id"]),
                    name=str(names[0]).lstrip("/"),
                    state=str(item.get("State", "")),
                    stamp=stamp,
                    labels=labels,
                )
            )
        out.sort(key=lambda m: (m.stamp, m.id))
        return out

    async def get_replicas(self) -> int:
        """How many members are running (or restarting, or paused)."""
        return sum(1 for m in await self.members() if m.state in _LIVE_STATES)

    async def get_pod_resources(self) -> WorkloadResources:
        """Each live member as a one-container pod: limits, health and ``docker stats`` usage.

        The container is named after the Compose service or the set (what a trigger's
        ``containerName`` matches); ``Utilization`` is a percentage of the limits
        (docs/scalers/cpu-memory.md). One inspect and one ``stream=false`` stats read
        per member, concurrently.
        """
        live = [m for m in await self.members() if m.state in _LIVE_STATES]
        container = str(self.compose[1]) if self.compose is not None else self.name
        pods: list[PodResources | None] = [None] * len(live)

        async def one(i: int, member: _Member) -> None:
            _, inspect = await self._docker.inspect(member.id)
            status, stats = await self._docker.request(
                "GET", f"/containers/{member.id}/stats?stream=false", ok=(404, 409)
            )
            found = stats if status < 400 and isinstance(stats, dict) else None
            pods[i] = member_resources(container, inspect or {}, found)

        async with anyio.create_task_group() as tg:
            for i, member in enumerate(live):
                tg.start_soon(one, i, member)
        return WorkloadResources(
            replicas=len(live),
            pods=tuple(p for p in pods if p is not None),
            observed_at=time.time(),
            utilization_of="limits",
        )

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        """Create or remove members until ``replicas`` are live.

        Members that have exited or died are removed and replaced. Creation failures
        (an image that is not on the host, a bad template) raise :class:`TargetError`
        and leave no half-created container behind.
        """
        if type(replicas) is not int or replicas < 0:
            raise ValueError(f"replicas must be an int >= 0, got {replicas!r}")
        async with self._lock:
            members = await self.members()
            live = [m for m in members if m.state in _LIVE_STATES]
            dead = [m for m in members if m.state not in _LIVE_STATES]
            missing = replicas - len(live)
            # Without a template new members are clones: the body is read before anything
            # is removed, from a live member or else the stopped one kept at zero.
            body = await self._create_body(live or dead) if missing > 0 else None
            keeper = self._keeper(live, dead) if replicas == 0 else None
            doomed = [m for m in dead if m is not keeper]
            if len(live) > replicas:
                doomed += [m for m in live[replicas:][::-1] if m is not keeper]  # newest first
            if doomed and missing > 0 and self.template is None:
                # a clone source goes only once its replacements run
                await self._create_all(body or {}, missing, members)
                await self._remove_all(doomed)
            else:
                if doomed:
                    await self._remove_all(doomed)
                if missing > 0:
                    await self._create_all(body or {}, missing, members)
            if keeper is not None and keeper.state in _LIVE_STATES:
                await self._docker.stop(keeper.id, max(0, round(self.stop_timeout)))
            if doomed or missing > 0:
                log.info(
                    "%s: %d -> %d containers%s",
                    self.name,
                    len(live),
                    replicas,
                    f" ({reason})" if reason else "",
                )

    def _keeper(self, live: Sequence[_Member], dead: Sequence[_Member]) -> _Member | None:
        """At zero without a template: the member kept, stopped, as the clone source of
        the next scale-out (the oldest live one, else the newest stopped one)."""
        if self.template is not None:
            return None
        if live:
            return live[0]
        return dead[-1] if dead else None

    async def container_env(self) -> dict[str, str] | None:
        """The members' environment, for ``...FromEnv`` parameters: the template's
        ``env``, else the ``Config.Env`` of the oldest running member; ``None`` when
        there is neither. The values may be secrets: do not log them."""
        if self.template is not None:
            return dict(self.template.env)
        live = await self.members()
        if not live:
            return None
        _, info = await self._docker.inspect(live[0].id)
        env: dict[str, str] = {}
        for item in (info.get("Config") or {}).get("Env") or ():
            key, sep, value = str(item).partition("=")
            if sep:
                env[key] = value
        return env

    async def _create_body(self, sources: Sequence[_Member]) -> dict[str, Any]:
        if self.template is not None:
            return self.template.create_body()
        if not sources:
            raise TargetError(
                "no template and no container of the set to clone (give the target a "
                "template, or start one member by hand)",
                target=self.name,
            )
        _, info = await self._docker.inspect(sources[0].id)
        config = info.get("Config") or {}
        host = dict(info.get("HostConfig") or {})
        host.pop("PortBindings", None)  # a clone cannot bind the same host ports
        body: dict[str, Any] = {
            key: config[key]
            for key in ("Image", "Cmd", "Entrypoint", "Env", "WorkingDir", "User", "StopSignal")
            if config.get(key) not in (None, "", [])
        }
        labels = dict(config.get("Labels") or {})
        labels.pop(CREATED_LABEL, None)
        labels.pop(_COMPOSE_NUMBER, None)
        body["Labels"] = labels
        body["HostConfig"] = host
        return body

    async def _create_all(
        self, body: Mapping[str, Any], count: int, members: Sequence[_Member]
    ) -> None:
        numbers = [int(m.labels.get(_COMPOSE_NUMBER, "0") or 0) for m in members]
        next_number = max(numbers, default=0) + 1
        errors: list[TargetError] = []

        async def one(number: int) -> None:
            try:
                await self._create_one(body, number)
            except TargetError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, next_number + i)
        if errors:
            raise errors[0]

    async def _create_one(self, template: Mapping[str, Any], number: int) -> None:
        body = dict(template)
        labels = {**(body.get("Labels") or {}), **self.selector, TARGET_LABEL: self.name}
        labels[CREATED_LABEL] = str(time.time_ns())
        if self.compose is not None:
            labels[_COMPOSE_NUMBER] = str(number)
        body["Labels"] = labels
        name = f"{self.name_prefix}-{uuid.uuid4().hex[:8]}"
        await self._docker.create_and_start(
            name, body, noun="a container", pull_hint="the target does not pull images"
        )

    async def _remove_all(self, doomed: Sequence[_Member]) -> None:
        async with anyio.create_task_group() as tg:
            for member in doomed:
                tg.start_soon(self._remove_one, member)

    async def _remove_one(self, member: _Member) -> None:
        if member.state in _LIVE_STATES:
            await self._docker.stop(member.id, max(0, round(self.stop_timeout)))
        await self._docker.remove(member.id)

    async def ping(self) -> None:
        """Check that the daemon answers; :class:`TargetError` otherwise."""
        await self._docker.ping()

    async def aclose(self) -> None:
        """Close the HTTP session (the containers keep running)."""
        await self._docker.aclose()
