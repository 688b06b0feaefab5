"""Value locations of the metrics-api trigger: KEDA's own vectors (metrics_api_scaler_test.go
TestGetValueFromResponse), quantities, and the safety of the XML reader."""

from __future__ import annotations

import pytest

from eventscale.scalers._payload import compile_location, parse_quantity

INPUT_JSON = (
    b'{"components":[{"id": "82328e93e", "tasks": 32, "str": "64", "k":"1k","wrong":"NaN"}],'
    b'"count":2.43}'
)
INPUT_YAML = (
    b"{components: [{id: 82328e93e, tasks: 32, str: '64', k: 1k, wrong: NaN}], count: 2.43}"
)
INPUT_PROMETHEUS = b"""# HELP backend_queue_size Total number of items
\t# TYPE backend_queue_size counter
\tbackend_queue_size{queueName="zero"} 0
\tbackend_queue_size{queueName="one"} 1
\tbackend_queue_size{queueName="two", instance="random"} 2
\tbackend_queue_size{queueName="two", instance="zero"} 20
\t# HELP random_metric Random metric generate to include noise
\t# TYPE random_metric counter
\trandom_metric 10"""


@pytest.mark.parametrize(
    ("body", "location", "fmt", "expected"),
    [
        (INPUT_JSON, "count", "json", 2.43),
        (INPUT_JSON, "components.0.str", "json", 64),
        (INPUT_JSON, "components.0.k", "json", 1000),
        (INPUT_JSON, "components.0.tasks", "json", 32),
        (INPUT_YAML, "count", "yaml", 2.43),
        (INPUT_YAML, "components.0.str", "yaml", 64),
        (INPUT_YAML, "components.0.tasks", "yaml", 32),
        (INPUT_PROMETHEUS, "random_metric", "prometheus", 10),
        (INPUT_PROMETHEUS, 'backend_queue_size{queueName="one"}', "prometheus", 1),
        (INPUT_PROMETHEUS, 'backend_queue_size{queueName="two"}', "prometheus", 2),
        (
            INPUT_PROMETHEUS,
            'backend_queue_size{queueName="two", instance="zero"}',
            "prometheus",
            20,
        ),
    ],
)
def test_keda_vectors(body: bytes, location: str, fmt: str, expected: float) -> None:
    assert compile_location(location, fmt).extract(body) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("body", "location", "fmt"),
    [
        (INPUT_JSON, "components.0.wrong", "json"),
        (INPUT_YAML, "components.0.wrong", "yaml"),
        (INPUT_PROMETHEUS, 'backend_queue_size{invalid="test"}', "prometheus"),
    ],
)
def test_keda_error_vectors(body: bytes, location: str, fmt: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message is checked elsewhere
        compile_location(location, fmt).extract(body)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64", 64),
        ("1.5", 1.5),
        ("-2", -2),
        (".5", 0.5),
        ("1k", 1000),
        ("10Mi", 10 * 2**20),
        ("1Ki", 1024),
        ("250m", 0.25),
        ("3u", 3e-6),
        ("1e3", 1000),
        ("2E-2", 0.02),
        (" 7G ", 7e9),
    ],
)
def test_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "NaN", "1kk", "Mi", "1 k", "0x10", "1.2.3", "inf"])
def test_not_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(text)


def test_json_escaped_dots_and_numeric_object_keys() -> None:
    body = b'{"a.b": {"0": 5}, "list": [1, 2, 3]}'
    assert compile_location(r"a\.b.0", "json").extract(body) == 5
    assert compile_location("list.#", "json").extract(body) == 3
    assert compile_location("list.2", "json").extract(body) == 3


def test_xml_refuses_entities() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><a><b>&lol2;</b></a>'
    )
    with pytest.raises(ValueError, match="DOCTYPE"):
        compile_location("a.b", "xml").extract(bomb)


def test_xml_namespaces_and_whitespace() -> None:
    body = b'<s:stats xmlns:s="urn:x"><s:count>\n  42\n</s:count></s:stats>'
    assert compile_location("stats.count", "xml").extract(body) == 42


def test_prometheus_text_details() -> None:
    body = b'# a comment\nm{path="/a\\"b",le="x"} 3 1700000000000\nm{path="/c",} 4\nother +Inf\n'
    assert compile_location('m{path="/a\\"b"}', "prometheus").extract(body) == 3
    assert compile_location('m{path="/c"}', "prometheus").extract(body) == 4
    with pytest.raises(ValueError, match="inf"):
        compile_location("other", "prometheus").extract(body)
    with pytest.raises(ValueError, match="parsing error on line 1"):
        compile_location("m", "prometheus").extract(b"m{broken 1\n")
