"""Lease leader election against the Kubernetes API stand-in, on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from eventscale.errors import ConfigError, TargetError
from eventscale.kube import KubeClient, KubeConfig
from eventscale.runtime.leader import LeaderElector, LeadershipLost, LeaseRecord
from eventscale.testing import ManualClock
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn

LEASES = "apis/coordination.k8s.io/v1"


@pytest.fixture
async def client(kube_standin: KubeStandIn) -> AsyncIterator[KubeClient]:
    config = KubeConfig.from_kubeconfig(kube_standin.kubeconfig(unique_name("ns")))
    kube = KubeClient(config)
    yield kube
    await kube.aclose()


def _electors(client: KubeClient, clock: ManualClock, lease: str, n: int) -> list[LeaderElector]:
    return [
        LeaderElector(
            client,
            lease,
            identity=f"replica-{i}",
            lease_duration=15,
            renew_deadline=10,
            retry_period=2,
            clock=clock,
            sleep=clock.sleep,
        )
        for i in range(n)
    ]


def _holder(standin: KubeStandIn, client: KubeClient, lease: str) -> str | None:
    obj = standin.api.get(LEASES, "leases", client.namespace, lease)
    assert obj is not None
    return LeaseRecord.from_object(obj).holder


@pytest.mark.anyio
async def test_three_contenders_one_leader_then_takeover_after_expiry(
    kube_standin: KubeStandIn, client: KubeClient
) -> None:
    clock = ManualClock(1_700_000_000.0)
    lease = unique_name("lease")
    a, b, c = _electors(client, clock, lease, 3)

    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert not await c.try_acquire_or_renew()
    assert [e.is_leader for e in (a, b, c)] == [True, False, False]
    assert _holder(kube_standin, client, lease) == "replica-0"
    stored = kube_standin.api.get(LEASES, "leases", client.namespace, lease)
    assert stored is not None
    assert stored["spec"]["leaseDurationSeconds"] == 15
    assert stored["spec"]["renewTime"] == "2023-11-14T22:13:20.000000Z"

    # The leader renews: the others see the record change and keep waiting.
    for _ in range(3):
        clock.advance(10)
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        assert not await c.try_acquire_or_renew()

    # The leader goes silent. Before a full lease duration, nobody takes over.
    clock.advance(14)
    assert not await b.try_acquire_or_renew()
    clock.advance(1.5)
    assert await b.try_acquire_or_renew()
    assert not await c.try_acquire_or_renew()
    assert _holder(kube_standin, client, lease) == "replica-1"
    record = b.observed
    assert record is not None
    assert record.transitions == 1
    # The old leader comes back: its renewal finds someone else holding the lease.
    assert not await a.try_acquire_or_renew()
    assert not a.is_leader


@pytest.mark.anyio
async def test_racing_contenders_exactly_one_wins(
    kube_standin: KubeStandIn, client: KubeClient
) -> None:
    clock = ManualClock(1000.0)
    lease = unique_name("lease")
    electors = _electors(client, clock, lease, 3)
    results: dict[str, bool] = {}

    async def contend(e: LeaderElector) -> None:
        results[e.identity] = await e.try_acquire_or_renew()

    async with anyio.create_task_group() as tg:
        for e in electors:
            tg.start_soon(contend, e)
    assert sorted(results.values()) == [False, False, True]
    winner = next(i for i, won in results.items() if won)
    assert _holder(kube_standin, client, lease) == winner

    # Takeover race after expiry: both losers try at once, one wins by resourceVersion.
    losers = [e for e in electors if e.identity != winner]
    for e in losers:  # a contender measures expiry from when it first saw the record
        assert not await e.try_acquire_or_renew()
    clock.advance(16)
    results.clear()
    async with anyio.create_task_group() as tg:
        for e in losers:
            tg.start_soon(contend, e)
    assert sorted(results.values()) == [False, True]
    new_winner = next(i for i, won in results.items() if won)
    assert _holder(kube_standin, client, lease) == new_winner != winner


@pytest.mark.anyio
async def test_release_lets_a_successor_take_over_at_once(
    kube_standin: KubeStandIn, client: KubeClient
) -> None:
    clock = ManualClock(50.0)
    lease = unique_name("lease")
    a, b = _electors(client, clock, lease, 2)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert not a.is_leader
    assert _holder(kube_standin, client, lease) is None
    assert await b.try_acquire_or_renew()
    assert _holder(kube_standin, client, lease) == "replica-1"


@pytest.mark.anyio
async def test_leadership_context_renews_and_reports_loss(
    kube_standin: KubeStandIn, client: KubeClient
) -> None:
    clock = ManualClock(0.0)
    lease = unique_name("lease")
    a, b = _electors(client, clock, lease, 2)
    steps: list[str] = []

    async def lead() -> None:
        try:
            async with a.leadership():
                steps.append("leading")
                await anyio.sleep_forever()
        except LeadershipLost:
            steps.append("lost")

    async with anyio.create_task_group() as tg:
        tg.start_soon(lead)
        for _ in range(3):  # three renewals while leading
            await clock.wait_for_sleepers()
            clock.advance(2)
        await clock.wait_for_sleepers()
        assert steps == ["leading"]
        stored = kube_standin.api.get(LEASES, "leases", client.namespace, lease)
        assert stored is not None
        assert stored["spec"]["renewTime"].startswith("1970-01-01T00:00:06")
        # Someone else forcibly takes the lease; the next renewal notices.
        stored["spec"]["holderIdentity"] = "intruder"
        kube_standin.api.put(stored)
        clock.advance(2)
    assert steps == ["leading", "lost"]
    assert not a.is_leader
    assert _holder(kube_standin, client, lease) == "intruder"  # a lost lease is not released
    assert not await b.try_acquire_or_renew()


@pytest.mark.anyio
async def test_leadership_exits_cleanly_and_releases(
    kube_standin: KubeStandIn, client: KubeClient
) -> None:
    clock = ManualClock(0.0)
    lease = unique_name("lease")
    (a,) = _electors(client, clock, lease, 1)
    async with a.leadership():
        assert a.is_leader
        assert _holder(kube_standin, client, lease) == "replica-0"
    assert _holder(kube_standin, client, lease) is None


@pytest.mark.anyio
async def test_forbidden_leases_raise_and_bad_timings_are_rejected(
    kube_standin: KubeStandIn, client: KubeClient
) -> None:
    lease = unique_name("lease")
    kube_standin.api.deny("get", "leases", lease)
    elector = LeaderElector(client, lease, identity="x")
    with pytest.raises(TargetError) as info:
        await elector.try_acquire_or_renew()
    assert info.value.status == 403
    with pytest.raises(ConfigError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElector(client, lease, lease_duration=5, renew_deadline=10)
    assert elector.identity == "x"
    assert LeaderElector(client, lease).identity.count("_") >= 2
