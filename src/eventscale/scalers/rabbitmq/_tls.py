"""TLS for both ways of reading a queue: the client context and reading TLS failures."""

from __future__ import annotations

import os
import ssl
import tempfile

from eventscale.errors import ConfigError
from eventscale.scalers.rabbitmq.config import RabbitMQConfig

__all__ = ("build_ssl_context", "tls_failure", "tls_reason")


def build_ssl_context(config: RabbitMQConfig) -> ssl.SSLContext:
    """The TLS context for ``config``: CA, client certificate, ``unsafeSsl``.

    ``ca``, ``cert`` and ``key`` are PEM texts (as in a KEDA TriggerAuthentication).
    """
    context = (
        ssl.create_default_context(cadata=config.ca or None)
        if config.tls and config.ca
        else ssl.create_default_context()
    )
    if config.tls and config.cert and config.key:
        with tempfile.TemporaryDirectory(prefix="eventscale-tls-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            for path, text in ((cert_path, config.cert), (key_path, config.key.reveal())):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
            password = config.key_password.reveal() if config.key_password else None
            try:
                context.load_cert_chain(cert_path, key_path, password=password)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    "cannot load the client certificate/key (wrong keyPassword, or not a "
                    f"PEM certificate and key pair): {type(exc).__name__}",
                    path="keyPassword" if config.key_password else "cert",
                ) from None
    if config.unsafe_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` (drivers wrap it), or None for other failures."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    # aiormq re-raises an SSLError as AMQPConnectionError(errno, text) without a cause
    text = str(exc)
    if "[SSL" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return ssl.SSLError(text)
    return None


def tls_reason(exc: ssl.SSLError) -> str:
    """The short reason of a TLS failure (the verify message where there is one)."""
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)
