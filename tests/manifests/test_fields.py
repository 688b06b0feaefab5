"""eventscale.manifests.fields: the one field reader of every manifest kind."""

from __future__ import annotations

import pytest

from eventscale.errors import ConfigError
from eventscale.manifests.fields import (
    FieldReader,
    did_you_mean,
    read_documents,
    shown,
    type_name,
)

TEXT = """\
kind: Widget
spec:
  replicas: 0010
  size: 9999999999
  colour: blue
  mode: fsat
"""


def reader() -> tuple[FieldReader, dict[str, object]]:
    (doc,), multi = read_documents(TEXT)
    assert not multi
    r = FieldReader(doc)
    spec = r.sub(doc.data, "spec", "", ("replicas", "size", "color", "mode"), required=True)
    assert spec is not None
    return r, dict(spec)


def test_every_problem_is_collected_with_its_line_and_a_hint() -> None:
    r, spec = reader()
    assert r.integer(spec, "size", "spec", default=1) == 1  # out of 32 bits: the default
    assert r.string(spec, "mode", "spec", choices=("fast", "slow")) is None
    err = r.error("Widget")
    assert err is not None
    assert sorted(err.all_paths()) == ["spec.colour", "spec.mode", "spec.size"]
    text = str(err)
    assert "unknown field 'colour' (did you mean 'color'?) (line 5)" in text
    assert "9999999999 is out of range for a 32-bit integer (line 4)" in text
    assert "must be one of fast, slow; got a string (did you mean 'fast'?) (line 6)" in text
    assert "blue" not in text  # strings are never shown
    assert "fsat" not in text


def test_plain_scalars_keep_their_written_text() -> None:
    r, spec = reader()
    assert spec["replicas"] == 8  # YAML 1.1 reads 0010 as octal...
    assert r.scalar_text(spec["replicas"], "spec.replicas") == "0010"  # ...KEDA as text


def test_lines_come_from_the_nearest_field_and_only_from_yaml() -> None:
    r, _ = reader()
    assert r.line_of("spec.replicas") == 3
    assert r.line_of("spec.nothing.here[2]") == 2  # the nearest enclosing field
    bare = FieldReader()
    bare.fail("spec.x", "is wrong")
    assert bare.line_of("spec.x") is None
    assert str(bare.error("Widget")) == "spec.x: is wrong"


def test_error_is_none_one_error_or_a_group() -> None:
    r = FieldReader()
    assert r.error("Widget") is None
    r.fail("a", "first")
    r.fail("b", "second")
    group = r.error("Widget 'w'")
    assert group is not None
    assert group.all_paths() == ["a", "b"]
    assert str(group).startswith("invalid Widget 'w' (2 problems)")


def test_integers_booleans_and_enum_like_strings() -> None:
    r = FieldReader()
    doc = {"n": True, "m": 5, "b": "yes", "x": -(2**31)}
    assert r.integer(doc, "n", "", default=None) is None  # a boolean is not an integer
    assert r.integer(doc, "m", "", default=None, maximum=4) is None
    assert r.integer(doc, "x", "", default=None) == -(2**31)
    assert r.boolean(doc, "b", "", default=False) is False
    assert [e.path for e in r.errors] == ["n", "m", "b"]
    assert "must be <= 4, got 5" in str(r.errors[1])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "null"), (True, "a boolean"), (3, "an integer"), (1.5, "a number"), ([], "a list")],
)
def test_type_names(value: object, expected: str) -> None:
    assert type_name(value) == expected


def test_shown_names_strings_by_type_unless_revealed() -> None:
    assert shown("hunter2") == "a string"
    assert shown(7) == "an integer 7"
    assert shown("Deployment", reveal=True) == "a string 'Deployment'"
    assert did_you_mean("Scaledobject", ["ScaledObject", "ScaledJob"]) == (
        " (did you mean 'ScaledObject'?)"
    )
    assert did_you_mean(3, ["a"]) == ""


def test_documents_lists_and_inputs() -> None:
    docs, multi = read_documents("---\n---\na: 1\n---\nb: 2\n")
    assert multi
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2}]
    listed, _ = read_documents({"apiVersion": "v1", "kind": "List", "items": [{"a": 1}, {"b": 2}]})
    assert [(d.index, d.data) for d in listed] == [(0, {"a": 1}), (1, {"b": 2})]
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_documents(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"invalid YAML at line 1, column \d+"):
        read_documents("a: [")
    with pytest.raises(ConfigError, match="got an integer"):
        read_documents(42)  # type: ignore[arg-type]
