"""The shared KEDA parameter helper (KEDA's pkg/scalers/scalersconfig/typed_config.go and pkg/scalers/scaler_test.go)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.scalers.params import (
    AUTH,
    ENV,
    META,
    Params,
    TriggerContext,
    parse_go_bool,
    parse_go_duration,
    parse_json_float,
    parse_json_int,
)


def ctx(
    metadata: dict[str, str] | None = None,
    auth: dict[str, str | Secret] | None = None,
    env: dict[str, str] | None = None,
) -> TriggerContext:
    return TriggerContext(
        metadata=metadata or {},
        auth=auth or {},
        env=env or {},
        index=1,
        trigger_type="demo",
        path="spec.triggers[1]",
    )


# --------------------------------------------------------------------- scalar parsers


@pytest.mark.parametrize("raw", ["10", "0", "-1", "9223372036854775807"])
def test_json_int_accepts(raw: str) -> None:
    assert parse_json_int(raw) == int(raw)


@pytest.mark.parametrize(
    "raw", ["10.0", "1e3", "+5", "0x10", "AA", "010", "", " 1", "9223372036854775808"]
)
def test_json_int_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=r"integer|range"):
        parse_json_int(raw)


@pytest.mark.parametrize(
    ("raw", "value"), [("100.50", 100.5), ("1e2", 100.0), ("-3", -3.0), ("0", 0.0)]
)
def test_json_float_accepts(raw: str, value: float) -> None:
    assert parse_json_float(raw) == value


@pytest.mark.parametrize("raw", [".5", "5.", "NaN", "lots", "Infinity", "1e999", "+1"])
def test_json_float_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=r"number|range"):
        parse_json_float(raw)


@pytest.mark.parametrize("raw", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_bool_true(raw: str) -> None:
    assert parse_go_bool(raw) is True


@pytest.mark.parametrize("raw", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_bool_false(raw: str) -> None:
    assert parse_go_bool(raw) is False


@pytest.mark.parametrize("raw", ["notvalid", "yes", "no", "ababa", "tRUE", ""])
def test_go_bool_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="boolean"):
        parse_go_bool(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1m", timedelta(minutes=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("1m30s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("0", timedelta(0)),
        ("1500", timedelta(milliseconds=1500)),
    ],
)
def test_go_duration_accepts(raw: str, expected: timedelta) -> None:
    assert parse_go_duration(raw) == expected


@pytest.mark.parametrize("raw", ["-1s", "-5", "abc", "10x", "s", "1.2.3s"])
def test_go_duration_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_go_duration(raw)


# --------------------------------------------------------------------- lookup rules


def test_lookup_order_first_non_empty_source_wins() -> None:
    p = Params(ctx({"host": "meta", "hostFromEnv": "H"}, {"host": "auth"}, {"H": "env"}))
    assert p.string("host", order=(META, AUTH, ENV)) == "meta"
    assert p.string("host", order=(AUTH, META, ENV)) == "auth"
    assert p.string("host", order=(ENV, META)) == "env"


def test_empty_after_trim_counts_as_absent() -> None:
    p = Params(ctx({"host": "  \t"}, {"host": "plaintext\n"}))
    assert p.string("host", order=(META, AUTH)) == "plaintext"


def test_env_is_read_only_through_from_env_indirection() -> None:
    # resolvedEnv is never looked up by the parameter's own name.
    p = Params(ctx({}, {}, {"host": "direct"}))
    assert p.string("host", order=(ENV,)) is None
    p = Params(ctx({"hostFromEnv": " HOST_VAR "}, {}, {"HOST_VAR": " from-env "}))
    assert p.string("host", order=(ENV,)) == "from-env"


def test_from_env_naming_a_missing_variable_is_absent() -> None:
    p = Params(ctx({"hostFromEnv": "NOPE"}))
    assert p.string("host", order=(ENV,), required=True) is None
    with pytest.raises(ConfigError) as info:
        p.finish()
    assert 'missing required parameter "host" in [resolvedEnv]' in str(info.value)


def test_aliases_are_tried_per_source_in_order() -> None:
    p = Params(ctx({"addresses": "a:1"}, {"address": "b:2"}))
    assert p.string("address", order=(META, AUTH), aliases=("addresses",)) == "a:1"


def test_defaults_apply_only_when_absent_everywhere() -> None:
    p = Params(ctx({"lagThreshold": " "}))
    assert p.integer("lagThreshold", default=10) == 10
    p = Params(ctx({"lagThreshold": "7"}))
    assert p.integer("lagThreshold", default=10) == 7


def test_missing_required_message_and_path() -> None:
    p = Params(ctx())
    p.string("queueName", order=(META, ENV), required=True)
    with pytest.raises(ConfigError) as info:
        p.finish()
    assert info.value.path == "spec.triggers[1].metadata.queueName"
    assert (
        info.value.reason
        == 'missing required parameter "queueName" in [triggerMetadata resolvedEnv]'
    )


def test_all_errors_are_collected_with_their_paths() -> None:
    p = Params(ctx({"a": "1.5", "b": "maybe", "c": "x"}))
    p.integer("a")
    p.boolean("b")
    p.choice("c", ["latest", "earliest"])
    p.string("d", required=True)
    p.fail("cross-field rule broken", "a")
    with pytest.raises(ConfigError) as info:
        p.finish()
    err = info.value
    assert [e.path for e in err.errors] == [
        "spec.triggers[1].metadata.a",
        "spec.triggers[1].metadata.b",
        "spec.triggers[1].metadata.c",
        "spec.triggers[1].metadata.d",
        "spec.triggers[1].metadata.a",
    ]
    assert "invalid demo trigger metadata (5 problems)" in str(err)
    assert 'value "x" must be one of [latest earliest]' in str(err)


def test_single_error_is_raised_as_is() -> None:
    p = Params(ctx({"n": "010"}))
    p.integer("n")
    with pytest.raises(ConfigError) as info:
        p.finish()
    assert info.value.errors == ()
    assert info.value.path == "spec.triggers[1].metadata.n"


def test_enum_every_comma_element_must_belong_case_sensitive() -> None:
    p = Params(ctx({"op": "sum, max", "bad": "Sum"}))
    assert p.choice("op", ["sum", "max", "avg"]) == "sum, max"
    assert p.choice("bad", ["sum", "max", "avg"]) is None
    assert not p.ok


def test_string_list_trims_and_keeps_empty_elements() -> None:
    p = Params(ctx({"servers": " a:1 ,b:2,, c:3 "}))
    assert p.string_list("servers") == ("a:1", "b:2", "", "c:3")


def test_int_list_with_ranges() -> None:
    p = Params(ctx({"parts": "1, 4-6, 9-7, 3"}))
    assert p.int_list("parts", allow_ranges=True) == (1, 4, 5, 6, 3)
    p = Params(ctx({"parts": "1,a"}))
    assert p.int_list("parts", allow_ranges=True) is None
    assert not p.ok


def test_query_map() -> None:
    p = Params(ctx({"endpointParams": "a=b&c=d&a=e"}))
    assert p.query_map("endpointParams") == {"a": ["b", "e"], "c": ["d"]}


def test_duration_reader() -> None:
    p = Params(ctx({"timeout": "1500"}))
    assert p.duration("timeout") == timedelta(milliseconds=1500)
    assert p.duration("other", default=timedelta(seconds=3)) == timedelta(seconds=3)


def test_secret_reader_wraps_and_never_leaks_in_errors() -> None:
    p = Params(ctx({}, {"password": Secret("s3cr3t-value"), "port": Secret("not-a-port")}))
    pw = p.secret("password")
    assert isinstance(pw, Secret)
    assert pw.reveal() == "s3cr3t-value"
    assert p.integer("port", order=(AUTH,)) is None
    with pytest.raises(ConfigError) as info:
        p.finish()
    assert "not-a-port" not in str(info.value)
    assert info.value.path == "spec.triggers[1].authenticationRef.port"


def test_secret_metadata_value_is_not_echoed_in_parse_errors() -> None:
    p = Params(ctx({"password": "hunter2-hunter2"}))
    p.integer("password")
    with pytest.raises(ConfigError) as info:
        p.finish()
    assert "hunter2" not in str(info.value)


def test_yaml_scalars_are_read_as_their_text() -> None:
    p = Params(ctx({"n": 5, "flag": True}))  # type: ignore[dict-item]
    assert p.integer("n") == 5
    assert p.boolean("flag") is True


def test_trigger_context_repr_hides_secrets() -> None:
    c = ctx(
        {"host": "amqp://u:pw-in-host@h/", "queueName": "orders", "password": "meta-pw"},
        {"connection": Secret("auth-conn-string")},
        {"X": "env-value-secret"},
    )
    text = repr(c)
    for leak in ("pw-in-host", "meta-pw", "auth-conn-string", "env-value-secret"):
        assert leak not in text
    assert "orders" in text


def test_trigger_context_repr_hides_a_password_in_any_url() -> None:
    # an http trigger's URL is not under a secret-looking name
    c = ctx({"url": "https://user:url-pw-123@api.example/metrics", "apiToken": "tok-456789"})
    text = repr(c)
    assert "url-pw-123" not in text
    assert "tok-456789" not in text
    assert "https://user:***@api.example/metrics" in text
