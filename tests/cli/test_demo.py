"""``eventscale demo`` tells the true story; ``--help`` works everywhere."""

from __future__ import annotations

import itertools
import re

import pytest

from cli._runner import Runner
from eventscale.cli.demo import DEMO_SPEC, WORK_RATE, arrivals_between, arrivals_per_second

ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(.+)$")


def test_demo_plain_tells_the_story(cli: Runner) -> None:
    result = cli("demo", "--speed", "60", "--plain", timeout=60)
    assert result.code == 0, result.output
    assert result.stderr == ""
    rows = [
        (int(m[1]), int(m[2]), int(m[3]), m[4])
        for m in map(ROW.match, result.stdout.splitlines())
        if m
    ]
    # A line per demo second from 0 to 60 (plus one per scale action), in order: a
    # late step of the demo's loop (a loaded machine) still writes every second.
    times = [t for t, *_ in rows]
    assert times == sorted(times)
    assert sorted(set(times)) == list(range(61))
    assert times[0] == 0
    assert times[-1] == 60
    replicas = [r for _, _, r, _ in rows]
    queue = [q for _, q, _, _ in rows]
    assert replicas[0] == 0
    assert queue[0] == 0
    # Activation from 0: nothing runs before items arrive.
    first_up = next(i for i, r in enumerate(replicas) if r > 0)
    assert any(q > 0 for q in queue[: first_up + 1]), result.stdout
    assert all(r == 0 for r in replicas[:first_up])
    assert any("activated by queue: scaling from 0" in r for *_, r in rows), result.stdout
    # Scale out: well past one replica, never past maxReplicaCount 8.
    peak = max(replicas)
    assert 4 <= peak <= 8
    # The return to 0: it ends at 0 with an empty queue.
    assert replicas[-1] == 0
    assert queue[-1] == 0

    summary = result.stdout.split("\n\n")[-1].splitlines()
    found = {}
    for line, pattern in zip(
        summary,
        [
            r"activated from 0 at (\d+)s",
            r"scaled out to a peak of (\d+) replicas at (\d+)s",
            r"the queue was empty again at (\d+)s",
            (
                r"back to 0 replicas at (\d+)s, once the queue had been idle for the 10s"
                r" cooldown \(the last poll that saw items was at (\d+)s\)"
            ),
            r"replica changes: ([\d >-]+)$",
        ],
        strict=True,
    ):
        match = re.match(pattern, line)
        assert match, (pattern, line)
        found[pattern.split()[0]] = match.groups()
    activated = int(found["activated"][0])
    peak_count, peak_at = map(int, found["scaled"])
    drained = int(found["the"][0])
    zero, last_seen = map(int, found["back"])
    counts = [int(c) for c in found["replica"][0].split(" -> ")]
    # The summary agrees with the table (rounded to whole seconds) ...
    assert peak_count == peak
    assert abs(activated - rows[first_up][0]) <= 1  # (the row's time, not its index)
    assert activated <= peak_at < drained < zero
    # ... the cooldown is respected: 0 only 10 s after the last poll that saw items, as
    # KEDA counts it (rounded to whole seconds: 9 or more). (Not 10 s after the queue
    # emptied: on a loaded machine a poll can come seconds late, so the last one that
    # saw items may be well before the queue was empty.)
    assert zero - last_seen >= 9
    assert activated <= last_seen < zero
    # ... and the replica story rises from 0 to the peak, then falls back to 0 (the
    # burst outpaces even 8 replicas, so the queue grows until it ends: no step down
    # and up again during the burst, however the loop is timed).
    top = counts.index(peak)
    assert counts[0] == 0
    assert counts[-1] == 0
    assert counts[: top + 1] == sorted(counts[: top + 1])
    assert counts[top:] == sorted(counts[top:], reverse=True)


def test_the_producer_counts_the_same_items_however_the_loop_steps() -> None:
    # 40 items/s from 8 % to 40 % of the story, 6 items/s to 50 %, as the docs say
    assert arrivals_between(0, 60, 60) == pytest.approx(40 * 19.2 + 6 * 6)
    assert arrivals_between(20, 27, 60) == pytest.approx(40 * 4 + 6 * 3)
    assert arrivals_between(31, 60, 60) == 0
    assert arrivals_between(5, 5, 60) == 0
    # one late step (a busy machine) or many short ones: the same items
    steps = [0.0, 0.3, 4.0, 4.9, 11.0, 23.9, 24.2, 29.0, 35.0, 60.0]
    assert sum(arrivals_between(a, b, 60) for a, b in itertools.pairwise(steps)) == pytest.approx(
        arrivals_between(0, 60, 60)
    )
    # the burst outpaces the largest pool (what keeps the story rising, then falling)
    assert arrivals_per_second(10, 60) > DEMO_SPEC.max_replica_count * WORK_RATE


def test_demo_rejects_a_bad_speed(cli: Runner) -> None:
    result = cli("demo", "--speed", "0")
    assert result.code == 2
    assert "--speed" in result.stderr


COMMANDS = {
    "evaluate": ["--current-replicas", "--json", "--target", "--timeout", "--env", "--no-os-env"],
    "run": ["--target", "--json", "--env", "--no-os-env"],
    "simulate": ["--trace", "--plot", "--json", "--ready-delay", "--current-replicas", "--name"],
    "demo": ["--seconds", "--speed", "--plain"],
}


def test_top_level_help_lists_every_command(cli: Runner) -> None:
    for how in ("module", "package", "script"):
        result = cli("--help", how=how)
        assert result.code == 0, result.output
        assert result.stdout.startswith("usage: eventscale")
        for name in COMMANDS:
            assert re.search(rf"^\s+{name}\s+\S", result.stdout, re.MULTILINE), name
        assert "Exit codes" in result.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_help(cli: Runner, name: str) -> None:
    result = cli(name, "--help")
    assert result.code == 0, result.output
    assert result.stdout.startswith(f"usage: eventscale {name}")
    for option in COMMANDS[name]:
        assert option in result.stdout, option


def test_no_command_and_unknown_options(cli: Runner) -> None:
    bare = cli()
    assert bare.code == 2
    assert "usage: eventscale" in bare.stderr
    unknown = cli("evaluate", "m.yaml", "--frobnicate")
    assert unknown.code == 2
    assert "--frobnicate" in unknown.stderr
    version = cli("--version")
    assert version.code == 0
    assert version.stdout.startswith("eventscale ")


def test_main_in_process_leaves_logging_as_it_found_it() -> None:
    import io
    import logging

    from eventscale.cli import main

    root, library = logging.getLogger(), logging.getLogger("eventscale")
    before = (list(root.handlers), root.level, library.level)
    assert main(["demo", "--seconds", "2", "--speed", "100", "--plain"], out=io.StringIO()) == 0
    assert (list(root.handlers), root.level, library.level) == before
