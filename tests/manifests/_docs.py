"""Manifests the manifests tests share: the YAML files under tests/data/manifests and a
minimal ScaledObject."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eventscale.manifests.reader import Manifests, load_manifests

FIXTURES = Path(__file__).parent.parent / "data" / "manifests"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def load(name: str) -> Manifests:
    return load_manifests(fixture(name))


def so_doc(**spec: Any) -> dict[str, Any]:
    """A valid ScaledObject manifest with ``spec`` fields replaced."""
    body: dict[str, Any] = {
        "scaleTargetRef": {"name": "worker"},
        "triggers": [{"type": "redis", "metadata": {"listName": "jobs", "listLength": "5"}}],
    }
    body.update(spec)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "so"},
        "spec": body,
    }
