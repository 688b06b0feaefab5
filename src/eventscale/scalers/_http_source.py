"""What every trigger that reads an HTTP endpoint needs: auth, TLS, bounded reads, errors.

Shared by ``prometheus`` and ``metrics-api`` (and later HTTP-based triggers). It follows
KEDA's authentication config (KEDA's pkg/scalers/authentication/authentication_types.go):

* ``authModes`` (alias ``authMode``), read from the trigger metadata then the
  TriggerAuthentication: a comma-separated list of ``apiKey``, ``basic``, ``tls``,
  ``bearer``, ``custom`` (``oauth`` is recognised but not supported here); at most one of
  ``bearer`` and ``basic``;
* ``basic``: ``username`` (required) and ``password`` (optional), from the auth params;
* ``bearer``: ``bearerToken`` (alias ``token``), sent as ``Authorization: Bearer ...``;
* ``tls``: ``cert`` and ``key`` (PEM text, both required) and ``ca`` (PEM text, optional;
  also honoured without any mode, for an enterprise CA);
* ``custom``: ``customAuthHeader`` and ``customAuthValue``;
* ``apiKey``: ``apiKey``, ``method`` (``header``, the default, or ``query``) and
  ``keyParamName`` (default header ``X-API-KEY``, default query parameter ``api_key``),
  each from the metadata then the auth params.

Every secret is a :class:`~eventscale.redaction.Secret`; a body is read up to
:data:`MAX_BODY` bytes and every request has a timeout; every failure is a
:class:`~eventscale.errors.ScalerError` whose message is redacted.
"""

from __future__ import annotations

import base64
import enum
import os
import ssl
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar, Final, Generic, Protocol, Self, TypeVar

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.metrics import MetricSpec, MetricType, ScalerReport
from eventscale.redaction import Secret, redact_text, redact_url
from eventscale.scalers import ScalerBase
from eventscale.scalers.params import AUTH, META, Params, TriggerContext

__all__ = (
    "DEFAULT_TIMEOUT",
    "MAX_BODY",
    "AuthMode",
    "HTTPAuth",
    "HTTPScalerBase",
    "HTTPSource",
    "HTTPTriggerMetadata",
    "read_key_value_map",
)

MAX_BODY: Final = 4 * 1024 * 1024
"""The most bytes of a response body that is read (a larger answer is an error)."""

DEFAULT_TIMEOUT: Final = 3.0
"""Seconds per request when the trigger sets no ``timeout`` (KEDA_HTTP_DEFAULT_TIMEOUT)."""

_DEFAULT_KEY_HEADER: Final = "X-API-KEY"
_DEFAULT_KEY_QUERY: Final = "api_key"


class AuthMode(enum.Enum):
    """One of KEDA's ``authModes``."""

    API_KEY = "apiKey"
    """An API key in a header or a query parameter."""
    BASIC = "basic"
    """HTTP basic authentication."""
    TLS = "tls"
    """A client certificate."""
    BEARER = "bearer"
    """``Authorization: Bearer <token>``."""
    CUSTOM = "custom"
    """One header whose name and value the TriggerAuthentication gives."""
    OAUTH = "oauth"
    """OAuth2 client credentials (recognised, not supported by eventscale yet)."""


def read_key_value_map(p: Params, name: str) -> dict[str, str]:
    """A ``k1=v1,k2=v2`` metadata parameter (KEDA's typed-config map): each pair trimmed.

    A pair without exactly one ``=`` is recorded as an error on ``p``.
    """
    raw = p.string(name)
    out: dict[str, str] = {}
    if raw is None:
        return out
    for part in raw.split(","):
        pieces = part.strip().split("=")
        if len(pieces) != 2:
            p.fail(f'parameter "{name}": expected key=value pairs, got {part.strip()!r}', name)
            return {}
        out[pieces[0].strip()] = pieces[1].strip()
    return out


def _modes(p: Params, supported: Collection[AuthMode], trigger_type: str) -> frozenset[AuthMode]:
    raw = p.choice(
        "authModes",
        [m.value for m in AuthMode],
        order=(META, AUTH),
        aliases=("authMode",),
    )
    if raw is None:
        return frozenset()
    modes = frozenset(AuthMode(part.strip()) for part in raw.split(",") if part.strip())
    exclusive = modes & {AuthMode.BEARER, AuthMode.BASIC, AuthMode.OAUTH}
    if len(exclusive) > 1:
        p.fail(
            f'parameter "authModes" value {raw!r} must contain only one of [bearer basic oauth]',
            "authModes",
        )
    for mode in sorted(modes - set(supported), key=lambda m: m.value):
        p.fail(
            f'authModes "{mode.value}" is not supported by the {trigger_type} trigger '
            f"(supported: {', '.join(sorted(m.value for m in supported))})",
            "authModes",
        )
    return modes


