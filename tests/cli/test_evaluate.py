"""``eventscale evaluate`` against real Redis, RabbitMQ, Kafka (tansu) and Azurite.

Every test uses its own lists, queues, topics, groups and users. The expected JSON is
written out in full: values are what the test put into each source, targets and metric
names are the manifest's, and replicas follow from the HPA formula (worked out in the
comments).
"""

from __future__ import annotations

import base64
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import anyio
import pytest
import redis
from azure.storage.queue import QueueServiceClient

from cli._runner import Runner, assert_no_secret, write
from servers._proc import free_port, unique_name
from servers.azurite_srv import DEV_KEY, AzuriteServer
from servers.kafka_srv import KafkaBroker
from servers.kubernetes_srv import KubeStandIn
from servers.rabbitmq_srv import RabbitMQServer
from servers.redis_srv import RedisServer

REDIS = "127.0.0.1:6379"


# --------------------------------------------------------------------------- sources


@pytest.fixture
def redis_list(redis_server: RedisServer) -> Iterator[Callable[[int], str]]:
    """``make(n)``: a unique list on the machine's Redis holding ``n`` items."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    made: list[str] = []

    def make(items: int) -> str:
        name = unique_name("cli-list")
        if items:
            client.lpush(name, *[f"item{i}" for i in range(items)])
        made.append(name)
        return name

    yield make
    if made:
        client.delete(*made)
    client.close()


@pytest.fixture
def rabbit_user(rabbitmq_server: RabbitMQServer) -> Iterator[tuple[str, str]]:
    """A RabbitMQ user of this test with a random password, allowed on vhost ``/``."""
    user = unique_name("cli-user")
    password = "pw-" + secrets.token_hex(12)
    rabbitmq_server.api("PUT", f"users/{user}", {"password": password, "tags": ""})
    rabbitmq_server.api(
        "PUT", f"permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"}
    )
    yield user, password
    rabbitmq_server.api("DELETE", f"users/{user}")


@pytest.fixture
def rabbit_queue(rabbitmq_server: RabbitMQServer) -> Iterator[Callable[[int], str]]:
    """``make(n)``: a unique queue holding ``n`` published (and confirmed) messages."""
    made: list[str] = []

    async def publish(name: str, count: int) -> None:
        conn = await aio_pika.connect(rabbitmq_server.amqp_url)
        try:
            channel = await conn.channel()  # publisher confirms: each publish is enqueued
            await channel.declare_queue(name, durable=False)
            for i in range(count):
                await channel.default_exchange.publish(
                    aio_pika.Message(f"m{i}".encode()), routing_key=name
                )
        finally:
            await conn.close()

    def make(count: int) -> str:
        name = unique_name("cli-queue")
        anyio.run(publish, name, count)
        made.append(name)
        return name

    yield make
    for name in made:
        rabbitmq_server.api("DELETE", f"queues/%2F/{urllib.parse.quote(name, safe='')}")


@pytest.fixture
def azure_queue(azurite_server: AzuriteServer) -> Iterator[Callable[[int], str]]:
    """``make(n)``: a unique Azurite queue holding ``n`` messages."""
    service = QueueServiceClient.from_connection_string(azurite_server.connection_string())
    made: list[str] = []

    def make(count: int) -> str:
        name = unique_name("cliq").lower()
        queue = service.create_queue(name)
        for i in range(count):
            queue.send_message(f"m{i}")
        made.append(name)
        return name

    yield make
    for name in made:
        service.delete_queue(name)
    service.close()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------- manifests


def four_source_manifest(
    *, redis_list: str, rabbit_url: str, rabbit_queue: str, topic: str, group: str, azq: str
) -> str:
    """One ScaledObject with a trigger per source.

    The RabbitMQ URL (with its password) comes from a Secret through a
    TriggerAuthentication; Kafka's brokers and Azure's connection string come from the
    environment (``--env``).
    """
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: rabbit-secret}}
data:
  url: {b64(rabbit_url)}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: rabbit-auth}}
spec:
  secretTargetRef:
    - {{parameter: host, name: rabbit-secret, key: url}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: mixed, namespace: shop}}
spec:
  scaleTargetRef: {{name: mixed-worker}}
  triggers:
    - type: redis
      name: orders
      metadata: {{address: "{REDIS}", listName: {redis_list}, listLength: "5"}}
    - type: rabbitmq
      metadata: {{queueName: {rabbit_queue}, mode: QueueLength, value: "2"}}
      authenticationRef: {{name: rabbit-auth}}
    - type: kafka
      name: events
      metadata:
        bootstrapServersFromEnv: KAFKA_BROKERS
        consumerGroup: {group}
        topic: {topic}
        lagThreshold: "2"
    - type: azure-queue
      metadata:
        queueName: {azq}
        queueLength: "1"
        activationQueueLength: "3"
        connectionFromEnv: AZ_STORAGE_CONNECTION
"""


