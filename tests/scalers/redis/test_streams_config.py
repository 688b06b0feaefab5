"""KEDA metadata vectors for the Redis streams scaler (spec section 5.4).

Pure parsing: no server is needed, every vector builds the config from metadata,
auth parameters and env exactly as KEDA's tests do, and checks the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.redis._connection import (
    ERR_NO_ADDRESSES,
    RedisConnection,
    RedisMode,
)
from eventscale.scalers.redis.streams import (
    ERR_MISSING_STREAM,
    RedisStreamsConfig,
    RedisStreamsScaler,
    StreamMode,
)

# ------------------------------------------------------------------ 5.4 Redis streams

STREAM_ENV = {
    "REDIS_SERVICE": "myredis:6379",
    "REDIS_HOST": "myredis",
    "REDIS_PORT": "6379",
    "REDIS_USERNAME": "foobarred",
    "REDIS_PASSWORD": "foobarred",
}


def stream_config(
    meta: Mapping[str, str],
    auth: Mapping[str, str] | None = None,
    *,
    trigger_type: str = "redis-streams",
    index: int = 0,
) -> RedisStreamsConfig:
    ctx = TriggerContext(
        metadata=meta, auth=auth or {}, env=STREAM_ENV, trigger_type=trigger_type, index=index
    )
    return RedisStreamsConfig.from_context(ctx)


def test_rs1_pending_mode_from_env() -> None:
    cfg = stream_config(
        {
            "stream": "my-stream",
            "consumerGroup": "my-stream-consumer-group",
            "pendingEntriesCount": "5",
            "addressFromEnv": "REDIS_SERVICE",
            "usernameFromEnv": "REDIS_USERNAME",
            "passwordFromEnv": "REDIS_PASSWORD",
            "databaseIndex": "0",
            "enableTLS": "true",
        }
    )
    assert cfg.mode is StreamMode.PENDING
    assert cfg.target == 5
    assert cfg.connection.enable_tls
    assert cfg.connection.database_index == 0
    assert cfg.connection.addresses == ("myredis:6379",)
    assert cfg.connection.username == "foobarred"


def test_rs2_host_from_env_and_literal_port() -> None:
    cfg = stream_config(
        {
            "stream": "my-stream",
            "consumerGroup": "g",
            "pendingEntriesCount": "15",
            "hostFromEnv": "REDIS_HOST",
            "port": "REDIS_PORT",
            "enableTLS": "false",
        },
        {"username": "foobarred", "password": "foobarred"},
    )
    assert cfg.connection.addresses == ("myredis:REDIS_PORT",)
    assert cfg.connection.username == "foobarred"
    assert cfg.connection.password == Secret("foobarred")
    assert not cfg.connection.enable_tls
    assert cfg.target == 15


STREAM_ERR: list[Any] = [
    pytest.param(
        {"stream": "s", "pendingEntriesCount": "5", "lagCount": "5", "consumerGroup": "g"},
        {},
        id="RS4-no-address",
    ),
    pytest.param({"stream": "s", "hostFromEnv": "REDIS_HOST"}, {}, id="RS5-host-without-port"),
    pytest.param({"stream": "s", "port": "6379"}, {}, id="RS6-port-without-host"),
    pytest.param({"address": "a:1"}, {}, id="RS7-no-stream"),
    pytest.param({"stream": "s", "address": "a:1", "lagCount": "junk"}, {}, id="RS8-lagCount"),
    pytest.param(
        {"stream": "s", "address": "a:1", "pendingEntriesCount": "junk"}, {}, id="RS8-pending"
    ),
    pytest.param({"stream": "s", "address": "a:1", "streamLength": "junk"}, {}, id="RS8-length"),
    pytest.param({"stream": "s", "address": "a:1", "databaseIndex": "junk"}, {}, id="RS8-db"),
    pytest.param({"stream": "s", "address": "a:1", "enableTLS": "no"}, {}, id="RS8-enableTLS"),
    pytest.param({}, {}, id="RS9-empty"),
    pytest.param({"stream": "s", "hosts": "a, b, c", "ports": "1, 2"}, {}, id="RS10-unequal"),
    pytest.param(
        {"hosts": "a, b, c", "ports": "1, 2, 3", "pendingEntriesCount": "5"},
        {},
        id="RS11-no-stream",
    ),
]


@pytest.mark.parametrize(("meta", "auth"), STREAM_ERR)
def test_stream_vectors_error(meta: dict[str, str], auth: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        stream_config(meta, auth)


def test_rs9_and_rs11_messages() -> None:
    with pytest.raises(ConfigError) as info:
        stream_config({})
    assert ERR_NO_ADDRESSES in str(info.value)
    with pytest.raises(ConfigError) as info:
        stream_config({"hosts": "a, b, c", "ports": "1, 2, 3", "pendingEntriesCount": "5"})
    assert ERR_MISSING_STREAM in str(info.value)


STREAM_MODES: list[Any] = [
    pytest.param(
        {
            "stream": "s",
            "consumerGroup": "g",
            "lagCount": "5",
            "activationLagCount": "3",
            "address": "a:1",
        },
        {},
        (StreamMode.LAG, 5, 0, 0, 3),
        id="RS3-lag",
    ),
    pytest.param(
        {"stream": "s", "lagCount": "6", "activationLagCount": "3", "consumerGroup": "consumer1"},
        {"addresses": ":7001, :7002"},
        (StreamMode.LAG, 6, 0, 0, 3),
        id="RS12-lag-auth-addresses",
    ),
    pytest.param(
        {
            "stream": "s",
            "lagCount": "7",
            "activationLagCount": "0",
            "consumerGroup": "g",
            "address": "a:1",
        },
        {},
        (StreamMode.LAG, 7, 0, 0, 0),
        id="RS13-lag-activation-0",
    ),
    pytest.param(
        {"stream": "s", "pendingEntriesCount": "5", "consumerGroup": "g", "address": "a:1"},
        {},
        (StreamMode.PENDING, 5, 5, 0, 0),
        id="RS14-pending",
    ),
    pytest.param(
        {"hosts": "a", "ports": "1", "stream": "s", "streamLength": "15"},
        {},
        (StreamMode.LENGTH, 15, 0, 15, 0),
        id="RS15-length",
    ),
    pytest.param(
        {
            "stream": "s",
            "streamLength": "15",
            "lagCount": "70",
            "activationLagCount": "3",
            "consumerGroup": "g",
            "address": "a:1",
        },
        {},
        (StreamMode.LAG, 70, 0, 0, 3),
        id="RS16-lag-forces-length-0",
    ),
    pytest.param(
        {
            "stream": "s",
            "streamLength": "15",
            "pendingEntriesCount": "5",
            "consumerGroup": "g",
            "address": "a:1",
        },
        {},
        (StreamMode.PENDING, 5, 5, 0, 0),
        id="RS17-pending-forces-length-0",
    ),
    pytest.param(
        {"stream": "s", "streamLength": "15", "pendingEntriesCount": "30", "address": "a:1"},
        {},
        (StreamMode.LENGTH, 15, 0, 15, 0),
        id="RS18-length-forces-pending-0",
    ),
]


@pytest.mark.parametrize(("meta", "auth", "expected"), STREAM_MODES)
def test_stream_mode_selection(
    meta: dict[str, str], auth: dict[str, str], expected: tuple[StreamMode, int, int, int, int]
) -> None:
    cfg = stream_config(meta, auth)
    mode, target, pending, length, activation = expected
    assert cfg.mode is mode
    assert cfg.target == target
    assert cfg.pending_entries_count == pending
    assert cfg.stream_length == length
    assert cfg.activation_lag_count == activation


def test_stream_metric_names_and_typed_equality() -> None:
    meta = {"stream": "my-stream", "address": "a:1"}
    assert stream_config(meta, index=0).metric_name == "s0-redis-streams-my-stream"
    assert stream_config(meta, index=1).metric_name == "s1-redis-streams-my-stream"
    typed = RedisStreamsScaler(
        RedisStreamsConfig(
            stream="events",
            connection=RedisConnection(addresses="127.0.0.1:6379"),
            consumer_group="workers",
            lag_count=10,
            activation_lag_count=2,
            stream_length=99,
        )
    )
    parsed = RedisStreamsScaler.from_metadata(
        {
            "address": "127.0.0.1:6379",
            "stream": "events",
            "consumerGroup": "workers",
            "lagCount": "10",
            "activationLagCount": "2",
        }
    )
    assert typed.config == parsed.config
    assert typed.metric_specs()[0].target == 10
    assert typed.metric_specs()[0].activation_target == 2


def test_cluster_streams_type_sets_mode() -> None:
    cfg = stream_config(
        {"stream": "s", "addresses": "a:1, b:2"}, trigger_type="redis-cluster-streams"
    )
    assert cfg.connection.mode is RedisMode.CLUSTER
    with pytest.raises(ConfigError, match="sentinelMaster"):
        stream_config({"stream": "s", "addresses": "a:1"}, trigger_type="redis-sentinel-streams")


@pytest.mark.parametrize("name", ["pendingEntriesCount", "streamLength", "lagCount"])
def test_a_negative_count_is_a_config_error_at_its_path(name: str) -> None:
    # KEDA does not check them; a negative target loaded and then failed every poll
    meta = {"stream": "s", "consumerGroup": "g", "addressFromEnv": "REDIS_SERVICE", name: "-1"}
    with pytest.raises(ConfigError) as info:
        stream_config(meta)
    assert f"metadata.{name}" in info.value.all_paths()
