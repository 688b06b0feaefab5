"""Call a KEDA external scaler: trigger types ``external`` and ``external-push``.

The scaler talks to any server that implements KEDA's ``externalscaler.ExternalScaler``
gRPC service, whatever language it is written in, exactly as KEDA does:

* the metric specs come from ``GetMetricSpec``; each becomes ``s{index}-{metricName}``
  with target ``targetSizeFloat`` (or the deprecated ``targetSize`` when that is 0);
* each poll calls ``GetMetrics`` once per metric (with the name *without* the
  ``s{index}-`` prefix), then ``IsActive``; a value is ``metricValueFloat``, or the
  deprecated ``metricValue`` when that is 0;
* ``external-push`` also watches ``StreamIsActive``: :meth:`ExternalPushScaler.wait_for_activity`
  returns when the server sends ``result: true``.

Any RPC error is a :class:`~eventscale.errors.ScalerError` (never a value of 0). gRPC
channels reconnect by themselves; after an error the scaler also fetches the metric
specs again, so a restarted server with new specs is picked up.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Self

import anyio
import attrs

import eventscale.external._proto as _proto
from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    MetricValue,
    ScalerReport,
    metric_name,
    validate_metric_value,
)
from eventscale.redaction import Secret, redact_text
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import AUTH, Params, TriggerContext

__all__ = (
    "ExternalPushScaler",
    "ExternalScaler",
    "ExternalScalerConfig",
    "scaler_metadata_for",
)

_proto.require()  # without the extra, importing this module names it

# gRPC status codes after which retrying later cannot help without a change.
_PERMANENT_CODES: Final = frozenset(
    {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "FAILED_PRECONDITION",
        "UNIMPLEMENTED",
        "OUT_OF_RANGE",
    }
)

# Reconnect quickly when a server comes back (gRPC's own default backs off to 120 s).
_CHANNEL_OPTIONS: Final = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.keepalive_time_ms", 30000),
)


def _hidden(mapping: Mapping[str, str]) -> str:
    return f"<{len(mapping)} keys>"


def _pem(value: Secret | None) -> bytes | None:
    return value.reveal().encode() if value is not None else None


@attrs.frozen(kw_only=True)
class ExternalScalerConfig:
    """Parsed settings of one ``external`` / ``external-push`` trigger.

    ``address``: the server (``host:port``, or any gRPC target such as ``dns:///svc:6000``).
    TLS is used when ``enable_tls`` is set or a CA or client certificate is given
    (``ca_cert``, ``client_cert`` and ``client_key`` hold PEM text, as KEDA's auth
    parameters do). ``scaler_metadata`` is what the server receives: the whole trigger
    metadata with each ``...FromEnv`` value resolved. ``name``/``namespace`` fill the
    ``ScaledObjectRef``. ``timeout`` bounds each RPC, in seconds.
    """

    address: str
    enable_tls: bool = False
    ca_cert: Secret | None = None
    client_cert: Secret | None = None
    client_key: Secret | None = None
    scaler_metadata: Mapping[str, str] = attrs.field(factory=dict, repr=_hidden)
    name: str = ""
    namespace: str = ""
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE
    timeout: float = 10.0

    def __attrs_post_init__(self) -> None:
        if not self.address.strip():
            raise ConfigError("the scaler address is empty", path="scalerAddress")
        if (self.client_cert is None) != (self.client_key is None):
            raise ConfigError(
                "tlsClientCert and tlsClientKey must be given together", path="tlsClientCert"
            )

    @property
    def uses_tls(self) -> bool:
        """Whether the channel is a TLS channel (KEDA's rule)."""
        return self.enable_tls or self.ca_cert is not None or self.client_cert is not None

    @property
    def pool_key(self) -> tuple[object, ...]:
        """Scalers with equal keys share one gRPC channel (per event loop)."""
        return (self.address, self.uses_tls, self.ca_cert, self.client_cert, self.client_key)

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> ExternalScalerConfig:
        """Parse KEDA metadata: ``scalerAddress`` (required), ``enableTLS``, ``unsafeSsl``;
        auth parameters ``caCert``, ``tlsClientCert``, ``tlsClientKey``.

        :raises ConfigError: every missing or invalid parameter, with its field path.
        """
        p = Params(ctx)
        address = p.string("scalerAddress", required=True)
        enable_tls = p.boolean("enableTLS", default=False)
        unsafe = p.boolean("unsafeSsl", default=False)
        ca = p.secret("caCert", order=(AUTH,))
        cert = p.secret("tlsClientCert", order=(AUTH,))
        key = p.secret("tlsClientKey", order=(AUTH,))
        if unsafe:
            p.fail(
                "unsafeSsl is not supported: gRPC for Python cannot skip certificate "
                "verification; give the server's CA certificate as the caCert auth parameter",
                "unsafeSsl",
            )
        if (cert is None) != (key is None):
            p.fail("tlsClientCert and tlsClientKey must be given together", "tlsClientCert", AUTH)
        p.finish()
        assert address is not None
        return cls(
            address=address,
            enable_tls=enable_tls,
            ca_cert=ca,
            client_cert=cert,
            client_key=key,
            scaler_metadata=scaler_metadata_for(ctx),
            index=ctx.index,
            metric_type=ctx.metric_type,
            name=ctx.object_name,
            namespace=ctx.object_namespace,
        )


def scaler_metadata_for(ctx: TriggerContext) -> dict[str, str]:
    """The ``scalerMetadata`` KEDA sends for a trigger: all of its metadata, where each
    ``...FromEnv`` key keeps its name but carries the resolved value (and is dropped when
    the variable is unset or empty)."""
    out: dict[str, str] = {}
    for key, value in ctx.metadata.items():
        if value is None:
            continue
        text = value.reveal() if isinstance(value, Secret) else _text(value)
        if key.endswith("FromEnv"):
            resolved = ctx.env.get(text.strip())
            if resolved:
                out[key] = resolved
        else:
            out[key] = text
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------------ channels


class _PooledChannel:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.refs = 0


_POOL: dict[tuple[int, tuple[object, ...]], _PooledChannel] = {}


def _credentials(cfg: ExternalScalerConfig) -> Any:
    grpc = _proto.grpc()
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(cfg.ca_cert),
        private_key=_pem(cfg.client_key),
        certificate_chain=_pem(cfg.client_cert),
    )


def _acquire_channel(cfg: ExternalScalerConfig) -> tuple[tuple[int, tuple[object, ...]], Any]:
    key = (id(asyncio.get_running_loop()), cfg.pool_key)
    pooled = _POOL.get(key)
    if pooled is None:
        aio = _proto.grpc_aio()
        if cfg.uses_tls:
            channel = aio.secure_channel(cfg.address, _credentials(cfg), options=_CHANNEL_OPTIONS)
        else:
            channel = aio.insecure_channel(cfg.address, options=_CHANNEL_OPTIONS)
        pooled = _POOL[key] = _PooledChannel(channel)
    pooled.refs += 1
    return key, pooled.channel


async def _release_channel(key: tuple[int, tuple[object, ...]]) -> None:
    pooled = _POOL.get(key)
    if pooled is None:
        return
    pooled.refs -= 1
    if pooled.refs <= 0:
        del _POOL[key]
        await pooled.channel.close()


# ------------------------------------------------------------------------ scaler


def _rpc_error(exc: Any, what: str, address: str) -> ScalerError:
    code = exc.code()
    code_name = getattr(code, "name", str(code))
    details = redact_text(str(exc.details() or ""))
    message = f"{what} on external scaler {address} failed: {code_name}: {details}".rstrip(": ")
    if code_name == "DEADLINE_EXCEEDED":
        return ScalerTimeout(message, transient=True)
    return ScalerError(message, transient=code_name not in _PERMANENT_CODES)


class ExternalScaler(ScalerBase):
    """A trigger read from a KEDA external scaler over gRPC (trigger type ``external``).

    Build it from a trigger with :meth:`from_context`, or in Python::

        ExternalScaler(ExternalScalerConfig(address="scaler:6000", scaler_metadata={...}))

    :meth:`metric_specs` does no I/O: it returns the specs fetched by the last poll, so
    before the first poll it is empty (the engine then has activity but no target for
    this trigger on that one tick).
    """

    trigger_type = "external"

    def __init__(self, config: ExternalScalerConfig, *, trigger_name: str | None = None) -> None:
        self.config = config
        self._identity = trigger_name or f"external[{config.index}]"
        self._specs: tuple[MetricSpec, ...] | None = None
        self._remote_names: dict[str, str] = {}
        self._channel_key: tuple[int, tuple[object, ...]] | None = None
        self._stub: Any = None
        self._closed = False
        self._pb: Any = _proto.messages()  # a missing extra is a ConfigError, raised now

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> Self:
        """Build the scaler from a trigger context. :raises ConfigError: bad metadata."""
        return cls(ExternalScalerConfig.from_context(ctx), trigger_name=ctx.identity)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._identity} at {self.config.address}>"

    # -- Scaler protocol ------------------------------------------------------------

    def metric_specs(self) -> Sequence[MetricSpec]:
        """The specs from the server's last ``GetMetricSpec`` answer (empty before it)."""
        return self._specs or ()

    async def get_metrics(self) -> ScalerReport:
        """``GetMetrics`` for each metric, then ``IsActive``.

        :raises ScalerError: the server cannot be reached or answers with an error.
        """
        try:
            specs = await self._ensure_specs()
            values = [
                MetricValue(name=spec.name, value=await self._metric_value(spec.name))
                for spec in specs
            ]
            answer = await self._call("IsActive", self._stub.IsActive(self._ref(), **self._kw()))
        except ScalerError as exc:
            self._specs = None  # fetch them again once the server answers
            raise exc.with_trigger(self._identity) from exc.__cause__
        report_values: Any = tuple(values)
        return ScalerReport(values=report_values, is_active=bool(answer.result))

    async def aclose(self) -> None:
        """Give the pooled channel back; the last user closes it. Safe to call twice."""
        self._closed = True
        key, self._channel_key = self._channel_key, None
        self._stub = None
        if key is not None:
            await _release_channel(key)

    # -- internals ------------------------------------------------------------------

    def _kw(self) -> dict[str, Any]:
        return {"timeout": self.config.timeout}

    def _ref(self) -> Any:
        cfg = self.config
        return self._pb.ScaledObjectRef(
            name=cfg.name, namespace=cfg.namespace, scalerMetadata=dict(cfg.scaler_metadata)
        )

    def _connect(self) -> Any:
        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self._identity, transient=False)
        if self._stub is None:
            self._channel_key, channel = _acquire_channel(self.config)
            self._stub = _proto.services().ExternalScalerStub(channel)
        return self._stub

    async def _call(self, what: str, call: Any) -> Any:
        aio = _proto.grpc_aio()
        try:
            return await call
        except aio.AioRpcError as exc:
            raise _rpc_error(exc, what, self.config.address) from exc

    async def _ensure_specs(self) -> tuple[MetricSpec, ...]:
        stub = self._connect()
        if self._specs is not None:
            return self._specs
        answer = await self._call("GetMetricSpec", stub.GetMetricSpec(self._ref(), **self._kw()))
        specs: list[MetricSpec] = []
        remote: dict[str, str] = {}
        for item in answer.metricSpecs:
            target = float(item.targetSizeFloat) if item.targetSizeFloat > 0 else item.targetSize
            if not math.isfinite(target) or target < 0:
                raise ScalerError(
                    f"external scaler {self.config.address} gave metric "
                    f"{item.metricName!r} the invalid target {target!r}",
                    transient=False,
                )
            name = metric_name(self.config.index, item.metricName)
            remote[name] = item.metricName
            specs.append(MetricSpec(name=name, target=target, metric_type=self.config.metric_type))
        if not specs:
            raise ScalerError(
                f"external scaler {self.config.address} returned no metric specs",
                transient=False,
            )
        self._remote_names = remote
        self._specs = tuple(specs)
        return self._specs

    async def _metric_value(self, name: str) -> float:
        request = self._pb.GetMetricsRequest(
            scaledObjectRef=self._ref(), metricName=self._remote_names[name]
        )
        answer = await self._call("GetMetrics", self._stub.GetMetrics(request, **self._kw()))
        if not answer.metricValues:
            raise ScalerError(
                f"external scaler {self.config.address} returned no value for "
                f"{self._remote_names[name]!r}",
                transient=True,
            )
        # KEDA hands every returned value to the HPA under the requested name, and the HPA
        # adds them up: the same sum here.
        # Each value is checked here, where it arrives (a NaN must not become the
        # integer field's 0): docs/errors.md, "Limits".
        total = 0.0
        for item in answer.metricValues:
            given = float(item.metricValueFloat)  # KEDA: the float when it is set
            value = given if given != 0 else float(item.metricValue)
            total += self._checked(name, value)
        return self._checked(name, total)

    def _checked(self, name: str, value: float) -> float:
        problem = validate_metric_value(self._remote_names[name], value)
        if problem is not None:
            raise ScalerError(f"external scaler {self.config.address}: {problem}", transient=False)
        return value


