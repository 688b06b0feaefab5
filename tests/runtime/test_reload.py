"""Manifest files read again while the controller runs: only what changed moves."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from eventscale.errors import ConfigError
from eventscale.jobs.memory import MemoryJobTarget
from eventscale.manifests.reader import Manifests
from eventscale.runtime.controller import Controller
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.reload import ManifestReloader, expand_paths
from eventscale.runtime.scaled_job import ScaledJob
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledObjectSpec
from eventscale.testing import ManualClock, MemoryTarget
from servers._proc import unique_name
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio


class Factory:
    """Builds objects on memory targets from the files' own contexts."""

    def __init__(self) -> None:
        self.loads = 0
        self.built: list[str] = []

    def loaded(self, manifests: Manifests, text: str) -> None:
        self.loads += 1

    async def contexts(self, manifests: Manifests, spec: Any) -> Sequence[Any]:
        return manifests.trigger_contexts(spec, env={})

    async def build(self, spec: Any, contexts: Sequence[Any], previous: Any) -> Any:
        self.built.append(f"{spec.namespace}/{spec.name}")
        if isinstance(spec, ScaledObjectSpec):
            return ScaledObject(spec, target=MemoryTarget(0), contexts=contexts)
        return ScaledJob(spec, target=MemoryJobTarget(), contexts=contexts)


@pytest.fixture
def queue(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    name = unique_name("reload")
    client.rpush(name, *range(4))
    yield name
    client.delete(name)
    client.close()


def scaled_object(name: str, address: str, lst: str, length: str = "2", auth: str = "") -> str:
    ref = f"\n      authenticationRef: {{name: {auth}}}" if auth else ""
    return f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}, namespace: shop}}
spec:
  scaleTargetRef: {{name: {name}}}
  pollingInterval: 30
  triggers:
    - type: redis{ref}
      metadata: {{address: "{address}", listName: {lst}, listLength: "{length}"}}
"""


def auth_files(password: str) -> str:
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: redis-pass, namespace: shop}}
stringData: {{password: {password}}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: redis-auth, namespace: shop}}
spec:
  secretTargetRef: [{{parameter: password, name: redis-pass, key: password}}]
"""


