"""What ScaledObject and ScaledJob share (runtime/_base.py): one polling base."""

from __future__ import annotations

import pytest

from eventscale._resource import AsyncResource
from eventscale.jobs import MemoryJobTarget
from eventscale.runtime.scaled_job import ScaledJob
from eventscale.runtime.scaled_object import ScaledObject
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from eventscale.testing import ManualClock, MemoryTarget, StaticScaler

pytestmark = pytest.mark.anyio

OBJECT_YAML = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: worker, namespace: shop}
spec:
  scaleTargetRef: {name: worker}
  triggers:
    - type: cron
      metadata: {timezone: UTC, start: "0 8 * * *", end: "0 18 * * *", desiredReplicas: "2"}
"""


def object_spec() -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name="worker",
        scale_target_ref=ScaleTargetRef(name="worker"),
        triggers=[TriggerSpec(type="gauge", name="t0")],
    )


def job_spec() -> ScaledJobSpec:
    return ScaledJobSpec(
        name="thumbs",
        job_target_ref={"template": {"spec": {"containers": [{"name": "w", "image": "x"}]}}},
        triggers=[TriggerSpec(type="gauge", name="t0")],
    )


async def test_both_are_async_resources_that_close_scalers_and_target() -> None:
    so_scaler, sj_scaler = StaticScaler(1), StaticScaler(1)
    so_target, sj_target = MemoryTarget(), MemoryJobTarget(clock=ManualClock())
    so = ScaledObject(object_spec(), target=so_target, scalers=[so_scaler])
    sj = ScaledJob(job_spec(), target=sj_target, scalers=[sj_scaler])
    for obj in (so, sj):
        assert isinstance(obj, AsyncResource)
        async with obj as entered:
            assert entered is obj
    assert (so_scaler.closed, so_target.closed) == (True, True)
    assert (sj_scaler.closed, sj_target.closed) == (True, True)


async def test_key_repr_and_poll() -> None:
    so = ScaledObject(object_spec(), target=MemoryTarget(), scalers=[StaticScaler(3)])
    assert so.key == "default/worker"
    assert repr(so).startswith("<ScaledObject default/worker triggers=1 target=")
    sj = ScaledJob(
        job_spec(), target=MemoryJobTarget(clock=ManualClock()), scalers=[StaticScaler(2)]
    )
    assert repr(sj).startswith("<ScaledJob default/thumbs triggers=1 target=")
    (observation,) = await so.poll()
    assert observation.error is None
    (observation,) = await sj.poll()
    assert observation.error is None


def test_from_manifest_builds_the_subclass() -> None:
    so = ScaledObject.from_manifest(OBJECT_YAML, target=MemoryTarget(), clock=ManualClock(0))
    assert type(so) is ScaledObject
    assert so.key == "shop/worker"
    assert len(so.scalers) == 1
