"""The plots: what each panel draws (figures captured before they are closed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from eventscale.metrics import MetricType
from eventscale.simulation import Goal, Trace, simulate, simulate_closed_loop, simulate_jobs, tune
from eventscale.simulation.workload import bursts, constant
from eventscale.spec import (
    Advanced,
    ScaledJobSpec,
    ScaledObjectSpec,
    ScaleTargetRef,
    ScalingModifiers,
    TriggerSpec,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every figure a plot function closes, kept open for the test to read."""
    kept: list[Any] = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        real_close(fig)


def so(*triggers: TriggerSpec, **extra: Any) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="shop",
        scale_target_ref=ScaleTargetRef(name="shop"),
        triggers=list(triggers),
        polling_interval=10,
        cooldown_period=30,
        **extra,
    )


def labels(ax: Any) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_the_replica_axis_fits_the_replicas_not_the_default_max(
    figures: list[Any], tmp_path: Path
) -> None:
    spec = so(TriggerSpec(type="gauge", name="q", metadata={"target": "10"}))
    timeline = simulate(spec, Trace.from_text("time,q\n0,30\n50,30\n"))
    timeline.plot(tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG
    bottom = figures[0].axes[-1]
    assert max(s.desired_replicas for s in timeline.steps) == 3
    assert bottom.get_ylim()[1] < 10  # not squashed under the default max of 100
    assert "max" not in labels(bottom)


def test_an_average_value_target_is_drawn_as_target_times_replicas(
    figures: list[Any], tmp_path: Path
) -> None:
    average = TriggerSpec(type="gauge", name="avg", metadata={"target": "10"})
    value = TriggerSpec(
        type="gauge", name="val", metadata={"target": "50"}, metric_type=MetricType.VALUE
    )
    timeline = simulate(so(average, value), Trace.from_text("time,avg,val\n0,35,1\n40,35,1\n"))
    timeline.plot(tmp_path / "t.png")
    top = figures[0].axes[0]
    lines = {line.get_label(): line for line in top.get_lines()}
    scaled = lines["avg target 10 x replicas"].get_ydata()
    assert max(scaled) == 40  # 35 asks for 4 replicas: the total they are sized for
    flat = lines["val target 50"].get_ydata()
    assert set(flat) == {50}


def test_a_scaling_modifiers_composite_is_drawn_with_its_target(
    figures: list[Any], tmp_path: Path
) -> None:
    mods = ScalingModifiers(formula="a + b", target=20)
    spec = so(
        TriggerSpec(type="gauge", name="a", metadata={"target": "1"}),
        TriggerSpec(type="gauge", name="b", metadata={"target": "1"}),
        advanced=Advanced(scaling_modifiers=mods),
    )
    timeline = simulate(spec, Trace.from_text("time,a,b\n0,10,30\n30,10,30\n"))
    timeline.plot(tmp_path / "t.png")
    fig = figures[0]
    assert len(fig.axes) == 3
    middle = fig.axes[1]
    lines = {line.get_label(): line for line in middle.get_lines()}
    assert list(lines["composite: a + b"].get_ydata())[:2] == [40, 40]
    assert max(lines["target 20 x replicas"].get_ydata()) == 40


def test_a_scaled_job_plot_is_written(figures: list[Any], tmp_path: Path) -> None:
    spec = ScaledJobSpec(
        name="batch",
        job_target_ref={},
        triggers=[TriggerSpec(type="gauge", name="q", metadata={"target": "1"})],
        polling_interval=10,
    )
    timeline = simulate_jobs(spec, Trace.from_text("time,q\n0,3\n30,\n60,0\n"), job_seconds=25)
    timeline.plot(str(tmp_path / "j.png"))
    assert (tmp_path / "j.png").read_bytes()[:8] == PNG
    top, bottom = figures[0].axes
    assert "running" in labels(bottom)
    assert any(p.get_label() == "read failed" for p in top.patches)


def test_the_closed_loop_plot_marks_cooldown_and_stabilization(
    figures: list[Any], tmp_path: Path
) -> None:
    spec = so(TriggerSpec(type="redis", name="jobs", metadata={"listLength": "5"}))
    work = bursts(0, 20, every=300, length=30, duration=900)
    result = simulate_closed_loop(spec, work, throughput=2, failures=[(400, 420)])
    result.plot(str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG
    replicas = figures[0].axes[2]
    shaded = {p.get_label() for p in replicas.patches}
    assert {"cooldown", "scale-down stabilization", "read failed"} <= shaded


def test_the_tradeoff_plot(figures: list[Any], tmp_path: Path) -> None:
    from eventscale.simulation.tuning import plot_tradeoff

    spec = so(TriggerSpec(type="redis", name="jobs", metadata={"listLength": "5"}))
    result = tune(
        spec, constant(3, 300), {"minReplicaCount": ["0", "1", "2"]}, Goal(p95_wait=5), throughput=2
    )
    plot_tradeoff(result, str(tmp_path / "t.png"))
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG
    names = labels(figures[0].axes[0])
    assert "trade-off curve" in names
    assert "goal (p95 wait)" in names


def test_a_scaled_job_closed_loop_plot(figures: list[Any], tmp_path: Path) -> None:
    from eventscale.simulation import simulate_jobs_closed_loop

    spec = ScaledJobSpec(
        name="batch",
        job_target_ref={},
        triggers=[TriggerSpec(type="redis", name="q", metadata={"listLength": "1"})],
        polling_interval=10,
        max_replica_count=4,
    )
    result = simulate_jobs_closed_loop(spec, constant(1, 120), job_seconds=30, failures=[(40, 60)])
    result.plot(str(tmp_path / "j.png"))
    assert (tmp_path / "j.png").read_bytes()[:8] == PNG
    backlog, jobs, metric = figures[0].axes[:3]
    assert "waiting" in labels(backlog)
    assert "unfinished" in labels(jobs)
    assert "max" in labels(jobs)  # 4 is near the jobs drawn
    assert any(p.get_label() == "read failed" for p in metric.patches)
