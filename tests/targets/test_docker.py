"""DockerTarget against a private dockerd (Debian docker.io) with a busybox image."""

from __future__ import annotations

import pytest

from eventscale.errors import ConfigError, TargetError
from eventscale.targets import Target
from eventscale.targets.docker import (
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    TARGET_LABEL,
    ContainerTemplate,
    DockerTarget,
)
from servers._proc import unique_name
from servers.docker_srv import DockerDaemon

# PID 1 ignores SIGTERM unless it installs a handler: this one exits at once on stop.
GRACEFUL = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")


def _template(daemon: DockerDaemon, **kw: object) -> ContainerTemplate:
    return ContainerTemplate(
        image=daemon.image,
        command=GRACEFUL,
        env={"ROLE": "worker"},
        labels={"team": "data"},
        network_mode="none",
        memory=64 * 1024 * 1024,
        **kw,  # type: ignore[arg-type]
    )


def _running(daemon: DockerDaemon, name: str) -> list[dict[str, object]]:
    return [c for c in daemon.containers(f"{TARGET_LABEL}={name}") if c["State"] == "running"]


@pytest.mark.anyio
async def test_scale_zero_three_one_zero(docker_daemon: DockerDaemon) -> None:
    name = unique_name("set")
    async with DockerTarget(
        name, template=_template(docker_daemon), url=docker_daemon.url, stop_timeout=5
    ) as target:
        assert isinstance(target, Target)
        assert await target.get_replicas() == 0
        await target.set_replicas(3)
        assert await target.get_replicas() == 3
        running = _running(docker_daemon, name)
        assert len(running) == 3
        first = running[0]
        assert first["Labels"]["team"] == "data"  # type: ignore[index]
        status, info = docker_daemon.api("GET", f"/containers/{first['Id']}/json")
        assert status == 200
        assert "ROLE=worker" in info["Config"]["Env"]
        assert info["HostConfig"]["NetworkMode"] == "none"
        assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024

        oldest = min(target_members := await target.members(), key=lambda m: m.stamp)
        await target.set_replicas(1, reason="queue drained")
        assert await target.get_replicas() == 1
        left = docker_daemon.containers(f"{TARGET_LABEL}={name}")
        assert [c["Id"] for c in left] == [oldest.id]  # the newest were removed
        assert len(target_members) == 3

        await target.set_replicas(0)
        assert await target.get_replicas() == 0
    assert docker_daemon.containers(f"{TARGET_LABEL}={name}") == []


@pytest.mark.anyio
async def test_a_new_target_object_recounts_from_labels(docker_daemon: DockerDaemon) -> None:
    name = unique_name("set")
    async with DockerTarget(name, template=_template(docker_daemon), url=docker_daemon.url) as t1:
        await t1.set_replicas(2)
    # "restart": a fresh object, no template, finds and clones what the first made.
    async with DockerTarget(name, url=docker_daemon.url, stop_timeout=5) as t2:
        assert await t2.get_replicas() == 2
        await t2.set_replicas(3)
        assert await t2.get_replicas() == 3
        clones = docker_daemon.containers(f"{TARGET_LABEL}={name}")
        assert all(c["Labels"]["team"] == "data" for c in clones)
        await t2.set_replicas(0)
        assert await t2.get_replicas() == 0
    # without a template one member stays, stopped, as the clone source
    [kept] = docker_daemon.containers(f"{TARGET_LABEL}={name}")
    assert kept["State"] == "exited"
    docker_daemon.remove_all_matching(f"{TARGET_LABEL}={name}")


@pytest.mark.anyio
async def test_without_a_template_zero_is_not_a_dead_end(docker_daemon: DockerDaemon) -> None:
    # `eventscale run --target docker` builds the target without a template: after a
    # scale to 0 it must still scale out again, in this process and after a restart.
    name = unique_name("set")
    try:
        async with DockerTarget(
            name, template=_template(docker_daemon), url=docker_daemon.url
        ) as t:
            await t.set_replicas(2)
        async with DockerTarget(name, url=docker_daemon.url, stop_timeout=5) as t1:
            await t1.set_replicas(0)
            assert await t1.get_replicas() == 0
            await t1.set_replicas(0)  # idempotent: the kept member stays
            await t1.set_replicas(1)
            assert await t1.get_replicas() == 1
            await t1.set_replicas(0)
        async with DockerTarget(name, url=docker_daemon.url, stop_timeout=5) as t2:  # restart
            assert await t2.get_replicas() == 0
            await t2.set_replicas(3)
            assert await t2.get_replicas() == 3
            members = docker_daemon.containers(f"{TARGET_LABEL}={name}")
            assert len(members) == 3  # the stopped clone source went once they ran
            assert all(c["State"] == "running" for c in members)
            assert all(c["Labels"]["team"] == "data" for c in members)
            await t2.set_replicas(0)
    finally:
        docker_daemon.remove_all_matching(f"{TARGET_LABEL}={name}")


