"""Fixtures of the authentication tests: a unique namespace and clients of the
Kubernetes API stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventscale.kube import KubeClient, KubeConfig
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn


@pytest.fixture
def ns() -> str:
    return unique_name("ns")


async def _client(standin: KubeStandIn, ns: str, seconds: float) -> AsyncIterator[KubeClient]:
    client = KubeClient(KubeConfig.from_kubeconfig(standin.kubeconfig(ns)), timeout=seconds)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def kube(kube_standin: KubeStandIn, ns: str) -> AsyncIterator[KubeClient]:
    async for client in _client(kube_standin, ns, 5):
        yield client


@pytest.fixture
async def kube_standin_client_fast(kube_standin: KubeStandIn, ns: str) -> AsyncIterator[KubeClient]:
    """A client that gives up after 0.3 s, for a hung API."""
    async for client in _client(kube_standin, ns, 0.3):
        yield client
