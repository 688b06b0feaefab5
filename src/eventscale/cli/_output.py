"""What every ``eventscale`` command writes through: one output protocol, the redacting
writer and log filter, tables and JSON.

No secret is ever printed: error messages are redacted where they are made, and
everything a command writes passes through :data:`REDACTOR`, which blanks URL
passwords, connection-string keys and the values registered with it (the manifest's
Secrets, ``--env`` values whose key looks secret). See docs/cli.md.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from eventscale.redaction import Secret, redact_text

__all__ = (
    "REDACTOR",
    "RedactingWriter",
    "Redactor",
    "Writable",
    "encodable",
    "fmt",
    "is_terminal",
    "setup_logging",
    "table",
    "write_json",
)


class Writable(Protocol):
    """Where a command writes: a text stream such as ``sys.stdout``."""

    def write(self, text: str, /) -> int:
        """Write ``text``."""
        ...

    def flush(self) -> None:
        """Flush buffered output."""
        ...


def is_terminal(stream: Writable) -> bool:
    """Whether ``stream`` is a terminal (``False`` when it cannot say)."""
    try:
        isatty: Callable[[], bool] = getattr(stream, "isatty")  # noqa: B009
        return bool(isatty())
    except (AttributeError, ValueError):
        return False


class Redactor:
    """The last line of defence: scrubs every string the command writes."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add(self, values: Iterable[Secret | str]) -> None:
        """Blank these values (those of 4 characters or more) from now on."""
        for value in values:
            raw = value.reveal() if isinstance(value, Secret) else value
            if len(raw) >= 4:
                self.secrets.add(raw)

    def __call__(self, text: str) -> str:
        # Longest first, so a secret that contains another is blanked whole.
        ordered: list[Secret | str | None] = [
            *sorted(self.secrets, key=lambda s: len(s), reverse=True)
        ]
        return redact_text(text, ordered)


#: The redactor of this process: every command's output and log pass through it.
REDACTOR = Redactor()


def encodable(text: str, stream: object) -> str:
    """``text`` with what ``stream``'s encoding cannot hold as backslash escapes."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding Python does not know: UTF-8 is what it can do
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class RedactingWriter:
    """A text stream wrapper that redacts what goes through it."""

    def __init__(self, stream: Writable, redactor: Redactor) -> None:
        self._stream = stream
        self._redact = redactor

    def write(self, text: str, /) -> int:
        """Write ``text`` redacted; return its length as given.

        What the stream's encoding cannot hold (a lone surrogate, a character outside
        the terminal's code page) is written as a backslash escape, never an error.
        """
        self._stream.write(encodable(self._redact(text), self._stream))
        return len(text)

    def flush(self) -> None:
        """Flush the wrapped stream."""
        self._stream.flush()

    def isatty(self) -> bool:
        """Whether the wrapped stream is a terminal."""
        return is_terminal(self._stream)


class _RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks of library errors may quote connection strings.
            text = "".join(traceback.format_exception(*record.exc_info))
            record.msg = f"{record.msg}\n{self._redact(text).rstrip()}"
            record.exc_info = None
            record.exc_text = None
        return True


def setup_logging(verbosity: int, err: Writable) -> Callable[[], None]:
    """Log to ``err`` through :data:`REDACTOR`; return a function that undoes it.

    By default only eventscale's warnings are shown (broker client libraries log the
    same connection failures the report already carries); ``-v`` shows eventscale's
    info and every library's warnings, ``-vv`` debug output. ``main`` restores the
    previous logging setup when it returns, so calling it in-process (tests, an
    embedding application) leaves logging as it found it.
    """
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter(REDACTOR))
    root = logging.getLogger()
    library = logging.getLogger("eventscale")
    # librdkafka's own log, relayed under eventscale's name: a driver's chatter that
    # repeats every connection attempt the trigger's error already sums up.
    driver = logging.getLogger("eventscale.scalers.kafka.librdkafka")
    saved_handlers = list(root.handlers)
    saved_levels = [(logger, logger.level) for logger in (root, library, driver)]

    def restore() -> None:
        root.handlers[:] = saved_handlers
        for logger, level in saved_levels:
            logger.setLevel(level)

    root.handlers[:] = [handler]
    if verbosity <= 0:
        root.setLevel(logging.CRITICAL + 1)
        library.setLevel(logging.WARNING)
        driver.setLevel(logging.CRITICAL + 1)
    elif verbosity == 1:
        root.setLevel(logging.WARNING)
        library.setLevel(logging.INFO)
        driver.setLevel(logging.WARNING)
    else:
        root.setLevel(logging.DEBUG)
        library.setLevel(logging.DEBUG)
        driver.setLevel(logging.DEBUG)
    return restore


def table(rows: Sequence[Sequence[str]], out: Writable) -> None:
    """Write ``rows`` (the first is the header) as left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


def fmt(value: float | None) -> str:
    """A number for a table cell: ``-`` for none, else the shortest ``g`` form."""
    if value is None:
        return "-"
    return f"{value:g}"


def write_json(doc: Any, out: Writable) -> None:
    """Write ``doc`` as one indented JSON document."""
    out.write(json.dumps(doc, indent=2) + "\n")
