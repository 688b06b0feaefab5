"""Discovery documents and the OpenAPI v3 kubectl reads."""

from __future__ import annotations

import zlib
from typing import Any

from servers.kubernetes.errors import ApiError
from servers.kubernetes.resources import RESOURCES, Resource

NOT_FOUND = "the server could not find the requested resource"


def groups() -> dict[str, Any]:
    groups: dict[str, set[str]] = {}
    for r in RESOURCES:
        if r.group:
            groups.setdefault(r.group, set()).add(r.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                "preferredVersion": {
                    "groupVersion": f"{g}/{sorted(vs)[0]}",
                    "version": sorted(vs)[0],
                },
            }
            for g, vs in sorted(groups.items())
        ],
    }


def discovery(prefix: str) -> dict[str, Any]:
    listed = [r for r in RESOURCES if r.prefix == prefix]
    if not listed:
        raise ApiError(404, "NotFound", NOT_FOUND)
    resources: list[dict[str, Any]] = []
    for r in listed:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }
        if r.short:
            entry["shortNames"] = list(r.short)
        resources.append(entry)
        if r.scale:
            resources.append(
                {
                    "name": f"{r.plural}/scale",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "update"],
                }
            )
        if r.status:
            resources.append(
                {
                    "name": f"{r.plural}/status",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": prefix.split("/", 1)[1],
        "resources": resources,
    }


def _gvk(r: Resource) -> dict[str, str]:
    return {"group": r.group, "version": r.version, "kind": r.kind}


def openapi_v3(group_version: str) -> dict[str, Any]:
    """Enough OpenAPI v3 for kubectl: the index, and per group-version the PATCH
    operations (their ``fieldValidation`` parameter and patch types, which tell kubectl
    the server validates fields itself and which patch to send) and a schema per kind
    that keeps unknown fields."""
    versions = sorted({r.prefix for r in RESOURCES})
    if not group_version:
        return {
            "paths": {
                v: {"serverRelativeURL": f"/openapi/v3/{v}?hash={zlib.crc32(v.encode()):08X}"}
                for v in versions
            }
        }
    listed = [r for r in RESOURCES if r.prefix == group_version]
    if not listed:
        raise ApiError(404, "NotFound", NOT_FOUND)
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for r in listed:
        name = (
            ".".join([*reversed(r.group.split(".")), r.version, r.kind])
            if r.group
            else (f"io.k8s.api.core.{r.version}.{r.kind}")
        )
        schemas[name] = {
            "type": "object",
            "x-kubernetes-group-version-kind": [_gvk(r)],
            "x-kubernetes-preserve-unknown-fields": True,
        }
        types = ["application/json-patch+json", "application/merge-patch+json"]
        if not r.group.endswith("keda.sh") and r.group != "batch.example.com":
            types.append("application/strategic-merge-patch+json")
        scope = "/namespaces/{namespace}" if r.namespaced else ""
        ref = {"$ref": f"#/components/schemas/{name}"}
        operation = {
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            ],
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": _gvk(r),
            "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in types}},
            "responses": {"200": {"content": {"application/json": {"schema": ref}}}},
        }
        paths[f"/{r.prefix}{scope}/{r.plural}/{{name}}"] = {"patch": operation}
        paths[f"/{r.prefix}{scope}/{r.plural}"] = {
            "post": {
                **operation,
                "x-kubernetes-action": "post",
                "requestBody": {"content": {"application/json": {"schema": ref}}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
