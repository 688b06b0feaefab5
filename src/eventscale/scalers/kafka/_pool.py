"""A shared, reference-counted pool of librdkafka admin clients, one per cluster connection.

Every Kafka scaler whose connection settings (bootstrap servers, TLS and SASL options) are
equal shares one :class:`confluent_kafka.admin.AdminClient`. The client is created on the
first request that needs it, not when the scaler is built, and it is dropped when the last
scaler using it releases its lease. librdkafka reconnects by itself after a broker outage,
so a failed poll never replaces the client: there is never more than one client per
connection settings, however often the cluster goes away and comes back.

The pool can also hand out *snapshots*: the futures of a metadata or list-offsets request
are kept for a short, caller-chosen time, and other scalers asking for the same thing in
that window reuse them instead of sending another request (requests still in flight are
shared too). This is off unless a scaler asks for a TTL.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import re
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import attrs

from eventscale._optional import import_optional
from eventscale.errors import ConfigError
from eventscale.redaction import Secret, redact_text

__all__ = (
    "KERBEROS",
    "POOL",
    "Closeable",
    "KafkaClientPool",
    "KafkaConnection",
    "KerberosFiles",
    "KerberosLogin",
    "KerberosRegistry",
    "Settings",
    "librdkafka_has_gssapi",
    "scrub_oidc",
)

_LOG: Final = logging.getLogger("eventscale.scalers.kafka.librdkafka")

# librdkafka copies the OIDC token endpoint's answer into its log line and its error
# (rdkafka_sasl_oauthbearer_oidc.c: 'Failed to retrieve OIDC token from "%s": %s (%d)'
# and 'Failed to acquire SASL OAUTHBEARER token: %s'). An endpoint that echoes the
# request would put the base64 client secret there: only the status code is kept.
_OIDC_LOG = re.compile(
    r'(?P<head>Failed to retrieve OIDC token from "[^"]*"): .*\((?P<code>-?[0-9]+)\)\s*$',
    re.DOTALL,
)
_OIDC_ERROR = "Failed to acquire SASL OAUTHBEARER token"
_NOT_SHOWN = "the token endpoint's answer is not shown: it may echo the client secret"


def scrub_oidc(text: str) -> str:
    """``text`` from librdkafka with a copied OIDC token endpoint answer taken out."""
    match = _OIDC_LOG.search(text)
    if match is not None:
        start = text[: match.start()]
        return redact_text(f"{start}{match['head']}: HTTP status {match['code']} ({_NOT_SHOWN})")
    if _OIDC_ERROR in text:
        return text[: text.index(_OIDC_ERROR) + len(_OIDC_ERROR)] + f" ({_NOT_SHOWN})"
    return text


class _ScrubOidc(logging.Filter):
    """Takes the OIDC token endpoint's answer out of librdkafka's log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "OIDC" in message or _OIDC_ERROR in message:
            record.msg, record.args = scrub_oidc(message), ()
        return True


_LOG.addFilter(_ScrubOidc())

#: librdkafka configuration for one cluster connection: name -> value (secrets wrapped;
#: callbacks such as ``oauth_cb`` are objects that compare equal when they do the same).
Settings = tuple[tuple[str, Any], ...]

Futures = Mapping[Any, "concurrent.futures.Future[Any]"]


class Closeable(Protocol):
    """What a connection can hold besides librdkafka clients (the batch path)."""

    def close(self) -> None: ...


_C = TypeVar("_C", bound=Closeable)

# librdkafka error names that mean the brokers refused this client's credentials.
_AUTH_ERRORS: Final = frozenset({"_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED"})


@attrs.define(eq=False)
class _Snapshot:
    created: float
    futures: Futures

    def usable(self, now: float, ttl: float) -> bool:
        if now - self.created > ttl:
            return False
        # A failed request is never shared: the next caller asks again.
        return not any(f.done() and f.exception() is not None for f in self.futures.values())


