"""Leader election through a ``coordination.k8s.io/v1`` Lease.

Several controller replicas can run; the one holding the Lease acts. The rules are
those of client-go's ``leaderelection`` package, which every Kubernetes controller
(KEDA's operator included) uses:

* A contender reads the Lease. If it does not exist, it creates it and leads.
* A Lease held by someone else is *expired* when its record (``resourceVersion``) has
  not changed for ``leaseDurationSeconds`` **as measured on the contender's own clock**
  since the contender first saw that record. ``renewTime`` is written for humans and
  tools; it is not compared with the local clock, so clock skew between machines does
  not matter.
* Taking or renewing the Lease is an update carrying the ``resourceVersion`` that was
  read; when two contenders race, the API server's 409 conflict decides, and the loser
  simply is not the leader.
* The leader renews every ``retry_period``; if it cannot renew for ``renew_deadline``
  it stops leading. Releasing clears ``holderIdentity`` so a successor need not wait.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import attrs

from eventscale.errors import (
    ConfigError,
    LeadershipLost,
    TargetConflict,
    TargetError,
    TargetNotFound,
)
from eventscale.targets.kubernetes import KubeClient

__all__ = (
    "LeaderElector",
    "LeadershipLost",
    "LeaseRecord",
    "default_identity",
)


def _micro_time(seconds: float) -> str:
    """A Kubernetes ``MicroTime``: ``2006-01-02T15:04:05.000000Z``."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@attrs.frozen(kw_only=True)
