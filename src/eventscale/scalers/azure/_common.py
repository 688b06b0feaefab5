"""Shared pieces of the Azure scalers: clouds, connection strings, pod identity, a client pool.

* The cloud table maps KEDA's ``cloud`` names (case-insensitive, as Go autorest's
  ``EnvironmentFromName``) to the storage and Service Bus endpoint suffixes.
* Connection strings are parsed into their non-secret parts (endpoint, account) so that
  errors can name *where* without ever showing the key.
* :class:`ClientPool` shares one async SDK client per account or namespace (and per event
  loop, because aiohttp sessions belong to a loop), counting references and closing the
  client when the last scaler releases it; :class:`PooledClient` is one scaler's hold on
  such a client (and on the workload identity credential it made).
* :func:`azure_errors` translates azure-core exceptions into :class:`ScalerError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Generic, Protocol, TypeVar

import attrs

from eventscale.errors import ConfigError, ScalerError, ScalerTimeout
from eventscale.redaction import Secret, redact_text
from eventscale.scalers.params import AUTH, Params, Source

__all__ = (
    "AZURE_WORKLOAD",
    "CLOUDS",
    "POD_IDENTITY_KEY",
    "ClientPool",
    "CloudSuffixes",
    "PooledClient",
    "azure_errors",
    "connection_secrets",
    "connection_setting",
    "parse_connection_string",
    "pod_identity",
    "resolve_cloud_suffix",
    "secret_fingerprint",
    "workload_credential",
    "workload_overrides",
)


@attrs.frozen
class CloudSuffixes:
    """DNS suffixes of one Azure cloud: storage (``core.windows.net``) and Service Bus."""

    storage: str
    servicebus: str


_PUBLIC: Final = CloudSuffixes("core.windows.net", "servicebus.windows.net")
_US_GOV: Final = CloudSuffixes("core.usgovcloudapi.net", "servicebus.usgovcloudapi.net")
_CHINA: Final = CloudSuffixes("core.chinacloudapi.cn", "servicebus.chinacloudapi.cn")
_GERMAN: Final = CloudSuffixes("core.cloudapi.de", "servicebus.cloudapi.de")

# Keys are upper case; a ``cloud`` value is compared case-insensitively.
CLOUDS: Final[Mapping[str, CloudSuffixes]] = {
    "AZURECLOUD": _PUBLIC,
    "AZUREPUBLICCLOUD": _PUBLIC,
    "AZUREUSGOVERNMENT": _US_GOV,
    "AZUREUSGOVERNMENTCLOUD": _US_GOV,
    "AZURECHINACLOUD": _CHINA,
    "AZUREGERMANCLOUD": _GERMAN,
}
PRIVATE_CLOUD: Final = "private"

# The TriggerAuthentication's ``spec.podIdentity.provider`` travels in the resolved
# auth parameters under this key ("none", "azure-workload").
POD_IDENTITY_KEY: Final = "podIdentity"
AZURE_WORKLOAD: Final = "azure-workload"
_NO_IDENTITY: Final = frozenset({"", "none"})


def pod_identity(p: Params, *, what: str) -> str:
    """The pod identity provider of the trigger: ``""`` (none) or ``azure-workload``.

    Any other provider is recorded as an error on ``p`` (``what`` names the scaler).
    """
    raw = p.ctx.auth.get(POD_IDENTITY_KEY)
    text = (raw.reveal() if isinstance(raw, Secret) else raw or "").strip()
    if text in _NO_IDENTITY:
        return ""
    if text == AZURE_WORKLOAD:
        return AZURE_WORKLOAD
    p.fail(
        f"{what} doesn't support pod identity {text!r} (use none or azure-workload)",
        POD_IDENTITY_KEY,
        AUTH,
    )
    return ""


def resolve_cloud_suffix(p: Params, *, service: str, default_prefix: str = "") -> str | None:
    """The endpoint suffix selected by ``cloud`` / ``endpointSuffix`` (KEDA's rules).

    No ``cloud``: the public cloud. A known cloud name (case-insensitive): its suffix for
    ``service`` (``"storage"`` or ``"servicebus"``), prefixed with ``default_prefix``
    (``"queue."`` for storage queues). ``Private``: ``endpointSuffix`` as given, required.
    Unknown cloud: an error recorded on ``p``; ``None`` is returned on error.
    """
    cloud = p.string("cloud", default="")
    if cloud.lower() == PRIVATE_CLOUD:
        suffix = p.string("endpointSuffix", default="")
        if not suffix:
            p.fail("endpointSuffix must be provided for Private cloud type", "endpointSuffix")
            return None
        return suffix
    if cloud:
        env = CLOUDS.get(cloud.upper())
        if env is None:
            p.fail(f"invalid cloud environment {cloud}", "cloud")
            return None
    else:
        env = _PUBLIC
    return default_prefix + (env.storage if service == "storage" else env.servicebus)


def parse_connection_string(text: str) -> dict[str, str]:
    """Split an Azure ``Key=Value;Key=Value`` connection string; keys are lower-cased.

    :raises ValueError: a part is not ``key=value``. The message never contains a value.
    """
    out: dict[str, str] = {}
    for index, part in enumerate(text.split(";")):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"part {index + 1} of the connection string is not key=value")
        out[key.strip().lower()] = value.strip()
    if not out:
        raise ValueError("the connection string is empty")
    return out


def connection_setting(p: Params, order: Sequence[Source]) -> tuple[Secret | None, str | None]:
    """The trigger's ``connection`` along ``order``, and the field path it came from."""
    found = p.lookup("connection", order)
    if found is None:
        return None, None
    return Secret(found.raw), p.found_path(found)


def connection_secrets(connection: Secret | None, keys: Iterable[str]) -> tuple[Secret | None, ...]:
    """What to redact from messages: the connection string and each of its ``keys`` parts.

    The parts are listed too because a driver message may quote a key without the rest.
    """
    if connection is None:
        return ()
    out: list[Secret | None] = [connection]
    try:
        parts = parse_connection_string(connection.reveal())
    except ValueError:
        return tuple(out)
    for name in keys:
        if parts.get(name):
            out.append(Secret(parts[name]))
    return tuple(out)


# podIdentity fields that override the workload identity webhook's environment
# (KEDA's pkg/scalers/azure/azure_aad_workload_identity.go): client id, tenant, authority.
_WORKLOAD_OVERRIDES: Final = (
    ("identityId", "client_id"),
    ("identityTenantId", "tenant_id"),
    ("identityAuthorityHost", "authority"),
)


def workload_overrides(p: Params) -> tuple[tuple[str, str], ...]:
    """The trigger's ``identityId``/``identityTenantId``/``identityAuthorityHost`` auth
    parameters (from ``spec.podIdentity``), as ``(field, value)`` pairs for
    :func:`workload_credential`. They are identifiers, not secrets.
    """
    out: list[tuple[str, str]] = []
    for field, _ in _WORKLOAD_OVERRIDES:
        raw = p.ctx.auth.get(field)
        value = (raw.reveal() if isinstance(raw, Secret) else raw or "").strip()
        if value:
            out.append((field, value))
    return tuple(out)


def workload_credential(
    auth: Mapping[str, Secret | str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """A new ``azure.identity.aio.WorkloadIdentityCredential`` for a trigger's ``auth``.

    As KEDA: the workload identity webhook's environment (``AZURE_CLIENT_ID``,
    ``AZURE_TENANT_ID``, ``AZURE_FEDERATED_TOKEN_FILE``, ``AZURE_AUTHORITY_HOST``)
    gives the defaults; the TriggerAuthentication's ``podIdentity`` fields
    ``identityId``, ``identityTenantId`` and ``identityAuthorityHost`` override them.
    azure-identity re-reads the token file and azure-core renews the Entra ID token
    before it expires (docs/authentication.md, Pod identity).

    ``options`` are azure-core client options handed to the credential as they are
    (``connection_verify``: a CA bundle for an authority host with a private
    certificate; ``transport``; ``retry_total``...).

    :raises ConfigError: ``azure-identity`` is not installed, or the client id, tenant
        or token file is missing (path ``podIdentity``).
    """
    try:
        from azure.identity.aio import WorkloadIdentityCredential
    except ImportError:
        raise ConfigError(
            "workload identity needs the 'azure-identity' package "
            "(pip install 'eventscale[azure]'), or pass credential= to the scaler",
            path=POD_IDENTITY_KEY,
        ) from None
    kwargs: dict[str, Any] = dict(options or {})
    for field, argument in _WORKLOAD_OVERRIDES:
        raw = (auth or {}).get(field)
        value = (raw.reveal() if isinstance(raw, Secret) else raw or "").strip()
        if value:
            kwargs[argument] = value
    try:
        return WorkloadIdentityCredential(**kwargs)
    except ValueError as exc:
        # azure-identity names the missing setting (client id, tenant id, token file).
        raise ConfigError(f"workload identity: {exc}", path=POD_IDENTITY_KEY) from None


def secret_fingerprint(secret: Secret | None) -> str:
    """A short one-way fingerprint of ``secret``, safe to use in pool keys."""
    if secret is None:
        return "-"
    return hashlib.sha256(secret.reveal().encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- errors


_DETAIL = re.compile(r"<Detail>(.*?)</Detail>", re.DOTALL)


def _error_text(exc: BaseException, secrets: Iterable[Secret | None]) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    # azure-core messages can span many lines (error XML, request ids); keep the head.
    first = " ".join(str(message).split("\n")[:3]).strip()
    # Service Bus puts the reason in the body's <Detail>, after the status line.
    detail = _DETAIL.search(str(exc))
    if detail and detail.group(1) not in first:
        first = f"{first}: {detail.group(1).strip()}"
    return redact_text(first[:500], secrets)


@contextlib.asynccontextmanager
async def azure_errors(
    what: str,
    *,
    secrets: Iterable[Secret | None] = (),
    deadline: float | None = None,
) -> AsyncIterator[None]:
    """Run the body within ``deadline`` seconds; translate azure-core errors to ScalerError.

    ``what`` says what was being read ("queue 'orders' at http://host/account"). Missing
    entities and refused credentials are permanent (``transient=False``); network errors
    and timeouts are transient. Messages are passed through :func:`redact_text` with the
    scaler's ``secrets``.
    """
    from azure.core import exceptions as az

    secrets = tuple(secrets)
    try:
        if deadline is None:
            yield
        else:
            async with asyncio.timeout(deadline):
                yield
    except TimeoutError as exc:
        raise ScalerTimeout(f"{what}: no answer within {deadline:g}s", transient=True) from exc
    except az.ResourceNotFoundError as exc:
        raise ScalerError(
            f"{what} doesn't exist ({_error_text(exc, secrets)})", transient=False
        ) from exc
    except az.ClientAuthenticationError as exc:
        raise ScalerError(
            f"{what}: authentication failed ({_error_text(exc, secrets)})", transient=False
        ) from exc
    except az.ServiceRequestError as exc:
        raise ScalerError(
            f"{what}: cannot connect ({_error_text(exc, secrets)})", transient=True
        ) from exc
    except az.ServiceResponseError as exc:
        raise ScalerError(
            f"{what}: bad response ({_error_text(exc, secrets)})", transient=True
        ) from exc
    except az.HttpResponseError as exc:
        status = getattr(exc, "status_code", None)
        transient = status is None or status >= 500 or status in (408, 429)
        raise ScalerError(
            f"{what}: request failed with status {status} ({_error_text(exc, secrets)})",
            transient=transient,
        ) from exc
    except az.AzureError as exc:
        raise ScalerError(f"{what}: {_error_text(exc, secrets)}", transient=True) from exc
    except OSError as exc:
        raise ScalerError(f"{what}: {_error_text(exc, secrets)}", transient=True) from exc


# ---------------------------------------------------------------------------- client pool


class _Closeable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closeable)


@attrs.define
class _Entry(Generic[C]):
    client: C
    refs: int


class ClientPool(Generic[C]):
    """Share one async client per key and event loop; close it when its last user leaves.

    Keys must not contain secrets (use :func:`secret_fingerprint`). The loop is part of
    the key because an aiohttp session cannot be used from another event loop.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[int, tuple[Any, ...]], _Entry[C]] = {}

    def _full_key(self, key: tuple[Any, ...]) -> tuple[int, tuple[Any, ...]]:
        return (id(asyncio.get_running_loop()), key)

    async def acquire(self, key: tuple[Any, ...], factory: Callable[[], Awaitable[C] | C]) -> C:
        """The client for ``key``, created with ``factory`` on first use; add one reference."""
        full = self._full_key(key)
        entry = self._entries.get(full)
        if entry is None:
            made = factory()
            client: C = await made if isinstance(made, Awaitable) else made
            # Another task may have created it while we awaited; keep the first one.
            entry = self._entries.get(full)
            if entry is None:
                entry = _Entry(client, 0)
                self._entries[full] = entry
            else:
                await client.close()
        entry.refs += 1
        return entry.client

    async def release(self, key: tuple[Any, ...]) -> None:
        """Drop one reference; close the client when none is left."""
        full = self._full_key(key)
        entry = self._entries.get(full)
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs <= 0:
            del self._entries[full]
            await entry.client.close()

    def refcount(self, key: tuple[Any, ...]) -> int:
        """How many users hold the client for ``key`` on the running loop (for tests)."""
        entry = self._entries.get(self._full_key(key))
        return entry.refs if entry is not None else 0


class PooledClient(Generic[C]):
    """One scaler's hold on a client of a :class:`ClientPool`.

    The client is acquired on first use with ``factory``. :meth:`aclose` releases it
    (the pool closes it with its last user) and closes ``owned_credential``, the
    credential the scaler made for itself; after that, :meth:`get` raises.
    """

    def __init__(
        self,
        pool: ClientPool[C],
        key: tuple[Any, ...],
        factory: Callable[[], Awaitable[C] | C],
        *,
        trigger: str,
        owned_credential: Any = None,
    ) -> None:
        self._pool = pool
        self._key = key
        self._factory = factory
        self._trigger = trigger
        self._owned_credential = owned_credential
        self._client: C | None = None
        self._closed = False

    async def get(self) -> C:
        """The pooled client. :raises ScalerError: after :meth:`aclose` (permanent)."""
        if self._closed:
            raise ScalerError("the scaler is closed", trigger=self._trigger, transient=False)
        if self._client is None:
            self._client = await self._pool.acquire(self._key, self._factory)
        return self._client

    async def aclose(self) -> None:
        """Release the client and close the owned credential; safe to repeat."""
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            self._client = None
            await self._pool.release(self._key)
        if self._owned_credential is not None:
            await self._owned_credential.close()
            self._owned_credential = None