@pytest.mark.anyio
async def test_a_container_killed_outside_is_replaced_on_the_next_set(
    docker_daemon: DockerDaemon,
) -> None:
    name = unique_name("set")
    async with DockerTarget(
        name, template=_template(docker_daemon), url=docker_daemon.url, stop_timeout=5
    ) as target:
        await target.set_replicas(2)
        victim = _running(docker_daemon, name)[0]["Id"]
        status, _ = docker_daemon.api("POST", f"/containers/{victim}/kill")
        assert status == 204
        assert await target.get_replicas() == 1
        await target.set_replicas(2)
        assert await target.get_replicas() == 2
        ids = {c["Id"] for c in docker_daemon.containers(f"{TARGET_LABEL}={name}")}
        assert victim not in ids  # the dead one was cleaned up
        assert len(ids) == 2
        await target.set_replicas(0)


@pytest.mark.anyio
async def test_containers_without_the_label_are_untouched(docker_daemon: DockerDaemon) -> None:
    name = unique_name("set")
    bystander = docker_daemon.run_unmanaged(unique_name("bystander"), {"app": name})
    other_set = docker_daemon.run_unmanaged(unique_name("other"), {TARGET_LABEL: name + "-x"})
    try:
        async with DockerTarget(
            name, template=_template(docker_daemon), url=docker_daemon.url, stop_timeout=5
        ) as target:
            assert await target.get_replicas() == 0
            await target.set_replicas(2)
            await target.set_replicas(0)
            assert await target.get_replicas() == 0
        for cid in (bystander, other_set):
            status, info = docker_daemon.api("GET", f"/containers/{cid}/json")
            assert status == 200
            assert info["State"]["Running"] is True
    finally:
        for cid in (bystander, other_set):
            docker_daemon.api("DELETE", f"/containers/{cid}?force=true")


@pytest.mark.anyio
async def test_an_unknown_image_is_a_clear_target_error(docker_daemon: DockerDaemon) -> None:
    name = unique_name("set")
    template = ContainerTemplate(image="localhost/does-not-exist:1", network_mode="none")
    async with DockerTarget(name, template=template, url=docker_daemon.url) as target:
        with pytest.raises(TargetError) as info:
            await target.set_replicas(2)
    assert info.value.status == 404
    assert "localhost/does-not-exist:1" in str(info.value)
    assert "does not pull images" in str(info.value)
    assert docker_daemon.containers(f"{TARGET_LABEL}={name}") == []


@pytest.mark.anyio
async def test_compose_service_members_are_cloned(docker_daemon: DockerDaemon) -> None:
    project, service = unique_name("proj"), "worker"
    labels = {
        COMPOSE_PROJECT: project,
        COMPOSE_SERVICE: service,
        "com.docker.compose.container-number": "1",
    }
    first = docker_daemon.run_unmanaged(f"{project}-{service}-1", labels)
    try:
        async with DockerTarget(
            "compose",
            compose_project=project,
            compose_service=service,
            url=docker_daemon.url,
            stop_timeout=5,
        ) as target:
            assert await target.get_replicas() == 1
            await target.set_replicas(3)
            members = docker_daemon.containers(f"{COMPOSE_PROJECT}={project}")
            assert len(members) == 3
            numbers = sorted(
                c["Labels"].get("com.docker.compose.container-number", "-") for c in members
            )
            assert numbers == ["1", "2", "3"]
            await target.set_replicas(1)
            left = docker_daemon.containers(f"{COMPOSE_PROJECT}={project}")
            assert [c["Id"] for c in left] == [first]  # the original is the oldest
    finally:
        docker_daemon.remove_all_matching(f"{COMPOSE_PROJECT}={project}")


@pytest.mark.anyio
async def test_errors_and_bad_arguments(docker_daemon: DockerDaemon, tmp_path: object) -> None:
    async with DockerTarget(unique_name("set"), url=docker_daemon.url) as target:
        with pytest.raises(TargetError, match="no template and no container of the set"):
            await target.set_replicas(1)
        await target.set_replicas(0)  # nothing to do is fine
        await target.ping()
    async with DockerTarget("x", url="unix:///nonexistent/docker.sock") as gone:
        with pytest.raises(TargetError, match="cannot reach the Docker daemon"):
            await gone.get_replicas()
    with pytest.raises(ConfigError):
        DockerTarget("x", compose_project="p")
    with pytest.raises(ConfigError, match="no password"):
        DockerTarget("x", url="ssh://me:pw@host")  # ssh:// itself: test_docker_ssh.py
    with pytest.raises(ValueError, match="image"):
        ContainerTemplate(image="")