class KafkaConnection:
    """One cluster connection: a lazily created admin client shared by several scalers.

    Obtain one with :meth:`KafkaClientPool.acquire` and give it back with
    :meth:`KafkaClientPool.release`. Scalers on the batch path share its
    :meth:`batcher` instead (``_batch``: kafka-python, no librdkafka client).
    """

    def __init__(self, key: Settings, *, batch_options: Mapping[str, Any] | None = None) -> None:
        self.key = key
        #: Keyword arguments for the batch path's constructor (tests pin versions here).
        self.batch_options: Mapping[str, Any] = batch_options or {}
        self._batcher: Any = None
        self.refs = 0
        #: How many clients this connection has created: at most one admin client plus
        #: one offsets consumer per consumer group, by design.
        self.clients_created = 0
        self._admin: Any = None
        self._consumers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._snapshots: dict[Hashable, _Snapshot] = {}
        #: The last authentication error librdkafka reported for this connection (its
        #: error name and text), cleared by :meth:`clear_auth_error` after a good poll.
        #: librdkafka reports a refused login only through its error callback; requests
        #: themselves just time out.
        self.auth_error: tuple[str, str] | None = None

    @property
    def has_client(self) -> bool:
        """Whether a client has been created (and not dropped yet)."""
        return self._admin is not None or bool(self._consumers)

    @property
    def admin_created(self) -> bool:
        """Whether the admin client exists (so :meth:`admin` returns without blocking)."""
        return self._admin is not None

    def batcher(self, make: Callable[..., _C]) -> _C:
        """The batch path of this connection: ``make(settings, **batch_options)``, called
        once; later calls return the same object (so pass the same ``make``)."""
        batcher = self._batcher
        if batcher is None:
            with self._lock:
                if self._batcher is None:
                    self._batcher = make(dict(self.key), **self.batch_options)
                batcher = self._batcher
        result: _C = batcher
        return result

    def admin(self) -> Any:
        """The admin client, created on first use (which may block: call it off the loop)."""
        admin = self._admin
        if admin is not None:
            return admin
        with self._lock:
            if self._admin is None:
                ck = import_optional(
                    "confluent_kafka.admin", extra="kafka", what="the kafka scaler"
                )
                self._admin = ck.AdminClient(self._conf())
                self.clients_created += 1
            return self._admin

    def _conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            k: (v.reveal() if isinstance(v, Secret) else v) for k, v in self.key
        }
        conf.setdefault("client.id", "eventscale")
        conf["logger"] = _LOG
        conf["error_cb"] = self._on_error
        return conf

    def _on_error(self, error: Any) -> None:
        name = error.name()
        text = scrub_oidc(error.str())
        if name in _AUTH_ERRORS:
            self.auth_error = (name, text)
        else:
            _LOG.debug("librdkafka error %s: %s", name, text)

    def clear_auth_error(self) -> None:
        """Forget a reported authentication error (the connection works now)."""
        self.auth_error = None

    def consumer_created(self, group: str) -> bool:
        """Whether the offsets consumer of ``group`` exists."""
        return group in self._consumers

    def consumer(self, group: str) -> Any:
        """A consumer carrying ``group.id = group``, used only to read committed offsets.

        It never subscribes, so it never joins the group or takes partitions from its
        members. (Committed offsets are read through a consumer and not through the admin
        API because librdkafka 2.16 aborts the process when an admin group request times
        out during a broker outage and the broker then comes back.)
        """
        consumer = self._consumers.get(group)
        if consumer is not None:
            return consumer
        with self._lock:
            consumer = self._consumers.get(group)
            if consumer is None:
                ck = import_optional("confluent_kafka", extra="kafka", what="the kafka scaler")
                conf = self._conf()
                conf.update(
                    {
                        "group.id": group,
                        "enable.auto.commit": False,
                        "enable.auto.offset.store": False,
                    }
                )
                consumer = self._consumers[group] = ck.Consumer(conf)
                self.clients_created += 1
            return consumer

    def serve_logs(self) -> None:
        """Deliver librdkafka's queued log lines to the ``eventscale`` logger."""
        admin = self._admin
        if admin is not None:
            admin.poll(0)
        for consumer in list(self._consumers.values()):
            consumer.poll(0)

    def shared(self, key: Hashable, ttl: float, request: Callable[[], Futures]) -> Futures:
        """The futures of ``request()``, reused for ``ttl`` seconds by identical requests.

        With ``ttl <= 0`` the request is always sent.
        """
        if ttl <= 0:
            return request()
        now = time.monotonic()
        with self._lock:
            snap = self._snapshots.get(key)
            if snap is not None and snap.usable(now, ttl):
                return snap.futures
            for stale in [k for k, s in self._snapshots.items() if now - s.created > ttl]:
                del self._snapshots[stale]
        futures = request()
        with self._lock:
            self._snapshots[key] = _Snapshot(now, futures)
        return futures

    def _drop(self) -> list[Any]:
        with self._lock:
            admin, self._admin = self._admin, None
            batcher, self._batcher = self._batcher, None
            consumers = list(self._consumers.values())
            self._consumers.clear()
            self._snapshots.clear()
        clients: list[Any] = [*consumers, *([admin] if admin is not None else [])]
        return clients + ([batcher] if batcher is not None else [])