class ExternalPushScaler(ExternalScaler):
    """An ``external-push`` trigger: polls like ``external`` and watches ``StreamIsActive``.

    One stream stays open across :meth:`wait_for_activity` calls, so every ``true`` the
    server sends wakes the caller once (as each one makes KEDA request a scale). Cancelling
    a waiting call cancels the stream too (gRPC ends a call whose read is cancelled); the
    next call opens a new one, whose first message is the current activity.
    """

    trigger_type = "external-push"

    def __init__(self, config: ExternalScalerConfig, *, trigger_name: str | None = None) -> None:
        super().__init__(config, trigger_name=trigger_name or f"external-push[{config.index}]")
        self._stream: Any = None

    async def wait_for_activity(self) -> None:
        """Return when the server streams ``result: true``.

        :raises ScalerError: the stream cannot be opened, fails or ends (the next call
            opens a new one, so a returning server is picked up).
        """
        aio = _proto.grpc_aio()
        while True:
            if self._stream is None:
                stub = self._connect()
                self._stream = stub.StreamIsActive(self._ref())
            stream = self._stream
            try:
                message = await stream.read()
            except aio.AioRpcError as exc:
                self._stream = None
                raise _rpc_error(exc, "StreamIsActive", self.config.address).with_trigger(
                    self._identity
                ) from exc
            except asyncio.CancelledError:
                if stream.done():
                    self._stream = None
                raise
            if message is aio.EOF:
                self._stream = None
                raise ScalerError(
                    f"external scaler {self.config.address} ended the StreamIsActive stream",
                    trigger=self._identity,
                    transient=True,
                )
            if message.result:
                return

    async def aclose(self) -> None:
        """Cancel the activity stream and give the channel back. Safe to call twice."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()
            # let the cancellation complete on this loop before the channel closes
            with anyio.move_on_after(5, shield=True):
                await stream.code()
        await super().aclose()