def trigger(
    index: int,
    type_: str,
    name: str | None,
    metric: str,
    value: float | None,
    target: float,
    activation: float = 0.0,
    error: str | None = None,
) -> dict[str, Any]:
    """The JSON the command prints for one trigger."""
    return {
        "index": index,
        "type": type_,
        "name": name,
        "metricName": metric,
        "value": value,
        "target": target,
        "metricType": "AverageValue",
        "activationTarget": activation,
        "active": value is not None and value > activation,
        "error": error,
    }


@pytest.fixture
def four_sources(
    tmp_path: Path,
    redis_list: Callable[[int], str],
    rabbit_queue: Callable[[int], str],
    rabbit_user: tuple[str, str],
    kafka_broker: KafkaBroker,
    azure_queue: Callable[[int], str],
    azurite_server: AzuriteServer,
) -> dict[str, Any]:
    """Sources filled with known counts, the manifest naming them, and the --env items."""
    lst = redis_list(7)  # 7 items
    rq = rabbit_queue(9)  # 9 messages
    topic = kafka_broker.create_topic(1)
    kafka_broker.produce(topic, {0: 7})
    group = unique_name("cli-group")
    # Lag 7 - 2 = 5, which KEDA caps at partitions x lagThreshold = 1 x 2 = 2 (without
    # allowIdleConsumers there is no point in more consumers than partitions).
    kafka_broker.commit(group, topic, {0: 2})
    azq = azure_queue(8)  # 8 messages
    user, password = rabbit_user
    url = f"amqp://{user}:{password}@127.0.0.1:5672/"
    path = write(
        tmp_path / "mixed.yaml",
        four_source_manifest(
            redis_list=lst, rabbit_url=url, rabbit_queue=rq, topic=topic, group=group, azq=azq
        ),
    )
    return {
        "path": path,
        "env": [
            "--env",
            f"KAFKA_BROKERS={kafka_broker.bootstrap}",
            "--env",
            f"AZ_STORAGE_CONNECTION={azurite_server.connection_string()}",
        ],
        "secrets": [password, DEV_KEY, b64(url)],
        "triggers": [
            trigger(0, "redis", "orders", f"s0-redis-{lst}", 7.0, 5.0),
            trigger(1, "rabbitmq", None, f"s1-rabbitmq-{rq}", 9.0, 2.0),
            trigger(2, "kafka", "events", f"s2-kafka-{topic}", 2.0, 2.0),
            trigger(3, "azure-queue", None, f"s3-azure-queue-{azq}", 8.0, 1.0, 3.0),
        ],
    }


# --------------------------------------------------------------------------- tests


