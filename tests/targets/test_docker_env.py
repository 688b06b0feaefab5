"""DockerTarget.container_env: the members' own environment, for ``...FromEnv``."""

from __future__ import annotations

import uuid

import pytest

from eventscale.targets.docker import ContainerTemplate, DockerTarget
from servers._proc import unique_name
from servers.docker_srv import DockerDaemon

GRACEFUL = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")


@pytest.mark.anyio
async def test_container_env_from_the_template_then_a_running_member(
    docker_daemon: DockerDaemon,
) -> None:
    name = unique_name("envset")
    value = f"redis://{uuid.uuid4().hex[:8]}:6379=x"  # an '=' inside the value is kept
    template = ContainerTemplate(
        image=docker_daemon.image,
        command=GRACEFUL,
        env={"REDIS_URL": value, "EMPTY": ""},
        network_mode="none",
    )
    async with DockerTarget(name, url=docker_daemon.url, stop_timeout=5) as bare:
        assert await bare.container_env() is None  # no template, no member
    async with DockerTarget(name, template=template, url=docker_daemon.url, stop_timeout=5) as t:
        assert await t.container_env() == {"REDIS_URL": value, "EMPTY": ""}
        await t.set_replicas(1)
        try:
            # A target without a template reads a running member's Config.Env.
            async with DockerTarget(name, url=docker_daemon.url, stop_timeout=5) as clone:
                env = await clone.container_env()
                assert env is not None
                assert env["REDIS_URL"] == value
                assert env["EMPTY"] == ""
        finally:
            await t.set_replicas(0)
