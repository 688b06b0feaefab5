"""Share scaled objects between controller processes with Kubernetes Leases.

Every controller replica runs the same objects; a :class:`LeaseSharding` decides which
replica *acts* on each one:

* Each replica keeps a **member Lease** (``{prefix}-member-{id}``) renewed; the live
  members are those whose Lease record changed within ``lease_duration`` (measured on
  this replica's clock, as client-go does, so clock skew does not matter).
* Each object has an **object Lease** (``{prefix}-object-{namespace}-{name}-{hash}``). Its preferred
  owner is chosen among the live members by rendezvous hashing, so objects spread
  evenly and only about ``1/n`` of them move when a member joins or leaves.
* The preferred owner takes the object Lease (waiting for a previous holder's Lease to
  expire); a replica that holds a Lease it is no longer preferred for releases it.
* A replica acts on an object only while it holds the Lease *and* renewed it less than
  ``renew_deadline`` ago; a successor can take it only after ``lease_duration`` without
  renewal. ``renew_deadline < lease_duration`` is the margin that keeps two replicas
  from ever acting on one object at once.

When a replica dies, its member Lease goes stale, the others stop counting it, and its
objects' Leases expire and move to their new preferred owners within about
``lease_duration + retry_period``. The new owner's controller is told at once
(:meth:`LeaseSharding.subscribe`, which :class:`~eventscale.runtime.controller.Controller`
uses), so a moved object is reconciled when its Lease is taken, not at its next tick.

Each round settles the objects' Leases concurrently, at most ``concurrency`` Lease
requests at a time (registrations through :meth:`LeaseSharding.owns` share the same
bound), so a replica with thousands of objects still renews them all well within
``renew_deadline``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
from anyio.abc import TaskGroup

from eventscale.errors import ConfigError, TargetError

if TYPE_CHECKING:
    from eventscale.kube import KubeClient
    from eventscale.runtime.leader import LeaderElector

__all__ = ("LeaseSharding",)

logger = logging.getLogger("eventscale.sharding")

_SLUG = re.compile(r"[^a-z0-9-]+")


def _slug(text: str, limit: int = 40) -> str:
    """A DNS-1123-safe fragment of ``text`` with a short hash to keep it unique."""
    base = _SLUG.sub("-", text.lower()).strip("-")[:limit].strip("-")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{base}-{digest}" if base else digest


def _weight(member: str, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{member}\0{key}".encode()).digest()[:8], "big")


class LeaseSharding:
    """Ownership of scaled objects across controller replicas (``Controller(ownership=...)``).

    Use it as an async context manager around the controller: it renews its Leases in
    the background and releases them on exit.

    :param client: a :class:`~eventscale.kube.KubeClient`.
    :param identity: this replica's identity (unique per process).
    :param prefix: name prefix of every Lease this uses.
    :param lease_duration / renew_deadline / retry_period: as in client-go leader
        election (15 / 10 / 2 seconds by default).
    :param concurrency: most object Leases read or written at once (default 32).
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        identity: str | None = None,
        namespace: str | None = None,
        prefix: str = "eventscale",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        concurrency: int = 32,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        from eventscale.runtime.leader import LeaderElector, default_identity

        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ConfigError(
                "sharding needs 0 < retry_period < renew_deadline < lease_duration",
                path="lease_duration",
            )
        if concurrency < 1:
            raise ConfigError("must be at least 1", path="concurrency")
        self.client = client
        self.identity = identity or default_identity()
        self.namespace = namespace or client.namespace
        self.prefix = prefix
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.concurrency = concurrency
        self.clock = clock
        self.sleep = sleep
        self._elector_cls = LeaderElector
        self._member_prefix = f"{prefix}-member-"
        self.member = self._elector(self._member_prefix + _slug(self.identity))
        self._objects: dict[str, LeaderElector] = {}
        self._renewed: dict[str, float] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._seen: dict[str, tuple[str, float]] = {}  # lease name -> (resourceVersion, first seen)
        self._members: list[str] = [self.identity]
        self._tg: TaskGroup | None = None
        self._abandoned = False
        self._limiter: anyio.CapacityLimiter | None = None
        self._listeners: list[Callable[[str], None]] = []

    def _elector(self, name: str) -> LeaderElector:
        return self._elector_cls(
            self.client,
            name,
            namespace=self.namespace,
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
            clock=self.clock,
            sleep=self.sleep,
        )

    # ------------------------------------------------------------------ membership

    @property
    def members(self) -> list[str]:
        """The live members as of the last refresh (this replica included)."""
        return list(self._members)

    def preferred_owner(self, key: str) -> str:
        """The live member that should own ``key`` (rendezvous hashing)."""
        return max(self._members, key=lambda m: _weight(m, key))

    async def _refresh_members(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        listing = await self.client.request("GET", path)
        # Times count from after the read: one taken before it could predate a renewal
        # the listing shows, and make a Lease look expired too early.
        now = self.clock()
        live = {self.identity}
        electors = {e.name: e for e in self._objects.values()}
        for item in listing.get("items") or []:
            meta = item.get("metadata") or {}
            name = str(meta.get("name") or "")
            elector = electors.get(name)
            if elector is not None:
                # Every replica watches every object's Lease, not only those it wants:
                # when a holder dies, its successor's expiry clock has long been running.
                elector.observe(item)
                continue
            if not name.startswith(self._member_prefix):
                continue
            spec = item.get("spec") or {}
            holder = spec.get("holderIdentity")
            version = str(meta.get("resourceVersion") or "")
            seen = self._seen.get(name)
            if seen is None or seen[0] != version:
                self._seen[name] = (version, now)
                seen = self._seen[name]
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if holder and now - seen[1] < duration:
                live.add(str(holder))
        self._members = sorted(live)

    # ------------------------------------------------------------------ ownership

    def lease_name(self, key: str) -> str:
        """The name of the Lease that guards object ``key`` (``namespace/name``)."""
        return f"{self.prefix}-object-{_slug(key)}"

    def _object_elector(self, key: str) -> LeaderElector:
        elector = self._objects.get(key)
        if elector is None:
            elector = self._elector(self.lease_name(key))
            self._objects[key] = elector
        return elector

    def holds(self, key: str) -> bool:
        """Whether this replica may act on ``key`` right now (no I/O)."""
        if self._abandoned:
            return False
        renewed = self._renewed.get(key)
        return renewed is not None and self.clock() - renewed < self.renew_deadline

    async def owns(self, key: str) -> bool:
        """Register ``key`` (first call) and say whether this replica may act on it now."""
        if key not in self._objects:
            self._object_elector(key)
            # The caller acts on the answer now: no gain notification for this settle.
            await self._settle(key, notify=False)
        return self.holds(key)

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(key)`` each time this replica gains ``key`` in a background
        round (a Lease taken over, or renewed again after it had lapsed); returns a
        function that unsubscribes. The callback runs in the event loop and must not
        block; an exception it raises is logged and ignored."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return unsubscribe

    def _gained(self, key: str) -> None:
        logger.info("%s gained the lease of %s", self.identity, key)
        for callback in list(self._listeners):
            try:
                callback(key)
            except Exception:
                logger.exception("a gain callback for %s failed", key)

    async def release(self, key: str) -> None:
        """Stop managing ``key`` and give its Lease up."""
        elector = self._objects.pop(key, None)
        self._renewed.pop(key, None)
        if elector is not None and not self._abandoned:
            # after a settle in flight, which could otherwise take the Lease back
            async with self._lock(key):
                self._renewed.pop(key, None)
                try:
                    await elector.release()
                except TargetError as exc:
                    logger.warning("releasing the lease of %s failed: %s", key, exc)
            self._locks.pop(key, None)

    def _lock(self, key: str) -> anyio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    def _capacity(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        return self._limiter

    async def _settle(self, key: str, *, notify: bool = True) -> None:
        # The capacity is taken before the lock, never while holding it: a task that
        # holds a lock never waits for capacity, so the two cannot deadlock.
        # One settle per object at a time: owns() registering an object and the
        # background refresh would otherwise both write its Lease, and the 409 the
        # loser gets would drop a lease just taken.
        async with self._capacity(), self._lock(key):
            elector = self._objects.get(key)
            if elector is not None:
                await self._settle_locked(key, elector, notify=notify)

    async def _settle_locked(self, key: str, elector: LeaderElector, *, notify: bool) -> None:
        try:
            if self.preferred_owner(key) == self.identity:
                now = self.clock()
                held = self.holds(key)
                if await elector.try_acquire_or_renew():
                    self._renewed[key] = now
                    if notify and not held and self.holds(key):
                        self._gained(key)
                else:
                    self._renewed.pop(key, None)
            elif key in self._renewed or elector.is_leader:
                self._renewed.pop(key, None)
                await elector.release()
        except TargetError as exc:
            logger.warning("lease for %s: %s", key, exc)

    async def refresh(self) -> None:
        """One round: renew the member Lease, recount members, settle every object.

        The objects are settled concurrently, at most :attr:`concurrency` at a time.
        """
        try:
            await self.member.try_acquire_or_renew()
            await self._refresh_members()
        except TargetError as exc:
            logger.warning("sharding refresh failed: %s", exc)
        keys = iter(list(self._objects))

        async def worker() -> None:
            # A few workers share one iterator: no task per object and round.
            for key in keys:
                await self._settle(key)

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.concurrency, len(self._objects))):
                tg.start_soon(worker)

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await self.sleep(self.retry_period)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.refresh()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        result = await self._tg.__aexit__(exc_type, exc, tb)
        if not self._abandoned:
            with anyio.CancelScope(shield=True):
                for key in list(self._objects):
                    await self.release(key)
                with contextlib.suppress(TargetError):
                    await self.member.release()
        return result

    def abandon(self) -> None:
        """Stop acting at once and release nothing, as a crashed replica would (tests)."""
        self._abandoned = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def __repr__(self) -> str:
        owned = sorted(k for k in self._objects if self.holds(k))
        return f"<LeaseSharding {self.identity} owns={owned}>"