@attrs.frozen(kw_only=True)
class HTTPAuth:
    """The authentication of one HTTP trigger; secrets never show in its repr."""

    modes: frozenset[AuthMode] = frozenset()
    username: str = ""
    password: Secret | None = attrs.field(default=None, repr=False)
    bearer_token: Secret | None = attrs.field(default=None, repr=False)
    cert: Secret | None = attrs.field(default=None, repr=False)
    key: Secret | None = attrs.field(default=None, repr=False)
    ca: Secret | None = attrs.field(default=None, repr=False)
    custom_header: str = ""
    custom_value: Secret | None = attrs.field(default=None, repr=False)
    api_key: Secret | None = attrs.field(default=None, repr=False)
    api_key_method: str = "header"
    key_param_name: str = ""

    @classmethod
    def from_params(
        cls, p: Params, *, supported: Collection[AuthMode], trigger_type: str
    ) -> HTTPAuth:
        """Read the auth parameters KEDA reads, recording every problem on ``p``."""
        modes = _modes(p, supported, trigger_type)
        username = p.string("username", order=(AUTH,), default="")
        password = p.secret("password")
        token = p.secret("bearerToken", aliases=("token",))
        cert, key, ca = p.secret("cert"), p.secret("key"), p.secret("ca")
        custom_header = p.string("customAuthHeader", order=(AUTH,), default="")
        custom_value = p.secret("customAuthValue")
        api_key = p.secret("apiKey", order=(META, AUTH))
        method = p.choice("method", ["header", "query"], order=(META, AUTH), default="header")
        key_param = p.string("keyParamName", order=(META, AUTH), default="")
        if AuthMode.BEARER in modes and token is None:
            p.fail("bearerToken is required when bearer auth is enabled", "bearerToken", AUTH)
        if AuthMode.BASIC in modes and not username:
            p.fail("username is required when basic auth is enabled", "username", AUTH)
        if AuthMode.TLS in modes and (cert is None or key is None):
            p.fail("cert and key are required when tls auth is enabled", "cert", AUTH)
        if AuthMode.CUSTOM in modes and (not custom_header or custom_value is None):
            p.fail(
                "customAuthHeader and customAuthValue are required when custom auth is enabled",
                "customAuthHeader",
                AUTH,
            )
        if AuthMode.API_KEY in modes and api_key is None:
            p.fail("apiKey is required when apiKey auth is enabled", "apiKey", AUTH)
        return cls(
            modes=modes,
            username=username,
            password=password,
            bearer_token=token,
            cert=cert,
            key=key,
            ca=ca,
            custom_header=custom_header,
            custom_value=custom_value,
            api_key=api_key,
            api_key_method=method or "header",
            key_param_name=key_param,
        )

    def secrets(self) -> tuple[Secret | None, ...]:
        """Every secret value, for :func:`~eventscale.redaction.redact_text`."""
        return (
            self.password,
            self.bearer_token,
            self.key,
            self.custom_value,
            self.api_key,
        )

    def headers(self) -> dict[str, str]:
        """The request headers the enabled modes add (values revealed: for the client only)."""
        out: dict[str, str] = {}
        if AuthMode.BASIC in self.modes:
            pair = f"{self.username}:{self.password.reveal() if self.password else ''}"
            out["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        if AuthMode.BEARER in self.modes and self.bearer_token is not None:
            out["Authorization"] = f"Bearer {self.bearer_token.reveal()}"
        if AuthMode.CUSTOM in self.modes and self.custom_value is not None:
            out[self.custom_header] = self.custom_value.reveal()
        if (
            AuthMode.API_KEY in self.modes
            and self.api_key is not None
            and self.api_key_method != "query"
        ):
            out[self.key_param_name or _DEFAULT_KEY_HEADER] = self.api_key.reveal()
        return out

    def query(self) -> dict[str, str]:
        """The query parameters the enabled modes add (the API key with ``method: query``)."""
        if (
            AuthMode.API_KEY in self.modes
            and self.api_key is not None
            and self.api_key_method == "query"
        ):
            return {self.key_param_name or _DEFAULT_KEY_QUERY: self.api_key.reveal()}
        return {}


def _ssl_context(auth: HTTPAuth, unsafe_ssl: bool, path: str | None) -> ssl.SSLContext | None:
    """The TLS context for ``auth`` (``None``: the default verification applies)."""
    tls = AuthMode.TLS in auth.modes
    if not (tls or auth.ca is not None or unsafe_ssl):
        return None
    ctx = ssl.create_default_context()
    if unsafe_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        if auth.ca is not None:
            ctx.load_verify_locations(cadata=auth.ca.reveal())
        if tls and auth.cert is not None and auth.key is not None:
            _load_cert_chain(ctx, auth.cert, auth.key)
    except (ssl.SSLError, ValueError, TypeError, OSError) as exc:
        # ssl's messages name the failing step (PEM lib, no start line), never the content;
        # a CA that is not ASCII is a TypeError.
        raise ConfigError(
            f"invalid TLS material (cert/key/ca): {redact_text(str(exc), auth.secrets())}",
            path=path,
        ) from None
    return ctx


def _load_cert_chain(ctx: ssl.SSLContext, cert: Secret, key: Secret) -> None:
    # ssl loads a certificate chain from files only: write both to a private directory
    # (mode 0700, files 0600) and remove them as soon as they are loaded.
    with tempfile.TemporaryDirectory(prefix="eventscale-tls-") as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        for file_path, value in ((cert_path, cert), (key_path, key)):
            fd = os.open(file_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(value.reveal())
        ctx.load_cert_chain(cert_path, key_path)


class HTTPSource:
    """GETs one endpoint with a trigger's auth, TLS settings and timeout.

    :param auth: the trigger's authentication.
    :param unsafe_ssl: skip certificate verification (``unsafeSsl``).
    :param timeout: seconds per request (connect, send, read the whole body).
    :param trigger: how errors name the trigger.
    :param what: how errors name the endpoint ("Prometheus", "metrics API").
    :param extra: the extra that installs aiohttp for this trigger.
    :param session: a shared ``aiohttp.ClientSession`` (not closed by :meth:`aclose`);
        by default the source opens its own on first use.
    :param max_body: the most bytes read from a body.
    :param path: the field path TLS configuration errors name.
    :raises ConfigError: the TLS material does not load.
    """

    def __init__(
        self,
        *,
        auth: HTTPAuth,
        unsafe_ssl: bool,
        timeout: float,
        trigger: str,
        what: str,
        extra: str,
        session: Any = None,
        max_body: int = MAX_BODY,
        path: str | None = None,
    ) -> None:
        self._aiohttp = import_optional("aiohttp", extra=extra, what=f"the {what} trigger")
        self.auth = auth
        self.timeout = timeout
        self.trigger = trigger
        self.what = what
        self.max_body = max_body
        self._ssl = _ssl_context(auth, unsafe_ssl, path)
        self._session = session
        self._owns_session = session is None

    def _get_session(self) -> Any:
        if self._session is None:
            self._session = self._aiohttp.ClientSession()
        return self._session

    def _error(self, message: str, *, transient: bool) -> ScalerError:
        return ScalerError(
            redact_text(message, self.auth.secrets()), trigger=self.trigger, transient=transient
        )

    async def get(
        self,
        url: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        ok: Callable[[int], bool] = lambda status: status == 200,
        error_detail: Callable[[bytes], str | None] | None = None,
    ) -> bytes:
        """GET ``url`` with ``params`` (plus the auth's) and return the body.

        :param ok: which statuses are answers (others are errors).
        :param error_detail: reads the server's own error text out of an error body.
        :raises ScalerError: unreachable, TLS failure, refused status, body over
            ``max_body``; :class:`ScalerTimeout` past ``timeout``.
        """
        aiohttp = self._aiohttp
        shown = redact_url(url.split("?", 1)[0])
        all_headers = {**(headers or {}), **self.auth.headers()}
        query = [*params, *self.auth.query().items()]
        try:
            async with self._get_session().get(
                url,
                params=query or None,
                headers=all_headers,
                ssl=self._ssl if self._ssl is not None else True,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                status = resp.status
                body = await self._read(resp, shown)
        except TimeoutError as exc:
            raise ScalerTimeout(
                f"{self.what} {shown} did not answer within {self.timeout:g}s",
                trigger=self.trigger,
            ) from exc
        except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch) as exc:
            raise self._error(
                f"TLS with {self.what} {shown} failed: {exc}", transient=False
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise self._error(
                f"cannot connect to {self.what} {shown}: {exc.os_error or exc}", transient=True
            ) from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise self._error(
                f"cannot read {self.what} {shown}: {type(exc).__name__}: {exc}", transient=True
            ) from exc
        if not ok(status):
            detail = error_detail(body) if error_detail is not None else None
            message = f"{self.what} {shown} answered HTTP {status}"
            if status in (401, 403):
                message += " (the credentials were refused)"
            if detail:
                message += f": {detail}"
            raise self._error(message, transient=status >= 500 or status in (408, 429))
        return body

    async def _read(self, resp: Any, shown: str) -> bytes:
        too_big = self._error(
            f"{self.what} {shown} answered more than {self.max_body} bytes", transient=False
        )
        length = resp.content_length
        if length is not None and length > self.max_body:
            raise too_big
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            total += len(chunk)
            if total > self.max_body:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session the source opened (a shared one is left open)."""
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()


class HTTPTriggerMetadata(Protocol):
    """What :class:`HTTPScalerBase` needs from a trigger's parsed metadata."""

    @property
    def auth(self) -> HTTPAuth:
        """The trigger's authentication."""
        ...

    @property
    def unsafe_ssl(self) -> bool:
        """Skip certificate verification."""
        ...

    @property
    def timeout(self) -> float | None:
        """The trigger's own timeout in seconds, if it sets one."""
        ...

    @property
    def index(self) -> int:
        """The trigger's position."""
        ...

    @property
    def path(self) -> str | None:
        """The trigger's field path, for configuration errors."""
        ...

    @property
    def metric_type(self) -> MetricType:
        """``AverageValue`` or ``Value``."""
        ...

    @property
    def metric_name(self) -> str:
        """The one metric's name."""
        ...

    @property
    def target(self) -> float:
        """The target value per replica."""
        ...

    @property
    def activation_target(self) -> float:
        """The value the trigger must exceed to be active."""
        ...


_M = TypeVar("_M", bound=HTTPTriggerMetadata)


class HTTPScalerBase(ScalerBase, Generic[_M]):
    """A scaler that reads one number over HTTP: one metric, active above its activation.

    A subclass sets :attr:`trigger_type`, :attr:`what` and :attr:`extra`, and implements
    :meth:`parse` and :meth:`read_value`.

    :param metadata: the parsed trigger.
    :param session: a shared ``aiohttp.ClientSession`` (left open by :meth:`aclose`);
        by default the scaler opens its own.
    :param timeout: seconds per request when the trigger sets no ``timeout``.
    :param max_body: the most bytes of an answer that are read.
    :param trigger_name: how errors name the trigger.
    :raises ConfigError: the TLS material does not load;
        :class:`~eventscale.errors.MissingExtraError` without aiohttp.
    """

    trigger_type: ClassVar[str]
    """The trigger type, for default trigger names."""
    what: ClassVar[str]
    """How errors name the endpoint."""
    extra: ClassVar[str]
    """The extra that installs aiohttp for this trigger."""

    def __init__(
        self,
        metadata: _M,
        *,
        session: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_body: int = MAX_BODY,
        trigger_name: str | None = None,
    ) -> None:
        self.metadata = metadata
        self._trigger = trigger_name or f"{self.trigger_type}[{metadata.index}]"
        self._source = HTTPSource(
            auth=metadata.auth,
            unsafe_ssl=metadata.unsafe_ssl,
            timeout=metadata.timeout or timeout,
            trigger=self._trigger,
            what=self.what,
            extra=self.extra,
            session=session,
            max_body=max_body,
            path=metadata.path,
        )

    @classmethod
    def parse(cls, ctx: TriggerContext) -> _M:
        """Parse the trigger's metadata. :raises ConfigError: listing every problem."""
        raise NotImplementedError

    @classmethod
    def from_context(
        cls, ctx: TriggerContext, *, session: Any = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Self:
        """Parse ``ctx`` (raising :class:`ConfigError`) and build the scaler."""
        return cls(cls.parse(ctx), session=session, timeout=timeout, trigger_name=ctx.identity)

    def metric_specs(self) -> Sequence[MetricSpec]:
        """The one metric, with the trigger's target and activation target."""
        m = self.metadata
        return (
            MetricSpec(
                name=m.metric_name,
                target=m.target,
                metric_type=m.metric_type,
                activation_target=m.activation_target,
            ),
        )

    def _fail(self, message: str) -> ScalerError:
        """A non-transient error about an answer, redacted."""
        return ScalerError(
            redact_text(message, self.metadata.auth.secrets()),
            trigger=self._trigger,
            transient=False,
        )

    async def read_value(self) -> float:
        """Read the number once. :raises ScalerError: on any failure."""
        raise NotImplementedError

    async def get_metrics(self) -> ScalerReport:
        """Poll once: the value, active when it exceeds the activation target."""
        value = await self.read_value()
        m = self.metadata
        return ScalerReport.single(m.metric_name, value, is_active=value > m.activation_target)

    async def aclose(self) -> None:
        """Close the HTTP session the scaler opened; safe to repeat."""
        await self._source.aclose()