def test_four_real_sources_json_from_zero(cli: Runner, four_sources: dict[str, Any]) -> None:
    result = cli("evaluate", four_sources["path"], "--json", *four_sources["env"])
    assert result.code == 0, result.output
    doc = result.json()
    # Per trigger, AverageValue asks ceil(value / target): redis ceil(7/5) = 2,
    # rabbitmq ceil(9/2) = 5, kafka ceil(2/2) = 1, azure ceil(8/1) = 8; the object asks
    # for the highest, 8. From 0 replicas the default scale-up policies (Pods 4 or
    # Percent 100 per 15 s, the larger) allow max(0 + 4, 0 * 2) = 4.
    [obj] = doc["scaledObjects"]
    reason = obj.pop("reason")
    assert doc == {
        "scaledObjects": [
            {
                "name": "mixed",
                "namespace": "shop",
                "currentReplicas": 0,
                "desiredReplicas": 4,
                "active": True,
                "triggers": four_sources["triggers"],
            }
        ]
    }, result.stdout
    assert isinstance(reason, str)
    assert "8" in reason, reason
    assert "4" in reason, reason
    assert_no_secret(result, four_sources["secrets"])


def test_current_replicas_changes_the_decision(cli: Runner, four_sources: dict[str, Any]) -> None:
    result = cli(
        "evaluate", four_sources["path"], "--json", "--current-replicas", "3", *four_sources["env"]
    )
    assert result.code == 0, result.output
    [obj] = result.json()["scaledObjects"]
    # From 3 replicas toward 8: the policies allow max(3 + 4, 3 * 2) = 7 in this period.
    assert obj["currentReplicas"] == 3
    assert obj["desiredReplicas"] == 7
    assert obj["active"] is True
    assert obj["triggers"] == four_sources["triggers"]
    assert_no_secret(result, four_sources["secrets"])


def test_human_table(cli: Runner, four_sources: dict[str, Any]) -> None:
    result = cli("evaluate", four_sources["path"], "--current-replicas", "8", *four_sources["env"])
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    # At 8 replicas the metrics ask for exactly 8: nothing to do.
    assert lines[0] == "ScaledObject shop/mixed: 8 -> 8 replicas (active)"
    assert lines[1].startswith("  reason: ")
    assert lines[2].split() == [
        "#",
        "TYPE",
        "NAME",
        "VALUE",
        "TARGET",
        "ACTIVATION",
        "ACTIVE",
        "ERROR",
    ]
    rows = [line.split() for line in lines[3:]]
    assert rows == [
        ["0", "redis", "orders", "7", "5", "(AverageValue)", "0", "yes"],
        ["1", "rabbitmq", "-", "9", "2", "(AverageValue)", "0", "yes"],
        ["2", "kafka", "events", "2", "2", "(AverageValue)", "0", "yes"],
        ["3", "azure-queue", "-", "8", "1", "(AverageValue)", "3", "yes"],
    ]
    assert_no_secret(result, four_sources["secrets"])


def test_failed_trigger_exit_1_null_value_and_no_secret(
    cli: Runner, tmp_path: Path, redis_list: Callable[[int], str]
) -> None:
    lst = redis_list(3)
    password = "pw-" + secrets.token_hex(10)
    dead = free_port()  # nothing listens here
    manifest = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{redis-password: {password}, amqp: "amqp://bob:{password}@127.0.0.1:{dead}/"}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: redis-auth}}
spec:
  secretTargetRef: [{{parameter: password, name: creds, key: redis-password}}]
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: rabbit-auth}}
spec:
  secretTargetRef: [{{parameter: host, name: creds, key: amqp}}]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: partly-down}}
spec:
  scaleTargetRef: {{name: w}}
  triggers:
    - type: redis
      name: healthy
      metadata: {{address: "{REDIS}", listName: {lst}, listLength: "1"}}
    - type: redis
      name: gone
      metadata: {{address: "127.0.0.1:{dead}", listName: {lst}, listLength: "1"}}
      authenticationRef: {{name: redis-auth}}
    - type: rabbitmq
      name: rabbit
      metadata: {{queueName: q, mode: QueueLength, value: "5"}}
      authenticationRef: {{name: rabbit-auth}}
