"""KEDA's operator metrics from a controller polling a real Redis, read back as a scrape."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventscale import __version__
from eventscale.jobs.memory import MemoryJobTarget
from eventscale.runtime.controller import Controller
from eventscale.runtime.keda_metrics import KEDA_METRIC_NAMES, KedaMetrics, keda_scaler_name
from eventscale.runtime.observability import Event, EventKind
from eventscale.runtime.scaled_job import ScaledJob
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.testing import ManualClock, MemoryTarget
from servers._proc import free_port, unique_name
from servers.redis_srv import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def lists(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, str, str]]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    orders, work = unique_name("keda-orders"), unique_name("keda-work")
    yield client, orders, work
    client.delete(orders, work)
    client.close()


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of a text scrape, by sample name and sorted labels."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def per_trigger(so: str, scaler: str, index: int, metric: str, kind: str = "scaledobject"):  # type: ignore[no-untyped-def]
    return labels(
        namespace="shop",
        metric=metric,
        scaledObject=so,
        scaler=scaler,
        triggerIndex=str(index),
        type=kind,
    )


def test_scaler_label_is_the_trigger_name_or_kedas_go_type() -> None:
    assert keda_scaler_name("redis", "orders") == "orders"
    assert keda_scaler_name("redis-cluster", None) == "redisScaler"
    assert keda_scaler_name("rabbitmq", None) == "rabbitMQScaler"
    assert keda_scaler_name("metrics-api", None) == "metricsAPIScaler"
    assert keda_scaler_name("nats-jetstream", "") == "natsJetStreamScaler"
    assert keda_scaler_name("celery", None) == "celeryScaler"
    assert keda_scaler_name("my-own-type", None) == "myOwnTypeScaler"


async def test_keda_series_follow_what_the_controller_polled(
    redis_server: RedisServer, lists: tuple[redis.Redis, str, str]
) -> None:
    client, orders, work = lists
    client.rpush(orders, *range(7))
    client.rpush(work, *range(3))
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: every poll of it fails
    so_yaml = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: orders, namespace: shop}}
spec:
  scaleTargetRef: {{name: orders}}
  pollingInterval: 10
  triggers:
    - type: redis
      metadata: {{address: "{redis_server.address}", listName: {orders}, listLength: "2"}}
    - type: redis
      name: broken
      metadata: {{address: "{dead}", listName: {orders}, listLength: "2"}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: held
  namespace: shop
  annotations: {{autoscaling.keda.sh/paused: "true"}}
spec:
  scaleTargetRef: {{name: held}}
  pollingInterval: 10
  triggers:
    - type: redis
      metadata: {{address: "{redis_server.address}", listName: {orders}, listLength: "2"}}
"""
    job_yaml = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {{name: crunch, namespace: shop}}
spec:
  jobTargetRef: {{template: {{spec: {{containers: [{{name: c, image: busybox}}]}}}}}}
  pollingInterval: 10
  triggers:
    - type: redis
      name: work
      metadata: {{address: "{redis_server.address}", listName: {work}, listLength: "1"}}
