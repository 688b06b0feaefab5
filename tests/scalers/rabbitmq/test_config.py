"""RabbitMQ trigger metadata and pure computations: the KEDA vectors of spec/scalers.md 3.5."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trustme

from eventscale.errors import ConfigError
from eventscale.metrics import MetricType
from eventscale.redaction import Secret
from eventscale.scalers import create_scaler
from eventscale.scalers.params import TriggerContext
from eventscale.scalers.rabbitmq.scaler import (
    Mode,
    Operation,
    Protocol,
    QueueInfo,
    RabbitMQConfig,
    RabbitMQScaler,
    _uses_external_auth,
    aggregate_queues,
    anonymize_error,
    build_ssl_context,
    metric_and_activity,
    vhost_and_prefix,
)

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
    return RabbitMQScaler.config_from_context(ctx(metadata, auth))


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


# ------------------------------------------------------------------ names, vhost, SASL


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


@pytest.mark.parametrize(
    ("raw_path", "vhost_name", "vhost", "prefix"),
    [
        ("/myVhost", "", "/myVhost", ""),
        ("/%2FmyVhost", "", "/%2FmyVhost", ""),
        ("/", "", "/%2F", ""),
        ("//", "", "/%2F", ""),
        ("/%2F", "", "/%2F", ""),
        ("", "", "/%2F", ""),
        ("/sub1/myVhost", "", "/myVhost", "/sub1"),
        ("/sub1/", "overridenVhost", "/overridenVhost", "/sub1"),
        ("/sub1/", "", "/%2F", "/sub1"),
        ("/sub1//", "", "/%2F", "/sub1"),
        ("/sub1/%2F", "", "/%2F", "/sub1"),
        ("/sub1/sub2/myVhost", "", "/myVhost", "/sub1/sub2"),
        ("/sub1/sub2/", "myVhost", "/myVhost", "/sub1/sub2"),
        ("/sub1/sub2/%2F", "", "/%2F", "/sub1/sub2"),
        ("/", "my vhost/x", "/my+vhost%2Fx", ""),
    ],
)
def test_vhost_and_prefix(raw_path: str, vhost_name: str, vhost: str, prefix: str) -> None:
    assert vhost_and_prefix(raw_path, vhost_name) == (vhost, prefix)


@pytest.mark.parametrize(
    ("host", "auth", "external"),
    [
        pytest.param(
            "amqps://rabbit:5671/",
            {"tls": "enable", "cert": PEM, "key": "k"},
            True,
            id="cert-no-creds",
        ),
        pytest.param(
            "amqps://rabbit:5671/",
            {"tls": "enable", "cert": PEM, "key": "k", "username": "u", "password": "p"},
            False,
            id="cert-and-password",
        ),
        pytest.param("amqps://rabbit:5671/", {"tls": "disable"}, False, id="tls-disabled"),
        pytest.param("amqps://rabbit:5671/", {"tls": "enable", "ca": PEM}, False, id="ca-only"),
        pytest.param(
            "amqps://user:pass@rabbit:5671/",
            {"tls": "enable", "cert": PEM, "key": "k"},
            False,
            id="url-password",
        ),
        pytest.param(
            "amqps://CN=username@rabbit:5671/",
            {"tls": "enable", "cert": PEM, "key": "k"},
            True,
            id="url-user-only",
        ),
    ],
)
def test_sasl_external_choice(host: str, auth: dict[str, Any], external: bool) -> None:
    assert _uses_external_auth(parse({**Q, "host": host}, auth)) is external


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("https://user1:password1@domain.com", "https://user:password@domain.com"),
        ("fdasr345_-:password1@domain.com", "user:password@domain.com"),
        ("this user1:password1@domain.com fails", "this user:password@domain.com fails"),
        ("nothing to replace here", "nothing to replace here"),
    ],
)
def test_error_anonymisation(message: str, expected: str) -> None:
    assert anonymize_error(message) == "error inspecting RabbitMQ: " + expected


# ------------------------------------------------------------------ metric and activity


@pytest.mark.parametrize(
    ("info", "mode", "active"),
    [
        pytest.param(QueueInfo(4, 3, 0, 0), Mode.QUEUE_LENGTH, True, id="RH1"),
        pytest.param(QueueInfo(0, 0, 0, 0), Mode.QUEUE_LENGTH, False, id="RH2"),
        pytest.param(QueueInfo(0, 0, 1.4, 2), Mode.QUEUE_LENGTH, False, id="RH3"),
        pytest.param(QueueInfo(1, 1, 0, 1), Mode.MESSAGE_RATE, True, id="RH4"),
        pytest.param(QueueInfo(0, 0, 0, 0), Mode.MESSAGE_RATE, False, id="RH5"),
        pytest.param(QueueInfo(0, 0, 1.4, 0), Mode.MESSAGE_RATE, True, id="RH6"),
        pytest.param(QueueInfo(20, 20, 0, 10), Mode.DELIVER_GET_RATE, True, id="RH7"),
        pytest.param(QueueInfo(0, 0, 0, 0), Mode.DELIVER_GET_RATE, False, id="RH8"),
    ],
)
def test_http_activity(info: QueueInfo, mode: Mode, active: bool) -> None:
    _, is_active = metric_and_activity(mode, info, info.messages, 0)
    assert is_active is active


@pytest.mark.parametrize(
    ("m", "p", "d", "milli", "active"),
    [
        pytest.param(0, 0, 0, 0, False, id="RE1"),
        pytest.param(0, 0, 2, 0, False, id="RE2"),
        pytest.param(10, 3, 0, 1000, True, id="RE3"),
        pytest.param(10, 3, 2, 5500, True, id="RE4"),
        pytest.param(4, 0, 2, 1000, False, id="RE5"),
    ],
)
def test_expected_queue_consumption_time(
    m: int, p: float, d: float, milli: int, active: bool
) -> None:
    value, is_active = metric_and_activity(
        Mode.EXPECTED_QUEUE_CONSUMPTION_TIME, QueueInfo(m, m, p, d), m, 1
    )
    assert round(value * 1000) == milli
    assert is_active is active


def test_published_to_delivered_ratio() -> None:
    mode = Mode.PUBLISHED_TO_DELIVERED_RATIO
    assert metric_and_activity(mode, QueueInfo(0, 0, 0, 5), 0, 1) == (0, False)
    assert metric_and_activity(mode, QueueInfo(0, 0, 3, 0), 0, 1) == (1, True)
    assert metric_and_activity(mode, QueueInfo(0, 0, 6, 2), 0, 1) == (3, True)


def q(messages: int, ready: int, publish: float, deliver: float) -> dict[str, Any]:
    return {
        "messages": messages,
        "messages_ready": ready,
        "message_stats": {
            "publish_details": {"rate": publish},
            "deliver_get_details": {"rate": deliver},
        },
    }


@pytest.mark.parametrize(
    ("items", "operation", "expected"),
    [
        pytest.param(
            [q(10, 4, 2, 6), q(20, 8, 4, 2)], Operation.SUM, QueueInfo(30, 12, 6, 8), id="sum"
        ),
        pytest.param(
            [q(10, 4, 2, 6), q(20, 8, 4, 2)], Operation.AVG, QueueInfo(15, 6, 3, 4), id="avg"
        ),
        pytest.param(
            [q(10, 4, 2, 6), q(20, 8, 4, 2)], Operation.MAX, QueueInfo(20, 8, 4, 6), id="max"
        ),
        pytest.param(
            [q(5, 3, 1, 3), q(6, 4, 3, 5)], Operation.AVG, QueueInfo(5, 3, 2.0, 4.0), id="avg-trunc"
        ),
        pytest.param(
            [q(30, 5, 1, 9), q(10, 20, 7, 3)],
            Operation.MAX,
            QueueInfo(30, 20, 7, 9),
            id="max-fields",
        ),
        pytest.param([], Operation.SUM, QueueInfo(), id="empty"),
        pytest.param([{"messages": 3}], Operation.SUM, QueueInfo(3, 0, 0, 0), id="no-stats"),
    ],
)
def test_regex_aggregation(
    items: list[dict[str, Any]], operation: Operation, expected: QueueInfo
) -> None:
    assert aggregate_queues(items, operation) == expected


# ------------------------------------------------------------------ typed == metadata


def test_typed_construction_equals_metadata() -> None:
    typed = RabbitMQScaler(
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
    defaults = RabbitMQScaler(host="amqp://rabbit/", queue_name="q")
    assert defaults.config == parse({"queueName": "q", "host": "amqp://rabbit/"})


def test_typed_construction_validates() -> None:
    with pytest.raises(ConfigError, match="http"):
        RabbitMQScaler(host="amqp://rabbit/", queue_name="q", use_regex=True)
    with pytest.raises(ConfigError):
        RabbitMQScaler(host="amqp://rabbit/", queue_name="q", mode=Mode.MESSAGE_RATE)
    with pytest.raises(ConfigError):
        RabbitMQScaler(host="ftp://rabbit/", queue_name="q")
    with pytest.raises(ConfigError):
        RabbitMQScaler(host="http://rabbit/", queue_name="q", operation="median")
    with pytest.raises(ConfigError):
        RabbitMQScaler(host="http://rabbit/", queue_name="")


def test_secrets_never_in_repr_or_config_errors() -> None:
    scaler = RabbitMQScaler(host="amqp://user:hunter2secret@rabbit/", queue_name="q")
    assert "hunter2secret" not in repr(scaler)
    assert "hunter2secret" not in repr(scaler.config)
    with pytest.raises(ConfigError) as info:
        parse({**Q, "host": "amqp://user:hunter2secret@rabbit/", "mode": "Nope", "value": "1"})
    assert "hunter2secret" not in str(info.value)
    assert "hunter2secret" not in repr(info.value)


def test_registry_builds_rabbitmq_scaler() -> None:
    assert isinstance(create_scaler(ctx({**Q, **FROM_ENV})), RabbitMQScaler)


def test_tls_context_with_client_certificate() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("client.example")
    config = parse(
        {**Q, "host": "amqps://rabbit:5671/", "unsafeSsl": "true"},
        {
            "tls": "enable",
            "ca": ca.cert_pem.bytes().decode(),
            "cert": leaf.cert_chain_pems[0].bytes().decode(),
            "key": leaf.private_key_pem.bytes().decode(),
        },
    )
    context = build_ssl_context(config)
    assert context.check_hostname is False
    bad = parse(
        {**Q, "host": "amqps://rabbit:5671/"},
        {"tls": "enable", "cert": PEM, "key": "not a key"},
    )
    with pytest.raises(ConfigError) as info:
        build_ssl_context(bad)
    assert "not a key" not in str(info.value)
