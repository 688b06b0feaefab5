"""A client scaler built from a manifest names its ScaledObject in the ScaledObjectRef."""

from __future__ import annotations

from eventscale.external.client import ExternalScaler
from eventscale.manifests.reader import load_manifests

MANIFEST = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: orders-worker, namespace: shop}
spec:
  scaleTargetRef: {name: orders-worker}
  triggers:
    - type: external
      metadata: {scalerAddress: "127.0.0.1:6000", queue: orders}
"""


def test_manifest_identity_reaches_the_scaled_object_ref() -> None:
    manifests = load_manifests(MANIFEST)
    spec = manifests.scaled_object()
    (ctx,) = manifests.trigger_contexts(spec)
    assert (ctx.object_name, ctx.object_namespace) == ("orders-worker", "shop")
    scaler = ExternalScaler.from_context(ctx)
    assert (scaler.config.name, scaler.config.namespace) == ("orders-worker", "shop")
    assert scaler.config.scaler_metadata["queue"] == "orders"
