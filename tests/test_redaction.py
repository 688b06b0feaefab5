"""Secrets never show: the Secret type and text redaction."""

from __future__ import annotations

import logging
import pickle

import pytest

from eventscale.errors import ConfigError, ScalerError
from eventscale.redaction import (
    MAX_MESSAGE_CHARS,
    REDACTED,
    Secret,
    bound_message,
    is_credible_secret,
    is_secret_name,
    redact_text,
    redact_url,
)


def test_secret_hides_itself_everywhere() -> None:
    s = Secret("hunter2")
    assert repr(s) == "Secret('***')"
    assert str(s) == REDACTED
    assert f"{s}" == REDACTED
    assert f"{s!r}" == "Secret('***')"
    assert "hunter2" not in repr([s, {"k": s}])
    assert s.reveal() == "hunter2"


def test_secret_equality_hash_and_pickle() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a")}) == 1
    assert pickle.loads(pickle.dumps(Secret("x"))) == Secret("x")
    assert Secret(Secret("x")) == Secret("x")
    assert not Secret("")


def test_secret_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        Secret(5)  # type: ignore[arg-type]


def test_secret_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("eventscale.test")
    with caplog.at_level(logging.INFO, logger="eventscale.test"):
        logger.info("connecting with %s and %r", Secret("pw-123456"), Secret("pw-123456"))
    assert "pw-123456" not in caplog.text
    assert REDACTED in caplog.text


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        pytest.param("amqp://guest:s3cret@rabbit:5672/vhost", "s3cret", id="amqp-url"),
        pytest.param("redis://default:p%40ss@redis:6379/0", "p%40ss", id="redis-url"),
        pytest.param("https://user:tok3n@mgmt:15672/api", "tok3n", id="https-url"),
        pytest.param(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abcDEF123==;EndpointSuffix=core.windows.net",
            "abcDEF123==",
            id="storage-connection-string",
        ),
        pytest.param(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=KEYkey123=",
            "KEYkey123=",
            id="servicebus-connection-string",
        ),
        pytest.param(
            "https://acct.queue.core.windows.net/q?sv=2020&sig=AbC%2Fdef&se=2030",
            "AbC%2Fdef",
            id="sas-token",
        ),
        pytest.param("login failed: password=letmein", "letmein", id="password-kv"),
    ],
)
def test_redact_text(text: str, leak: str) -> None:
    out = redact_text(text)
    assert leak not in out
    assert REDACTED in out


def test_redact_text_known_secret_values() -> None:
    out = redact_text("server said: bad token abcd-efgh-ijkl", [Secret("abcd-efgh-ijkl"), None])
    assert "abcd-efgh-ijkl" not in out


def test_redact_url_keeps_user_and_host() -> None:
    assert redact_url("amqp://guest:pw@host:5672/") == "amqp://guest:***@host:5672/"
    assert redact_url("amqp://host:5672/") == "amqp://host:5672/"


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "Password",
        "connection",
        "accountKey",
        "sasToken",
        "host",
        "keyPassword",
        "authorization",
        "apiToken",
        "clientSecret",
        "dbPasswd",
        "apiKey",
        "serviceCredentials",
        "X-Auth-Token",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["passwordFromEnv", "queueName", "listLength", "connectionFromEnv", "apiTokenFromEnv"],
)
def test_non_secret_names(name: str) -> None:
    assert not is_secret_name(name)


def test_errors_built_from_redacted_text_do_not_leak() -> None:
    err = ScalerError(redact_text("cannot connect to amqp://u:topsecret@h/"), trigger="q")
    assert "topsecret" not in str(err)
    assert "topsecret" not in repr(err)
    cfg = ConfigError(redact_text("bad connection AccountKey=zzz999"), path="spec.triggers[0]")
    assert "zzz999" not in str(cfg)


@pytest.mark.timeout(30)
def test_redaction_is_linear_in_the_text_length() -> None:
    # Quadratic before the scheme was bounded: 32,000 letters took 0.8 s, so these two
    # million would take hours and hit the timeout; linear they take about a second.
    text = "a" * 1_000_000 + "x://" + "b" * 1_000_000
    assert redact_text(text) == text
    long_scheme = "s" * 40 + "://user:hunter2@host"
    assert "hunter2" not in redact_text(long_scheme)


@pytest.mark.parametrize("word", ["default", "admin", "guest", "orders"])
def test_a_secret_that_is_a_common_word_does_not_blank_it_everywhere(word: str) -> None:
    text = "namespace default: user admin (guest) has no queue orders"
    assert redact_text(text, [Secret(word)]) == text
    # where its place is known it is still hidden
    assert word not in redact_text(f"amqp://u:{word}@h/", [Secret(word)]).split("@")[0]
    assert word not in redact_text(f"login failed: password={word}", [Secret(word)])


@pytest.mark.parametrize(
    ("value", "credible"),
    [
        ("default", False),
        ("admin", False),
        ("abc", False),
        ("hunter2", True),
        ("p@ss", True),
        ("abcdefghijkl", True),
        ("1234", False),
        ("k3y-material", True),
    ],
)
def test_credible_secrets(value: str, credible: bool) -> None:
    assert is_credible_secret(value) is credible
    assert (value not in redact_text(f"x {value} y", [Secret(value)])) is credible


def test_long_messages_are_bounded_with_a_marker() -> None:
    text = "e" * 50_000
    out = bound_message(text)
    assert len(out) < MAX_MESSAGE_CHARS + 40
    assert out.startswith("e" * MAX_MESSAGE_CHARS)
    assert out.endswith(f"... [{50_000 - MAX_MESSAGE_CHARS} more characters]")
    assert bound_message("short") == "short"
