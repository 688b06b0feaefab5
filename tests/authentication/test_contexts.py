"""eventscale.authentication.contexts: the synchronous resolution, without the manifest reader."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping

import attrs

from eventscale.authentication import ManifestStream, stream_trigger_contexts
from eventscale.redaction import Secret
from eventscale.spec import (
    AuthenticationRef,
    ScaledObjectSpec,
    ScaleTargetRef,
    SecretRef,
    TriggerAuthenticationSpec,
    TriggerSpec,
)


@attrs.frozen
class Stream:
    """A manifest stream built in code: what authentication reads, and no more."""

    trigger_authentications: Mapping[tuple[str, str], TriggerAuthenticationSpec]
    secrets: Mapping[str, Mapping[str, Secret]]
    config_maps: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    undecodable_secret_keys: frozenset[tuple[str, str]] = frozenset()


def _spec() -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="worker",
        scale_target_ref=ScaleTargetRef(name="worker"),
        triggers=(
            TriggerSpec(
                type="redis",
                metadata={"listName": "jobs"},
                authentication_ref=AuthenticationRef(name="auth"),
            ),
        ),
    )


def test_a_stream_built_in_code_resolves_and_secrets_merge_key_by_key() -> None:
    ta = TriggerAuthenticationSpec(
        name="auth",
        secret_target_ref=(
            SecretRef(parameter="password", name="s", key="pw"),
            SecretRef(parameter="username", name="s", key="user"),
        ),
    )
    stream = Stream(
        trigger_authentications={(ta.kind, ta.name): ta},
        secrets={"s": {"pw": Secret("from-stream"), "user": Secret("alice")}},
    )
    typed: ManifestStream = stream  # structural: no base class, no manifests import
    (ctx,) = stream_trigger_contexts(typed, _spec(), secrets={"s": {"pw": "from-code"}})
    assert ctx.auth == {"password": Secret("from-code"), "username": Secret("alice")}
    assert ctx.metadata == {"listName": "jobs"}


def test_authentication_imports_nothing_from_manifests() -> None:
    code = (
        "import json, sys\n"
        "import eventscale.authentication as a\n"
        "for name in a.__all__: getattr(a, name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('eventscale.'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(proc.stdout)
    assert not [m for m in loaded if m.startswith("eventscale.manifest")], loaded
