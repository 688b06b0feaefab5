"""What a ScaledObject and a ScaledJob share: a spec polled through its scalers.

:class:`PollingBase` holds the common part of
:class:`~eventscale.runtime.scaled_object.ScaledObject` and
:class:`~eventscale.runtime.scaled_job.ScaledJob`: the spec, one scaler per trigger
(built from trigger contexts when not given), the per-call poll timeout, the event
bus, the clock, building from a manifest, polling every trigger once, and closing
the scalers and the target (``async with`` closes them: the objects share the one
closeable base of scalers and targets).
Each subclass adds its state, its decision and how it applies it.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from eventscale._resource import AsyncResource
from eventscale.engine import TriggerObservation
from eventscale.redaction import Secret
from eventscale.runtime._polling import (
    build_scalers,
    close_all,
    default_poll_timeout,
    poll_triggers,
)
from eventscale.runtime.observability import EventBus, TriggerResult
from eventscale.scalers import Scaler
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec

if TYPE_CHECKING:
    from eventscale.manifests.reader import Manifests

__all__ = ("PollingBase", "ReportBase")


class ReportBase:
    """What every report of a poll answers: ``key`` and ``ok``.

    A mixin for the attrs report classes, which define the fields it reads.
    """

    __slots__ = ()

    name: str
    namespace: str
    triggers: tuple[TriggerResult, ...]
    target_error: str | None

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def ok(self) -> bool:
        """``True`` when every trigger was read and the target answered."""
        return self.target_error is None and all(t.error is None for t in self.triggers)


SpecT = TypeVar("SpecT", ScaledObjectSpec, ScaledJobSpec)
TargetT = TypeVar("TargetT")


class PollingBase(AsyncResource, Generic[SpecT, TargetT]):
    """A spec bound to live scalers and a target; subclasses decide and apply.

    The object owns its scalers and its target: :meth:`aclose` closes them all, and
    ``async with obj:`` closes them on the way out.

    :param spec: the ScaledObject or ScaledJob.
    :param target: where decisions land.
    :param scalers: one scaler per trigger, in trigger order; built from the spec's
        trigger metadata through the registry when omitted (``contexts`` supplies the
        resolved authentication and environment for that).
    :param clock: wall-clock seconds (``time.time`` by default).
    :param poll_timeout: seconds a single scaler call may take (default
        ``min(10, pollingInterval)``).
    :param events: the event bus (the controller sets its own when this is ``None``).
    """

    #: How ``repr()`` names the kind of object.
    _kind: ClassVar[str] = "object"

    __slots__ = (
        "_closed",
        "clock",
        "events",
        "latencies",
        "poll_timeout",
        "scalers",
        "spec",
        "target",
    )

    def __init__(
        self,
        spec: SpecT,
        *,
        target: TargetT,
        scalers: Sequence[Scaler] | None = None,
        contexts: Sequence[Any] | None = None,
        clock: Callable[[], float] = time.time,
        poll_timeout: float | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.spec: SpecT = spec
        self.target = target
        self.clock = clock
        self.events = events
        self.poll_timeout = default_poll_timeout(spec.polling_interval, poll_timeout)
        self.scalers: tuple[Scaler, ...] = build_scalers(spec, scalers, contexts, target)
        # Each trigger's last poll latency, in seconds (one array of doubles rather
        # than a float object per trigger). Events carry it as ``TriggerResult.latency``.
        self.latencies = array("d", bytes(8 * len(self.scalers)))
        self._closed = False

    # ------------------------------------------------------------------ construction

    @classmethod
    @abstractmethod
    def _spec_from(cls, manifests: Manifests, name: str | None) -> SpecT:
        """The spec named ``name`` (or the only one) of this kind in ``manifests``."""

    @classmethod
    def from_manifest(
        cls,
        source: str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        target: TargetT,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Build from KEDA YAML (text, a dict, or a list of documents).

        The stream may hold TriggerAuthentications and Secrets that the triggers
        reference; ``secrets`` adds Secrets by name and ``env`` is the environment
        ``...FromEnv`` parameters read. ``name`` picks one object when the stream
        holds several. Other keyword arguments go to the constructor.

        :raises ConfigError: the manifest or a trigger's metadata is invalid.
        """
        from eventscale.manifests.reader import load_manifests

        manifests = load_manifests(source)
        spec = cls._spec_from(manifests, name)
        contexts = manifests.trigger_contexts(spec, env=env, secrets=secrets)
        return cls(spec, target=target, contexts=contexts, **kwargs)

    @property
    def key(self) -> str:
        """``namespace/name``: how the controller and events name this object."""
        return f"{self.spec.namespace}/{self.spec.name}"

    def __repr__(self) -> str:
        return f"<{self._kind} {self.key} triggers={len(self.scalers)} target={self.target!r}>"

    # ------------------------------------------------------------------ polling

    async def poll(self) -> tuple[TriggerObservation, ...]:
        """Poll every trigger once, concurrently; failures become error observations."""
        if not self.scalers:
            return ()
        return await poll_triggers(
            self.scalers, self.spec.triggers, self.poll_timeout, self.latencies
        )

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close every scaler and the target (errors while closing are ignored)."""
        if self._closed:
            return
        self._closed = True
        await close_all([*self.scalers, self.target], self.poll_timeout)
