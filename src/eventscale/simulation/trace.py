"""Metric traces: trigger values over time, read from CSV with bounds.

A trace is what :func:`~eventscale.simulation.simulate` replays: a ``time`` column and
one column per trigger. Reading it is bounded (docs/errors.md, "Limits"): a field is at
most 128 KiB, values are finite and not negative, the text is UTF-8 (a byte-order mark
is accepted), and a simulation runs at most :data:`MAX_TICKS` ticks. Each problem is a
:class:`~eventscale.errors.ConfigError` naming the file and line.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import io
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from eventscale.errors import ConfigError
from eventscale.metrics import validate_metric_value

__all__ = ("MAX_TICKS", "Trace")


#: The most ticks (``trace end / pollingInterval + 1``) one simulation runs: a day at
#: 1 s polling fits; beyond it :func:`simulate` raises a ConfigError.
MAX_TICKS = 200_000


#: The longest field of a trace CSV (Python's csv default, stated).
_FIELD_LIMIT = 128 * 1024


@attrs.frozen
class Trace:
    """Trigger values over time: ``rows`` are ``(time, {column: value or None})``, sorted."""

    columns: tuple[str, ...]
    rows: tuple[tuple[float, Mapping[str, float | None]], ...]

    @classmethod
    def from_csv(cls, source: str | Path | io.TextIOBase) -> Trace:
        """Read a trace CSV (a path, or an open text file)."""
        if isinstance(source, (str, Path)):
            try:
                data = Path(source).read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {source}: {exc.strerror}", path=str(source)
                ) from None
            return cls._read(io.StringIO(_decode(data, str(source)), newline=""), str(source))
        return cls._read(source, "<trace>")

    @classmethod
    def from_text(cls, text: str) -> Trace:
        """Read a trace from CSV text."""
        return cls._read(io.StringIO(text, newline=""), "<trace>")

    @classmethod
    def _read(cls, handle: Iterable[str], where: str) -> Trace:
        reader = csv.DictReader(_without_bom(handle), restkey=_EXTRA)
        try:
            return cls._rows(reader, where)
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                message = f"a field is longer than {_FIELD_LIMIT // 1024} KiB"
            else:
                message = f"not a valid CSV line: {exc}"
            # the failing line is not counted yet
            raise ConfigError(message, path=f"{where}:{reader.line_num + 1}") from None

    @classmethod
    def _rows(cls, reader: csv.DictReader[str], where: str) -> Trace:
        with _field_limit():
            fieldnames = reader.fieldnames
        if not fieldnames or "time" not in [f.strip() for f in fieldnames]:
            raise ConfigError("the trace needs a 'time' column", path=where)
        columns = tuple(f.strip() for f in fieldnames if f.strip() != "time")
        rows: list[tuple[float, dict[str, float | None]]] = []
        for raw in _limited(reader):
            line = reader.line_num
            if _EXTRA in raw:
                raise ConfigError(
                    f"the line has {len(fieldnames) + len(raw[_EXTRA])} fields, "
                    f"the header {len(fieldnames)}",
                    path=f"{where}:{line}",
                )
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            try:
                t = float(row["time"])
            except ValueError:
                raise ConfigError(
                    f"time {row['time']!r} is not a number", path=f"{where}:{line}"
                ) from None
            if not math.isfinite(t) or t < 0:
                raise ConfigError("time must be a finite number >= 0", path=f"{where}:{line}")
            if rows and t < rows[-1][0]:
                raise ConfigError("times must not decrease", path=f"{where}:{line}")
            values: dict[str, float | None] = {}
            for col in columns:
                text = row.get(col, "")
                if text == "":
                    values[col] = None
                    continue
                try:
                    value = float(text)
                except ValueError:
                    raise ConfigError(
                        f"value {text!r} of column {col!r} is not a number", path=f"{where}:{line}"
                    ) from None
                problem = validate_metric_value(repr(col), value)
                if problem is not None:
                    raise ConfigError(
                        problem.replace("scaler returned", "the trace has", 1),
                        path=f"{where}:{line}",
                    )
                values[col] = value
            rows.append((t, values))
        if not rows:
            raise ConfigError("the trace has no rows", path=where)
        return cls(columns, tuple(rows))

    @property
    def end(self) -> float:
        """The last time in the trace."""
        return self.rows[-1][0]

    def at(self, t: float) -> Mapping[str, float | None]:
        """The values in force at time ``t`` (those of the last row at or before ``t``)."""
        index = bisect.bisect_right(self.rows, t, key=_row_time) - 1
        if index < 0:
            return dict.fromkeys(self.columns)
        return self.rows[index][1]

    def ticks(self, interval: float) -> int:
        """How many ticks of ``interval`` seconds cover the trace (0 to its end).

        :raises ConfigError: more than :data:`MAX_TICKS`.
        """
        ticks = math.floor(self.end / interval + 1e-9) + 1
        if ticks > MAX_TICKS:
            raise ConfigError(
                f"the trace ends at {self.end:g}s: {ticks} ticks of {interval:g}s, "
                f"more than the limit of {MAX_TICKS} (shorten the trace or poll less often)",
                path="trace",
            )
        return ticks

    def sample(self, interval: float) -> Iterator[tuple[int, Mapping[str, float | None]]]:
        """``(row number, values in force)`` at each tick ``0, interval, 2 * interval...``.

        The row number (``-1`` before the first row) changes exactly when the values
        do. One pass over the rows: time linear in ticks plus rows.
        """
        rows = self.rows
        index = -1
        current: Mapping[str, float | None] = dict.fromkeys(self.columns)
        for n in range(self.ticks(interval)):
            now = n * interval
            while index + 1 < len(rows) and rows[index + 1][0] <= now:
                index += 1
                current = rows[index][1]
            yield index, current


def _row_time(row: tuple[float, Mapping[str, float | None]]) -> float:
    return row[0]


#: The key under which csv.DictReader puts the fields a row has beyond the header.
_EXTRA = "\x00extra"


def _decode(data: bytes, where: str) -> str:
    """UTF-8 text of a trace file (a leading byte-order mark is dropped)."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"the trace is not UTF-8 (byte 0x{data[exc.start]:02x})", path=f"{where}:{line}"
        ) from None


def _without_bom(lines: Iterable[str]) -> Iterator[str]:
    """``lines`` with a byte-order mark at the start of the first one dropped."""
    first = True
    for line in lines:
        if first:
            first = False
            line = line.removeprefix("\ufeff")
        yield line


@contextlib.contextmanager
def _field_limit() -> Iterator[None]:
    """Read with the csv field limit of :data:`_FIELD_LIMIT`, whatever the process set."""
    limit = csv.field_size_limit(_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


def _limited(reader: csv.DictReader[str]) -> Iterator[dict[str, Any]]:
    """The rows of ``reader``, each read under :func:`_field_limit`."""
    while True:
        with _field_limit():
            row = next(reader, None)
        if row is None:
            return
        yield row
