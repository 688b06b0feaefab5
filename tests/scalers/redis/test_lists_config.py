"""KEDA metadata vectors for the Redis list scaler and its connection (spec section 4.3).

Pure parsing: no server is needed, every vector builds the config from metadata,
auth parameters and env exactly as KEDA's tests do, and checks the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.metrics import MetricType
from eventscale.redaction import Secret
from eventscale.scalers import create_scaler, resolve_scaler_class
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.redis._connection import (
    ERR_NO_ADDRESSES,
    ERR_TLS_BOTH,
    ERR_UNEQUAL_HOSTS_PORTS,
    RedisConnection,
    RedisMode,
)
from eventscale.scalers.redis.lists import (
    ListEnd,
    QueueAgeMode,
    RedisListConfig,
    RedisListScaler,
    item_timestamp,
)
from eventscale.scalers.redis.streams import (
    RedisStreamsScaler,
)

LIST_ENV = {
    "REDIS_HOST": "none",
    "REDIS_PORT": "6379",
    "REDIS_USERNAME": "none",
    "REDIS_PASSWORD": "none",
    "REDIS_SENTINEL_MASTER": "none",
    "REDIS_SENTINEL_USERNAME": "none",
    "REDIS_SENTINEL_PASSWORD": "none",
}


def list_config(
    meta: Mapping[str, str],
    auth: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] = LIST_ENV,
    trigger_type: str = "redis",
    index: int = 0,
) -> RedisListConfig:
    ctx = TriggerContext(
        metadata=meta, auth=auth or {}, env=env, trigger_type=trigger_type, index=index
    )
    return RedisListConfig.from_context(ctx)


# ------------------------------------------------------------------ 4.3 Redis lists

LIST_OK: list[Any] = [
    pytest.param(
        {
            "listName": "mylist",
            "listLength": "10",
            "addressFromEnv": "REDIS_HOST",
            "passwordFromEnv": "REDIS_PASSWORD",
        },
        {},
        id="RL2-address-and-password-from-env",
    ),
    pytest.param(
        {
            "listName": "mylist",
            "listLength": "10",
            "hostFromEnv": "REDIS_HOST",
            "portFromEnv": "REDIS_PORT",
        },
        {},
        id="RL3-host-port-from-env",
    ),
    pytest.param(
        {"listName": "mylist", "listLength": "0"},
        {"address": "localhost:6379"},
        id="RL9-auth-address",
    ),
    pytest.param(
        {"listName": "mylist", "listLength": "0"},
        {"host": "localhost", "port": "6379"},
        id="RL10-auth-host-port",
    ),
    pytest.param(
        {"listName": "mylist"},
        {
            "address": "localhost:6379",
            "tls": "enable",
            "ca": "caaa",
            "cert": "ceert",
            "key": "keey",
        },
        id="RL11-auth-tls-enable",
    ),
    pytest.param(
        {"listName": "mylist", "enableTLS": "true"},
        {"address": "localhost:6379"},
        id="RL12-metadata-enableTLS",
    ),
]


@pytest.mark.parametrize(("meta", "auth"), LIST_OK)
def test_list_vectors_ok(meta: dict[str, str], auth: dict[str, str]) -> None:
    cfg = list_config(meta, auth)
    assert cfg.list_name == "mylist"


LIST_ERR: list[Any] = [
    pytest.param({}, {}, id="RL1-empty"),
    pytest.param(
        {"listName": "mylist", "listLength": "10", "hostFromEnv": "REDIS_HOST"},
        {},
        id="RL4-host-without-port",
    ),
    pytest.param(
        {"listName": "mylist", "listLength": "10", "address": "", "password": ""},
        {},
        id="RL5-empty-address",
    ),
    pytest.param(
        {"listName": "mylist", "listLength": "AA", "addressFromEnv": "REDIS_HOST"},
        {},
        id="RL6-listLength-AA",
    ),
    pytest.param(
        {"listName": "mylist", "activationListLength": "AA", "addressFromEnv": "REDIS_HOST"},
        {},
        id="RL7-activationListLength-AA",
    ),
    pytest.param(
        {"listName": "mylist", "listLength": "0", "addressFromEnv": "REDIS_WRONG"},
        {},
        id="RL8-address-env-missing",
    ),
    pytest.param(
        {"listName": "mylist", "enableTLS": "true"},
        {"address": "localhost:6379", "tls": "disable"},
        id="RL13-tls-in-both",
    ),
    pytest.param({"listName": "mylist"}, {"host": "localhost"}, id="RL14-auth-host-only"),
    pytest.param(
        {"listName": "mylist", "hosts": "a, b, c", "ports": "1, 2"}, {}, id="RL15-unequal"
    ),
    pytest.param(
        {"hosts": "a, b, c", "ports": "1, 2, 3", "listLength": "5"}, {}, id="RL16-no-listName"
    ),
    pytest.param(
        {"hosts": "a, b, c", "ports": "1, 2, 3", "listName": "mylist", "listLength": "invalid"},
        {},
        id="RL17-listLength-invalid",
    ),
]


@pytest.mark.parametrize(("meta", "auth"), LIST_ERR)
def test_list_vectors_error(meta: dict[str, str], auth: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        list_config(meta, auth)


def test_rl2_details() -> None:
    cfg = list_config(
        {
            "listName": "mylist",
            "listLength": "10",
            "addressFromEnv": "REDIS_HOST",
            "passwordFromEnv": "REDIS_PASSWORD",
        }
    )
    assert cfg.list_length == 10
    assert cfg.connection.addresses == ("none",)
    assert cfg.connection.password == Secret("none")
    assert cfg.connection.enable_tls is False


def test_rl11_rl12_tls_on() -> None:
    rl11 = list_config(
        {"listName": "mylist"},
        {
            "address": "localhost:6379",
            "tls": "enable",
            "ca": "caaa",
            "cert": "ceert",
            "key": "keey",
        },
    )
    assert rl11.connection.enable_tls
    assert rl11.connection.ca == Secret("caaa")
    assert rl11.connection.cert == Secret("ceert")
    assert rl11.connection.key == Secret("keey")
    rl12 = list_config({"listName": "mylist", "enableTLS": "true"}, {"address": "localhost:6379"})
    assert rl12.connection.enable_tls


def test_rl13_message_and_rl15_message() -> None:
    with pytest.raises(ConfigError, match="both ScaledObject and TriggerAuthentication"):
        list_config({"listName": "l", "enableTLS": "true"}, {"address": "a:1", "tls": "disable"})
    with pytest.raises(ConfigError) as info:
        list_config({"listName": "l", "hosts": "a, b, c", "ports": "1, 2"})
    assert ERR_UNEQUAL_HOSTS_PORTS in str(info.value)
    with pytest.raises(ConfigError) as info:
        list_config({"listName": "l", "tls": "x"}, {"address": "a:1", "tls": "maybe"})
    assert "incorrect TLS value" in str(info.value)
    assert ERR_TLS_BOTH.startswith("unable to set")


def test_rl18_auth_addresses_default_length() -> None:
    cfg = list_config(
        {"listName": "mylist"}, {"addresses": ":7001, :7002"}, trigger_type="redis-cluster"
    )
    assert cfg.connection.addresses == (":7001", ":7002")
    assert cfg.connection.mode is RedisMode.CLUSTER
    assert cfg.list_length == 5


def test_rl19_hosts_ports_are_trimmed_and_joined() -> None:
    cfg = list_config({"listName": "mylist"}, {"hosts": "   a, b,    c ", "ports": "1, 2, 3"})
    assert cfg.connection.addresses == ("a:1", "b:2", "c:3")


def test_rl20_username_from_env() -> None:
    cfg = list_config(
        {
            "hosts": "a, b, c",
            "ports": "1, 2, 3",
            "listName": "mylist",
            "usernameFromEnv": "REDIS_USERNAME",
        }
    )
    assert cfg.connection.username == "none"


def test_rl21_unsafe_ssl() -> None:
    cfg = list_config(
        {"listName": "mylist", "enableTLS": "true", "unsafeSsl": "true"},
        {"addresses": ":7001, :7002"},
    )
    assert cfg.connection.enable_tls
    assert cfg.connection.unsafe_ssl


@pytest.mark.parametrize(
    ("meta", "auth", "expected"),
    [
        pytest.param(
            {"sentinelMaster": "m", "sentinelUsername": "u", "sentinelPassword": "p"},
            {},
            ("m", "u", "p"),
            id="RL22-metadata",
        ),
        pytest.param(
            {},
            {"sentinelMaster": "m", "sentinelUsername": "u", "sentinelPassword": "p"},
            ("m", "u", "p"),
            id="RL22-auth",
        ),
        pytest.param(
            {
                "sentinelMasterFromEnv": "REDIS_SENTINEL_MASTER",
                "sentinelUsernameFromEnv": "REDIS_SENTINEL_USERNAME",
                "sentinelPasswordFromEnv": "REDIS_SENTINEL_PASSWORD",
            },
            {},
            ("none", "none", "none"),
            id="RL22-from-env",
        ),
        pytest.param(
            {"sentinelMaster": "meta-m"},
            {"sentinelMaster": "auth-m"},
            ("meta-m", None, None),
            id="RL22-metadata-wins-over-auth",
        ),
    ],
)
def test_rl22_sentinel_parameters(
    meta: dict[str, str], auth: dict[str, str], expected: tuple[str, str | None, str | None]
) -> None:
    cfg = list_config(
        {"listName": "mylist", "addresses": "a:1, b:2", **meta}, auth, trigger_type="redis-sentinel"
    )
    conn = cfg.connection
    assert conn.mode is RedisMode.SENTINEL
    assert conn.sentinel_master == expected[0]
    assert conn.sentinel_username == expected[1]
    assert conn.sentinel_password == (Secret(expected[2]) if expected[2] else None)


def test_list_metric_names() -> None:
    meta = {"listName": "mylist", "address": "a:1"}
    assert list_config(meta, index=0).metric_name == "s0-redis-mylist"
    assert list_config(meta, index=1).metric_name == "s1-redis-mylist"
    assert list_config({"listName": "a/b.c", "address": "a:1"}).metric_name == "s0-redis-a-b-c"


def test_list_errors_are_collected_with_paths() -> None:
    with pytest.raises(ConfigError) as info:
        list_config({"listLength": "x", "activationListLength": "y", "address": "a:1"})
    paths = info.value.all_paths()
    assert "metadata.listLength" in paths
    assert "metadata.activationListLength" in paths
    assert "metadata.listName" in paths


def test_list_typed_and_metadata_configs_are_equal() -> None:
    typed = RedisListScaler(
        RedisListConfig(
            list_name="jobs", connection=RedisConnection(addresses="127.0.0.1:6379"), list_length=5
        )
    )
    parsed = RedisListScaler.from_metadata(
        {"address": "127.0.0.1:6379", "listName": "jobs", "listLength": "5"}
    )
    assert typed.config == parsed.config
    typed2 = RedisListScaler(
        RedisListConfig(
            list_name="jobs",
            connection=RedisConnection(
                addresses=["a:1", "b:2"],
                mode=RedisMode.CLUSTER,
                password="pw-1234",
                enable_tls=True,
            ),
            list_length=7,
            activation_list_length=2,
            queue_age_mode=QueueAgeMode.TIMESTAMP,
            queue_age_target=30,
            timestamp_field="ts",
            oldest_item_at=ListEnd.LEFT,
            index=3,
            metric_type=MetricType.VALUE,
        )
    )
    parsed2 = RedisListScaler.from_metadata(
        {
            "addresses": "a:1, b:2",
            "listName": "jobs",
            "listLength": "7",
            "activationListLength": "2",
            "enableTLS": "true",
            "queueAgeMode": "timestamp",
            "queueAgeTarget": "30",
            "timestampField": "ts",
            "oldestItemAt": "left",
        },
        {"password": "pw-1234"},
        trigger_type="redis-cluster",
        index=3,
        metric_type=MetricType.VALUE,
    )
    assert typed2.config == parsed2.config


def test_registry_resolves_every_redis_type() -> None:
    for trigger_type in ("redis", "redis-cluster", "redis-sentinel"):
        assert resolve_scaler_class(trigger_type) is RedisListScaler
    for trigger_type in ("redis-streams", "redis-cluster-streams", "redis-sentinel-streams"):
        assert resolve_scaler_class(trigger_type) is RedisStreamsScaler
    scaler = create_scaler(
        TriggerContext(
            metadata={"listName": "l", "address": "a:1"}, trigger_type="redis", name="orders"
        )
    )
    assert isinstance(scaler, RedisListScaler)


def test_secrets_never_in_repr_or_errors() -> None:
    cfg = list_config(
        {"listName": "l", "address": "a:1"},
        {"password": "s3cr3t-pw", "key": "PRIVATE-KEY-PEM", "keyPassword": "kp-9999"},
    )
    text = repr(cfg) + str(cfg)
    for secret in ("s3cr3t-pw", "PRIVATE-KEY-PEM", "kp-9999"):
        assert secret not in text
    with pytest.raises(ConfigError) as info:
        list_config(
            {"listName": "l", "address": "a:1", "listLength": "bad"}, {"password": "s3cr3t-pw"}
        )
    assert "s3cr3t-pw" not in str(info.value)


def test_queue_age_parameters() -> None:
    cfg = list_config(
        {
            "listName": "l",
            "address": "a:1",
            "queueAgeMode": "sinceEmpty",
            "activationQueueAge": "2.5",
        }
    )
    assert cfg.queue_age_mode is QueueAgeMode.SINCE_EMPTY
    assert cfg.queue_age_target == 60.0
    assert cfg.activation_queue_age == 2.5
    assert cfg.age_metric_name == "s0-redis-queue-age-l"
    with pytest.raises(ConfigError) as info:
        list_config(
            {
                "listName": "l",
                "address": "a:1",
                "queueAgeMode": "oldest",
                "queueAgeTarget": "-1",
                "oldestItemAt": "middle",
            }
        )
    paths = info.value.all_paths()
    assert {"metadata.queueAgeMode", "metadata.queueAgeTarget", "metadata.oldestItemAt"} <= set(
        paths
    )


def test_timeout_parameter() -> None:
    cfg = list_config({"listName": "l", "address": "a:1", "timeout": "250ms"})
    assert cfg.connection.timeout == pytest.approx(0.25)
    assert list_config({"listName": "l", "address": "a:1"}).connection.timeout == 5.0
    with pytest.raises(ConfigError):
        list_config({"listName": "l", "address": "a:1", "timeout": "soon"})


def test_typed_construction_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        RedisListScaler(
            RedisListConfig(list_name="jobs", connection=RedisConnection())
        )  # no address
    with pytest.raises(ConfigError):
        RedisListScaler(RedisListConfig(list_name="", connection=RedisConnection(addresses="a:1")))
    with pytest.raises(ConfigError):
        RedisConnection(addresses=(), mode=RedisMode.STANDALONE)
    with pytest.raises(ConfigError):
        RedisConnection(addresses="a:1", mode=RedisMode.SENTINEL)  # no master name
    assert ERR_NO_ADDRESSES.startswith("no addresses")


@pytest.mark.parametrize(
    ("item", "field", "expected"),
    [
        pytest.param(b"1718000000.5|payload", None, 1718000000.5, id="prefix-seconds"),
        pytest.param(b"1718000000500:payload", None, 1718000000.5, id="prefix-millis"),
        pytest.param(b'{"ts": 1718000000}', "ts", 1718000000.0, id="json-number"),
        pytest.param(b'{"ts": 1718000000250}', "ts", 1718000000.25, id="json-millis"),
        pytest.param(
            b'{"h": {"at": "2024-06-10T06:13:20Z"}}', "h.at", 1717999999.0 + 1, id="iso-z"
        ),
        pytest.param(b'{"at": "2024-06-10T06:13:20"}', "at", 1718000000.0, id="iso-naive-utc"),
        pytest.param(b'{"at": "2024-06-10T08:13:20+02:00"}', "at", 1718000000.0, id="iso-offset"),
        pytest.param('{"at": "1718000000"}', "at", 1718000000.0, id="json-string-number"),
    ],
)
def test_item_timestamp(item: bytes | str, field: str | None, expected: float) -> None:
    assert item_timestamp(item, field) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        pytest.param(b"payload", None, id="no-prefix"),
        pytest.param(b"not json", "ts", id="not-json"),
        pytest.param(b'{"other": 1}', "ts", id="missing-field"),
        pytest.param(b'{"ts": true}', "ts", id="bool"),
        pytest.param(b'{"ts": "yesterday"}', "ts", id="bad-string"),
        pytest.param(b'{"ts": [1]}', "ts", id="list"),
        pytest.param(b"\xff\xfe", "ts", id="binary"),
    ],
)
def test_item_timestamp_errors(item: bytes, field: str | None) -> None:
    with pytest.raises(ValueError, match=r"timestamp|JSON|field"):
        item_timestamp(item, field)


def test_a_negative_list_length_is_a_config_error_at_its_path() -> None:
    # KEDA does not check listLength (0 is accepted, and still is); a negative target
    # loaded and then failed every poll
    with pytest.raises(ConfigError) as info:
        list_config({"listName": "jobs", "listLength": "-5", "addressFromEnv": "REDIS_HOST"})
    assert "metadata.listLength" in info.value.all_paths()
    zero = list_config({"listName": "jobs", "listLength": "0", "addressFromEnv": "REDIS_HOST"})
    assert zero.list_length == 0
