"""The kinds the stand-in serves, KEDA's printer columns and server-side Tables."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import attrs


@attrs.frozen
class Resource:
    prefix: str  # "apis/apps/v1" or "api/v1"
    plural: str
    kind: str
    scale: bool = False
    namespaced: bool = True
    status: bool = False  # a status subresource (main writes ignore .status)
    short: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        parts = self.prefix.split("/")
        return parts[1] if parts[0] == "apis" else ""

    @property
    def version(self) -> str:
        return self.prefix.split("/")[-1]

    @property
    def api_version(self) -> str:
        return self.prefix.split("/", 1)[1]

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


KEDA = "apis/keda.sh/v1alpha1"

RESOURCES = (
    Resource("apis/apps/v1", "deployments", "Deployment", scale=True, status=True),
    Resource("apis/apps/v1", "statefulsets", "StatefulSet", scale=True, status=True),
    Resource("apis/batch.example.com/v1", "workers", "Worker", scale=True),
    Resource("apis/coordination.k8s.io/v1", "leases", "Lease"),
    Resource("api/v1", "secrets", "Secret"),
    Resource("api/v1", "configmaps", "ConfigMap"),
    Resource("api/v1", "events", "Event", short=("ev",)),
    Resource("apis/batch/v1", "jobs", "Job"),
    Resource("api/v1", "pods", "Pod"),
    Resource("apis/metrics.k8s.io/v1beta1", "pods", "PodMetrics"),
    Resource(
        "apis/autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        status=True,
        short=("hpa",),
    ),
    Resource(KEDA, "scaledobjects", "ScaledObject", status=True, short=("so",)),
    Resource(KEDA, "scaledjobs", "ScaledJob", status=True, short=("sj",)),
    Resource(KEDA, "triggerauthentications", "TriggerAuthentication", status=True, short=("ta",)),
    Resource(
        KEDA,
        "clustertriggerauthentications",
        "ClusterTriggerAuthentication",
        namespaced=False,
        status=True,
        short=("cta",),
    ),
)
BY_PATH = {(r.prefix, r.plural): r for r in RESOURCES}


def resource_of(obj: dict[str, Any]) -> Resource:
    """The resource of an object, from its ``kind`` and ``apiVersion``."""
    return next(
        r for r in RESOURCES if r.kind == obj["kind"] and r.api_version == obj["apiVersion"]
    )


def _condition(kind: str) -> str:
    return f'.status.conditions[?(@.type=="{kind}")].status'


# additionalPrinterColumns of KEDA's CRDs (config/crd/bases/keda.sh_*.yaml, v2.17):
# (name, type, jsonPath, priority).
_AGE = ("Age", "date", ".metadata.creationTimestamp", 0)
_AUTH_COLUMNS = [
    ("PodIdentity", "string", ".spec.podIdentity.provider", 0),
    ("Secret", "string", ".spec.secretTargetRef[*].name", 0),
    ("Env", "string", ".spec.env[*].name", 0),
    ("VaultAddress", "string", ".spec.hashiCorpVault.address", 0),
    ("ScaledObjects", "string", ".status.scaledobjects", 1),
    ("ScaledJobs", "string", ".status.scaledjobs", 1),
]
PRINTER_COLUMNS: dict[str, list[tuple[str, str, str, int]]] = {
    "scaledobjects": [
        ("ScaleTargetKind", "string", ".status.scaleTargetKind", 0),
        ("ScaleTargetName", "string", ".spec.scaleTargetRef.name", 0),
        ("Min", "integer", ".spec.minReplicaCount", 0),
        ("Max", "integer", ".spec.maxReplicaCount", 0),
        ("Ready", "string", _condition("Ready"), 0),
        ("Active", "string", _condition("Active"), 0),
        ("Fallback", "string", _condition("Fallback"), 0),
        ("Paused", "string", _condition("Paused"), 0),
        ("Triggers", "string", ".status.triggersTypes", 0),
        ("Authentications", "string", ".status.authenticationsTypes", 0),
        _AGE,
    ],
    "scaledjobs": [
        ("Min", "integer", ".spec.minReplicaCount", 0),
        ("Max", "integer", ".spec.maxReplicaCount", 0),
        ("Ready", "string", _condition("Ready"), 0),
        ("Active", "string", _condition("Active"), 0),
        ("Paused", "string", _condition("Paused"), 0),
        ("Triggers", "string", ".status.triggersTypes", 0),
        ("Authentications", "string", ".status.authenticationsTypes", 0),
        _AGE,
    ],
    "triggerauthentications": _AUTH_COLUMNS,
    "clustertriggerauthentications": [
        *_AUTH_COLUMNS[:3],
        ("FilePath", "string", ".spec.filePath", 0),
        *_AUTH_COLUMNS[3:],
    ],
}

_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_-]+)
      | \[\*\]
      | \[(?P<index>-?\d+)\]
      | \[\?\(@\.(?P<key>[A-Za-z0-9_.-]+)\s*==\s*(?P<quote>["'])(?P<value>.*?)(?P=quote)\)\]""",
    re.VERBOSE,
)


def jsonpath(path: str, obj: Any) -> list[Any]:
    """The values the CRD printer-column JSONPath ``path`` selects in ``obj``: fields,
    ``[*]``, ``[n]`` and ``[?(@.a.b=="v")]`` filters (what KEDA's columns use)."""
    values = [obj]
    pos = 0
    while pos < len(path):
        step = _STEP.match(path, pos)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        pos = step.end()
        found: list[Any] = []
        for value in values:
            if step["field"] is not None:
                if isinstance(value, dict) and step["field"] in value:
                    found.append(value[step["field"]])
            elif step["index"] is not None:
                if isinstance(value, list) and -len(value) <= int(step["index"]) < len(value):
                    found.append(value[int(step["index"])])
            elif step["key"] is not None:
                for item in value if isinstance(value, list) else []:
                    got = jsonpath("." + step["key"], item)
                    if got and str(got[0]) == step["value"]:
                        found.append(item)
            else:  # [*]
                if isinstance(value, list):
                    found.extend(value)
                elif isinstance(value, dict):
                    found.extend(value.values())
        values = found
    return values


def _cell(kind: str, values: list[Any]) -> Any:
    if not values or values[0] is None:
        return None
    if kind == "string":
        return ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)
    return values[0]


def _age(stamp: str | None) -> str:
    if not stamp:
        return "<unknown>"
    born = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = int((datetime.now(tz=UTC) - born).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(
    res: Resource, objects: list[dict[str, Any]], resource_version: str, include: str
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects``, as the API server's table convertor
    writes it: Name, then the CRD's printer columns (custom resources) or Age."""
    extra = PRINTER_COLUMNS.get(res.plural, [_AGE])
    definitions = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name must be unique within a namespace.",
            "priority": 0,
        }
    ] + [
        {"name": name, "type": kind, "format": "", "description": path, "priority": prio}
        for name, kind, path, prio in extra
    ]
    rows = []
    for obj in objects:
        cells: list[Any] = [obj["metadata"]["name"]]
        for _, kind, path, _ in extra:
            values = jsonpath(path, obj)
            cells.append(
                _age(values[0] if values else None) if kind == "date" else _cell(kind, values)
            )
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = _partial(obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
