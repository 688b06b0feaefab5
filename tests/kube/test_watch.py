"""Watching through KubeClient.watch and the Informer, against the stand-in's watch
streams: resourceVersions, bookmarks, 410 Gone, cut connections, label selectors."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

import eventscale.kube.client as client_module
from eventscale.errors import TargetError
from eventscale.kube import Informer, KubeClient, KubeConfig, WatchEvent
from servers.kubernetes_srv import KubeStandIn

pytestmark = pytest.mark.anyio

SO = "/apis/keda.sh/v1alpha1"


@pytest.fixture
async def client(kube_standin: KubeStandIn, ns: str) -> AsyncIterator[KubeClient]:
    """A client of the stand-in, for the test's namespace; closed after the test."""
    kube = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)))
    yield kube
    await kube.aclose()


async def _take(stream: Any, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        async for event in stream:
            got.append(event)
            if len(got) == count:
                break
    return got


async def test_client_watch_streams_changes_after_a_resource_version(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.scaled_object("before", ns)
    listed = await client.request("GET", f"{SO}/namespaces/{ns}/scaledobjects")
    since = listed["metadata"]["resourceVersion"]
    api.scaled_object("after", ns)
    api.scaled_object("after", ns, minReplicaCount=2)
    stream = client.watch(f"{SO}/namespaces/{ns}/scaledobjects", params={"resourceVersion": since})
    events = await _take(stream, 2)
    await stream.aclose()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"),
        ("MODIFIED", "after"),
    ]
    assert events[1]["object"]["spec"]["minReplicaCount"] == 2
    assert events[1]["object"]["metadata"]["generation"] == 2


async def test_client_watch_of_a_compacted_version_is_an_expired_error_event(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    old = api.scaled_object("x", ns)["metadata"]["resourceVersion"]
    api.scaled_object("y", ns)
    api.compact()
    stream = client.watch(f"{SO}/namespaces/{ns}/scaledobjects", params={"resourceVersion": old})
    (event,) = await _take(stream, 1)
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


async def test_client_watch_denied_names_the_verb_and_resource(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    kube_standin.api.deny("watch", "scaledjobs")
    try:
        with pytest.raises(TargetError, match=r"cannot watch resource \"scaledjobs\"") as info:
            await _take(client.watch(f"{SO}/namespaces/{ns}/scaledjobs"), 1)
    finally:
        kube_standin.api.denied.discard(("watch", "scaledjobs", None))
    assert info.value.status == 403


async def test_client_watch_cut_mid_event_is_an_error_not_an_event(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.scaled_object("one", ns)
    got: list[dict[str, Any]] = []

    async def read() -> None:
        with anyio.fail_after(10):
            async for event in client.watch(f"{SO}/namespaces/{ns}/scaledobjects"):
                got.append(event)
                api.cut_watches()

    with pytest.raises(TargetError, match="cannot reach"):
        await read()
    assert [e["object"]["metadata"]["name"] for e in got] == ["one"]


async def test_client_watch_bounds_each_line(
    client: KubeClient, kube_standin: KubeStandIn, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube_standin.api.scaled_object("big", ns, annotations={"note": "x" * 5000})
    monkeypatch.setattr(client_module, "MAX_WATCH_LINE", 1000)
    with pytest.raises(TargetError, match="longer than 1000 bytes"):
        await _take(client.watch(f"{SO}/namespaces/{ns}/scaledobjects"), 1)


async def test_client_watch_idle_for_too_long_is_an_error(client: KubeClient, ns: str) -> None:
    with pytest.raises(TargetError, match=r"nothing received for 0\.3s"):
        await _take(client.watch(f"{SO}/namespaces/{ns}/scaledobjects", idle_timeout=0.3), 1)


# -- the Informer ------------------------------------------------------------------------


class Running:
    """An informer iterated in a task; its events collected."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self.events: list[WatchEvent] = []
        self._changed = anyio.Event()

    async def run(self) -> None:
        async for event in self.informer.events():
            self.events.append(event)
            self._changed.set()
            self._changed = anyio.Event()

    async def until(self, check: Callable[[], bool], seconds: float = 10) -> None:
        with anyio.fail_after(seconds):
            while not check():
                with anyio.move_on_after(0.05):
                    await self._changed.wait()

    def named(self, name: str) -> list[tuple[str, Any]]:
        return [
            (e.type, e.object.get("spec", {}).get("minReplicaCount"))
            for e in self.events
            if e.object.get("metadata", {}).get("name") == name
        ]

    def kinds(self) -> list[tuple[str, str]]:
        return [(e.type, e.object.get("metadata", {}).get("name", "")) for e in self.events]


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Running]:
    run = Running(informer)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.run)
        try:
            yield run
        finally:
            tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def synced(informer: Informer, seconds: float = 10) -> AsyncIterator[Running]:
    """The informer running, once its first list is done (its SYNCED event seen)."""
    async with running(informer) as run:
        await run.until(lambda: informer.synced, seconds)
        yield run


def _informer(client: KubeClient, plural: str = "scaledobjects", **kw: Any) -> Informer:
    return Informer(client, "keda.sh/v1alpha1", plural, backoff=(0.01, 0.05), **kw)


async def test_informer_lists_then_watches(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.scaled_object("a", ns)
    api.scaled_object("b", ns)
    informer = _informer(client, namespace=ns)
    assert not informer.synced
    async with synced(informer) as run:
        assert run.kinds() == [("ADDED", "a"), ("ADDED", "b"), ("SYNCED", "")]
        assert run.events[0].object["kind"] == "ScaledObject"
        api.scaled_object("c", ns)
        api.scaled_object("a", ns, minReplicaCount=3)
        api.remove(("apis/keda.sh/v1alpha1", "scaledobjects", ns, "b"))
        await run.until(lambda: len(run.events) == 6)
        assert run.kinds()[3:] == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b")]
        assert sorted(informer.cache) == [(ns, "a"), (ns, "c")]
        assert informer.cache[(ns, "a")]["spec"]["minReplicaCount"] == 3


async def test_a_watch_cut_mid_stream_loses_no_update(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.scaled_object("a", ns, minReplicaCount=0)
    rounds = 15
    informer = _informer(client, namespace=ns)
    async with synced(informer) as run:
        for i in range(1, rounds + 1):
            # A change delivered, a cut, and a change made while no watch is open.
            api.scaled_object("a", ns, minReplicaCount=2 * i - 1)
            wanted = 2 * i - 1
            await run.until(lambda: run.named("a")[-1][1] == wanted)  # noqa: B023
            with api.lock:
                api.cut_watches()
                api.scaled_object("a", ns, minReplicaCount=2 * i)
        await run.until(lambda: run.named("a")[-1][1] == 2 * rounds)
        assert informer.cache[(ns, "a")]["spec"]["minReplicaCount"] == 2 * rounds
    assert run.named("a") == [("ADDED", 0)] + [("MODIFIED", n) for n in range(1, 2 * rounds + 1)]
    assert run.kinds().count(("SYNCED", "")) == 1  # resumed, never listed again


async def test_410_gone_lists_again_and_yields_the_difference(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    for name in ("a", "b", "keep"):
        api.scaled_object(name, ns)
    informer = _informer(client, namespace=ns)
    async with synced(informer) as run:
        with api.lock:  # no watch sees these before the history is gone
            api.scaled_object("a", ns, minReplicaCount=4)
            api.remove(("apis/keda.sh/v1alpha1", "scaledobjects", ns, "b"))
            api.scaled_object("c", ns)
            api.compact()
            api.cut_watches()
        await run.until(lambda: run.kinds().count(("SYNCED", "")) == 2)
        after = run.kinds()[run.kinds().index(("SYNCED", "")) + 1 :]
        assert after == [("MODIFIED", "a"), ("ADDED", "c"), ("DELETED", "b"), ("SYNCED", "")]
        assert sorted(informer.cache) == [(ns, "a"), (ns, "c"), (ns, "keep")]
        # and it watches on from the new list
        api.scaled_object("d", ns)
        await run.until(lambda: run.kinds()[-1] == ("ADDED", "d"))


async def test_bookmarks_move_the_resource_version_without_events(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.scaled_object("a", ns)
    informer = _informer(client, namespace=ns)
    async with synced(informer) as run:
        listed = informer.resource_version
        # A change elsewhere: this watch sees no event, only a bookmark past it.
        elsewhere = api.scaled_object("x", f"{ns}-other")["metadata"]["resourceVersion"]
        await run.until(lambda: int(informer.resource_version or 0) >= int(elsewhere))
        assert informer.resource_version != listed
        assert run.kinds() == [("ADDED", "a"), ("SYNCED", "")]
        # Compacted up to now: resuming from the bookmark needs no new list.
        with api.lock:
            api.compact()
            api.cut_watches()
        api.scaled_object("b", ns)
        await run.until(lambda: run.kinds()[-1] == ("ADDED", "b"))
        assert run.kinds().count(("SYNCED", "")) == 1


async def test_label_selector_and_objects_moving_in_and_out(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.scaled_object("mine", ns, labels={"team": "a"})
    api.scaled_object("theirs", ns, labels={"team": "b"})
    informer = _informer(client, namespace=ns, label_selector="team=a")
    async with synced(informer) as run:
        assert run.kinds() == [("ADDED", "mine"), ("SYNCED", "")]
        api.scaled_object("theirs", ns, labels={"team": "a"})
        api.scaled_object("mine", ns, labels={"team": "b"})
        await run.until(lambda: len(run.events) == 4)
        assert run.kinds()[2:] == [("ADDED", "theirs"), ("DELETED", "mine")]
        assert list(informer.cache) == [(ns, "theirs")]


async def test_one_informer_per_namespace_and_one_for_all(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    other = f"{ns}-2"
    api.scaled_object("here", ns, labels={"run": ns})
    api.scaled_object("there", other, labels={"run": ns})
    first = _informer(client, namespace=ns)
    second = _informer(client, namespace=other)
    every = _informer(client, label_selector=f"run={ns}")
    async with synced(first), synced(second) as r2, synced(every) as r3:
        api.scaled_object("late", other, labels={"run": ns})
        await r3.until(lambda: (other, "late") in every.cache)
        await r2.until(lambda: (other, "late") in second.cache)
        assert list(first.cache) == [(ns, "here")]
        assert sorted(second.cache) == [(other, "late"), (other, "there")]
        assert sorted(every.cache) == [(ns, "here"), (other, "late"), (other, "there")]


async def test_permission_errors_are_retried_and_name_the_verb(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.put(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ClusterTriggerAuthentication",
            "metadata": {"name": f"cta-{ns}", "labels": {"run": ns}},
            "spec": {},
        }
    )
    api.deny("list", "clustertriggerauthentications")
    try:
        informer = _informer(client, "clustertriggerauthentications", label_selector=f"run={ns}")
        async with running(informer) as run:
            await run.until(lambda: informer.last_error is not None)
            assert "cannot list" in str(informer.last_error)
            assert "clustertriggerauthentications" in str(informer.last_error)
            assert not informer.synced
            assert not run.events
            api.denied.discard(("list", "clustertriggerauthentications", None))
            await run.until(lambda: informer.synced)
            assert run.kinds() == [("ADDED", f"cta-{ns}"), ("SYNCED", "")]
            assert list(informer.cache) == [("", f"cta-{ns}")]
    finally:
        api.denied.discard(("list", "clustertriggerauthentications", None))


async def test_a_large_list_is_read_page_by_page(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    for i in range(1050):
        api.scaled_object(f"so-{i:04d}", ns)
    mark = len(api.calls)
    informer = _informer(client, namespace=ns)
    async with synced(informer, seconds=60) as run:
        assert len(informer.cache) == 1050
        assert [e.type for e in run.events].count("ADDED") == 1050
        assert run.events[-1].type == "SYNCED"
    lists = [c for c in api.calls[mark:] if c.verb == "list" and c.agent.startswith("eventscale")]
    assert len(lists) == 3  # pages of 500


async def test_an_expired_continue_token_restarts_the_list(
    client: KubeClient, kube_standin: KubeStandIn, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = kube_standin.api
    for name in ("a", "b", "c"):
        api.scaled_object(name, ns)
    real = client.request
    pages: list[dict[str, str]] = []

    async def compacting(method: str, path: str, **kw: Any) -> dict[str, Any]:
        pages.append(dict(kw.get("params") or {}))
        answer = await real(method, path, **kw)
        if len(pages) == 1:  # the API compacts between the first and second page
            api.scaled_object("d", ns)
            api.compact()
        return answer

    monkeypatch.setattr(client, "request", compacting)
    informer = _informer(client, namespace=ns, page_size=2)
    async with synced(informer) as run:
        assert sorted(informer.cache) == [(ns, n) for n in ("a", "b", "c", "d")]
        assert sorted(run.kinds()[:-1]) == [("ADDED", n) for n in ("a", "b", "c", "d")]
    assert ["continue" in p for p in pages] == [False, True, False, True]


async def test_writes_and_cuts_at_once_lose_nothing(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    """A writer thread changes ten objects 40 times each while another thread keeps
    cutting the watches: every version of every object arrives, in order."""
    api = kube_standin.api
    names = [f"o{i}" for i in range(10)]
    for name in names:
        api.scaled_object(name, ns, minReplicaCount=0)
    done = threading.Event()

    def write() -> None:
        for n in range(1, 41):
            for name in names:
                api.scaled_object(name, ns, minReplicaCount=n)

    def cut() -> None:
        while not done.wait(0.01):
            api.cut_watches()

    informer = _informer(client, namespace=ns)
    async with synced(informer) as run:
        cutter = threading.Thread(target=cut)
        cutter.start()
        try:
            await anyio.to_thread.run_sync(write)
            await run.until(
                lambda: all(run.named(name)[-1] == ("MODIFIED", 40) for name in names),
                seconds=60,
            )
        finally:
            done.set()
            cutter.join()
    for name in names:
        assert run.named(name) == [("ADDED", 0)] + [("MODIFIED", n) for n in range(1, 41)]


async def test_core_kinds_are_watched_too(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    api.secret("creds", ns, {"password": "old"})
    informer = Informer(client, "v1", "secrets", namespace=ns, backoff=(0.01, 0.05))
    async with synced(informer) as run:
        api.secret("creds", ns, {"password": "new"})
        await run.until(lambda: run.kinds()[-1] == ("MODIFIED", "creds"))
        assert informer.cache[(ns, "creds")]["data"]["password"] == "bmV3"
        assert informer.path == f"/api/v1/namespaces/{ns}/secrets"


async def test_watches_end_on_time_and_resume(
    client: KubeClient, kube_standin: KubeStandIn, ns: str
) -> None:
    api = kube_standin.api
    mark = len(api.calls)
    ended = [
        e
        async for e in client.watch(
            f"{SO}/namespaces/{ns}/scaledobjects", params={"timeoutSeconds": "1"}
        )
    ]
    assert ended == []  # the server closed the stream cleanly after a second
    informer = _informer(client, namespace=ns, timeout_seconds=1)
    async with synced(informer) as run:
        for i in range(3):  # across several watch requests
            api.scaled_object(f"t{i}", ns)
            await anyio.sleep(1.2)
        await run.until(lambda: len(run.events) == 4)
    assert run.kinds() == [("SYNCED", ""), ("ADDED", "t0"), ("ADDED", "t1"), ("ADDED", "t2")]
    watches = [c for c in api.calls[mark:] if c.verb == "watch" and c.agent == "eventscale"]
    assert len(watches) >= 4  # one by hand, then the informer's, renewed each second
