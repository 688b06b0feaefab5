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
    "MAX_MESSAGE_CHARS",
    "REDACTED",
    "Secret",
    "bound_message",
    "is_credible_secret",
    "is_secret_name",
    "redact_text",
    "redact_url",
)

REDACTED: Final = "***"

#: The longest error message that reaches an event, a status or a log line (characters,
#: after redaction); the rest is replaced by a marker (docs/errors.md, "Limits").
MAX_MESSAGE_CHARS: Final = 1024


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


# Any other name containing one of these words is taken for a secret too (the metadata
# of an external scaler, an unknown trigger's ``authorization`` or ``apiToken``).
_SECRET_WORDS: Final = re.compile(
    r"token|secret|passw|pwd|key|authorization|credential", re.IGNORECASE
)


def is_secret_name(name: str) -> bool:
    """Whether a parameter called ``name`` carries a secret (``password``, ``apiToken``...).

    The known names (``connection``, ``host``, ``cert``...) and any name containing
    ``token``, ``secret``, ``passw``, ``pwd``, ``key``, ``authorization`` or
    ``credential`` (any case). A ``...FromEnv`` name holds an environment variable
    *name*, which is not secret.
    """
    lowered = name.lower()
    if lowered in _SECRET_NAMES:
        return True
    if lowered.endswith(("fromenv", "fromenvfile")):
        return False
    return _SECRET_WORDS.search(name) is not None


def is_credible_secret(value: str) -> bool:
    """Whether :func:`redact_text` looks for ``value`` in free text.

    At least 12 characters, or at least 4 mixing two kinds of characters (letters,
    digits, others). A short value of one kind (``default``, ``admin``, ``guest``) is
    not: blanking that word in every message would hide unrelated text and tell which
    word the secret is. Such values are still hidden where their place is known (URL
    passwords, ``password=`` pairs, :class:`Secret` reprs).
    """
    if len(value) >= 12:
        return True
    if len(value) < 4:
        return False
    kinds = (
        any(c.isalpha() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )
    return kinds >= 2


def bound_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how much was cut.

    Apply it after redaction (a cut could otherwise leave the start of a secret).
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


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
    occurrence of the given ``secrets`` (the values a scaler knows it holds) that
    :func:`is_credible_secret` accepts.
    """
    out = redact_url(text)
    out = _KEY_VALUE.sub(lambda m: f"{m['key']}{REDACTED}", out)
    for secret in secrets:
        if secret is None:
            continue
        raw = secret.reveal() if isinstance(secret, Secret) else secret
        if is_credible_secret(raw):
            out = out.replace(raw, REDACTED)
    return out
