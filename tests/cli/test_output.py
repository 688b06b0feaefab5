"""The shared output helpers of the command line: redaction, terminals, tables."""

from __future__ import annotations

import io
from pathlib import Path

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


def test_the_writer_escapes_what_the_stream_cannot_encode() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", write_through=True)
    writer = RedactingWriter(stream, Redactor())
    writer.write("name x\ud800 caf\u00e9\n")
    assert raw.getvalue() == b"name x\\ud800 caf\\xe9\n"
    utf8 = io.BytesIO()
    utf8_stream = io.TextIOWrapper(utf8, encoding="utf-8", write_through=True)
    RedactingWriter(utf8_stream, Redactor()).write("x\ud800 \u00e9")
    assert utf8.getvalue() == "x\\ud800 \u00e9".encode()


def test_evaluate_refuses_bad_text_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    from cli._runner import run_cli

    good = (Path(__file__).parent.parent / "data" / "manifests" / "redis.yaml").read_bytes()
    cases = {
        "latin1.yaml": good.replace(b"\n", b"\n# caf\xe9\n", 1),
        "surrogate.yaml": good.replace(
            b"metadata:\n  name: ", b'metadata:\n  name: "x\\ud800"\n  x: ', 1
        ),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = run_cli("evaluate", str(path), "--current-replicas", "1")
        assert result.code == 2, (name, result)
        assert "Traceback" not in result.stderr
    latin1 = run_cli("evaluate", str(tmp_path / "latin1.yaml"))
    assert "is not UTF-8: byte 0xe9 at offset" in latin1.stderr
    assert "(line 2)" in latin1.stderr


def test_manifest_files_are_read_with_a_size_bound(tmp_path: Path) -> None:
    import pytest

    from eventscale.cli._common import read_manifest_files
    from eventscale.errors import ConfigError
    from eventscale.manifests.fields import MAX_MANIFEST_CHARS

    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(4 * MAX_MANIFEST_CHARS + 1)
    with pytest.raises(ConfigError, match="larger than"):
        read_manifest_files([str(big)])
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfkind: X\n")
    assert read_manifest_files([str(bom)]) == "kind: X\n"
