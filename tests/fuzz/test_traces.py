"""Fuzz trace CSV loading (``Trace.from_text``, ``Trace.from_csv``): a Trace or a ConfigError."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from eventscale.errors import ConfigError
from eventscale.simulation import Trace

from ._budget import budget

SEED = "time,queue,lag\n0,5,1\n10,7,\n20,0,3\n"
cells = st.sampled_from(
    ["", "0", "1", "-1", "1e16", "1e400", "nan", "inf", "x", '"1,2"', '"', "time", " 3 ", "\ufeff"]
) | st.text(max_size=6)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        lines = SEED.splitlines()
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(lines) - 1))
            row = lines[i].split(",")
            row[draw(st.integers(0, len(row) - 1))] = draw(cells)
            if draw(st.booleans()):
                row.append(draw(cells))
            lines[i] = ",".join(row)
        return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    header = draw(st.lists(st.sampled_from(["time", "a", "b", ""]) | cells, min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(cells, max_size=5), max_size=5))
    return "\n".join(",".join(r) for r in [header, *rows])


def _check_trace(trace: Trace) -> None:
    times = [t for t, _ in trace.rows]
    assert times == sorted(times)
    for t, values in trace.rows:
        assert math.isfinite(t)
        assert t >= 0
        for value in values.values():
            assert value is None or math.isfinite(value)


@budget(600)
@given(text=csv_texts())
def test_trace_text(text: str) -> None:
    try:
        trace = Trace.from_text(text)
    except ConfigError:
        return
    _check_trace(trace)


@budget(100)
@given(data=st.binary(max_size=60) | csv_texts().map(str.encode))
def test_trace_files(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.csv"
        path.write_bytes(data)
        try:
            trace = Trace.from_csv(path)
        except ConfigError:
            return
    _check_trace(trace)
