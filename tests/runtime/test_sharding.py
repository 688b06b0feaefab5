"""Three controllers share scaled objects through Leases on the Kubernetes API stand-in.

Each controller has its own :class:`KubeClient` (its own connections), its own
:class:`LeaseSharding` and its own :class:`KubernetesTarget` per object, exactly as
three processes would. The stand-in keeps scaling the Deployments back to 0 so every
object keeps wanting to scale: every reconcile of an owner is a real write.

Every write is checked at the moment it is made: the writer must be the only sharding
that ``holds()`` the object, and the object's Lease in the API must name the writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import attrs
import pytest

from eventscale.errors import ConfigError
from eventscale.kube import KubeClient, KubeConfig
from eventscale.runtime.controller import Controller, NotifyingOwnership
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.runtime.sharding import LeaseSharding, _weight
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.targets.kubernetes import KubernetesTarget
from eventscale.targets.memory import MemoryTarget
from eventscale.testing import StaticScaler
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn

pytestmark = pytest.mark.anyio

APPS = "apis/apps/v1"
LEASES = "apis/coordination.k8s.io/v1"
IDENTITIES = ("ctl-a", "ctl-b", "ctl-c")
OBJECTS = 6
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 2.0, 1.5, 0.3
POLLING_INTERVAL = 1.0  # the minimum a ScaledObject allows


def rendezvous(members: tuple[str, ...] | list[str], key: str) -> str:
    """The member that should own ``key``, computed independently of LeaseSharding."""
    return max(members, key=lambda m: _weight(m, key))


def spread_namespace() -> Iterator[str]:
    """Fresh namespaces whose objects hash onto every one of the three identities.

    Rendezvous hashing places 6 keys on 3 members; about a quarter of key sets leave a
    member with none, which would make "the work spreads" untestable. The test picks a
    namespace whose assignment uses all three, then checks the sharding follows it.
    """
    while True:
        ns = unique_name("shard")
        owners = {rendezvous(IDENTITIES, f"{ns}/w{i}") for i in range(OBJECTS)}
        if owners == set(IDENTITIES):
            yield ns


@attrs.define
class Write:
    at: float
    writer: str
    key: str
    holders: list[str]
    lease_holder: str | None


@attrs.define
class World:
    standin: KubeStandIn
    namespace: str
    shardings: list[LeaseSharding] = attrs.field(factory=list)
    writes: list[Write] = attrs.field(factory=list)

    def lease(self, key: str) -> dict[str, Any] | None:
        name = self.shardings[0].lease_name(key)
        return self.standin.api.get(LEASES, "leases", self.namespace, name)

    def check(self, writer: LeaseSharding, key: str) -> None:
        holders = [s.identity for s in self.shardings if s.holds(key)]
        lease = self.lease(key)
        holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
        self.writes.append(Write(time.monotonic(), writer.identity, key, holders, holder))

    def violations(self) -> list[Write]:
        return [w for w in self.writes if w.holders != [w.writer] or w.lease_holder != w.writer]

    def first_write(self, key: str, writer: str, after: float) -> float | None:
        return next(
            (w.at for w in self.writes if w.key == key and w.writer == writer and w.at > after),
            None,
        )


class RecordingTarget(KubernetesTarget):
    """A Kubernetes target that checks ownership at the moment of every write."""

    def __init__(
        self, name: str, *, world: World, sharding: LeaseSharding, key: str, **kwargs: Any
    ) -> None:
        super().__init__(name, **kwargs)
        self.world = world
        self.sharding = sharding
        self.key = key

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        self.world.check(self.sharding, self.key)
        await super().set_replicas(replicas, reason=reason)


def scale_back_to_zero(standin: KubeStandIn, namespace: str) -> None:
    """Someone else keeps scaling the Deployments down (so owners keep writing)."""
    api = standin.api
    with api.lock:
        for i in range(OBJECTS):
            obj = api.objects[(APPS, "deployments", namespace, f"w{i}")]
            if obj["spec"]["replicas"]:
                obj["spec"]["replicas"] = 0
                obj["status"]["replicas"] = 0
                obj["metadata"]["resourceVersion"] = api._bump()


async def until(predicate: Callable[[], bool], what: str, limit: float) -> None:
    with anyio.move_on_after(limit):
        while not predicate():  # noqa: ASYNC110 - polling state other tasks change
            await anyio.sleep(0.02)
    if not predicate():
        pytest.fail(f"timed out after {limit:g}s waiting for {what}")


async def test_three_controllers_share_objects_and_take_over_from_a_dead_one(
    kube_standin: KubeStandIn,
) -> None:
    ns = next(spread_namespace())
    keys = [f"{ns}/w{i}" for i in range(OBJECTS)]
    for i in range(OBJECTS):
        kube_standin.api.deployment(f"w{i}", ns, replicas=0)
    world = World(kube_standin, ns)
    clients = [
        KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)), timeout=5)
        for _ in IDENTITIES
    ]
    world.shardings = [
        LeaseSharding(
            client,
            identity=identity,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
        )
        for client, identity in zip(clients, IDENTITIES, strict=True)
    ]
    scopes = [anyio.CancelScope() for _ in IDENTITIES]
    scalers: list[StaticScaler] = []

    def scaled_object(i: int, j: int) -> ScaledObject:
        spec = ScaledObjectSpec(
            name=f"w{i}",
            namespace=ns,
            scale_target_ref=ScaleTargetRef(name=f"w{i}"),
            triggers=[TriggerSpec(type="gauge", name="load")],
            polling_interval=POLLING_INTERVAL,
        )
        target = RecordingTarget(
            f"w{i}", world=world, sharding=world.shardings[j], key=keys[i], client=clients[j]
        )
        scaler = StaticScaler(3, target=1)
        scalers.append(scaler)
        return ScaledObject(spec, target=target, scalers=[scaler])

    async def run_controller(j: int) -> None:
        with scopes[j]:
            async with world.shardings[j], Controller(ownership=world.shardings[j]) as ctl:
                for i in range(OBJECTS):
                    ctl.add(scaled_object(i, j))
                await ctl.run_until_cancelled()

    async def vandal() -> None:
        while True:
            scale_back_to_zero(kube_standin, ns)
            await anyio.sleep(0.1)

    def acting(members: tuple[str, ...], key: str, since: float) -> bool:
        owner = rendezvous(members, key)
        holders = [s.identity for s in world.shardings if s.holds(key)]
        return holders == [owner] and world.first_write(key, owner, since) is not None

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(vandal)
            for j in range(len(IDENTITIES)):
                tg.start_soon(run_controller, j)

            # 1. the work spreads: each object acted on by its one rendezvous owner
            started = time.monotonic()
            await until(
                lambda: all(acting(IDENTITIES, k, started) for k in keys),
                "every object to have exactly its one preferred owner acting",
                limit=15,
            )
            by_owner = {
                ident: [k for k in keys if rendezvous(IDENTITIES, k) == ident]
                for ident in IDENTITIES
            }
            assert all(by_owner.values())
            for sharding in world.shardings:
                assert sorted(k for k in keys if sharding.holds(k)) == by_owner[sharding.identity]
                assert sharding.members == sorted(IDENTITIES)
            for key in keys:
                lease = world.lease(key)
                assert lease is not None
                assert lease["spec"]["holderIdentity"] == rendezvous(IDENTITIES, key)
                assert lease["spec"]["leaseDurationSeconds"] == round(LEASE_DURATION)

            # 2. a crash: the victim stops renewing and releases nothing
            victim = 0
            dead = IDENTITIES[victim]
            survivors = tuple(i for i in IDENTITIES if i != dead)
            moved = by_owner[dead]
            killed = time.monotonic()
            world.shardings[victim].abandon()
            scopes[victim].cancel()
            for key in moved:  # its Leases are still held in the API: not released
                lease = world.lease(key)
                assert lease is not None
                assert lease["spec"]["holderIdentity"] == dead
            taken: dict[str, float] = {}

            def taken_over() -> bool:
                for key in moved:
                    if key not in taken and world.shardings[
                        IDENTITIES.index(rendezvous(survivors, key))
                    ].holds(key):
                        taken[key] = time.monotonic() - killed
                return len(taken) == len(moved)

            await until(taken_over, "the survivors to take the dead one's Leases", limit=15)
            # a Lease runs out lease_duration after its last renewal; the survivors see it
            # within a retry period and take it at their next round
            bound = LEASE_DURATION + 5 * RETRY_PERIOD
            takeover = max(taken.values())
            assert takeover <= bound, f"objects moved after {takeover:.2f}s (> {bound:.2f}s)"
            await until(
                lambda: all(acting(survivors, k, killed) for k in keys),
                "the survivors to act on every object",
                limit=15,
            )
            for key in moved:
                lease = world.lease(key)
                assert lease is not None
                assert lease["spec"]["holderIdentity"] == rendezvous(survivors, key)
                assert lease["spec"]["leaseTransitions"] >= 1
            # objects of the survivors never moved
            for key in set(keys) - set(moved):
                assert not [w for w in world.writes if w.key == key and w.writer == dead]
            tg.cancel_scope.cancel()
    finally:
        for client in clients:
            await client.aclose()

    # 3. never two owners at once: at every write, only the writer held the object
    assert world.writes
    assert world.violations() == []
    assert all(s.closed for s in scalers)
    # the survivors shut down gracefully: their Leases were released
    for key in keys:
        lease = world.lease(key)
        assert lease is not None
        holder = lease["spec"].get("holderIdentity")
        assert holder in (None, dead), holder


async def test_sharding_rejects_inconsistent_durations(kube_standin: KubeStandIn) -> None:
    client = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig("default")))
    try:
        with pytest.raises(ConfigError, match="retry_period < renew_deadline < lease_duration"):
            LeaseSharding(client, lease_duration=2, renew_deadline=2, retry_period=0.5)
    finally:
        await client.aclose()


async def test_registering_an_object_while_a_refresh_settles_it_keeps_it_owned(
    kube_standin: KubeStandIn,
) -> None:
    """``owns()`` settles a new object while the background refresh settles it too. Both
    read the same Lease record; unserialised, both write it, one gets a 409, and the
    lease just taken is dropped (the object then waits a whole polling interval)."""
    ns = unique_name("solo")
    client = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)))
    api = kube_standin.api
    try:
        sharding = LeaseSharding(
            client, identity="solo", lease_duration=20, renew_deadline=15, retry_period=10
        )
        async with sharding:
            for i in range(6):  # each round the unserialised code loses with p = 1/2
                key = f"{ns}/o{i}"
                path = f"/leases/{sharding.lease_name(key)}"
                gate = api.hang(path)
                owned: list[bool] = []

                async def register(key: str = key, owned: list[bool] = owned) -> None:
                    owned.append(await sharding.owns(key))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(register)

                    def read(path: str = path) -> bool:
                        return any(p.endswith(path) for _, p, _ in api.log)

                    await until(read, "the first read of the Lease", limit=5)
                    tg.start_soon(sharding.refresh)
                    await anyio.sleep(0.3)  # let the refresh reach the same Lease
                    gate.set()
                assert owned == [True]
                assert sharding.holds(key), f"round {i}: the lease was dropped"
                lease = api.get(LEASES, "leases", ns, sharding.lease_name(key))
                assert lease is not None
                assert lease["spec"]["holderIdentity"] == "solo"
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- gains wake


class Gate:
    """An ownership that grants objects only when told, and announces each grant."""

    def __init__(self) -> None:
        self.owned: set[str] = set()
        self.listeners: list[Callable[[str], None]] = []

    async def owns(self, key: str) -> bool:
        return key in self.owned

    async def release(self, key: str) -> None:
        self.owned.discard(key)

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def grant(self, key: str) -> None:
        self.owned.add(key)
        for callback in list(self.listeners):
            callback(key)


class Silent:
    """An ownership of the original two-method shape (no notifications)."""

    def __init__(self, owned: set[str]) -> None:
        self.owned = owned

    async def owns(self, key: str) -> bool:
        return key in self.owned

    async def release(self, key: str) -> None:
        self.owned.discard(key)


def idle_object(name: str, namespace: str, interval: float = 300.0) -> ScaledObject:
    """An object that wants 3 replicas and polls rarely (a wake is the only way to act)."""
    spec = ScaledObjectSpec(
        name=name,
        namespace=namespace,
        scale_target_ref=ScaleTargetRef(name=name),
        triggers=[TriggerSpec(type="gauge", name="load")],
        polling_interval=interval,
    )
    return ScaledObject(spec, target=MemoryTarget(), scalers=[StaticScaler(3, target=1)])


async def test_an_announced_gain_wakes_the_object_at_once() -> None:
    gate = Gate()
    obj = idle_object("gated", "ns")
    assert isinstance(gate, NotifyingOwnership)
    assert not isinstance(Silent(set()), NotifyingOwnership)
    async with Controller(ownership=gate, spread=False) as ctl:
        assert len(gate.listeners) == 1
        ctl.add(obj)
        await until(lambda: not ctl.status("ns/gated").owned, "the first tick", limit=5)
        assert await obj.target.get_replicas() == 0
        gate.grant("ns/gated")  # 300 s before the next tick: only the wake can act now
        await until(lambda: ctl.status("ns/gated").polls == 1, "the woken reconcile", limit=5)
        assert await obj.target.get_replicas() == 3
    assert gate.listeners == []  # unsubscribed on exit


async def test_an_ownership_without_notifications_still_works() -> None:
    owned = {"ns/plain"}
    obj = idle_object("plain", "ns")
    async with Controller(ownership=Silent(owned), spread=False) as ctl:
        ctl.add(obj)
        await until(lambda: ctl.status("ns/plain").polls == 1, "the first reconcile", limit=5)
        assert await obj.target.get_replicas() == 3
    assert owned == set()  # released on exit


async def test_a_taken_over_object_is_reconciled_when_its_lease_is_taken(
    kube_standin: KubeStandIn,
) -> None:
    """Objects poll every 300 s: the survivor acts on the dead replica's objects within
    seconds only because gaining their Leases wakes them."""
    identities = ("wake-a", "wake-b")
    while True:
        ns = unique_name("wake")
        keys = [f"{ns}/o{i}" for i in range(4)]
        if {rendezvous(identities, k) for k in keys} == set(identities):
            break
    clients = [
        KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)), timeout=5)
        for _ in identities
    ]
    shardings = [
        LeaseSharding(client, identity=ident, lease_duration=4, renew_deadline=3, retry_period=0.3)
        for client, ident in zip(clients, identities, strict=True)
    ]
    controllers: list[Controller] = []
    objects = [[idle_object(f"o{i}", ns) for i in range(4)] for _ in identities]
    scopes = [anyio.CancelScope() for _ in identities]

    async def run(j: int) -> None:
        with scopes[j]:
            async with shardings[j], Controller(ownership=shardings[j], spread=False) as ctl:
                controllers.append(ctl)
                for obj in objects[j]:
                    ctl.add(obj)
                await ctl.run_until_cancelled()

    def replicas(j: int) -> list[int]:
        targets = [o.target for o in objects[j]]
        return [t.requested for t in targets if isinstance(t, MemoryTarget)]

    owners = [identities.index(rendezvous(identities, k)) for k in keys]
    try:
        async with anyio.create_task_group() as tg:
            for j in range(len(identities)):
                tg.start_soon(run, j)
            want = [[3 if owners[i] == j else 0 for i in range(4)] for j in range(2)]
            await until(lambda: [replicas(0), replicas(1)] == want, "each owner to scale", limit=10)
            survivor = 1
            moved = [i for i in range(4) if owners[i] == 0]
            kept = [i for i in range(4) if owners[i] == survivor]
            shardings[0].abandon()
            scopes[0].cancel()
            await until(
                lambda: replicas(survivor) == [3] * 4,
                "the survivor to act on the objects it took over",
                limit=15,
            )
            ctl = next(c for c in controllers if c.ownership is shardings[survivor])
            # one reconcile each: at add for its own objects, at the gain for the moved
            # ones (registration and renewals wake nothing)
            assert [ctl.status(keys[i]).polls for i in kept] == [1] * len(kept)
            assert [ctl.status(keys[i]).polls for i in moved] == [1] * len(moved)
            tg.cancel_scope.cancel()
    finally:
        for client in clients:
            await client.aclose()


# --------------------------------------------------------------------------- concurrency


def lease_requests(standin: KubeStandIn, since: int, name: str) -> int:
    return sum(1 for _, path, _ in standin.api.log[since:] if path.endswith(f"/leases/{name}"))


async def test_a_round_settles_objects_concurrently_so_one_slow_lease_holds_none_back(
    kube_standin: KubeStandIn,
) -> None:
    ns = unique_name("conc")
    api = kube_standin.api
    client = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)))
    sharding = LeaseSharding(
        client, identity="conc", lease_duration=30, renew_deadline=20, retry_period=10
    )
    keys = [f"{ns}/o{i}" for i in range(5)]
    try:
        async with sharding:
            for key in keys:
                assert await sharding.owns(key)
            names = [sharding.lease_name(k) for k in keys]
            mark = len(api.log)
            gate = api.hang(f"/leases/{names[0]}")  # the first object settled in a round
            async with anyio.create_task_group() as tg:
                tg.start_soon(sharding.refresh)
                await until(
                    lambda: all(lease_requests(kube_standin, mark, n) >= 2 for n in names[1:]),
                    "the other objects' Leases renewed (read and written) past the slow one",
                    limit=10,
                )
                assert lease_requests(kube_standin, mark, names[0]) == 1  # still hanging
                gate.set()
            assert all(sharding.holds(k) for k in keys)
    finally:
        api.release_all()
        await client.aclose()


async def test_a_round_keeps_within_its_concurrency(kube_standin: KubeStandIn) -> None:
    ns = unique_name("bound")
    api = kube_standin.api
    client = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)))
    sharding = LeaseSharding(
        client,
        identity="bound",
        lease_duration=30,
        renew_deadline=20,
        retry_period=10,
        concurrency=2,
    )
    keys = [f"{ns}/o{i}" for i in range(5)]
    try:
        async with sharding:
            for key in keys:
                assert await sharding.owns(key)
            names = [sharding.lease_name(k) for k in keys]
            mark = len(api.log)
            gates = [api.hang(f"/leases/{n}") for n in names[:2]]
            async with anyio.create_task_group() as tg:
                tg.start_soon(sharding.refresh)
                await until(
                    lambda: all(lease_requests(kube_standin, mark, n) for n in names[:2]),
                    "both slow Leases in flight",
                    limit=10,
                )
                await anyio.sleep(0.3)  # room for a third request, if the bound leaked
                assert [lease_requests(kube_standin, mark, n) for n in names] == [1, 1, 0, 0, 0]
                for gate in gates:
                    gate.set()
            assert all(lease_requests(kube_standin, mark, n) >= 2 for n in names)
            assert all(sharding.holds(k) for k in keys)
        with pytest.raises(ConfigError, match="at least 1"):
            LeaseSharding(client, concurrency=0)
    finally:
        api.release_all()
        await client.aclose()