class KafkaClientPool:
    """Connections keyed by their settings, counted by the scalers that hold them."""

    def __init__(self, *, batch_options: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._connections: dict[Settings, KafkaConnection] = {}
        self._batch_options = batch_options

    def acquire(self, settings: Mapping[str, Any]) -> KafkaConnection:
        """A lease on the connection for ``settings``; no network I/O happens here."""
        key: Settings = tuple(sorted(settings.items()))
        with self._lock:
            conn = self._connections.get(key)
            if conn is None:
                conn = self._connections[key] = KafkaConnection(
                    key, batch_options=self._batch_options
                )
            conn.refs += 1
            return conn

    def release(self, conn: KafkaConnection) -> list[Any]:
        """Give a lease back. Returns the clients to destroy when it was the last one.

        The caller closes them (``close()`` on consumers, dropping the admin client):
        destroying a librdkafka handle can block briefly, so the scaler does it in a
        worker thread.
        """
        with self._lock:
            conn.refs -= 1
            if conn.refs > 0:
                return []
            if self._connections.get(conn.key) is conn:
                del self._connections[conn.key]
        return conn._drop()

    def __len__(self) -> int:
        with self._lock:
            return len(self._connections)

    def connections(self) -> list[KafkaConnection]:
        """The connections currently held by at least one scaler."""
        with self._lock:
            return list(self._connections.values())


#: The process-wide pool every :class:`~eventscale.scalers.kafka.scaler.KafkaScaler` uses by default.
POOL: Final = KafkaClientPool()


# ---------------------------------------------------------------------------- Kerberos


@functools.cache
def librdkafka_has_gssapi() -> bool:
    """Whether the librdkafka that confluent-kafka loaded was built with GSSAPI (libsasl2).

    The wheels on PyPI bundle a librdkafka built without it; a confluent-kafka built
    from source against a system librdkafka usually has it. librdkafka refuses an
    unsupported ``builtin.features`` value before it creates anything, so the probe is
    cheap: with GSSAPI it creates (and drops) a producer that has no broker to talk to.
    """
    ck = import_optional("confluent_kafka", extra="kafka", what="the kafka scaler")
    try:
        ck.Producer({"builtin.features": "sasl_gssapi", "log_level": 0})
    except ck.KafkaException:
        return False
    return True


@attrs.frozen
class KerberosLogin:
    """Who logs in to Kerberos: a principal with either a keytab or a password.

    ``config`` is the krb5.conf text. The repr shows the principal only.
    """

    principal: str
    config: str = attrs.field(repr=False)
    keytab: bytes | None = attrs.field(default=None, repr=False)
    password: Secret | None = attrs.field(default=None, repr=False)


@attrs.frozen
class KerberosFiles:
    """The private files of one Kerberos login and the ``kinit`` command that uses them.

    ``directory`` (mode 0700) holds ``krb5.conf``, the ticket cache and either the keytab
    or a password file (each mode 0600). librdkafka runs :attr:`kinit_command` through
    the shell at client start and before the ticket expires; the password, when there is
    one, reaches ``kinit`` on its standard input, never on a command line.
    """

    login: KerberosLogin
    directory: Path
    config_path: Path
    ccache_path: Path
    keytab_path: Path | None
    password_path: Path | None
    kinit_command: str

    @property
    def environment(self) -> dict[str, str]:
        """The variables the Kerberos library of this process (and ``kinit``) read."""
        return {"KRB5_CONFIG": str(self.config_path), "KRB5CCNAME": f"FILE:{self.ccache_path}"}


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class KerberosRegistry:
    """The one Kerberos login of this process, shared by every GSSAPI scaler using it.

    The Kerberos library inside librdkafka reads its configuration from ``KRB5_CONFIG``
    and its tickets from ``KRB5CCNAME``: both are environment variables of the whole
    process. So a process can hold one Kerberos login at a time; a scaler asking for a
    different ``kerberosConfig``, principal or credential while another is in use gets a
    :class:`~eventscale.errors.ConfigError`. Scalers with the same login share the files,
    which are deleted (and the two variables restored) when the last one lets go.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: KerberosFiles | None = None
        self._refs = 0
        self._saved_env: dict[str, str | None] = {}

    @property
    def active(self) -> KerberosFiles | None:
        """The files of the login in use, if any."""
        return self._files

    def acquire(self, login: KerberosLogin, *, path: str | None = None) -> KerberosFiles:
        """Write the files for ``login`` (or share the ones already written for it).

        :raises ConfigError: another login is in use in this process (``path`` names the
            field in the error).
        """
        with self._lock:
            current = self._files
            if current is not None:
                if current.login != login:
                    raise ConfigError(self._conflict(current.login, login), path=path)
                self._refs += 1
                return current
            files = self._write(login)
            self._saved_env = {k: os.environ.get(k) for k in files.environment}
            os.environ.update(files.environment)
            self._files, self._refs = files, 1
            return files

    def release(self, files: KerberosFiles) -> None:
        """Give a lease back; the last one deletes the files and restores the variables."""
        with self._lock:
            if self._files is not files:
                return
            self._refs -= 1
            if self._refs > 0:
                return
            self._files = None
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved_env = {}
        shutil.rmtree(files.directory, ignore_errors=True)

    @staticmethod
    def _conflict(held: KerberosLogin, wanted: KerberosLogin) -> str:
        what = (
            "kerberosConfig"
            if held.config != wanted.config
            else "principal"
            if held.principal != wanted.principal
            else "credential (keytab or password)"
        )
        return (
            f"a different Kerberos {what} is already in use in this process: librdkafka's "
            "Kerberos library reads KRB5_CONFIG and KRB5CCNAME, which are process-wide, so "
            "one process can hold one Kerberos login at a time; run scalers with other "
            "Kerberos logins in another process"
        )

    @staticmethod
    def _write(login: KerberosLogin) -> KerberosFiles:
        directory = Path(tempfile.mkdtemp(prefix="eventscale-krb5-"))  # mode 0700
        try:
            config_path = directory / "krb5.conf"
            # parameters arrive trimmed; the profile parser wants whole lines
            _write_private(config_path, (login.config.rstrip("\n") + "\n").encode("utf-8"))
            principal = shlex.quote(login.principal)
            keytab_path = password_path = None
            if login.keytab is not None:
                keytab_path = directory / "client.keytab"
                _write_private(keytab_path, login.keytab)
                command = f"kinit -k -t {shlex.quote(str(keytab_path))} {principal}"
            else:
                password = login.password.reveal() if login.password is not None else ""
                password_path = directory / "password"
                _write_private(password_path, (password + "\n").encode("utf-8"))
                command = f"kinit {principal} < {shlex.quote(str(password_path))}"
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return KerberosFiles(
            login=login,
            directory=directory,
            config_path=config_path,
            ccache_path=directory / "ccache",
            keytab_path=keytab_path,
            password_path=password_path,
            kinit_command=command,
        )


#: The process-wide Kerberos login every GSSAPI :class:`~eventscale.scalers.kafka.scaler.KafkaScaler`
#: uses by default.
KERBEROS: Final = KerberosRegistry()