"""
    registry = CollectorRegistry()
    keda = KedaMetrics(registry)
    clock = ManualClock(1000.0)
    polls: list[Event] = []
    async with Controller(clock=clock, sleep=clock.sleep) as ctl:
        keda.attach(ctl)
        polled_more = [anyio.Event()]

        def on_poll(event: Event) -> None:
            if event.kind is EventKind.POLL:
                polls.append(event)
                polled_more[0].set()

        ctl.events.add_hook(on_poll)
        for name in ("orders", "held"):
            ctl.add(
                ScaledObject.from_manifest(
                    so_yaml, name=name, target=MemoryTarget(0, clock=clock), clock=clock
                )
            )
        ctl.add(ScaledJob.from_manifest(job_yaml, target=MemoryJobTarget(), clock=clock))

        async def polled(rounds: int) -> None:
            # Every object has polled ``rounds`` times and gone back to its sleep. (The
            # number of sleepers alone is no signal: the broken trigger's push watch
            # sleeps on the same clock between its retries.)
            keys = ("shop/orders", "shop/held", "shop/crunch")
            with anyio.fail_after(10):
                while any(sum(1 for e in polls if e.scaled_object == k) < rounds for k in keys):
                    polled_more[0] = anyio.Event()
                    await polled_more[0].wait()
                await clock.wait_for_sleepers(3)
                await anyio.sleep(0.05)

        await polled(1)
        for round_ in (2, 3):
            clock.advance(10)
            await polled(round_)
        rounds = sum(1 for e in polls if e.scaled_object == "shop/orders")
        assert rounds == 3

        got = scrape(registry)
        assert set(KEDA_METRIC_NAMES) <= set(got)
        metric0 = f"s0-redis-{orders}"
        ok = per_trigger("orders", "redisScaler", 0, metric0)
        broken = per_trigger("orders", "broken", 1, f"s1-redis-{orders}")
        assert got["keda_scaler_metrics_value"][ok] == 7.0
        assert got["keda_scaler_active"][ok] == 1.0
        assert got["keda_scaler_detail_errors_total"][ok] == 0.0
        assert got["keda_scaler_detail_errors_total"][broken] == 3.0
        assert broken not in got["keda_scaler_metrics_value"]  # an error is never a value
        # one per failed trigger per poll, as KEDA counts
        assert (
            got["keda_scaled_object_errors_total"][labels(namespace="shop", scaledObject="orders")]
            == 3.0
        )
        assert (
            got["keda_scaled_object_errors_total"][labels(namespace="shop", scaledObject="held")]
            == 0.0
        )
        for key in (ok, broken):
            latency = got["keda_scaler_metrics_latency_seconds"][key]
            assert 0.0 < latency < 10.0
        paused = got["keda_scaled_object_paused"]
        assert paused[labels(namespace="shop", scaledObject="held")] == 1.0
        assert paused[labels(namespace="shop", scaledObject="orders")] == 0.0
        job = per_trigger("crunch", "work", 0, f"s0-redis-{work}", kind="scaledjob")
        assert got["keda_scaler_metrics_value"][job] == 3.0
        assert got["keda_scaler_active"][job] == 1.0
        assert (
            got["keda_scaled_job_errors_total"][labels(namespace="shop", scaledJob="crunch")] == 0.0
        )
        loop = got["keda_internal_scale_loop_latency_seconds"]
        assert labels(namespace="shop", type="scaledjob", resource="crunch") in loop
        assert labels(namespace="shop", type="scaledobject", resource="orders") in loop
        resources = got["keda_resource_registered_total"]
        assert resources[labels(type="scaled_object", namespace="shop")] == 2.0
        assert resources[labels(type="scaled_job", namespace="shop")] == 1.0
        assert got["keda_trigger_registered_total"][labels(type="redis")] == 4.0
        (build,) = got["keda_build_info"].items()
        assert dict(build[0])["version"] == __version__
        assert build[1] == 1.0

        await ctl.remove("shop/orders")
        got = scrape(registry)
        assert ok not in got.get("keda_scaler_metrics_value", {})
        assert broken not in got.get("keda_scaler_detail_errors_total", {})
        assert labels(namespace="shop", scaledObject="orders") not in got.get(
            "keda_scaled_object_errors_total", {}
        )
        assert (
            got["keda_resource_registered_total"][labels(type="scaled_object", namespace="shop")]
            == 1.0
        )
        assert got["keda_trigger_registered_total"][labels(type="redis")] == 2.0


def test_trigger_authentications_are_counted_per_namespace() -> None:
    registry = CollectorRegistry()
    keda = KedaMetrics(registry)
    keda.count_resources("TriggerAuthentication", ["a", "a", "b"])
    keda.count_resources("ClusterTriggerAuthentication", [None])
    got = scrape(registry)["keda_resource_registered_total"]
    assert got[labels(type="trigger_authentication", namespace="a")] == 2.0
    assert got[labels(type="trigger_authentication", namespace="b")] == 1.0
    assert got[labels(type="cluster_trigger_authentication", namespace="default")] == 1.0
    keda.count_resources("TriggerAuthentication", ["b"])
    got = scrape(registry)["keda_resource_registered_total"]
    assert got[labels(type="trigger_authentication", namespace="a")] == 0.0
    assert got[labels(type="trigger_authentication", namespace="b")] == 1.0
    with pytest.raises(ValueError, match="not a KEDA kind"):
        keda.count_resources("Deployment", ["a"])
