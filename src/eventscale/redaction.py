"""Secrets: a value type that never shows itself, and text redaction.

Every password, key, SAS token and connection string in eventscale travels as a
:class:`Secret`. Its ``repr`` and ``str`` are ``***``; only :meth:`Secret.reveal` gives
the value, and only the code that hands it to a client library calls it.

:func:`redact_text` scrubs free text (driver error messages, URLs, connection strings)
before it is put in an exception or a log record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = (
    "REDACTED",
    "Secret",
    "is_secret_name",
    "redact_text",
    "redact_url",
)

REDACTED: Final = "***"


class Secret:
    """A secret string. Equal to another ``Secret`` holding the same value; hashable.

    >>> s = Secret("hunter2")
    >>> s, str(s), f"{s}"
    (Secret('***'), '***', '***')
    >>> s.reveal()
    'hunter2'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret value. Call it only where the value goes to a client library."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("eventscale.Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


# Parameter names whose values are secrets wherever they appear (trigger metadata,
# TriggerAuthentication parameters, environment indirections). Compared case-insensitively.
_SECRET_NAMES: Final = frozenset(
    name.lower()
    for name in (
        "password",
        "keyPassword",
        "key",
        "tlsKey",
        "accountKey",
        "sharedAccessKey",
        "connection",
        "connectionString",
        "host",  # RabbitMQ's host is an AMQP/HTTP URL that usually carries the password
        "sasToken",
        "token",
        "bearerToken",
        "clientSecret",
        "oauthClientSecret",
        "keytab",
        "cert",
        "ca",
        "awsSecretAccessKey",
        "awsSessionToken",
        "sentinelPassword",
        "apiKey",
    )
)


def is_secret_name(name: str) -> bool:
    """Whether a parameter called ``name`` carries a secret (``password``, ``connection``...).

    A ``...FromEnv`` name holds an environment variable *name*, which is not secret.
    """
    return name.lower() in _SECRET_NAMES


# user:password@ in any URL-like string (amqp://, redis://, https://, sb://). The scheme
# is bounded (real ones are short): unbounded, every letter of a long word would start a
# scan to the end of the text, which made redaction quadratic.
_URL_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)
# key=value pairs of Azure-style connection strings and query strings.
_KEY_VALUE = re.compile(
    r"(?P<key>(?:AccountKey|SharedAccessKey|SharedAccessSignature|sig|password|pwd|"
    r"access_token|token|client_secret|secret)\s*=\s*)(?P<value>[^;&\s\"']+)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """Replace the password of every ``scheme://user:password@`` in ``url`` with ``***``."""
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)


def redact_text(text: str, secrets: Iterable[Secret | str | None] = ()) -> str:
    """Scrub ``text`` for logs and errors.

    Removes URL passwords, connection-string keys and SAS signatures, and every
    occurrence of the given ``secrets`` (the values a scaler knows it holds).
    """
    out = redact_url(text)
    out = _KEY_VALUE.sub(lambda m: f"{m['key']}{REDACTED}", out)
    for secret in secrets:
        if secret is None:
            continue
        raw = secret.reveal() if isinstance(secret, Secret) else secret
        # Very short values would blank out unrelated text; they are not credible secrets.
        if len(raw) >= 4:
            out = out.replace(raw, REDACTED)
    return out
