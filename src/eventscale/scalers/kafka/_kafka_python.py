"""What the batch path needs from kafka-python, and two fixes to it.

* :func:`client_config`: librdkafka settings (as ``KafkaMetadata`` builds them) to
  ``KafkaAdminClient`` arguments, TLS from PEM text (:func:`ssl_context`).
* :data:`LOG_FILTER`: takes secrets out of kafka-python's log lines and notices refused
  logins, which kafka-python only logs (it then reports a timeout).
* :func:`import_kafka_python`: imports it on the caller's thread and installs two narrow
  wrappers for kafka-python 3.0 bugs met against real brokers: a failed connection
  attempt leaves its socket open, and a SCRAM ``server-error`` (RFC 5802) is misread.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import ssl
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from eventscale._optional import import_optional
from eventscale.redaction import Secret, redact_text

__all__ = (
    "LOG_FILTER",
    "MAX_RESPONSE_BYTES",
    "REFUSALS",
    "available",
    "client_config",
    "import_kafka_python",
    "reveal",
    "ssl_context",
)

#: The largest answer the batch path accepts from a broker (kafka-python's default: 100 MB).
MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024

#: kafka-python errors that mean the cluster refused this client (login or rights).
REFUSALS: Final = frozenset(
    {
        "SaslAuthenticationFailedError",
        "UnsupportedSaslMechanismError",
        "IllegalSaslStateError",
        "TopicAuthorizationFailedError",
        "GroupAuthorizationFailedError",
        "ClusterAuthorizationFailedError",
    }
)


class _KafkaLogFilter(logging.Filter):
    """Reads kafka-python's log lines for two things.

    * Secrets: kafka-python logs its configuration, SASL password included, at DEBUG when
      a client starts; registered secrets are taken out of every line.
    * Refused logins: kafka-python retries a refused SASL login until its bootstrap or
      request timeout and then reports a timeout; the refusal itself appears only in its
      log lines (as the error object), logged on the client's I/O thread
      (``kafka-io-<client_id>``). The client owning that thread is told.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[int, list[Secret]] = {}
        #: I/O thread name -> what to call with (error name, text) on a refused login
        self.refusals: dict[str, Callable[[str, str], None]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [s for group in list(self.secrets.values()) for s in group]
        if secrets:
            message = record.getMessage()
            redacted = redact_text(message, secrets)
            if redacted != message:
                record.msg, record.args = redacted, ()
        watcher = self.refusals.get(record.threadName or "")
        if watcher is not None and isinstance(record.args, tuple):
            for arg in record.args:
                if isinstance(arg, Exception) and type(arg).__name__ in REFUSALS:
                    watcher(type(arg).__name__, str(arg))
        return True


LOG_FILTER: Final = _KafkaLogFilter()
for _name in ("kafka.admin.client", "kafka.net.manager", "kafka.net.connection"):
    logging.getLogger(_name).addFilter(LOG_FILTER)


def client_config(
    settings: Mapping[str, Any],
    *,
    client_id: str,
    timeout: float,
    api_version: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """``KafkaAdminClient`` keyword arguments for librdkafka ``settings`` (secrets revealed:
    the result goes to the client only)."""
    s = settings
    ms = max(int(timeout * 1000), 100)
    conf: dict[str, Any] = {
        "bootstrap_servers": str(s["bootstrap.servers"]).split(","),
        "client_id": client_id,
        "security_protocol": str(s.get("security.protocol", "PLAINTEXT")),
        "request_timeout_ms": ms,
        "bootstrap_timeout_ms": ms,
        "reconnect_backoff_max_ms": 1000,
        # every answer is bounded: 10 groups x 1,000 partitions is about 200 KB
        "receive_message_max_bytes": MAX_RESPONSE_BYTES,
    }
    if api_version is not None:
        conf["api_version"] = api_version
    mechanism = s.get("sasl.mechanism")
    if mechanism is not None:
        conf["sasl_mechanism"] = str(mechanism)
        conf["sasl_plain_username"] = reveal(s.get("sasl.username")) or ""
        conf["sasl_plain_password"] = reveal(s.get("sasl.password")) or ""
    if conf["security_protocol"] in ("SSL", "SASL_SSL"):
        conf["ssl_context"] = ssl_context(s)
        conf["ssl_check_hostname"] = conf["ssl_context"].check_hostname
    return conf


@functools.cache
def available() -> bool:
    """Whether kafka-python 3 is installed (read from its metadata: nothing is imported)."""
    try:
        version = importlib.metadata.version("kafka-python")
    except importlib.metadata.PackageNotFoundError:
        return False
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) >= 3


def import_kafka_python() -> None:
    """Import kafka-python's client now, on the caller's thread.

    Its protocol classes read their JSON schemas with ``importlib.resources.read_text``
    when they are defined, which Python 3.11+ flags as deprecated: under ``-W error`` that
    would turn into a failed poll, so the warning is ignored for this import only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="(read|open)_text is deprecated", category=DeprecationWarning
        )
        for name in ("kafka", "kafka.admin", "kafka.errors"):
            import_optional(name, extra="kafka", what="kafka batching")
    _close_failed_sockets()
    _read_scram_server_errors()


def _read_scram_server_errors() -> None:
    """Make kafka-python read a SCRAM ``server-error``.

    RFC 5802 lets the server's final message be ``e=<reason>`` instead of its signature;
    kafka-python 3.0 looks only for the signature and fails with ``KeyError('v')``, which
    hides a refused login. The wrapper raises kafka-python's own
    ``SaslAuthenticationFailedError`` for it; it is installed once.
    """
    scram = import_optional("kafka.net.sasl.scram", extra="kafka", what="kafka batching")
    errors = import_optional("kafka.errors", extra="kafka", what="kafka batching")
    cls = scram.ScramClient
    if getattr(cls, "_eventscale_reads_errors", False):
        return
    original = cls.process_server_final_message

    def process_server_final_message(self: Any, message: bytes) -> Any:
        text = bytes(message[:256]).decode("utf-8", "replace")
        if text.startswith("e="):
            reason = text[2:].split(",", 1)[0]
            raise errors.SaslAuthenticationFailedError(
                f"SASL/SCRAM login refused by the server: {reason}"
            )
        return original(self, message)

    cls.process_server_final_message = process_server_final_message
    cls._eventscale_reads_errors = True


def _close_failed_sockets() -> None:
    """Close the socket of a failed connection attempt.

    kafka-python 3.0 leaves it to the garbage collector (``KafkaNetSocket.sock_connect``
    raises without closing it): while a broker is down that is one open descriptor per
    reconnect attempt until a collection, and a ResourceWarning for each. The wrapper
    closes it and re-raises; it is installed once.
    """
    inet = import_optional("kafka.net.inet", extra="kafka", what="kafka batching")
    cls = inet.KafkaNetSocket
    if getattr(cls, "_eventscale_closes_failed", False):
        return
    original = cls.sock_connect

    async def sock_connect(self: Any, net: Any, sock: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, net, sock, *args, **kwargs)
        except BaseException:
            sock.close()
            raise

    cls.sock_connect = sock_connect
    cls._eventscale_closes_failed = True


def reveal(value: object) -> str | None:
    """The plain text of a setting (a :class:`Secret` revealed)."""
    if value is None:
        return None
    return value.reveal() if isinstance(value, Secret) else str(value)


def ssl_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS context of the connection, from the PEM texts KafkaMetadata carries."""
    ca = reveal(settings.get("ssl.ca.pem"))
    context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    if str(settings.get("enable.ssl.certificate.verification", "true")) == "false":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = reveal(settings.get("ssl.certificate.pem"))
    key = reveal(settings.get("ssl.key.pem"))
    if cert and key:
        # load_cert_chain reads files: write them into a private directory, load, delete
        with tempfile.TemporaryDirectory(prefix="eventscale-kafka-tls-") as tmp:
            cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            for path, text in ((cert_path, cert), (key_path, key)):
                path.touch(mode=0o600)
                path.write_text(text)
            password = reveal(settings.get("ssl.key.password"))
            context.load_cert_chain(cert_path, key_path, password=password)
    return context
