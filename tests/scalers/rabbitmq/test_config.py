"""RabbitMQConfig from KEDA metadata and from Python: the KEDA vectors of spec/scalers.md 3.5."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.metrics import MetricType
from eventscale.redaction import Secret
from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.rabbitmq import Mode, Protocol, RabbitMQConfig, RabbitMQScaler

ENV = {
    "myHostSecret": "amqp://user:sercet@somehost.com:5236/vhost",
    "myUsernameSecret": "user",
    "myPasswordSecret": "Password",
}
FROM_ENV = {"hostFromEnv": "myHostSecret"}


def ctx(
    metadata: dict[str, Any], auth: dict[str, Any] | None = None, index: int = 0
) -> TriggerContext:
    return TriggerContext(
        metadata=metadata, auth=auth or {}, env=ENV, index=index, trigger_type="rabbitmq"
    )


def parse(metadata: dict[str, Any], auth: dict[str, Any] | None = None) -> RabbitMQConfig:
    return RabbitMQConfig.from_context(ctx(metadata, auth))


Q = {"queueName": "sample"}

METADATA_VECTORS = [
    pytest.param({}, None, id="R1-empty"),
    pytest.param(
        {"queueLength": "10", **Q, **FROM_ENV}, (Protocol.AMQP, Mode.QUEUE_LENGTH, 10), id="R2"
    ),
    pytest.param({"queueLength": "AA", **Q, **FROM_ENV}, None, id="R3-bad-queueLength"),
    pytest.param({"queueLength": "AA", **Q}, None, id="R4-no-host"),
    pytest.param({"queueLength": "10", **FROM_ENV}, None, id="R5-no-queueName"),
    pytest.param(
        {"queueLength": "10", **Q, "host": "myHostSecret", "protocol": "http"},
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 10),
        id="R6-http",
    ),
    pytest.param(
        {"vhostName": "myVhost", "queueName": "namespace/name", **FROM_ENV},
        (Protocol.AMQP, Mode.QUEUE_LENGTH, 20),
        id="R7-vhost",
    ),
    pytest.param(
        {"vhostName": "", "queueName": "namespace/name", **FROM_ENV},
        (Protocol.AMQP, Mode.QUEUE_LENGTH, 20),
        id="R7-empty-vhost",
    ),
    pytest.param({**Q, "host": "something://"}, None, id="R9-unknown-scheme"),
    pytest.param({**Q, "host": "http://"}, (Protocol.HTTP, Mode.QUEUE_LENGTH, 20), id="R10-http"),
    pytest.param({**Q, "host": "https://"}, (Protocol.HTTP, Mode.QUEUE_LENGTH, 20), id="R10-https"),
    pytest.param(
        {**Q, "host": "https://", "queueLength": "10", "mode": "QueueLength"},
        None,
        id="R11-queueLength-and-mode",
    ),
    pytest.param(
        {**Q, "host": "https://", "queueLength": "10", "mode": "QueueLength", "value": "20"},
        None,
        id="R11-queueLength-mode-value",
    ),
    pytest.param(
        {**Q, "host": "https://", "queueLength": "10", "value": "20"},
        None,
        id="R12-queueLength-and-value",
    ),
    pytest.param({**Q, "host": "https://", "mode": "QueueLength"}, None, id="R13-only-mode"),
    pytest.param({**Q, "host": "https://", "value": "20"}, None, id="R14-only-value"),
    pytest.param(
        {**Q, "host": "https://", "mode": "QueueLength", "value": "20"},
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 20),
        id="R15-mode-value",
    ),
    pytest.param({**Q, "host": "https://", "mode": "Feelings", "value": "20"}, None, id="R16"),
    pytest.param({**Q, "host": "https://", "mode": "QueueLength", "value": "lots"}, None, id="R17"),
    pytest.param(
        {**Q, "host": "amqps://", "mode": "QueueLength", "value": "20"},
        (Protocol.AMQP, Mode.QUEUE_LENGTH, 20),
        id="R18-amqps",
    ),
    *(
        pytest.param(
            {**Q, "host": host, "mode": mode, "value": "1000"},
            None if host.startswith("amqp") else (Protocol.HTTP, Mode(mode), 1000),
            id=f"R19-20-{mode}-{host.rstrip(':/')}",
        )
        for mode in ("MessageRate", "DeliverGetRate")
        for host in ("amqp://", "amqps://", "http://", "https://")
    ),
    pytest.param({**Q, "host": "amqps://", "useRegex": "true"}, None, id="R21-regex-amqp"),
    pytest.param(
        {**Q, "host": "http://", "useRegex": "true"},
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 20),
        id="R22-regex-http",
    ),
    pytest.param(
        {**Q, "host": "http://", "useRegex": "true", "mode": "QueueLength", "value": "1000"},
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 1000),
        id="R22-regex-http-mode",
    ),
    pytest.param(
        {**Q, "host": "http://", "mode": "QueueLength", "value": "1000", "timeout": "1000"},
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 1000),
        id="R23-timeout",
    ),
    pytest.param(
        {**Q, "host": "http://", "mode": "QueueLength", "value": "1000", "timeout": "-10"},
        None,
        id="R24-negative-timeout",
    ),
    pytest.param(
        {**Q, "host": "http://", "mode": "QueueLength", "value": "1000", "timeout": "error"},
        None,
        id="R24-bad-timeout",
    ),
    pytest.param(
        {**Q, "host": "amqp://", "mode": "QueueLength", "value": "1000", "timeout": "10"},
        None,
        id="R25-amqp-timeout",
    ),
    pytest.param(
        {**Q, "host": "http://", "useRegex": "true", "pageSize": "100"},
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 20),
        id="R26-pageSize",
    ),
    pytest.param(
        {**Q, "host": "http://", "useRegex": "true", "pageSize": "-1"}, None, id="R27-neg"
    ),
    pytest.param({**Q, "host": "http://", "useRegex": "true", "pageSize": "a"}, None, id="R27-nan"),
    pytest.param(
        {"activationValue": "10", "queueLength": "20", **Q, **FROM_ENV},
        (Protocol.AMQP, Mode.QUEUE_LENGTH, 20),
        id="R28-activation",
    ),
    pytest.param({"activationValue": "AA", **Q, **FROM_ENV}, None, id="R29-bad-activation"),
    pytest.param(
        {
            **Q,
            "host": "http://",
            "mode": "QueueLength",
            "value": "1000",
            "useRegex": "true",
            "excludeUnacknowledged": "true",
        },
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 1000),
        id="R30-exclude-unacked-http",
    ),
    pytest.param(
        {
            **Q,
            "host": "amqp://",
            "mode": "QueueLength",
            "value": "1000",
            "excludeUnacknowledged": "true",
        },
        None,
        id="R31-exclude-unacked-amqp",
    ),
    pytest.param(
        {**Q, "host": "https://", "unsafeSsl": "true"},
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 20),
        id="R32-unsafeSsl",
    ),
    pytest.param({**Q, "host": "https://", "unsafeSsl": "random"}, None, id="R32-bad-unsafeSsl"),
    pytest.param({**Q, **FROM_ENV}, (Protocol.AMQP, Mode.QUEUE_LENGTH, 20), id="R33-defaults"),
    pytest.param(
        {**Q, **FROM_ENV, "protocol": "http"},
        (Protocol.HTTP, Mode.QUEUE_LENGTH, 20),
        id="R33-defaults-http",
    ),
    pytest.param({**Q, **FROM_ENV, "protocol": "stomp"}, None, id="bad-protocol"),
    pytest.param({**Q, **FROM_ENV, "operation": "median"}, None, id="bad-operation"),
]


@pytest.mark.parametrize(("metadata", "expected"), METADATA_VECTORS)
def test_keda_metadata_vectors(
    metadata: dict[str, Any], expected: tuple[Protocol, Mode, float] | None
) -> None:
    if expected is None:
        with pytest.raises(ConfigError):
            parse(metadata)
        return
    config = parse(metadata)
    assert (config.protocol, config.mode, config.value) == expected


def test_r8_protocol_from_auth() -> None:
    config = parse({**Q, **FROM_ENV}, {"protocol": "http"})
    assert config.protocol is Protocol.HTTP


def test_r23_timeout_is_milliseconds() -> None:
    config = parse({**Q, "host": "http://", "mode": "QueueLength", "value": "1", "timeout": "1000"})
    assert config.timeout == timedelta(milliseconds=1000)
    assert config.effective_timeout == 1.0
    default = parse({**Q, "host": "http://"})
    assert default.timeout is None
    assert default.effective_timeout == 3.0


def test_r28_activation_and_deprecated_queue_length() -> None:
    config = parse({"activationValue": "10", "queueLength": "20", **Q, **FROM_ENV})
    assert config.activation_value == 10
    assert config.value == 20


# ------------------------------------------------------------------ auth vectors

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"

AUTH_VECTORS = [
    pytest.param({"tls": "enable", "ca": PEM, "cert": PEM, "key": "k"}, {}, True, id="RA1"),
    pytest.param({"tls": "enable", "ca": PEM}, {}, True, id="RA2-ca-only"),
    pytest.param({"tls": "enable", "ca": PEM, "key": "k"}, {}, False, id="RA3-key-no-cert"),
    pytest.param({"tls": "enable", "ca": PEM, "cert": PEM}, {}, False, id="RA4-cert-no-key"),
    pytest.param({"tls": "yes"}, {}, False, id="RA5-bad-tls"),
    pytest.param({"username": "user", "password": "PASSWORD"}, {}, True, id="RA6"),
    pytest.param({"username": "user"}, {}, False, id="RA7-username-only"),
    pytest.param({"password": "PASSWORD"}, {}, False, id="RA7-password-only"),
    pytest.param(
        {},
        {"usernameFromEnv": "myUsernameSecret", "passwordFromEnv": "myPasswordSecret"},
        True,
        id="RA8-from-env",
    ),
    pytest.param({}, {"usernameFromEnv": "myUsernameSecret"}, False, id="RA8-username-env-only"),
    pytest.param({}, {"passwordFromEnv": "myPasswordSecret"}, False, id="RA8-password-env-only"),
    pytest.param(
        {"protocol": "amqp", "workloadIdentityResource": "r"}, {}, False, id="RA10-wi-amqp"
    ),
    pytest.param(
        {
            "protocol": "amqp",
            "oauthTokenURI": "https://t",
            "clientID": "c",
            "clientSecret": "s",
        },
        {},
        False,
        id="RA12-oauth-amqp",
    ),
    pytest.param(
        {
            "protocol": "http",
            "oauthTokenURI": "https://t",
            "clientID": "c",
            "clientSecret": "s",
            "username": "u",
            "password": "p",
        },
        {},
        False,
        id="RA13-oauth-and-password",
    ),
    pytest.param(
        {
            "protocol": "http",
            "oauthTokenURI": "https://t",
            "clientID": "c",
            "clientSecret": "s",
            "workloadIdentityResource": "r",
        },
        {},
        False,
        id="RA14-oauth-and-wi",
    ),
    *(
        pytest.param(
            {
                "protocol": "http",
                **{
                    k: v
                    for k, v in {
                        "oauthTokenURI": "https://t",
                        "clientID": "c",
                        "clientSecret": "s",
                    }.items()
                    if k != missing
                },
            },
            {},
            False,
            id=f"RA15-missing-{missing}",
        )
        for missing in ("oauthTokenURI", "clientID", "clientSecret")
    ),
]


@pytest.mark.parametrize(("auth", "extra_meta", "ok"), AUTH_VECTORS)
def test_keda_auth_vectors(auth: dict[str, Any], extra_meta: dict[str, Any], ok: bool) -> None:
    metadata = {**Q, **FROM_ENV, **extra_meta}
    if ok:
        parse(metadata, auth)
    else:
        with pytest.raises(ConfigError):
            parse(metadata, auth)


def test_ra1_tls_fields() -> None:
    config = parse({**Q, **FROM_ENV}, {"tls": "enable", "ca": PEM, "cert": PEM, "key": "k"})
    assert config.tls is True
    assert config.key == Secret("k")


def test_ra8_credentials_from_env() -> None:
    config = parse(
        {
            **Q,
            **FROM_ENV,
            "usernameFromEnv": "myUsernameSecret",
            "passwordFromEnv": "myPasswordSecret",
        }
    )
    assert config.username == "user"
    assert config.password == Secret("Password")


def test_ra9_workload_identity_is_rejected_as_unsupported() -> None:
    # KEDA accepts RA9; eventscale has no Azure AD token source and says so at parse time.
    with pytest.raises(ConfigError, match="not supported by eventscale"):
        parse({**Q, **FROM_ENV, "protocol": "http"}, {"workloadIdentityResource": "r"})


def test_ra11_oauth() -> None:
    config = parse(
        {**Q, "host": "http://localhost:15672", "protocol": "http"},
        {
            "oauthTokenURI": "https://login/token",
            "clientID": "id",
            "clientSecret": "secret-value",
            "scopes": "rabbitmq.read, rabbitmq.write",
            "endpointParams": "audience=rabbitmq&resource=api",
        },
    )
    assert config.scopes == ("rabbitmq.read", "rabbitmq.write")
    assert config.endpoint_params == (("audience", "rabbitmq"), ("resource", "api"))
    assert "secret-value" not in repr(config)


# ------------------------------------------------------------------ metric names


@pytest.mark.parametrize(
    ("queue", "index", "expected"),
    [
        pytest.param("sample", 0, "s0-rabbitmq-sample", id="plain"),
        pytest.param("namespace/name", 1, "s1-rabbitmq-namespace-2Fname", id="slash"),
    ],
)
def test_metric_names(queue: str, index: int, expected: str) -> None:
    scaler = RabbitMQScaler.from_context(ctx({"queueName": queue, **FROM_ENV}, index=index))
    (spec,) = scaler.metric_specs()
    assert spec.name == expected
    assert spec.target == 20
    assert spec.activation_target == 0


# ------------------------------------------------------------------ typed == metadata


def test_typed_construction_equals_metadata() -> None:
    typed = RabbitMQScaler(
        RabbitMQConfig(
            host="http://guest:guest@rabbit:15672/vh",
            queue_name="jobs",
            mode=Mode.MESSAGE_RATE,
            value=50,
            activation_value=2,
            use_regex=True,
            operation="max",
            exclude_unacknowledged=True,
            page_size=10,
            timeout=1.5,
            username="u",
            password="p4ssw0rd",
            index=2,
            metric_type=MetricType.VALUE,
        )
    )
    parsed = RabbitMQScaler.from_context(
        TriggerContext(
            metadata={
                "queueName": "jobs",
                "hostFromEnv": "H",
                "mode": "MessageRate",
                "value": "50",
                "activationValue": "2",
                "useRegex": "true",
                "operation": "max",
                "excludeUnacknowledged": "true",
                "pageSize": "10",
                "timeout": "1500ms",
            },
            auth={"username": "u", "password": Secret("p4ssw0rd")},
            env={"H": "http://guest:guest@rabbit:15672/vh"},
            index=2,
            metric_type=MetricType.VALUE,
            trigger_type="rabbitmq",
        )
    )
    assert typed.config == parsed.config
    assert typed.metric_specs() == parsed.metric_specs()
    defaults = RabbitMQScaler(RabbitMQConfig(host="amqp://rabbit/", queue_name="q"))
    assert defaults.config == parse({"queueName": "q", "host": "amqp://rabbit/"})


def test_typed_construction_validates() -> None:
    with pytest.raises(ConfigError, match="http"):
        RabbitMQScaler(RabbitMQConfig(host="amqp://rabbit/", queue_name="q", use_regex=True))
    with pytest.raises(ConfigError):
        RabbitMQScaler(
            RabbitMQConfig(host="amqp://rabbit/", queue_name="q", mode=Mode.MESSAGE_RATE)
        )
    with pytest.raises(ConfigError):
        RabbitMQScaler(RabbitMQConfig(host="ftp://rabbit/", queue_name="q"))
    with pytest.raises(ConfigError):
        RabbitMQScaler(RabbitMQConfig(host="http://rabbit/", queue_name="q", operation="median"))
    with pytest.raises(ConfigError):
        RabbitMQScaler(RabbitMQConfig(host="http://rabbit/", queue_name=""))


def test_secrets_never_in_repr_or_config_errors() -> None:
    scaler = RabbitMQScaler(
        RabbitMQConfig(host="amqp://user:hunter2secret@rabbit/", queue_name="q")
    )
    assert "hunter2secret" not in repr(scaler)
    assert "hunter2secret" not in repr(scaler.config)
    with pytest.raises(ConfigError) as info:
        parse({**Q, "host": "amqp://user:hunter2secret@rabbit/", "mode": "Nope", "value": "1"})
    assert "hunter2secret" not in str(info.value)
    assert "hunter2secret" not in repr(info.value)


def test_registry_builds_rabbitmq_scaler() -> None:
    assert isinstance(create_scaler(ctx({**Q, **FROM_ENV})), RabbitMQScaler)


@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        ({"mode": "QueueLength", "value": "-5"}, "value"),
        ({"queueLength": "-3"}, "queueLength"),
    ],
)
def test_a_negative_target_is_a_config_error_at_its_path(
    metadata: dict[str, Any], path: str
) -> None:
    # KEDA accepts a negative value; a negative target loaded and then failed every poll
    with pytest.raises(ConfigError, match="must not be negative") as info:
        parse({**Q, **FROM_ENV, **metadata})
    assert f"metadata.{path}" in info.value.all_paths()
