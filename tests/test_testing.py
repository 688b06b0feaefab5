"""eventscale.testing: ManualClock, scripted scalers, assertions, and the docs example."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import eventscale.testing as testing
from eventscale.errors import ScalerError
from eventscale.metrics import MetricSpec, MetricType, ScalerReport
from eventscale.scalers import Scaler
from eventscale.testing import (
    ManualClock,
    MemoryTarget,
    SequenceScaler,
    StaticScaler,
    assert_history,
    assert_never_scaled,
    assert_scaled_to,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def test_public_names_are_exported() -> None:
    assert isinstance(testing.__all__, tuple)
    for name in testing.__all__:
        obj = getattr(testing, name)
        assert getattr(obj, "__doc__", None) or name == "ScriptItem", name


# ---------------------------------------------------------------------- ManualClock


def test_clock_reads_and_only_moves_forward() -> None:
    clock = ManualClock(5.0)
    assert clock() == clock.now() == 5.0
    assert clock.advance(2.5) == 7.5
    assert clock.set(10) == 10.0
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="forward"):
        clock.set(9)
    assert clock.next_deadline is None


@pytest.mark.anyio
async def test_sleep_returns_only_when_time_passes_the_deadline() -> None:
    clock = ManualClock()
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 10.0)
        tg.start_soon(sleeper, 20.0)
        await clock.wait_for_sleepers(2)
        assert clock.next_deadline == 10.0
        clock.advance(9.999)
        await anyio.wait_all_tasks_blocked()
        assert woke == []
        clock.advance(0.001)
        await clock.wait_for_sleepers(1)
        await anyio.wait_all_tasks_blocked()
        assert woke == [10.0]
        clock.advance(100)
    assert woke == [10.0, 110.0]
    assert clock.sleepers == 0


@pytest.mark.anyio
async def test_sleep_is_cancellable_and_autojump_moves_time() -> None:
    clock = ManualClock()
    with anyio.move_on_after(0.01):
        await clock.sleep(5)
    assert clock.sleepers == 0

    jumping = ManualClock(autojump=True)
    await jumping.sleep(3)
    await jumping.sleep(0)
    assert jumping() == 3.0


# ------------------------------------------------------------------ scripted scalers


@pytest.mark.anyio
async def test_sequence_scaler_replays_values_reports_and_errors() -> None:
    custom = ScalerReport.single("s0-sequence", 1.0, is_active=True)
    scaler = SequenceScaler(
        [0, 7.5, ScalerError("down", transient=True), custom, 2],
        target=5,
        activation_target=2,
        metric_type=MetricType.VALUE,
    )
    assert isinstance(scaler, Scaler)
    assert scaler.metric_specs() == (
        MetricSpec(name="s0-sequence", target=5, metric_type=MetricType.VALUE, activation_target=2),
    )
    first = await scaler.get_metrics()
    assert (first.value_of("s0-sequence"), first.is_active) == (0.0, False)
    second = await scaler.get_metrics()
    assert (second.value_of("s0-sequence"), second.is_active) == (7.5, True)
    with pytest.raises(ScalerError, match="down"):
        await scaler.get_metrics()
    assert await scaler.get_metrics() is custom
    last = await scaler.get_metrics()
    assert (last.value_of("s0-sequence"), last.is_active) == (2.0, False)  # 2 is not > 2
    assert scaler.remaining == 0
    again = await scaler.get_metrics()
    assert again.value_of("s0-sequence") == 2.0  # repeat_last
    assert scaler.polls == 6


@pytest.mark.anyio
async def test_sequence_scaler_without_repeat_errors_when_exhausted() -> None:
    async with SequenceScaler([3], repeat_last=False, name="s1-x") as scaler:
        assert (await scaler.get_metrics()).value_of("s1-x") == 3.0
        with pytest.raises(ScalerError, match="exhausted after 1 polls") as info:
            await scaler.get_metrics()
        assert info.value.transient is False
        scaler.push(4)
        assert (await scaler.get_metrics()).value_of("s1-x") == 4.0
    assert scaler.closed


@pytest.mark.anyio
async def test_static_scaler_reports_its_value_or_error() -> None:
    scaler = StaticScaler(12, target=4)
    assert (await scaler.get_metrics()).is_active
    scaler.value = 0
    assert not (await scaler.get_metrics()).is_active
    scaler.error = ScalerError("unreachable")
    with pytest.raises(ScalerError, match="unreachable"):
        await scaler.get_metrics()
    scaler.error = None
    scaler.value = -3  # kept as reported (the runtime refuses it: docs/errors.md), inactive
    report = await scaler.get_metrics()
    assert (report.value_of("s0-static"), report.is_active) == (-3.0, False)
    assert scaler.polls == 4


# ---------------------------------------------------------------------- assertions


@pytest.mark.anyio
async def test_assertions_pass_and_fail_with_the_story() -> None:
    clock = ManualClock()
    target = MemoryTarget(0, name="workers", lag=10, clock=clock)
    assert_never_scaled(target)
    await target.set_replicas(3, reason="queue at 30")
    clock.advance(60)
    await target.set_replicas(3)
    await target.set_replicas(1, reason="queue at 8")

    assert_scaled_to(target, 1)
    assert_history(target, [0, 3, 1])
    with pytest.raises(AssertionError) as info:
        assert_scaled_to(target, 1, converged=True)
    assert "3 reported so far" in str(info.value)
    with pytest.raises(AssertionError) as info:
        assert_history(target, [0, 3, 0])
    message = str(info.value)
    assert "workers" in message
    assert re.search(r"t=0: 0 -> 3 \(queue at 30\)", message)
    assert re.search(r"t=60: 3 -> 1 \(queue at 8\)", message)
    with pytest.raises(AssertionError, match="expected 2 replicas requested, got 1"):
        assert_scaled_to(target, 2)
    with pytest.raises(AssertionError, match="expected no scaling"):
        assert_never_scaled(target)
    clock.advance(10)
    assert_scaled_to(target, 1, converged=True)


# -------------------------------------------------------- the docs/testing.md example


def _doc_example() -> str:
    text = DOCS.read_text()
    match = re.search(r"<!-- example: testing-page -->\n```python\n(.*?)\n```", text, re.S)
    assert match, "the example block is missing from docs/testing.md"
    return match.group(1) + "\n"


def test_the_docs_example_runs_and_passes(tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(_doc_example())
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # keep the project's config out
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "anyio", "-p", "no:cacheprovider",
         "-W", "error", "test_example.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


@pytest.mark.anyio
async def test_the_docs_example_can_fail() -> None:
    # Run the example's own code in-process with a wrong expectation, to show that its
    # assertions are live (a test that cannot fail proves nothing).
    namespace: dict[str, object] = {}
    exec(compile(_doc_example(), str(DOCS), "exec"), namespace)
    autoscale = namespace["autoscale"]
    assert callable(autoscale)
    clock = ManualClock()
    target = MemoryTarget(0, clock=clock)
    scaler = SequenceScaler([0, 150], target=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(autoscale, scaler, target, sleep=clock.sleep))
        for _ in range(2):
            await clock.wait_for_sleepers()
            clock.advance(30)
        tg.cancel_scope.cancel()
    assert_history(target, [0, 10])  # capped by max_replicas
    with pytest.raises(AssertionError):
        assert_history(target, [0, 3, 1, 0])
