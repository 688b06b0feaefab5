"""Checking a kafka trigger's PEM material (``ca``, ``cert``, ``key``) before librdkafka.

librdkafka refuses bad PEM when the client is created; with ``sasl: oauthbearer`` (OIDC)
its clean-up after that refusal trips an internal assertion and aborts the whole process
(every other object with it). So the material is loaded here first, with Python's
``ssl`` (the same OpenSSL parsing), and a failure is a ``ConfigError`` at the field.
docs/scalers/kafka.md ("TLS") describes the parameters.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from typing import Final

from eventscale.redaction import Secret

__all__ = ("MAX_PEM_BYTES", "pem_problem")

#: The most bytes one PEM parameter may hold (a long chain is a few tens of KiB).
MAX_PEM_BYTES: Final = 256 * 1024


def pem_problem(
    ca: Secret | None, cert: Secret | None, key: Secret | None, password: Secret | None
) -> tuple[str, str] | None:
    """What is wrong with the PEM material, as (reason, parameter), or ``None``.

    Reasons name the parameter and the failing step, never the content.
    """
    for name, value in (("ca", ca), ("cert", cert), ("key", key)):
        if value is not None and len(value.reveal().encode("utf-8", "replace")) > MAX_PEM_BYTES:
            return (f"{name} is over {MAX_PEM_BYTES // 1024} KiB", name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        try:
            context.load_verify_locations(cadata=ca.reveal())
        except (ssl.SSLError, ValueError) as exc:
            return (f"ca is not a PEM certificate (or bundle): {_step(exc)}", "ca")
    if cert and key:
        return _chain_problem(context, cert, key, password)
    return None


def _chain_problem(
    context: ssl.SSLContext, cert: Secret, key: Secret, password: Secret | None
) -> tuple[str, str] | None:
    # ssl loads a certificate chain from files only: a private directory (0700, files
    # 0600), removed as soon as the pair is loaded.
    with tempfile.TemporaryDirectory(prefix="eventscale-kafka-pem-") as tmp:
        paths = {"cert": os.path.join(tmp, "cert.pem"), "key": os.path.join(tmp, "key.pem")}
        for name, value in (("cert", cert), ("key", key)):
            fd = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
                handle.write(value.reveal())
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert.reveal())
        except (ssl.SSLError, ValueError) as exc:
            return (f"cert is not a PEM certificate: {_step(exc)}", "cert")
        # A callable password: never OpenSSL's interactive prompt for an encrypted key.
        secret = password.reveal() if password else ""
        try:
            context.load_cert_chain(paths["cert"], paths["key"], password=lambda: secret)
        except (ssl.SSLError, ValueError, OSError) as exc:
            if password:
                return (
                    (
                        "key is not a PEM private key for cert, or keyPassword does not open it: "
                        f"{_step(exc)}"
                    ),
                    "keyPassword",
                )
            return (f"key is not a PEM private key for cert: {_step(exc)}", "key")
    return None


def _step(exc: BaseException) -> str:
    """The failing step of an ``ssl`` error (its reason code), never the material."""
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    if not isinstance(reason, str) or not reason:
        return type(exc).__name__
    return re.sub(r"\s*\(_ssl\.c:[0-9]+\)$", "", reason)
