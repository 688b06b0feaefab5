"""Redis streams: ``redis-streams``, ``redis-cluster-streams``, ``redis-sentinel-streams``.

Three modes, chosen as KEDA chooses them (spec section 5.2):

* ``consumerGroup`` and a non-zero ``lagCount``: **lag** (``XINFO GROUPS``: entries the
  group has not been delivered yet; Redis 7 or newer);
* ``consumerGroup`` without ``lagCount``: **pending** (``XPENDING``: delivered to a
  consumer but not acknowledged);
* no ``consumerGroup``: **length** (``XLEN``).

The trigger is active when the count is strictly greater than ``activationLagCount``
in every mode. Unlike KEDA, a failing ``XINFO GROUPS`` is an error (KEDA silently
falls back to ``XLEN``) and a lag Redis cannot determine is an error (KEDA reports 0).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import attrs

from eventscale.errors import ConfigError, ScalerError
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
)
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import Params, TriggerContext
from eventscale.scalers.redis._client import (
    RedisLease,
    ScalerClient,
    once_per_client,
    redis_call,
    redis_read,
)
from eventscale.scalers.redis._connection import (
    RedisConnection,
    import_exceptions,
    import_redis,
    mode_for_trigger_type,
    parse_connection,
)

__all__ = (
    "ERR_MISSING_STREAM",
    "RedisStreamsConfig",
    "RedisStreamsScaler",
    "StreamMode",
)

ERR_MISSING_STREAM = "missing redis stream name"


class StreamMode(enum.Enum):
    """What a Redis streams trigger counts."""

    PENDING = "pending"
    """``XPENDING``: entries delivered to the group's consumers and not acknowledged."""
    LENGTH = "length"
    """``XLEN``: entries in the stream."""
    LAG = "lag"
    """``XINFO GROUPS`` ``lag``: entries not yet delivered to the group (Redis 7+)."""


