"""The manifest readers' bounds (docs/errors.md, "Limits"): hostile YAML is a ConfigError."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventscale.errors import ConfigError
from eventscale.http.manifest import load_http_scaled_objects
from eventscale.manifests.fields import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_SCALAR_CHARS,
    read_documents,
)
from eventscale.manifests.reader import load_manifests, load_scaled_object

DATA = Path(__file__).parent.parent / "data" / "manifests"

READERS: list[Callable[[Any], Any]] = [
    read_documents,
    load_manifests,
    lambda text: load_http_scaled_objects(text),
]

LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


@pytest.mark.parametrize("read", READERS)
def test_billion_laughs_is_refused_quickly(read: Callable[[Any], Any]) -> None:
    assert len(LAUGHS) < 400
    start = time.monotonic()
    with pytest.raises(ConfigError, match=f"aliases repeat more than {MAX_ALIAS_NODES} nodes"):
        read(LAUGHS)
    # not a speed assert: the unbounded reader took minutes and gigabytes
    assert time.monotonic() - start < 30


def test_a_few_aliases_are_fine() -> None:
    docs, _ = read_documents("a: &x {k: v}\nb: *x\nc: [*x, *x]\n")
    assert docs[0].data == {"a": {"k": "v"}, "b": {"k": "v"}, "c": [{"k": "v"}, {"k": "v"}]}


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigError, match="refers to itself"):
        read_documents("a: &x [1, *x]\n")


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 1000 + "]" * 1000 + "\n",
        "a: " + "{b: " * 1000 + "1" + "}" * 1000 + "\n",
        "".join(" " * i + f"k{i}:\n" for i in range(1000)),
    ],
    ids=["lists", "flow-mappings", "block-mappings"],
)
def test_deep_nesting_is_a_config_error(read: Callable[[Any], Any], text: str) -> None:
    with pytest.raises(ConfigError, match=f"nested deeper than {MAX_DEPTH} levels"):
        read(text)


def test_nesting_at_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 1  # the document mapping is the first level
    docs, _ = read_documents("a: " + "[" * depth + "]" * depth + "\n")
    assert isinstance(docs[0].data["a"], list)


def test_a_huge_integer_is_a_config_error_with_its_path() -> None:
    text = (DATA / "kafka.yaml").read_text()
    bad = text.replace("spec:\n", "spec:\n  minReplicaCount: " + "9" * 5000 + "\n", 1)
    assert bad != text
    with pytest.raises(ConfigError) as info:
        load_manifests(bad)
    assert "spec.minReplicaCount: an integer of more than" in str(info.value)


def test_a_huge_scalar_is_a_config_error_with_its_path() -> None:
    text = "kind: ScaledObject\nmetadata:\n  name: " + "x" * (MAX_SCALAR_CHARS + 1) + "\n"
    with pytest.raises(ConfigError) as info:
        load_manifests(text)
    assert info.value.path == "metadata.name"
    assert f"longer than {MAX_SCALAR_CHARS} characters (line 3)" in str(info.value)


def test_an_invalid_timestamp_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="line 1, column 4: not a valid timestamp"):
        read_documents("a: 2001-13-45\n")


def test_non_utf8_bytes_name_the_offset_and_line() -> None:
    data = b"kind: ScaledObject\nmetadata:\n  name: caf\xe9\n"
    with pytest.raises(ConfigError, match=r"byte 0xe9 at offset 40 \(line 3\)"):
        load_manifests(data)


def test_a_byte_order_mark_is_accepted_and_dropped() -> None:
    text = (DATA / "kafka.yaml").read_text()
    with_bom = load_scaled_object(b"\xef\xbb\xbf" + text.encode())
    assert with_bom == load_scaled_object(text)
    assert load_scaled_object("\ufeff" + text) == with_bom


def test_a_lone_surrogate_in_a_name_is_refused_at_its_path() -> None:
    text = (DATA / "kafka.yaml").read_text()
    name = load_scaled_object(text).name
    bad = text.replace(f"name: {name}", 'name: "x\\ud800"', 1)
    assert bad != text
    with pytest.raises(ConfigError) as info:
        load_manifests(bad)
    assert "metadata.name" in str(info.value)
    assert "lone surrogate" in str(info.value)


def test_a_lone_surrogate_in_a_mapping_is_refused() -> None:
    from manifests._docs import so_doc

    doc = so_doc()
    doc["metadata"]["name"] = "x\ud800"
    with pytest.raises(ConfigError, match=r"metadata\.name: not valid Unicode text"):
        load_manifests(doc)


def test_manifest_text_has_a_size_limit() -> None:
    from eventscale.manifests.fields import MAX_MANIFEST_CHARS

    with pytest.raises(ConfigError, match="manifest text is longer than"):
        read_documents("#" * (MAX_MANIFEST_CHARS + 1))


def _laughs_data() -> list[object]:
    shared: list[object] = ["lol"] * 9
    for _ in range(9):
        shared = [shared] * 9
    return shared


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("minReplicaCount", 10**5000, r"spec\.minReplicaCount: an integer of more than 100"),
        ("x", "x" * (MAX_SCALAR_CHARS + 1), r"spec\.x: longer than"),
        ("x", _laughs_data(), "the manifest holds more than 1000000 values"),
    ],
    ids=["huge-integer", "huge-string", "shared-lists"],
)
def test_data_input_has_the_same_limits(field: str, value: object, match: str) -> None:
    from manifests._docs import so_doc

    with pytest.raises(ConfigError, match=match):
        load_manifests(so_doc(**{field: value}))
    with pytest.raises(ConfigError, match=match.replace(r"spec\.", "spec.").split(":")[-1]):
        load_http_scaled_objects(
            {
                "apiVersion": "http.keda.sh/v1alpha1",
                "kind": "HTTPScaledObject",
                "spec": {field: value},
            }
        )


def test_data_that_contains_itself_is_refused() -> None:
    from manifests._docs import so_doc

    loop: dict[str, object] = {}
    loop["again"] = loop
    with pytest.raises(ConfigError, match=r"spec\.x\.again: a mapping or list contains itself"):
        load_manifests(so_doc(x=loop))


def test_deep_data_is_refused() -> None:
    from manifests._docs import so_doc

    deep: object = 1
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(ConfigError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_manifests(so_doc(x=deep))
