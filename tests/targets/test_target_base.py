"""The Target protocol and TargetBase (targets/__init__.py)."""

from __future__ import annotations

import pytest
from anyio.abc import AsyncResource

from eventscale.targets import Target, TargetBase

pytestmark = pytest.mark.anyio


class Counter(TargetBase):
    """A target with only the two protocol calls; ``aclose`` comes from TargetBase."""

    def __init__(self) -> None:
        self.replicas = 0
        self.reasons: list[str | None] = []

    async def get_replicas(self) -> int:
        return self.replicas

    async def set_replicas(self, replicas: int, *, reason: str | None = None) -> None:
        self.replicas = replicas
        self.reasons.append(reason)


async def test_target_base_is_an_async_resource_with_a_no_op_aclose() -> None:
    target = Counter()
    assert isinstance(target, AsyncResource)
    assert isinstance(target, Target)
    async with target as entered:
        assert entered is target
        await entered.set_replicas(2)
        await entered.set_replicas(3, reason="queue at 30")
    await target.aclose()  # nothing to release, twice is fine
    assert (target.replicas, target.reasons) == (3, [None, "queue at 30"])
