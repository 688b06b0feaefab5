"""The shared output helpers of the command line: redaction, terminals, tables."""

from __future__ import annotations

import io

from eventscale.cli._output import RedactingWriter, Redactor, fmt, is_terminal, table
from eventscale.redaction import Secret


class _NoTTY:
    def write(self, text: str, /) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_the_writer_blanks_registered_secrets_longest_first() -> None:
    redactor = Redactor()
    redactor.add([Secret("hunter2-long"), "hunter2", "abc"])  # "abc" is too short to blank
    out = io.StringIO()
    writer = RedactingWriter(out, redactor)
    assert writer.write("pw=hunter2-long or hunter2, abc\n") == len(
        "pw=hunter2-long or hunter2, abc\n"
    )
    text = out.getvalue()
    assert "hunter2" not in text
    assert "abc" in text


def test_is_terminal_is_false_when_the_stream_cannot_say() -> None:
    assert is_terminal(io.StringIO()) is False
    assert is_terminal(_NoTTY()) is False
    assert RedactingWriter(_NoTTY(), Redactor()).isatty() is False


def test_table_and_fmt() -> None:
    out = io.StringIO()
    table([["A", "LONGER"], ["xyz", fmt(None)], ["1", fmt(2.50)]], out)
    assert out.getvalue().splitlines() == ["A    LONGER", "xyz  -", "1    2.5"]
