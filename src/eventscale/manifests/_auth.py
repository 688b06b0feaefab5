"""TriggerAuthentication, Secret and ConfigMap documents to specs and data.

A Secret's ``data`` is base64 and may hold binary values (a keytab): those keys are
recorded as undecodable and fail only when a trigger uses them. No message repeats a
value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

import attrs

from eventscale.manifests.fields import OBJECT_META_FIELDS, FieldReader, key_path, type_name
from eventscale.redaction import Secret
from eventscale.spec import ConfigMapRef, EnvRef, SecretRef, TriggerAuthenticationSpec

__all__ = ("TA_KINDS", "SecretDoc", "read_config_map", "read_secret", "read_trigger_auth")

TA_KINDS: Final = ("TriggerAuthentication", "ClusterTriggerAuthentication")
"""The two kinds an ``authenticationRef`` may name; the first is the default."""

_POD_IDENTITY_PROVIDERS: Final = frozenset(
    {"none", "azure", "azure-workload", "aws", "aws-eks", "aws-kiam", "gcp"}
)
_UNRESOLVABLE_AUTH: Final = (
    "hashiCorpVault",
    "azureKeyVault",
    "awsSecretManager",
    "gcpSecretManager",
    "boundServiceAccountToken",
    "filePath",
)

_TA_SPEC_FIELDS: Final = (
    "podIdentity",
    "secretTargetRef",
    "configMapTargetRef",
    "env",
    *_UNRESOLVABLE_AUTH,
)


def _read_refs(
    r: FieldReader,
    spec: Mapping[str, Any],
    key: str,
    fields: tuple[str, ...],
    required: tuple[str, ...],
) -> list[dict[str, str | None]]:
    out: list[dict[str, str | None]] = []
    for j, item in enumerate(r.items(spec, key, "spec") or ()):
        path = f"spec.{key}[{j}]"
        entry = r.mapping(item, path, fields)
        if entry is None:
            continue
        before = len(r.errors)
        values = {f: r.string(entry, f, path, required=f in required) for f in fields}
        if len(r.errors) == before:
            out.append(values)
    return out


def read_trigger_auth(
    r: FieldReader, doc: Mapping[str, Any], kind: str
) -> TriggerAuthenticationSpec:
    """The (Cluster)TriggerAuthentication ``doc`` (problems are recorded in ``r``)."""
    meta = r.object_meta(doc)
    spec = r.sub(doc, "spec", "", _TA_SPEC_FIELDS) or {}
    secret_refs = tuple(
        SecretRef(parameter=v["parameter"] or "", name=v["name"] or "", key=v["key"] or "")
        for v in _read_refs(
            r, spec, "secretTargetRef", ("parameter", "name", "key"), ("parameter", "name", "key")
        )
    )
    cm_refs = tuple(
        ConfigMapRef(parameter=v["parameter"] or "", name=v["name"] or "", key=v["key"] or "")
        for v in _read_refs(
            r,
            spec,
            "configMapTargetRef",
            ("parameter", "name", "key"),
            ("parameter", "name", "key"),
        )
    )
    env_refs = tuple(
        EnvRef(
            parameter=v["parameter"] or "", name=v["name"] or "", container_name=v["containerName"]
        )
        for v in _read_refs(
            r, spec, "env", ("parameter", "name", "containerName"), ("parameter", "name")
        )
    )
    pod_identity = None
    pid = r.sub(spec, "podIdentity", "spec")
    if pid is not None:
        r.string(
            pid,
            "provider",
            "spec.podIdentity",
            required=True,
            choices=tuple(sorted(_POD_IDENTITY_PROVIDERS)),
        )
        pod_identity = dict(pid)
    other = {key: spec[key] for key in _UNRESOLVABLE_AUTH if spec.get(key) is not None}
    return TriggerAuthenticationSpec(
        name=meta.name,
        kind=kind,
        namespace=meta.namespace,
        secret_target_ref=secret_refs,
        config_map_target_ref=cm_refs,
        env=env_refs,
        pod_identity=pod_identity,
        other=other,
    )


@attrs.frozen
class SecretDoc:
    """A Secret's name, its decoded values and the keys whose value is not UTF-8."""

    name: str
    values: Mapping[str, Secret]
    undecodable: frozenset[str]


def read_secret(r: FieldReader, doc: Mapping[str, Any]) -> SecretDoc:
    """The Secret ``doc``: ``stringData`` wins over ``data`` key by key, as in Kubernetes."""
    meta = r.sub(doc, "metadata", "", OBJECT_META_FIELDS, required=True) or {}
    name = r.string(meta, "name", "metadata", required=True) or ""
    values: dict[str, Secret] = {}
    undecodable: set[str] = set()
    data = r.sub(doc, "data", "") or {}
    for key, item in data.items():
        path = key_path("data", key)
        if not isinstance(item, str):
            r.fail(path, f"must be a base64 string, got {type_name(item)}")
            continue
        try:
            decoded = base64.b64decode("".join(item.split()), validate=True)
        except (binascii.Error, ValueError):
            r.fail(path, "is not valid base64 (value not shown)")
            continue
        try:
            values[key] = Secret(decoded.decode("utf-8"))
        except UnicodeDecodeError:
            undecodable.add(key)
    string_data = r.sub(doc, "stringData", "") or {}
    for key, item in string_data.items():
        path = key_path("stringData", key)
        text = r.scalar_text(item, path)
        if text is None:
            r.fail(path, f"must be a string, got {type_name(item)}")
            continue
        values[key] = Secret(text)
        undecodable.discard(key)
    return SecretDoc(name, values, frozenset(undecodable))


def read_config_map(r: FieldReader, doc: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The ConfigMap ``doc`` as its name and ``data``."""
    meta = r.sub(doc, "metadata", "", OBJECT_META_FIELDS, required=True) or {}
    name = r.string(meta, "name", "metadata", required=True) or ""
    return name, r.string_map(doc, "data", "")
