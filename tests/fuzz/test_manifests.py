"""Fuzz the manifest readers (KEDA's kinds and HTTPScaledObject): ConfigError or a value.

Inputs: random YAML-ish text, random documents dumped to YAML, and random mutations
(bytes inserted, deleted, replaced, lines duplicated) of the files in
tests/data/manifests/. Nothing else may come out: no other exception, no hang.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from eventscale.errors import ConfigError
from eventscale.http.manifest import load_http_scaled_objects
from eventscale.manifests.reader import load_manifests

from ._budget import budget

DATA = Path(__file__).parent.parent / "data" / "manifests"
FILES = sorted(DATA.glob("*.yaml"))
HTTP_SO = b"""\
apiVersion: http.keda.sh/v1alpha1
kind: HTTPScaledObject
metadata:
  name: web
spec:
  hosts: [example.com]
  pathPrefixes: [/api]
  scaleTargetRef: {name: web, service: web-svc, port: 8080}
  replicas: {min: 0, max: 10}
  scalingMetric: {requestRate: {targetValue: 100, window: 1m, granularity: 1s}}
"""
SEEDS = [p.read_bytes() for p in FILES] + [HTTP_SO]


def _load_keda(source: Any) -> Any:
    manifests = load_manifests(source, ignore_unknown_kinds=True)
    # the parts a caller goes on to use: every spec and every trigger context
    for name in manifests.scaled_objects:
        manifests.trigger_contexts(name)
    return manifests


def _load_http(source: Any) -> Any:
    return load_http_scaled_objects(source)


READERS: list[Callable[[Any], Any]] = [_load_keda, _load_http]


def _accepts(read: Callable[[Any], Any], source: Any) -> None:
    with contextlib.suppress(ConfigError):
        read(source)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """One of the example files with a few random edits."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "special"]))
        if edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif edit == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif edit == "duplicate":
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            data[end:end] = data[start:end] * draw(st.integers(1, 3))
        else:
            data[at:at] = draw(
                st.sampled_from(
                    [
                        b"&a ",
                        b"*a",
                        b"<<: *a\n",
                        b"!!binary ",
                        b"!!python/object:os.system ",
                        b"? [x]\n",
                        b"\xef\xbb\xbf",
                        b'"\\ud800"',
                        b"9" * 5000,
                        b"-1",
                        b"1e999",
                        b"2001-13-45",
                        b"[" * 200,
                        b"{a: " * 100,
                        b"\t",
                        b"\x00",
                        b"---\n",
                        b"...\n",
                        b"%YAML 1.1\n",
                        b"0x7fffffffffffffffff",
                        b".nan",
                        b"~",
                    ]
                )
            )
    return bytes(data)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["ScaledObject", "ScaledJob", "TriggerAuthentication", "Secret", "List"]),
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                ["apiVersion", "kind", "metadata", "name", "spec", "triggers", "type", "items"]
            )
            | st.text(max_size=10),
            inner,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@pytest.mark.parametrize("read", READERS, ids=["keda", "http"])
@budget(300)
@given(data=mutated())
def test_mutated_example_files(read: Callable[[Any], Any], data: bytes) -> None:
    _accepts(read, data)


@pytest.mark.parametrize("read", READERS, ids=["keda", "http"])
@budget(200)
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`,?\n \t0.1e")), max_size=80))
def test_yaml_punctuation(read: Callable[[Any], Any], text: str) -> None:
    _accepts(read, text)


@pytest.mark.parametrize("read", READERS, ids=["keda", "http"])
@budget(200)
@given(doc=documents)
def test_random_documents_as_yaml_and_as_data(read: Callable[[Any], Any], doc: Any) -> None:
    _accepts(read, yaml.safe_dump(doc))
    if isinstance(doc, dict):
        _accepts(read, doc)
    elif isinstance(doc, list):
        _accepts(read, [d for d in doc if isinstance(d, dict)])


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_paths(value, (*prefix, i)))
    return out


SEED_DOCS = [d for seed in SEEDS for d in yaml.safe_load_all(seed) if isinstance(d, dict)]
hostile = st.one_of(
    st.sampled_from(
        [None, True, False, 0, -1, 2**31, 2**63, 10**99, 1e308, -0.0, "", " ", "-1", "1e999"]
    ),
    st.sampled_from(["nan", "inf", "0x1F", "1m", "-5m", "99999999h", "true", "Value", "{}"]),
    st.floats(),
    st.integers(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def field_mutations(draw: st.DrawFn) -> dict[str, Any]:
    """An example document with a few fields set to hostile values or removed."""
    doc = copy.deepcopy(draw(st.sampled_from(SEED_DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)[1:] or [("kind",)]))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(hostile)
    return doc


@pytest.mark.parametrize("read", READERS, ids=["keda", "http"])
@budget(300)
@given(doc=field_mutations())
def test_example_fields_set_to_hostile_values(
    read: Callable[[Any], Any], doc: dict[str, Any]
) -> None:
    _accepts(read, doc)
    _accepts(read, yaml.safe_dump(doc))