def write(path: Path, text: str) -> None:
    """Write ``text`` and move the modification time on (some file systems keep
    whole seconds; a real edit comes seconds after the last)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    st = path.stat()
    if st.st_mtime_ns <= before:
        os.utime(path, ns=(st.st_atime_ns, before + 1_000_000_000))


async def test_edits_move_only_the_objects_they_touch(
    tmp_path: Path, redis_server: RedisServer, queue: str
) -> None:
    address = redis_server.address
    folder = tmp_path / "manifests"
    folder.mkdir()
    write(folder / "a.yaml", scaled_object("a", address, queue))
    write(folder / "b.yaml", scaled_object("b", address, queue, auth="redis-auth"))
    write(folder / "auth.yml", auth_files("first"))
    write(folder / "notes.txt", "not a manifest: never read")
    events: list[Event] = []
    factory = Factory()
    clock = ManualClock(100.0)
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.events.add_hook(events.append)
        reloader = ManifestReloader(ctl, [folder], factory, interval=0, clock=clock)
        first = await reloader.load()
        assert first.added == ("shop/a", "shop/b")
        assert reloader.kinds == {"shop/a": "ScaledObject", "shop/b": "ScaledObject"}
        with anyio.fail_after(10):
            await clock.wait_for_sleepers(2)
        a0, b0 = ctl.get("shop/a"), ctl.get("shop/b")
        state_a = a0.state

        # Nothing changed: a forced read rebuilds nothing.
        assert not (await reloader.reload(force=True)).changed
        # A touch changes the time only: the content hash says no.
        os.utime(folder / "a.yaml", ns=(0, 10**18))
        assert (await reloader.reload()) == type(first)()

        # The spec of a: only a is rebuilt, and keeps its engine state.
        write(folder / "a.yaml", scaled_object("a", address, queue, length="3"))
        result = await reloader.reload()
        assert (result.added, result.updated, result.removed) == ((), ("shop/a",), ())
        assert ctl.get("shop/b") is b0
        assert ctl.get("shop/a") is not a0
        assert ctl.get("shop/a").state is state_a
        assert events[-1].kind is EventKind.RELOAD
        assert events[-1].reason == "updated shop/a"

        # The Secret behind b's TriggerAuthentication: only b is rebuilt.
        a1 = ctl.get("shop/a")
        write(folder / "auth.yml", auth_files("second"))
        result = await reloader.reload()
        assert result.updated == ("shop/b",)
        assert ctl.get("shop/a") is a1

        # An edit that breaks the file: everything in it keeps running, the error
        # names the file and the field.
        write(folder / "a.yaml", scaled_object("a", address, queue).replace("30", "-30"))
        result = await reloader.reload()
        assert not result.changed
        assert ctl.get("shop/a") is a1
        ((where, message),) = result.errors
        assert where == str(folder / "a.yaml")
        assert "pollingInterval" in message
        refused = [e for e in events if e.kind is EventKind.CONFIG_ERROR]
        assert refused[-1].scaled_object == where
        assert "pollingInterval" in (refused[-1].error or "")

        # A valid document whose trigger metadata is not: that object keeps running.
        write(folder / "a.yaml", scaled_object("a", address, queue, length="lots"))
        result = await reloader.reload()
        assert not result.changed
        assert ctl.get("shop/a") is a1
        ((where, message),) = result.errors
        assert where == "shop/a"
        assert "spec.triggers[0].metadata.listLength" in message

        # The fix goes through; a new file adds, a deleted file removes.
        write(folder / "a.yaml", scaled_object("a", address, queue, length="4"))
        write(folder / "c.yaml", scaled_object("c", address, queue))
        (folder / "b.yaml").unlink()
        result = await reloader.reload()
        assert (result.added, result.updated, result.removed) == (
            ("shop/c",),
            ("shop/a",),
            ("shop/b",),
        )
        assert sorted(ctl) == ["shop/a", "shop/c"]
        assert "shop/b" not in reloader.kinds
        assert events[-1].reason == "added shop/c; updated shop/a; removed shop/b"


async def test_a_request_rereads_at_once_and_the_loop_survives(
    tmp_path: Path, redis_server: RedisServer, queue: str
) -> None:
    path = tmp_path / "one.yaml"
    write(path, scaled_object("one", redis_server.address, queue))
    factory = Factory()
    clock = ManualClock(0.0)
    reloads: list[Event] = []
    reloaded = anyio.Event()

    def hook(event: Event) -> None:
        if event.kind is EventKind.RELOAD:
            reloads.append(event)
            reloaded.set()

    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        ctl.events.add_hook(hook)
        reloader = ManifestReloader(ctl, [str(path)], factory, interval=0)
        await reloader.load()
        async with anyio.create_task_group() as tg:
            tg.start_soon(reloader.run)
            write(path, scaled_object("two", redis_server.address, queue))
            reloader.request()  # what SIGHUP does: no interval to wait for
            with anyio.fail_after(10):
                await reloaded.wait()
            tg.cancel_scope.cancel()
        assert reloads[0].reason == "added shop/two; removed shop/one"
        assert list(ctl) == ["shop/two"]


async def test_the_first_read_must_be_valid(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: ScaledObject\napiVersion: keda.sh/v1alpha1\nmetadata: {name: x}\n")
    async with Controller() as ctl:
        with pytest.raises(ConfigError) as info:
            await ManifestReloader(ctl, [path], Factory()).load()
        assert info.value.path == str(path)
        assert len(ctl) == 0
    with pytest.raises(ConfigError, match="no such file"):
        expand_paths([tmp_path / "missing.yaml"])
    with pytest.raises(ConfigError, match="--reload-interval"):
        ManifestReloader(Controller(), [path], Factory(), interval=-1)
