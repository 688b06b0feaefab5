"""NATS JetStream scaler (``type: nats-jetstream``): a durable consumer's lag.

Follows KEDA's ``nats-jetstream`` scaler (KEDA's pkg/scalers/nats_jetstream_scaler.go):
it reads the server's HTTP monitoring endpoint ``/jsz?acc=...&consumers=true&config=true``
(no NATS client connection) and reports the consumer's ``num_pending`` (messages not
delivered yet) plus ``num_ack_pending`` (delivered, not acknowledged yet). The metric is
``s{index}-nats-jetstream-{stream}``, target ``lagThreshold`` (default 10); the trigger is
active when the lag is greater than ``activationLagThreshold``.

In a JetStream cluster (``meta_cluster.cluster_size`` > 1) only the consumer's leader
knows its current state: like KEDA, the scaler asks ``/varz`` for the cluster's nodes,
asks each node's ``/jsz`` until it finds the one that names itself the consumer's leader,
and keeps polling that node until the leader changes.

Every answer is read up to a size bound, and a poll is bounded in time. A missing
account, stream or consumer is a :class:`~eventscale.errors.ScalerError`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.metrics import (
    MetricSpec,
    MetricType,
    ScalerReport,
    metric_name,
    normalize_metric_name,
)
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import AUTH, META, Params, TriggerContext

if TYPE_CHECKING:
    import aiohttp

# Fail at import time, with the extra to install, when the HTTP client is missing.
import_optional("aiohttp", extra="nats", what="the nats-jetstream scaler")

__all__ = (
    "DEFAULT_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "NATSJetStreamMetadata",
    "NATSJetStreamScaler",
)

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds one poll may take (every request of it together)."""
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
"""The largest monitoring answer read; a larger one is an error, not a partial read."""

_AUTH_FIRST: Final = (AUTH, META)


