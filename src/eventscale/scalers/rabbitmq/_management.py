"""The RabbitMQ management HTTP API: one scaler's session, OAuth2 token and queue reads.

The management API counts unacknowledged messages too (the default;
``excludeUnacknowledged`` counts ready only), reports publish/deliver rates, and matches
queues by regex; :func:`aggregate_queues` combines those as KEDA does
(keda: pkg/scalers/rabbitmq_scaler.go ``getQueueInfoViaHTTP``). Its counts lag a few
seconds behind the broker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import posixpath
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote, urlsplit

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ScalerError
from eventscale.redaction import Secret
from eventscale.scalers.rabbitmq._errors import ErrorFactory
from eventscale.scalers.rabbitmq._tls import build_ssl_context, tls_failure, tls_reason
from eventscale.scalers.rabbitmq.config import Operation, RabbitMQConfig

__all__ = (
    "LISTING_COLUMNS",
    "MAX_BODY_BYTES",
    "MAX_LISTING_BYTES",
    "CountsNotPublished",
    "ManagementClient",
    "QueueInfo",
    "aggregate_queues",
    "has_counts",
    "import_aiohttp",
    "queue_info",
    "vhost_and_prefix",
)

_TOKEN_EXPIRY_MARGIN: Final = 10.0  # refresh an OAuth2 token this long before it expires
_DEFAULT_TOKEN_LIFETIME: Final = 300.0  # for a token response without expires_in
_ROOT_VHOST_PATH: Final = "/%2F"
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""Largest answer read for one queue or one regex page."""
MAX_LISTING_BYTES: Final = 32 * 1024 * 1024
"""Largest vhost listing read for a batch (about 200,000 queues); beyond it the queues
are read one by one."""
LISTING_COLUMNS: Final = (
    "name,messages,messages_ready,"
    "message_stats.publish_details.rate,message_stats.deliver_get_details.rate"
)
"""The fields a vhost listing asks for (the management API's ``columns``)."""


def import_aiohttp() -> Any:
    """``aiohttp``; a missing extra raises :class:`~eventscale.errors.MissingExtraError`."""
    return import_optional("aiohttp", extra="rabbitmq", what="the rabbitmq scaler (http protocol)")


@attrs.frozen
class QueueInfo:
    """What one read returns: counts and rates (0 for what the source does not report)."""

    messages: int = 0
    messages_ready: int = 0
    publish_rate: float = 0.0
    deliver_get_rate: float = 0.0


class CountsNotPublished(ScalerError):
    """The management API has not published the queue's message counts yet (transient)."""


def has_counts(item: Mapping[str, Any]) -> bool:
    """Whether the management API has published this queue's message counts yet.

    RabbitMQ publishes queue statistics every few seconds (``collect_statistics_interval``),
    so a queue declared a moment ago comes without ``messages``: that is "unknown", not 0.
    """
    return item.get("messages") is not None


def queue_info(item: Mapping[str, Any]) -> QueueInfo:
    """One queue object of the management API as a :class:`QueueInfo`."""
    stats = item.get("message_stats") or {}

    def rate(name: str) -> float:
        details = stats.get(name) or {}
        return float(details.get("rate", 0) or 0)

    return QueueInfo(
        messages=int(item.get("messages", 0) or 0),
        messages_ready=int(item.get("messages_ready", 0) or 0),
        publish_rate=rate("publish_details"),
        deliver_get_rate=rate("deliver_get_details"),
    )


def aggregate_queues(items: Sequence[Mapping[str, Any]], operation: Operation) -> QueueInfo:
    """Combine the management API's queue objects as KEDA does for regex queries.

    ``sum`` adds each field; ``avg`` divides the sums by the count (integer division for
    the message counts, float for rates); ``max`` takes each field's maximum independently.
    No queues gives zeros.
    """
    infos = [queue_info(item) for item in items]
    if not infos:
        return QueueInfo()
    if operation is Operation.MAX:
        return QueueInfo(
            messages=max(0, *(i.messages for i in infos)),
            messages_ready=max(0, *(i.messages_ready for i in infos)),
            publish_rate=max(0.0, *(i.publish_rate for i in infos)),
            deliver_get_rate=max(0.0, *(i.deliver_get_rate for i in infos)),
        )
    total = QueueInfo(
        messages=sum(i.messages for i in infos),
        messages_ready=sum(i.messages_ready for i in infos),
        publish_rate=sum(i.publish_rate for i in infos),
        deliver_get_rate=sum(i.deliver_get_rate for i in infos),
    )
    if operation is Operation.SUM:
        return total
    n = len(infos)
    return QueueInfo(
        messages=total.messages // n,
        messages_ready=total.messages_ready // n,
        publish_rate=total.publish_rate / n,
        deliver_get_rate=total.deliver_get_rate / n,
    )


