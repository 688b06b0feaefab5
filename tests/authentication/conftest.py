"""Fixtures of the authentication tests: a unique namespace and a client of the
Kubernetes API stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventscale.targets.kubernetes import KubeClient, KubeConfig
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn


@pytest.fixture
def ns() -> str:
    return unique_name("ns")


@pytest.fixture
async def kube(kube_standin: KubeStandIn, ns: str) -> AsyncIterator[KubeClient]:
    client = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)), timeout=5)
    try:
        yield client
    finally:
        await client.aclose()
