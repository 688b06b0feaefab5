"""Fuzz every built-in trigger type's metadata parsing: a scaler or a ConfigError.

``create_scaler`` (each class's ``from_context``) parses only: no connection is made
until the first poll. The metadata starts from the documented examples (every YAML
block under docs/ and tests/data/manifests/), then keys are dropped, added (from every
type's keys) and set to hostile values.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.scalers import create_scaler, registered_types
from eventscale.scalers.params import TriggerContext

from ._budget import budget

ROOT = Path(__file__).parent.parent.parent


def _examples() -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = defaultdict(list)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for trigger in node.get("triggers") or []:
                if isinstance(trigger, dict) and isinstance(trigger.get("metadata"), dict):
                    meta = {str(k): str(v) for k, v in trigger["metadata"].items()}
                    found[str(trigger.get("type"))].append(meta)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    sources = [
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "tests/data").rglob("*.yaml")),
    ]
    for path in sources:
        text = path.read_text()
        blocks = re.findall(r"```ya?ml\n(.*?)```", text, re.S) if path.suffix == ".md" else [text]
        for block in blocks:
            try:
                for doc in yaml.safe_load_all(block):
                    walk(doc)
            except yaml.YAMLError:
                continue
    return found


EXAMPLES = _examples()
TYPES = [t for t in registered_types() if t != "memory"] + ["memory"]
KEYS = sorted({key for metas in EXAMPLES.values() for meta in metas for key in meta})
HOSTILE = st.sampled_from(
    [
        "",
        " ",
        "-1",
        "0",
        "1",
        "1.5",
        "1e400",
        "-1e400",
        "nan",
        "inf",
        "true",
        "TRUE",
        "0x10",
        "9" * 5000,
        "x" * 200_000,
        "a,b,,c",
        "redis://u:p@h:1/0",
        "http://[::1",
        "amqp://guest:guest@localhost:5672/%zz",
        "* * * * *",
        "Europe/Paris",
        "../" * 40,
        "\x00",
        "\ud800",
        "Ω" * 10,
        "1m",
        "-5s",
        "999999999999h",
    ]
)
values = HOSTILE | st.text(max_size=20)


def _base(trigger_type: str) -> list[dict[str, str]]:
    family = re.sub(r"-(cluster|sentinel)", "", trigger_type).replace("external", "external-push")
    return [{}, *EXAMPLES.get(trigger_type, []), *EXAMPLES.get(family, [])]


@st.composite
def contexts(draw: st.DrawFn, trigger_type: str) -> TriggerContext:
    meta = dict(draw(st.sampled_from(_base(trigger_type))))
    for key in draw(st.lists(st.sampled_from(sorted(meta) or ["x"]), max_size=3)):
        meta.pop(key, None)
    for _ in range(draw(st.integers(0, 4))):
        key = draw(
            st.sampled_from(sorted(meta) or KEYS) | st.sampled_from(KEYS) | st.text(max_size=8)
        )
        meta[key] = draw(values)
    auth = draw(
        st.dictionaries(
            st.sampled_from(["password", "host", "connection", "username", "tls", "ca", "key"]),
            values.map(Secret),
            max_size=3,
        )
    )
    env = draw(st.dictionaries(st.sampled_from(["A", "B"]), values, max_size=2))
    return TriggerContext(
        metadata=meta, auth=auth, env=env, trigger_type=trigger_type, path="spec.triggers[0]"
    )


@pytest.mark.parametrize("trigger_type", TYPES)
@budget(80)
@given(data=st.data())
def test_metadata_parses_to_a_scaler_or_a_config_error(
    trigger_type: str, data: st.DataObject
) -> None:
    ctx = data.draw(contexts(trigger_type))
    try:
        scaler = create_scaler(ctx)
    except ConfigError:
        return
    aclose = getattr(scaler, "aclose", None)
    if aclose is not None:
        anyio.run(aclose)


@pytest.mark.parametrize(
    ("trigger_type", "metadata"),
    [
        ("prometheus", {"serverAddress": "http://prom:9090", "query": "up", "threshold": "1"}),
        ("metrics-api", {"url": "http://api/x", "valueLocation": "a", "targetValue": "1"}),
    ],
)
def test_a_ca_that_is_not_ascii_is_a_config_error(
    trigger_type: str, metadata: dict[str, str]
) -> None:
    # found by the fuzz above: ssl raised TypeError for a non-ASCII CA
    ctx = TriggerContext(
        metadata=metadata, auth={"ca": Secret("Ω")}, trigger_type=trigger_type, path="t"
    )
    with pytest.raises(ConfigError, match="invalid TLS material"):
        create_scaler(ctx)