"""
    path = write(tmp_path / "down.yaml", manifest)
    result = cli("evaluate", path, "--json", "--current-replicas", "2", "--timeout", "5")
    assert result.code == 1, result.output
    [obj] = result.json()["scaledObjects"]
    healthy, gone, rabbit = obj["triggers"]
    assert healthy["value"] == 3.0
    assert healthy["error"] is None
    assert healthy["active"] is True
    for failed in (gone, rabbit):
        assert failed["value"] is None
        assert failed["active"] is False
        assert isinstance(failed["error"], str)
        assert failed["error"]
    assert str(dead) in gone["error"]
    # The healthy trigger asks ceil(3 / 1) = 3 > 2: a scale-up is allowed while other
    # triggers fail (only scale-down is blocked).
    assert obj["currentReplicas"] == 2
    assert obj["desiredReplicas"] == 3
    assert_no_secret(result, [password])
    # The same run for people: the errors are in the table, the secret still is not.
    table = cli("evaluate", path, "--current-replicas", "2", "--timeout", "5")
    assert table.code == 1
    assert str(dead) in table.stdout
    assert_no_secret(table, [password])


def test_all_failing_holds_and_the_reason_names_the_trigger(cli: Runner, tmp_path: Path) -> None:
    dead = free_port()
    path = write(
        tmp_path / "dead.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: dead}}
spec:
  scaleTargetRef: {{name: w}}
  triggers:
    - type: redis
      name: lonely
      metadata: {{address: "127.0.0.1:{dead}", listName: x, listLength: "1"}}
""",
    )
    result = cli("evaluate", path, "--json", "--current-replicas", "4")
    assert result.code == 1
    [obj] = result.json()["scaledObjects"]
    # Every trigger failed and there is no fallback: hold the current count, never 0.
    assert obj["desiredReplicas"] == 4
    assert obj["active"] is False
    assert "lonely" in obj["reason"]
    [t] = obj["triggers"]
    assert t["value"] is None
    assert t["error"]


def test_private_redis_password_from_secret(
    cli: Runner, tmp_path: Path, private_redis: Callable[..., RedisServer]
) -> None:
    password = "pw-" + secrets.token_hex(10)
    server = private_redis("--requirepass", password)
    client = redis.Redis(host=server.host, port=server.port, password=password)
    client.rpush("jobs", *range(11))
    client.close()

    def manifest(pw: str) -> str:
        return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: redis-secret}}
data: {{password: {b64(pw)}}}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {{name: redis-auth}}
spec:
  secretTargetRef: [{{parameter: password, name: redis-secret, key: password}}]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: private}}
spec:
  scaleTargetRef: {{name: w}}
  triggers:
    - type: redis
      metadata: {{address: "{server.address}", listName: jobs, listLength: "4"}}
      authenticationRef: {{name: redis-auth}}
"""

    good = cli("evaluate", write(tmp_path / "good.yaml", manifest(password)), "--json")
    assert good.code == 0, good.output
    [obj] = good.json()["scaledObjects"]
    assert obj["triggers"][0]["value"] == 11.0
    assert obj["desiredReplicas"] == 3  # ceil(11 / 4)
    assert_no_secret(good, [password])

    wrong = "pw-" + secrets.token_hex(10)
    bad = cli("evaluate", write(tmp_path / "bad.yaml", manifest(wrong)), "--json")
    assert bad.code == 1, bad.output
    [obj] = bad.json()["scaledObjects"]
    assert obj["triggers"][0]["value"] is None
    assert obj["triggers"][0]["error"]
    assert_no_secret(bad, [password, wrong])


def test_password_from_env_option(
    cli: Runner, tmp_path: Path, private_redis: Callable[..., RedisServer]
) -> None:
    password = "pw-" + secrets.token_hex(10)
    server = private_redis("--requirepass", password)
    client = redis.Redis(host=server.host, port=server.port, password=password)
    client.rpush("jobs", *range(2))
    client.close()
    path = write(
        tmp_path / "env.yaml",
        """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: from-env}