def vhost_and_prefix(raw_path: str, vhost_name: str | None) -> tuple[str, str]:
    """KEDA's split of a management URL path into (``/<vhost>``, path prefix).

    The last path segment is the vhost, the segments before it a prefix (for a
    management API behind a reverse proxy). ``vhost_name`` replaces the vhost. An empty
    or ``/`` vhost is the default vhost ``/%2F``.
    """
    parts = raw_path.split("/")
    vhost = "/" + parts[-1]
    kept = [p for p in parts[:-1] if p]
    prefix = "/" + posixpath.normpath("/".join(kept)).lstrip("/") if kept else ""
    if prefix == "/":
        prefix = ""
    if vhost_name:
        vhost = "/" + quote_plus(vhost_name, safe="")
    if vhost in ("", "/"):
        vhost = _ROOT_VHOST_PATH
    return vhost, prefix


class ManagementClient:
    """One scaler's reads through the management API (its session, TLS and token cache).

    ``error`` builds the scaler's errors; ``clock`` (monotonic seconds) times the OAuth2
    token cache; ``ssl_context`` is the client TLS context when it was built already.
    """

    def __init__(
        self,
        config: RabbitMQConfig,
        error: ErrorFactory,
        clock: Callable[[], float],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.identity = error.identity
        self._error = error
        self._clock = clock
        self._session: Any = None
        self._ssl = ssl_context
        self._token: tuple[str, float] | None = None
        self._token_ssl: ssl.SSLContext | None = None
        self._auth_style: str | None = None
        self._batch_key: tuple[Any, ...] | None = None  # the config is frozen: computed once
        self._active = 0  # requests in flight
        self._quiet = asyncio.Event()  # set while none is
        self._quiet.set()

    async def aclose(self) -> None:
        """Close the HTTP session (a later read opens a new one).

        A request still in flight (one this client makes for a batch whose callers gave
        up) fails once its connection closes; this waits (at most 2 s) until it has.
        """
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        if self._active:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._quiet.wait()

    def _request_url(self) -> tuple[str, str | None, str | None]:
        """(URL without userinfo, basic-auth login, basic-auth password)."""
        c = self.config
        parts = urlsplit(c.host.reveal())
        base = self._base_url()
        if c.use_regex:
            name = quote_plus(c.queue_name, safe="")
            query = f"page=1&use_regex=true&pagination=false&name={name}&page_size={c.page_size}"
            url = f"{base}?{query}"
        else:
            url = f"{base}/{quote(c.queue_name, safe='')}"
        login = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if c.username and c.password:
            login, password = c.username, c.password.reveal()
        return url, login, password

    async def _session_get(self) -> Any:
        if self._session is None or self._session.closed:
            aiohttp = import_aiohttp()
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context() if self._https else None, limit=4
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    @property
    def _https(self) -> bool:
        return urlsplit(self.config.host.reveal()).scheme == "https"

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = build_ssl_context(self.config)
        return self._ssl

    def _token_ssl_context(self) -> ssl.SSLContext:
        """TLS for the token endpoint: the system's CAs plus ``ca``; ``unsafeSsl`` applies."""
        if self._token_ssl is None:
            context = ssl.create_default_context()
            c = self.config
            if c.tls and c.ca:
                context.load_verify_locations(cadata=c.ca)
            if c.unsafe_ssl:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._token_ssl = context
        return self._token_ssl

    async def _bearer(self, session: Any, limit: float) -> str:
        """The cached access token, or a new one from the client-credentials grant.

        A token is reused until 10 seconds before its
        ``expires_in`` runs out (half its lifetime for short-lived tokens). The client
        credentials go in an HTTP Basic header first (RFC 6749 2.3.1); an endpoint that
        rejects that with 400/401 is asked again with them in the form, and the style
        that worked is remembered (as Go's ``clientcredentials`` does for KEDA).
        """
        now = self._clock()
        if self._token is not None and self._token[1] > now:
            return self._token[0]
        c = self.config
        assert c.oauth_token_uri is not None
        assert c.client_id is not None
        assert c.client_secret is not None
        form: list[tuple[str, str]] = [("grant_type", "client_credentials")]
        if c.scopes:
            form.append(("scope", " ".join(c.scopes)))
        form.extend(c.endpoint_params)
        styles = [self._auth_style] if self._auth_style else ["header", "params"]
        status, body = 0, ""
        aiohttp = import_aiohttp()
        try:
            for style in styles:
                headers: dict[str, str] = {"Accept": "application/json"}
                data = list(form)
                if style == "header":
                    pair = f"{quote_plus(c.client_id)}:{quote_plus(c.client_secret.reveal())}"
                    headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
                else:
                    data += [
                        ("client_id", c.client_id),
                        ("client_secret", c.client_secret.reveal()),
                    ]
                async with session.post(
                    c.oauth_token_uri,
                    data=data,
                    headers=headers,
                    ssl=self._token_ssl_context()
                    if c.oauth_token_uri.startswith("https:")
                    else None,
                    timeout=aiohttp.ClientTimeout(total=limit),
                ) as resp:
                    status, body = resp.status, await resp.text()
                if status == 200:
                    self._auth_style = style
                    break
                if status not in (400, 401):
                    break
        except aiohttp.ClientError as exc:
            raise self._error(
                "cannot reach the OAuth2 token endpoint", exc, transient=True
            ) from exc
        if status != 200:
            raise self._error(
                f"OAuth2 token request failed: status {status}, response: {body[:300]}",
                None,
                transient=status >= 500 or status == 429,
            )
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise self._error("OAuth2 token response is not JSON", exc, transient=False) from exc
        token = str(answer.get("access_token", "")) if isinstance(answer, dict) else ""
        if not token:
            raise self._error("OAuth2 token response has no access_token", None, transient=False)
        try:
            lifetime = float(answer.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = _DEFAULT_TOKEN_LIFETIME
        self._token = (token, now + max(lifetime - _TOKEN_EXPIRY_MARGIN, lifetime / 2))
        return token

    def _not_published(self, what: str) -> CountsNotPublished:
        error = self._error(
            f"the management API has not reported {what} yet "
            "(statistics are published every few seconds)",
            None,
            transient=True,
        )
        return CountsNotPublished(str(error.message), trigger=error.trigger, transient=True)

    def _base_url(self) -> str:
        """``scheme://host:port{prefix}/api/queues{vhost}`` (no userinfo, no queue)."""
        c = self.config
        parts = urlsplit(c.host.reveal())
        vhost, prefix = vhost_and_prefix(parts.path, c.vhost_name)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{prefix}/api/queues{vhost}"

    def batch_key(self) -> tuple[Any, ...]:
        """What must be equal for two scalers' reads to share one request.

        The vhost's URL, the credentials (basic or OAuth2), the TLS settings and the
        timeout: scalers that differ in any of them never share a request.
        """
        if self._batch_key is not None:
            return self._batch_key
        c = self.config
        _, login, password = self._request_url()
        self._batch_key = (
            self._base_url(),
            login,
            Secret(password) if password is not None else None,
            c.oauth_token_uri,
            c.client_id,
            c.client_secret,
            c.scopes,
            c.endpoint_params,
            c.tls,
            c.ca,
            c.cert,
            c.key,
            c.key_password,
            c.unsafe_ssl,
            c.effective_timeout,
        )
        return self._batch_key

    async def _get(self, url: str, limit: int) -> tuple[int, str | None, str]:
        """GET ``url`` (basic auth or a bearer token) within the timeout.

        Returns (status, body or ``None`` when it is longer than ``limit`` bytes, reason).
        :raises ScalerError: timeout, connection or TLS failure, token failure.
        """
        self._active += 1
        self._quiet.clear()
        try:
            return await self._get_once(url, limit)
        finally:
            self._active -= 1
            if not self._active:
                self._quiet.set()

    async def _get_once(self, url: str, limit: int) -> tuple[int, str | None, str]:
        aiohttp = import_aiohttp()
        yarl = import_optional("yarl", extra="rabbitmq", what="the rabbitmq scaler")
        c = self.config
        _, login, password = self._request_url()
        shown = url
        timeout = c.effective_timeout
        try:
            async with asyncio.timeout(timeout):
                session = await self._session_get()
                headers: dict[str, str] = {}
                if login is not None and not c.oauth_token_uri:
                    pair = f"{login}:{password or ''}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
                # With OAuth2 a 401 from the broker with a cached token (expired or
                # revoked early) drops it and tries once more with a fresh one.
                for attempt in (1, 2):
                    cached = self._token is not None and self._token[1] > self._clock()
                    if c.oauth_token_uri:
                        headers["Authorization"] = "Bearer " + await self._bearer(session, timeout)
                    async with session.get(yarl.URL(url, encoded=True), headers=headers) as resp:
                        body = await _read_bounded(resp, limit)
                        status = resp.status
                        reason = resp.reason or ""
                    if not (c.oauth_token_uri and status == 401 and cached and attempt == 1):
                        break
                    self._token = None
        except TimeoutError as exc:
            raise self._error(
                f"timed out after {timeout:g}s requesting {shown}", exc, transient=True
            ) from exc
        except aiohttp.ClientError as exc:
            tls = tls_failure(exc)
            if tls is not None:
                raise self._error(
                    f"TLS handshake with the RabbitMQ management API at {shown} failed: "
                    f"{tls_reason(tls)}",
                    exc,
                    transient=False,
                ) from exc
            raise self._error(
                f"cannot reach the RabbitMQ management API at {shown}", exc, transient=True
            ) from exc
        return status, body, reason

    def timed_out(self, exc: BaseException) -> ScalerError:
        """The error of a read that did not finish within the timeout."""
        timeout = self.config.effective_timeout
        return self._error(
            f"timed out after {timeout:g}s requesting {self._base_url()}", exc, transient=True
        )

    def _json(self, status: int, body: str | None, reason: str, shown: str) -> Any:
        if body is None:
            raise self._error(
                f"the management API's answer from {shown} is larger than {MAX_BODY_BYTES} bytes",
                None,
                transient=False,
            )
        if status != 200:
            raise self._error(
                f"error requesting RabbitMQ API status: {status} {reason}, "
                f"response: {body[:500]}, from: {shown}",
                None,
                transient=status >= 500 or status == 429,
            )
        try:
            return json.loads(body)
        except ValueError as exc:
            raise self._error(
                f"the management API answered with invalid JSON from {shown}", exc, transient=True
            ) from exc

    async def read(self, queue: str | None = None) -> QueueInfo:
        """Read the queue (or the queues a regex matches) once.

        ``queue`` reads another queue of the same vhost with this client's session (a
        batch's reads, see ``_listing``). :raises ScalerError: on any failure.
        """
        c = self.config
        url, _, _ = self._request_url()
        if queue is not None and not c.use_regex:
            url = f"{self._base_url()}/{quote(queue, safe='')}"
        status, body, reason = await self._get(url, MAX_BODY_BYTES)
        data = self._json(status, body, reason, url)
        if not isinstance(data, dict):
            raise self._error(f"unexpected management API answer from {url}", None, transient=True)
        if c.use_regex:
            if int(data.get("page_count", 0) or 0) > 1:
                raise self._error(
                    "regex matches more queues than can be recovered at once", None, transient=False
                )
            items = data.get("items") or []
            pending = [str(i.get("name", "?")) for i in items if not has_counts(i)]
            if pending:
                raise self._not_published(f"message counts for {', '.join(pending[:5])}")
            return aggregate_queues(items, c.operation)
        if not has_counts(data):
            raise self._not_published("the queue's message counts")
        return queue_info(data)

    async def list_queues(self) -> dict[str, Mapping[str, Any]] | None:
        """Every queue of the vhost, by name, in one request (only the fields read).

        ``None`` when the answer is larger than :data:`MAX_LISTING_BYTES` (the caller
        then reads its queues one by one). :raises ScalerError: on any failure.
        """
        url = f"{self._base_url()}?columns={LISTING_COLUMNS}"
        status, body, reason = await self._get(url, MAX_LISTING_BYTES)
        if body is None and status == 200:
            return None
        data = self._json(status, body, reason, url)
        if not isinstance(data, list):
            raise self._error(f"unexpected management API answer from {url}", None, transient=True)
        return {str(item.get("name")): item for item in data if isinstance(item, dict)}

    def queue_from_listing(self, listing: Mapping[str, Mapping[str, Any]]) -> QueueInfo:
        """This scaler's queue out of a vhost listing (:meth:`list_queues`).

        :raises ScalerError: the queue is not in the vhost (as the single read's 404),
            or its counts are not published yet.
        """
        name = self.config.queue_name
        item = listing.get(name)
        if item is None:
            raise self._error(
                f"error requesting RabbitMQ API status: 404 Not Found, response: "
                f"queue {name!r} not found in the vhost listing, from: {self._base_url()}",
                None,
                transient=False,
            )
        if not has_counts(item):
            raise self._not_published("the queue's message counts")
        return queue_info(item)


async def _read_bounded(resp: Any, limit: int) -> str | None:
    """The response body as text, or ``None`` once it grows past ``limit`` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks).decode(resp.get_encoding() or "utf-8", errors="replace")