@attrs.frozen(kw_only=True)
class NATSJetStreamMetadata:
    """The parsed ``nats-jetstream`` trigger metadata.

    ``account_id`` is ``accountID`` or, when that is not given, ``account``: an account of
    the answer matches when its id equals ``account_id`` or its name equals ``account``.
    """

    endpoint: str
    stream: str
    consumer: str
    account: str = ""
    account_id: str = ""
    lag_threshold: int = 10
    activation_lag_threshold: int = 0
    use_https: bool = False
    index: int = 0
    metric_type: MetricType = MetricType.AVERAGE_VALUE

    @property
    def metric_name(self) -> str:
        """``s{index}-nats-jetstream-{stream}``, normalized as KEDA does."""
        return metric_name(self.index, normalize_metric_name(f"nats-jetstream-{self.stream}"))

    @property
    def monitoring_url(self) -> str:
        """``http(s)://{endpoint}/jsz?acc={account}&config=true&consumers=true``."""
        scheme = "https" if self.use_https else "http"
        query = urlencode(
            sorted({"acc": self.account_id, "consumers": "true", "config": "true"}.items())
        )
        return urlunsplit((scheme, self.endpoint, "/jsz", query, ""))

    @classmethod
    def from_context(cls, ctx: TriggerContext) -> NATSJetStreamMetadata:
        """Parse and validate the trigger like KEDA (every error collected in one ConfigError)."""
        p = Params(ctx)
        account = p.string("account", order=_AUTH_FIRST, default="")
        account_id = p.string("accountID", order=_AUTH_FIRST, default="")
        stream = p.string("stream", required=True)
        consumer = p.string("consumer", required=True)
        # None when the value did not parse (the error is recorded).
        lag: int | None = p.integer("lagThreshold", default=10)
        activation = p.integer("activationLagThreshold", default=0)
        use_https = p.boolean("useHttps", default=False)
        endpoint = p.string("natsServerMonitoringEndpoint", order=_AUTH_FIRST, required=True)
        if not account and not account_id:
            p.fail("no account name or id given", "account")
        if lag is not None and lag <= 0:
            p.fail(f"lagThreshold must be a positive number, got {lag}", "lagThreshold")
        if endpoint and ("/" in endpoint or "?" in endpoint):
            p.fail(
                "natsServerMonitoringEndpoint is host:port (no scheme or path; "
                "useHttps selects https)",
                "natsServerMonitoringEndpoint",
            )
        p.finish()
        assert stream is not None
        assert consumer is not None
        assert endpoint is not None
        assert lag is not None
        return cls(
            endpoint=endpoint,
            stream=stream,
            consumer=consumer,
            account=account,
            account_id=account_id or account,
            lag_threshold=lag,
            activation_lag_threshold=activation,
            use_https=use_https,
            index=ctx.index,
            metric_type=ctx.metric_type,
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class NATSJetStreamScaler(ScalerBase):
    """Reports the lag of one JetStream consumer from the NATS monitoring endpoint.

    ``session``: an ``aiohttp.ClientSession`` to use (the scaler does not close it); by
    default the scaler opens its own. ``ssl_context``: passed to aiohttp for ``useHttps`` (an
    ``ssl.SSLContext`` for a private CA; default: the system's verification).
    ``timeout`` bounds each poll, in seconds; ``max_response_bytes`` each answer.
    """

    def __init__(
        self,
        metadata: NATSJetStreamMetadata,
        *,
        session: aiohttp.ClientSession | None = None,
        ssl_context: ssl.SSLContext | bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        trigger_name: str | None = None,
    ) -> None:
        import_optional("aiohttp", extra="nats", what="the nats-jetstream scaler")
        self.metadata = metadata
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._ssl = ssl_context
        self._session = session
        self._owns_session = session is None
        self._trigger = trigger_name or f"nats-jetstream[{metadata.index}]"
        self._closed = False
        # What KEDA caches between polls: the consumer's leader and its node's /jsz URL.
        self._leader = ""
        self._leader_url = ""
        self.cluster_size = 0

    @classmethod
    def from_context(
        cls,
        ctx: TriggerContext,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> NATSJetStreamScaler:
        """Parse ``ctx`` (raising :class:`ConfigError`) and build the scaler."""
        metadata = NATSJetStreamMetadata.from_context(ctx)
        return cls(metadata, session=session, timeout=timeout, trigger_name=ctx.identity)

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"NATSJetStreamScaler(endpoint={m.endpoint!r}, account={m.account_id!r}, "
            f"stream={m.stream!r}, consumer={m.consumer!r}, lagThreshold={m.lag_threshold})"
        )

    def metric_specs(self) -> Sequence[MetricSpec]:
        """One metric: the consumer's lag, target ``lagThreshold``."""
        m = self.metadata
        return (
            MetricSpec(
                name=m.metric_name,
                target=m.lag_threshold,
                metric_type=m.metric_type,
                activation_target=m.activation_lag_threshold,
            ),
        )

    # -- HTTP ----------------------------------------------------------------------

    def _fail(self, reason: str, *, transient: bool) -> ScalerError:
        return ScalerError(
            f"nats-jetstream at {self.metadata.endpoint}: {reason}",
            trigger=self._trigger,
            transient=transient,
        )

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        import aiohttp

        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self._trigger, transient=False)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        kwargs: dict[str, Any] = {} if self._ssl is None else {"ssl": self._ssl}
        try:
            async with self._session.get(url, allow_redirects=False, **kwargs) as resp:
                if resp.status != 200:
                    raise self._fail(
                        f"{url} answered HTTP {resp.status}",
                        transient=resp.status >= 500 or resp.status in (408, 429),
                    )
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        raise self._fail(
                            f"{url} answered more than {self.max_response_bytes} bytes",
                            transient=False,
                        )
        except aiohttp.ClientError as exc:
            raise self._fail(f"cannot read {url} ({exc})", transient=True) from exc
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise self._fail(f"{url} did not answer JSON ({exc})", transient=True) from exc
        if not isinstance(data, dict):
            raise self._fail(f"{url} answered JSON that is not an object", transient=True)
        return data

    # -- KEDA's lookup -------------------------------------------------------------

    def _find(self, data: Mapping[str, Any]) -> tuple[str, Mapping[str, Any] | None]:
        """The consumer in one ``/jsz`` answer, or ``(what is missing, None)``."""
        m = self.metadata
        accounts = data.get("account_details") or []
        account_found = stream_found = False
        for account in accounts if isinstance(accounts, list) else []:
            if not isinstance(account, dict):
                continue
            if account.get("id") != m.account_id and account.get("name") != m.account:
                continue
            account_found = True
            for stream in account.get("stream_detail") or []:
                if not isinstance(stream, dict) or stream.get("name") != m.stream:
                    continue
                stream_found = True
                for consumer in stream.get("consumer_detail") or []:
                    if isinstance(consumer, dict) and consumer.get("name") == m.consumer:
                        return "", consumer
        if not account_found:
            return f"account {m.account_id!r} has no JetStream data (no such account?)", None
        if not stream_found:
            return f"stream {m.stream!r} not found in account {m.account_id!r}", None
        return f"consumer {m.consumer!r} not found in stream {m.stream!r}", None

    @staticmethod
    def _leader_of(consumer: Mapping[str, Any]) -> str:
        cluster = consumer.get("cluster")
        leader = cluster.get("leader") if isinstance(cluster, dict) else None
        return leader if isinstance(leader, str) else ""

    def _url_with_host(self, host: str, path: str | None = None) -> str:
        parts = urlsplit(self.metadata.monitoring_url)
        if parts.port is not None:
            host = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
        query = "" if path is not None else parts.query
        return urlunsplit((parts.scheme, host, path or parts.path, query, ""))

    async def _locate(self) -> Mapping[str, Any]:
        """The consumer's entry, from its leader in a cluster. :raises ScalerError:."""
        cached_leader = self._leader
        data = await self._get_json(self._leader_url or self.metadata.monitoring_url)
        meta = data.get("meta_cluster")
        size = _int(meta.get("cluster_size")) if isinstance(meta, dict) else None
        self.cluster_size = size or 0
        missing, consumer = self._find(data)
        if consumer is not None:
            self._leader = self._leader_of(consumer)
            if cached_leader and cached_leader == self._leader:
                return consumer  # the cached leader still leads
        elif cached_leader:
            self._leader = self._leader_url = ""
        if self.cluster_size <= 1:
            if consumer is None:
                raise self._fail(missing, transient=False)
            return consumer
        return await self._search_leader()

    async def _search_leader(self) -> Mapping[str, Any]:
        parts = urlsplit(self.metadata.monitoring_url)
        varz = await self._get_json(urlunsplit((parts.scheme, parts.netloc, "/varz", "", "")))
        urls = varz.get("connect_urls") or []
        advertised = bool(urls)
        if not advertised:
            cluster = varz.get("cluster")
            urls = cluster.get("urls") or [] if isinstance(cluster, dict) else []
        for entry in urls if isinstance(urls, list) else []:
            if not isinstance(entry, str):
                continue
            if advertised:
                # nats-1.nats.svc:4222 -> nats-1.nats.svc; the node names itself in /varz.
                hostname = entry.split(":")[0]
                info = await self._get_json(self._url_with_host(hostname, "/varz"))
                node = info.get("server_name")
                node_url = self._url_with_host(hostname)
            else:
                # nats-1.nats.svc... -> nats-1, asked at nats-1.{monitoring host}
                node = entry.split(".")[0]
                node_url = urlunsplit(
                    (parts.scheme, f"{node}.{parts.netloc}", parts.path, parts.query, "")
                )
            _, consumer = self._find(await self._get_json(node_url))
            if consumer is not None and node and node == self._leader_of(consumer):
                self._leader, self._leader_url = str(node), node_url
                return consumer
        raise self._fail(
            f"leader node not found for consumer {self.metadata.consumer!r}", transient=True
        )

    async def lag(self) -> int:
        """The consumer's ``num_pending + num_ack_pending``. :raises ScalerError:."""
        try:
            async with asyncio.timeout(self.timeout):
                consumer = await self._locate()
        except TimeoutError as exc:
            raise ScalerTimeout(
                f"nats-jetstream at {self.metadata.endpoint}: no answer within {self.timeout:g}s",
                trigger=self._trigger,
                transient=True,
            ) from exc
        pending = _int(consumer.get("num_pending", 0))
        ack_pending = _int(consumer.get("num_ack_pending", 0))
        if pending is None or ack_pending is None:
            raise self._fail(
                f"consumer {self.metadata.consumer!r}: num_pending / num_ack_pending "
                "are not integers",
                transient=True,
            )
        return pending + ack_pending

    async def get_metrics(self) -> ScalerReport:
        """Poll once: the lag, active when above ``activationLagThreshold``."""
        lag = await self.lag()
        m = self.metadata
        return ScalerReport.single(
            m.metric_name, float(lag), is_active=lag > m.activation_lag_threshold
        )

    async def aclose(self) -> None:
        """Close the HTTP session the scaler opened; safe to repeat."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()