spec:
  scaleTargetRef: {name: w}
  triggers:
    - type: redis
      metadata:
        addressFromEnv: REDIS_ADDR
        passwordFromEnv: REDIS_PASSWORD
        listName: jobs
        listLength: "1"
""",
    )
    result = cli(
        "evaluate",
        path,
        "--json",
        "--no-os-env",
        "--env",
        f"REDIS_ADDR={server.address}",
        "--env",
        f"REDIS_PASSWORD={password}",
    )
    assert result.code == 0, result.output
    assert result.json()["scaledObjects"][0]["triggers"][0]["value"] == 2.0
    assert_no_secret(result, [password])
    # Without the password the server refuses: a failed trigger (exit 1), not a 0.
    no_pw = cli("evaluate", path, "--json", "--no-os-env", "--env", f"REDIS_ADDR={server.address}")
    assert no_pw.code == 1, no_pw.output
    [t] = no_pw.json()["scaledObjects"][0]["triggers"]
    assert t["value"] is None
    assert "authentication" in t["error"]
    # Without the address the trigger's metadata is incomplete: exit 2, the path named.
    no_addr = cli("evaluate", path, "--no-os-env", "--env", f"REDIS_PASSWORD={password}")
    assert no_addr.code == 2, no_addr.output
    assert no_addr.stdout == ""
    assert "spec.triggers[0].metadata.address" in no_addr.stderr
    assert_no_secret(no_addr, [password])


@pytest.mark.parametrize(
    ("trigger_yaml", "path_in_error"),
    [
        pytest.param(
            '{type: redis, metadata: {address: "127.0.0.1:6379", listName: x, listLength: many}}',
            "spec.triggers[0].metadata.listLength",
            id="bad-number",
        ),
        pytest.param(
            '{type: rabbitmq, metadata: {host: "amqp://u:SECRETPW-123@127.0.0.1/", '
            "queueName: q, mode: Sideways, value: '5'}}",
            "spec.triggers[0].metadata.mode",
            id="bad-enum-next-to-a-url-password",
        ),
        pytest.param(
            "{type: no-such-scaler, metadata: {}}",
            "spec.triggers[0]",
            id="unknown-type",
        ),
        pytest.param(
            '{type: redis, metadata: {address: "127.0.0.1:6379", listName: x}, '
            "authenticationRef: {name: missing-auth}}",
            "spec.triggers[0].authenticationRef",
            id="missing-trigger-authentication",
        ),
    ],
)
def test_invalid_manifest_exit_2_with_field_path(
    cli: Runner, tmp_path: Path, trigger_yaml: str, path_in_error: str
) -> None:
    path = write(
        tmp_path / "bad.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: bad}}
spec:
  scaleTargetRef: {{name: w}}
  triggers:
    - {trigger_yaml}
""",
    )
    result = cli("evaluate", path, "--json")
    assert result.code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("eventscale: invalid configuration:")
    assert path_in_error in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_secret(result, ["SECRETPW-123"])


def test_invalid_manifest_structure(cli: Runner, tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml",
        """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: bad}
spec:
  scaleTargetRef: {name: w}
  minReplicaCount: lots
  triggers: [{type: redis, metadata: {address: "127.0.0.1:6379", listName: x}}]
""",
    )
    result = cli("evaluate", path)
    assert result.code == 2
    assert "spec.minReplicaCount" in result.stderr
    missing = cli("evaluate", str(tmp_path / "nope.yaml"))
    assert missing.code == 2
    assert "nope.yaml" in missing.stderr
    empty = cli(
        "evaluate",
        write(tmp_path / "empty.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"),
    )
    assert empty.code == 2, empty.output
    assert "no ScaledObject" in empty.stderr