def _non_empty_stream(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ConfigError(ERR_MISSING_STREAM, path=attribute.name)


@attrs.frozen(kw_only=True)
class RedisStreamsConfig:
    """Parsed settings of one Redis streams trigger.

    The mode follows from the fields (KEDA's rule): a ``consumer_group`` with a non-zero
    ``lag_count`` is lag mode, a ``consumer_group`` alone is pending mode, no group is
    length mode. The targets the mode does not use are forced to 0, as KEDA does, so a
    config built in Python equals the one parsed from the same metadata.
    """

    stream: str = attrs.field(validator=_non_empty_stream)
    connection: RedisConnection
    consumer_group: str | None = None
    pending_entries_count: int = 5
    stream_length: int = 5
    lag_count: int = 0
    activation_lag_count: int = 0
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    def __attrs_post_init__(self) -> None:
        if self.consumer_group:
            if self.lag_count != 0:
                object.__setattr__(self, "pending_entries_count", 0)
            object.__setattr__(self, "stream_length", 0)
        else:
            object.__setattr__(self, "consumer_group", None)
            object.__setattr__(self, "pending_entries_count", 0)

    @property
    def mode(self) -> StreamMode:
        """The mode selected by KEDA's rule."""
        if self.consumer_group:
            return StreamMode.LAG if self.lag_count != 0 else StreamMode.PENDING
        return StreamMode.LENGTH

    @property
    def target(self) -> int:
        """The target of the selected mode."""
        return {
            StreamMode.LAG: self.lag_count,
            StreamMode.PENDING: self.pending_entries_count,
            StreamMode.LENGTH: self.stream_length,
        }[self.mode]

    @property
    def metric_name(self) -> str:
        """``s{index}-redis-streams-{stream}``, normalized as KEDA does."""
        return metric_name(self.index, normalize_metric_name(f"redis-streams-{self.stream}"))

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> RedisStreamsConfig:
        """Parse KEDA trigger metadata (spec section 5.1).

        :raises ConfigError: listing every invalid or missing parameter.
        """
        p = Params(ctx)
        stream = p.string("stream", required=True)
        group = p.string("consumerGroup")
        pending = p.integer("pendingEntriesCount", default=5)
        length = p.integer("streamLength", default=5)
        lag = p.integer("lagCount", default=0)
        activation = p.integer("activationLagCount", default=0)
        # KEDA does not check them; a negative target would fail every poll
        for name, count in (
            ("pendingEntriesCount", pending),
            ("streamLength", length),
            ("lagCount", lag),
        ):
            if (count or 0) < 0:  # (None: already an error)
                p.fail(f"{name} must be >= 0", name)
        connection = parse_connection(p, mode_for_trigger_type(ctx.trigger_type))
        if connection is not None and stream is None:
            # KEDA's Validate reports it too, after the address and TLS checks
            p.fail(ERR_MISSING_STREAM, "stream")
        p.finish()
        assert connection is not None  # finish() raised otherwise
        assert stream is not None
        return cls(
            stream=stream,
            connection=connection,
            consumer_group=group,
            pending_entries_count=pending,
            stream_length=length,
            lag_count=lag,
            activation_lag_count=activation,
            index=ctx.index,
            metric_type=ctx.metric_type,
        )


class RedisStreamsScaler(ScalerBase):
    """Scale on a Redis stream: pending entries, length or consumer-group lag.

    From KEDA metadata with :meth:`from_metadata` / :meth:`from_context`, or in Python
    from a :class:`RedisStreamsConfig`::

        RedisStreamsScaler(
            RedisStreamsConfig(
                stream="events",
                connection=RedisConnection(addresses="127.0.0.1:6379"),
                consumer_group="workers",
                lag_count=10,
            )
        )

    :meth:`wait_for_activity` falls back to a check every ``push_poll_interval``
    seconds where keyspace notifications are unavailable.
    """

    trigger_type = "redis-streams"

    def __init__(
        self,
        config: RedisStreamsConfig,
        *,
        trigger_name: str | None = None,
        push_poll_interval: float = 1.0,
    ) -> None:
        import_redis()  # a missing extra is a configuration error, raised now
        self.config = config
        self._push_poll_interval = push_poll_interval
        self._identity = trigger_name or f"redis-streams[{config.index}]"
        self._client = ScalerClient(config.connection, self._identity)
        self._version_checked = False

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> RedisStreamsScaler:
        """Build the scaler from a trigger context. :raises ConfigError: bad metadata."""
        return cls(RedisStreamsConfig.from_context(ctx), trigger_name=ctx.identity)

    # -- Scaler protocol ------------------------------------------------------------------

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric; its target is the selected mode's target."""
        cfg = self.config
        return [
            MetricSpec(
                name=cfg.metric_name,
                target=cfg.target,
                metric_type=cfg.metric_type,
                activation_target=cfg.activation_lag_count,
            )
        ]

    async def get_metrics(self) -> ScalerReport:
        """Read the count of the selected mode. :raises ScalerError: it cannot be read."""
        try:
            count = await self._count(self._acquire())
        except ScalerError as exc:
            raise exc.with_trigger(self._identity) from exc.__cause__
        return ScalerReport.single(
            self.config.metric_name, count, is_active=count > self.config.activation_lag_count
        )

    async def wait_for_activity(self) -> None:
        """Return once the trigger is active (at once if it already is).

        Woken by keyspace notifications on the stream key (``CONFIG SET
        notify-keyspace-events`` adds ``Kt`` when missing); where those cannot be used
        it checks every ``push_poll_interval`` seconds. Pending mode only becomes active
        when a consumer reads, so at zero replicas it waits for that.
        """
        await self._client.wait_until_active(
            self.config.stream, "t", self.get_metrics, poll_interval=self._push_poll_interval
        )

    async def aclose(self) -> None:
        """Give back the shared client; the last user closes it. Safe to call twice."""
        await self._client.aclose()

    # -- internals --------------------------------------------------------------------------

    def _acquire(self) -> RedisLease:
        return self._client.acquire()

    async def _count(self, lease: RedisLease) -> int:
        cfg = self.config
        if cfg.mode is StreamMode.LENGTH:
            return int(await redis_read(lease, "XLEN", "xlen", cfg.stream))
        group = cfg.consumer_group or ""
        if cfg.mode is StreamMode.PENDING:
            summary = await redis_read(lease, "XPENDING", "xpending", cfg.stream, group)
            return int(summary["pending"])
        await self._check_version(lease)
        return await self._lag(lease, group)

    async def _check_version(self, lease: RedisLease) -> None:
        if self._version_checked:
            return
        # one INFO per client, shared by every stream scaler on it (a cluster's INFO
        # takes a connection on every node: a thousand at once would exhaust the pools)
        info = await once_per_client(
            lease,
            "INFO server",
            lambda: redis_call(lease.conn, "INFO server", lambda: lease.client.info("server")),
        )
        versions = _collect_versions(info)
        if not versions:
            raise ScalerError("could not find Redis version number", transient=False)
        for version in versions:
            major_text = version.split(".")[0]
            if not major_text.isdigit():
                raise ScalerError(
                    f"redis version {version!r} could not be converted to number", transient=False
                )
            if int(major_text) < 7:
                raise ScalerError(
                    f"redis version 7+ required for lag (server runs {version})", transient=False
                )
        self._version_checked = True

    async def _lag(self, lease: RedisLease, group: str) -> int:
        cfg = self.config
        exceptions = import_exceptions()
        try:
            groups = await redis_read(lease, "XINFO GROUPS", "xinfo_groups", cfg.stream)
        except ScalerError as exc:
            cause = exc.__cause__
            if isinstance(cause, exceptions.ResponseError) and str(cause).endswith("no such key"):
                return 0  # the stream does not exist yet: nothing to do
            raise
        for entry in groups:
            name = _text(entry.get("name"))
            if name != group:
                continue
            lag = entry.get("lag")
            if lag is None:
                raise ScalerError(
                    f"Redis cannot determine the lag of group {group!r} on stream "
                    f"{cfg.stream!r} (entries were deleted or trimmed past the group's "
                    "position); eventscale reports this as an error instead of 0",
                    transient=True,
                )
            return int(lag)
        # The group does not exist yet (no consumer has started): every entry is lag.
        return int(await redis_read(lease, "XLEN", "xlen", cfg.stream))


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if value is None else str(value)


def _collect_versions(info: Any) -> list[str]:
    """``redis_version`` of a standalone INFO reply, or of every node of a cluster's."""
    if not isinstance(info, dict):
        return []
    if "redis_version" in info:
        return [str(info["redis_version"])]
    out: list[str] = []
    for value in info.values():
        if isinstance(value, dict) and "redis_version" in value:
            out.append(str(value["redis_version"]))
    return out