class LeaseRecord:
    """The parts of a Lease that leader election reads."""

    holder: str | None
    lease_duration: float
    renew_time: str | None
    acquire_time: str | None
    transitions: int
    resource_version: str

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> LeaseRecord:
        """Parse a Lease object as the API returns it."""
        spec = obj.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or None,
            lease_duration=float(spec.get("leaseDurationSeconds") or 0),
            renew_time=spec.get("renewTime"),
            acquire_time=spec.get("acquireTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        )


def default_identity() -> str:
    """``hostname_pid_random``: unique per process, readable in ``kubectl get lease``."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


class LeaderElector:
    """Contends for one Lease; at most one elector per Lease leads at a time.

    :param client: the :class:`~eventscale.targets.kubernetes.KubeClient` to use.
    :param name: the Lease's name (one Lease per thing that needs a single actor:
        a whole controller, or one ScaledObject).
    :param namespace: default: the client's namespace.
    :param identity: this contender's ``holderIdentity``; default
        :func:`default_identity`.
    :param lease_duration: seconds a lease stays valid without renewal
        (``leaseDurationSeconds``); 15 as in client-go.
    :param renew_deadline: seconds the leader keeps trying to renew before it gives up
        leading; must be less than ``lease_duration``. Default 10.
    :param retry_period: seconds between attempts to acquire or renew. Default 2.
    :param clock: seconds now (wall or monotonic: it is only compared with itself and
        formatted into ``renewTime``); default :func:`time.time`.
    :param sleep: the async sleep to wait with; default :func:`anyio.sleep`.
        ``eventscale.testing.ManualClock`` provides both.
    """

    def __init__(
        self,
        client: KubeClient,
        name: str,
        *,
        namespace: str | None = None,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not name:
            raise ConfigError("the lease name must not be empty", path="name")
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ConfigError(
                "leader election needs 0 < retry_period < renew_deadline < lease_duration, "
                f"got {retry_period} / {renew_deadline} / {lease_duration}",
                path="lease_duration",
            )
        self.client = client
        self.name = name
        self.namespace = namespace or client.namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.sleep = sleep
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None

    @property
    def path(self) -> str:
        """The Lease's API path."""
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    @property
    def is_leader(self) -> bool:
        """Whether this elector holds the Lease, as of its last successful renewal.

        It turns false by itself once ``lease_duration`` has passed without a renewal.
        """
        return (
            self._renewed_at is not None and self.clock() - self._renewed_at < self.lease_duration
        )

    @property
    def observed(self) -> LeaseRecord | None:
        """The Lease record as last read or written."""
        return self._observed

    def _lease_spec(self, now: float, previous: LeaseRecord | None) -> dict[str, Any]:
        stamp = _micro_time(now)
        keeps = previous is not None and previous.holder == self.identity
        transitions = previous.transitions if previous else 0
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": (previous.acquire_time if keeps and previous else None) or stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions if keeps or previous is None else transitions + 1,
        }

    def _observe(self, record: LeaseRecord, now: float) -> None:
        if self._observed is None or record.resource_version != self._observed.resource_version:
            self._observed = record
            self._observed_at = now

    def observe(self, lease: Mapping[str, Any]) -> None:
        """Take note of the Lease as read elsewhere (a LIST), as if this elector read it.

        Expiry counts from the moment a contender first sees a record, so a contender
        that keeps observing a Lease it does not try for can take it as soon as it
        expires. Call it right after the read returned.
        """
        self._observe(LeaseRecord.from_object(lease), self.clock())

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or renew the Lease; ``True`` if this elector now leads.

        A conflict (another contender won the race) is ``False``, not an error. Other
        API failures raise :class:`~eventscale.errors.TargetError`.
        """
        now = self.clock()
        try:
            obj = await self.client.request("GET", self.path)
        except TargetNotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._lease_spec(now, None),
            }
            try:
                created = await self.client.request("POST", self.path.rpartition("/")[0], body=body)
            except TargetConflict:  # AlreadyExists: someone created it first
                return False
            self._observe(LeaseRecord.from_object(created), now)
            self._renewed_at = now
            return True
        record = LeaseRecord.from_object(obj)
        # Seen now, after the read returned (as client-go does): a time taken before the
        # request could predate the holder's renewal that the read returns.
        seen = self.clock()
        self._observe(record, seen)
        held_by_other = bool(record.holder) and record.holder != self.identity
        if held_by_other and self._observed_at + record.lease_duration > seen:
            self._renewed_at = None
            return False  # held by someone else and not expired
        updated = dict(obj)
        updated["spec"] = {**(obj.get("spec") or {}), **self._lease_spec(now, record)}
        # The PUT carries the resourceVersion read above (it is in obj's metadata).
        try:
            written = await self.client.request("PUT", self.path, body=updated)
        except TargetConflict:
            return False
        self._observe(LeaseRecord.from_object(written), now)
        self._renewed_at = now
        return True

    async def acquire(self) -> None:
        """Try every ``retry_period`` until this elector leads.

        Transient API errors are retried; they do not end the wait.
        """
        while True:
            with contextlib.suppress(TargetError):
                if await self.try_acquire_or_renew():
                    return
            await self.sleep(self.retry_period)

    async def release(self) -> None:
        """Give the Lease up (if held) so another contender can take it at once."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            obj = await self.client.request("GET", self.path)
        except TargetNotFound:
            return
        spec = obj.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        updated = dict(obj)
        updated["spec"] = {
            **spec,
            "holderIdentity": None,
            "leaseDurationSeconds": 1,
            "renewTime": _micro_time(self.clock()),
        }
        with contextlib.suppress(TargetConflict):
            written = await self.client.request("PUT", self.path, body=updated)
            self._observe(LeaseRecord.from_object(written), self.clock())

    async def keep_renewing(self) -> None:
        """Renew every ``retry_period``; return when leadership is lost.

        Leadership is lost when another holder took the Lease, or when no renewal
        succeeded for ``renew_deadline`` seconds.
        """
        last_ok = self.clock()
        while True:
            await self.sleep(self.retry_period)
            try:
                ok = await self.try_acquire_or_renew()
            except TargetError:
                ok = False
            now = self.clock()
            if ok:
                last_ok = now
                continue
            taken = self._observed is not None and self._observed.holder not in (
                None,
                self.identity,
            )
            if taken or now - last_ok >= self.renew_deadline:
                self._renewed_at = None
                return

    @contextlib.asynccontextmanager
    async def leadership(self) -> AsyncIterator[None]:
        """Wait to lead, run the body while leading, release on exit.

        If leadership is lost while the body runs, the body is cancelled and
        :class:`LeadershipLost` is raised.
        """
        await self.acquire()
        lost = False
        try:
            async with anyio.create_task_group() as tg:

                async def keeper() -> None:
                    nonlocal lost
                    await self.keep_renewing()
                    lost = True
                    tg.cancel_scope.cancel()

                tg.start_soon(keeper)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            if not lost:
                with anyio.CancelScope(shield=True), contextlib.suppress(TargetError):
                    await self.release()
        if lost:
            raise LeadershipLost(
                f"lost the lease {self.namespace}/{self.name}", target=self.identity
            )

    def __repr__(self) -> str:
        return f"LeaderElector({self.namespace}/{self.name}, identity={self.identity!r})"