def test_manifest_on_stdin_and_entry_points(
    cli: Runner, tmp_path: Path, redis_list: Callable[[int], str]
) -> None:
    lst = redis_list(2)
    manifest = f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: stdin}}
spec:
  scaleTargetRef: {{name: w}}
  triggers:
    - {{type: redis, metadata: {{address: "{REDIS}", listName: {lst}, listLength: "1"}}}}
"""
    for how in ("module", "package", "script"):
        result = cli("evaluate", "-", "--json", stdin=manifest, how=how)
        assert result.code == 0, (how, result.output)
        assert result.json()["scaledObjects"][0]["desiredReplicas"] == 2, how


def test_current_replicas_from_the_kubernetes_target(
    cli: Runner,
    tmp_path: Path,
    redis_list: Callable[[int], str],
    kube_standin: KubeStandIn,
) -> None:
    ns = unique_name("ns")
    kube_standin.api.deployment("eval-worker", ns, replicas=6)
    lst = redis_list(12)
    path = write(
        tmp_path / "k8s.yaml",
        f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: eval-worker, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: eval-worker}}
  triggers:
    - {{type: redis, metadata: {{address: "{REDIS}", listName: {lst}, listLength: "5"}}}}
""",
    )
    kubeconfig = {"KUBECONFIG": str(kube_standin.kubeconfig(ns))}
    result = cli("evaluate", path, "--json", "--target", "kubernetes", env=kubeconfig)
    assert result.code == 0, result.output
    [obj] = result.json()["scaledObjects"]
    # The target reports 6. The metric asks ceil(12 / 5) = 3, but a first decision
    # records the current 6 as a recommendation and the default 300 s scale-down
    # window keeps the highest one: 6.
    assert obj["currentReplicas"] == 6
    assert obj["desiredReplicas"] == 6
    # A dry run: the Deployment was not touched.
    deployment = kube_standin.api.get("apis/apps/v1", "deployments", ns, "eval-worker")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 6
    assert_no_secret(result, [kube_standin.token])

    # An unreachable API: said on stderr, counted as 0; the triggers decide the status.
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(
        kube_standin.kubeconfig(ns)
        .read_text()
        .replace(kube_standin.url, f"https://127.0.0.1:{free_port()}")
    )
    down = cli(
        "evaluate",
        path,
        "--json",
        "--target",
        "kubernetes",
        "--timeout",
        "3",
        env={"KUBECONFIG": str(dead)},
    )
    assert down.code == 0, down.output
    assert "cannot read the target" in down.stderr
    assert "assuming 0 replicas" in down.stderr
    [obj] = down.json()["scaledObjects"]
    assert obj["currentReplicas"] == 0
    assert obj["desiredReplicas"] == 3
    assert_no_secret(down, [kube_standin.token])


def test_spec_warnings_go_to_stderr(cli: Runner, tmp_path: Path) -> None:
    # cooldownPeriod with minReplicaCount > 0 and no idleReplicaCount has no effect
    # (KEDA warns); one trigger is unnamed and unused by the formula (KEDA accepts it).
    path = write(
        tmp_path / "warn.yaml",
        """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: warned}
spec:
  scaleTargetRef: {name: w}
  minReplicaCount: 2
  cooldownPeriod: 30
  advanced:
    scalingModifiers: {formula: "busy * 2", target: "1"}
  triggers:
    - {type: cron, name: busy, metadata: {timezone: UTC, start: "0 * * * *", end: "59 * * * *", desiredReplicas: "3"}}
    - {type: cron, metadata: {timezone: UTC, start: "0 * * * *", end: "59 * * * *", desiredReplicas: "1"}}
""",
    )
    result = cli("evaluate", path, "--json", "--current-replicas", "2")
    assert result.code == 0, result.stderr
    assert "eventscale: warning: default/warned: spec.cooldownPeriod:" in result.stderr
    [obj] = result.json()["scaledObjects"]
    assert obj["desiredReplicas"] == 6
