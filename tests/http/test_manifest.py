"""HTTPScaledObject manifests as the KEDA HTTP add-on defines them."""

from __future__ import annotations

import pytest

from eventscale.errors import ConfigError
from eventscale.http import HTTPMetric, load_http_scaled_objects
from eventscale.http.manifest import HTTPScaledObjectSpec
from eventscale.manifests.reader import Manifests
from eventscale.scalers import create_scaler

FULL = """
apiVersion: http.keda.sh/v1alpha1
kind: HTTPScaledObject
metadata:
  name: my-app
  namespace: web
  annotations:
    httpscaledobject.keda.sh/skip-scaledobject-creation: "false"
spec:
  hosts:
    - app.example.com
    - "*.app.example.com"
  pathPrefixes:
    - /api
    - v2
  headers:
    - name: X-Tenant
      value: blue
    - name: X-Debug
  scaleTargetRef:
    name: my-app
    kind: StatefulSet
    apiVersion: apps/v1
    service: my-app-svc
    port: 8080
  coldStartTimeoutFailoverRef:
    service: sorry-page
    port: 80
    timeoutSeconds: 12
  replicas:
    min: 1
    max: 10
  scalingMetric:
    requestRate:
      targetValue: 50
      window: 2m
      granularity: 2s
  scaledownPeriod: 120
  initialCooldownPeriod: 30
  timeouts:
    conditionWait: 20s
    responseHeader: 500ms
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-app
"""


def test_full_manifest() -> None:
    (so,) = load_http_scaled_objects(FULL)
    assert so.key == "web/my-app"
    assert so.hosts == ("app.example.com", "*.app.example.com")
    assert so.path_prefixes == ("/api", "/v2")
    assert [(h.name, h.value) for h in so.headers] == [("X-Tenant", "blue"), ("X-Debug", None)]
    ref = so.scale_target_ref
    assert (ref.name, ref.kind, ref.service, ref.port, ref.port_name) == (
        "my-app",
        "StatefulSet",
        "my-app-svc",
        8080,
        None,
    )
    assert so.cold_start_timeout_failover_ref is not None
    assert so.cold_start_timeout_failover_ref.timeout_seconds == 12
    assert (so.min_replicas, so.max_replicas) == (1, 10)
    metric = so.scaling_metric
    assert (metric.metric, metric.target_value, metric.window, metric.granularity) == (
        HTTPMetric.REQUEST_RATE,
        50,
        120,
        2,
    )
    assert (so.scaledown_period, so.initial_cooldown_period) == (120, 30)
    assert (so.condition_wait, so.response_header_timeout) == (20, 0.5)
    assert not so.skip_scaled_object_creation

    route = so.to_route()
    assert route.name == "web/my-app"
    assert route.upstream == "http://my-app-svc:8080"
    assert route.failover == "http://sorry-page:80"
    assert route.hold_timeout == 12  # the failover's timeout wins
    assert route.headers == (("x-tenant", "blue"), ("x-debug", None))
    assert route.response_header_timeout == 0.5
    assert (
        so.to_route({"web/my-app-svc": "http://10.0.0.5:9000"}).upstream == "http://10.0.0.5:9000"
    )

    spec = so.to_scaled_object_spec(polling_interval=2)
    assert (spec.name, spec.namespace, spec.polling_interval) == ("my-app", "web", 2)
    assert (spec.min_replica_count, spec.max_replica_count) == (1, 10)
    assert spec.cooldown_period == 0  # scaledownPeriod is the trigger's activity window
    assert spec.initial_cooldown_period == 30
    assert spec.scale_target_ref.kind == "StatefulSet"
    (trigger,) = spec.triggers
    assert trigger.type == "http"
    scaler = create_scaler(Manifests().trigger_contexts(spec)[0])
    cfg = scaler.config  # type: ignore[attr-defined]
    assert (cfg.name, cfg.metric, cfg.target) == ("web/my-app", HTTPMetric.REQUEST_RATE, 50)
    assert (cfg.activity_window, cfg.window) == (120, 120)


def test_minimal_manifest_gets_the_add_on_defaults() -> None:
    doc = {
        "apiVersion": "http.keda.sh/v1alpha1",
        "kind": "HTTPScaledObject",
        "metadata": {"name": "xkcd"},
        "spec": {
            "hosts": ["myhost.com"],
            "scaleTargetRef": {"name": "xkcd", "service": "xkcd", "port": 8080},
        },
    }
    (so,) = load_http_scaled_objects(doc)
    assert so == HTTPScaledObjectSpec(
        name="xkcd",
        hosts=("myhost.com",),
        scale_target_ref=so.scale_target_ref,
    )
    assert so.namespace == "default"
    assert so.path_prefixes == ("/",)
    assert (so.min_replicas, so.max_replicas, so.scaledown_period) == (0, 100, 300)
    assert (so.scaling_metric.metric, so.scaling_metric.target_value) == (
        HTTPMetric.CONCURRENCY,
        100,
    )
    assert so.scale_target_ref.kind == "Deployment"
    assert so.to_route().hold_timeout == 20


def test_deprecated_target_pending_requests_and_skip_annotation() -> None:
    doc = {
        "apiVersion": "http.keda.sh/v1alpha1",
        "kind": "HTTPScaledObject",
        "metadata": {
            "name": "old",
            "annotations": {"httpscaledobject.keda.sh/skip-scaledobject-creation": "true"},
        },
        "spec": {
            "hosts": ["old.test"],
            "targetPendingRequests": 7,
            "scaleTargetRef": {"name": "old", "service": "old", "portName": "http"},
        },
    }
    (so,) = load_http_scaled_objects([doc])
    assert so.scaling_metric.target_value == 7
    assert so.skip_scaled_object_creation
    with pytest.raises(ConfigError) as info:
        so.to_route()
    assert info.value.path == "spec.scaleTargetRef.portName"
    assert so.to_route({"old": "http://127.0.0.1:1234"}).upstream == "http://127.0.0.1:1234"


def _doc(**spec: object) -> dict[str, object]:
    base: dict[str, object] = {
        "hosts": ["a.test"],
        "scaleTargetRef": {"name": "a", "service": "a", "port": 80},
    }
    base.update(spec)
    return {
        "apiVersion": "http.keda.sh/v1alpha1",
        "kind": "HTTPScaledObject",
        "metadata": {"name": "a"},
        "spec": base,
    }


@pytest.mark.parametrize(
    ("doc", "paths"),
    [
        pytest.param(_doc(hosts=[]), ["spec.hosts"], id="no-hosts"),
        pytest.param(_doc(hosts=["ok", 3]), ["spec.hosts[1]"], id="host-not-string"),
        pytest.param(_doc(host="a.test"), ["spec.host"], id="old-host-field"),
        pytest.param(
            _doc(scaleTargetRef={"name": "a", "service": "a"}),
            ["spec.scaleTargetRef.port"],
            id="no-port",
        ),
        pytest.param(
            _doc(scaleTargetRef={"name": "a", "service": "a", "port": 80, "portName": "http"}),
            ["spec.scaleTargetRef.port"],
            id="port-and-port-name",
        ),
        pytest.param(
            _doc(scaleTargetRef={"name": "a", "port": 70000}),
            ["spec.scaleTargetRef.service", "spec.scaleTargetRef.port"],
            id="no-service-bad-port",
        ),
        pytest.param(
            _doc(replicas={"min": 5, "max": 2}), ["spec.replicas.min"], id="min-above-max"
        ),
        pytest.param(_doc(replicas={"max": 0}), ["spec.replicas.max"], id="max-zero"),
        pytest.param(
            _doc(scalingMetric={"concurrency": {"targetValue": 1}, "requestRate": {}}),
            ["spec.scalingMetric"],
            id="both-metrics",
        ),
        pytest.param(
            _doc(scalingMetric={"concurrency": {"targetValue": 0}}),
            ["spec.scalingMetric.concurrency.targetValue"],
            id="zero-target",
        ),
        pytest.param(
            _doc(scalingMetric={"requestRate": {"window": "forever"}}),
            ["spec.scalingMetric.requestRate.window"],
            id="bad-window",
        ),
        pytest.param(_doc(scaledownPeriod=-1), ["spec.scaledownPeriod"], id="negative-scaledown"),
        pytest.param(
            _doc(timeouts={"conditionWait": 20}), ["spec.timeouts.conditionWait"], id="timeout-int"
        ),
        pytest.param(
            _doc(coldStartTimeoutFailoverRef={"port": 80, "timeoutSeconds": 0}),
            [
                "spec.coldStartTimeoutFailoverRef.service",
                "spec.coldStartTimeoutFailoverRef.timeoutSeconds",
            ],
            id="failover",
        ),
        pytest.param(
            _doc(headers=[{"value": "x"}, {"name": "A"}, {"name": "a"}]),
            ["spec.headers[0].name", "spec.headers[2].name"],
            id="headers",
        ),
    ],
)
def test_bad_manifests_name_every_field(doc: dict[str, object], paths: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_http_scaled_objects(doc)
    assert sorted(info.value.all_paths()) == sorted(paths)


def test_wrong_api_version_and_stream_prefixes() -> None:
    bad = _doc()
    bad["apiVersion"] = "keda.sh/v1alpha1"
    with pytest.raises(ConfigError) as info:
        load_http_scaled_objects([_doc(), bad])
    assert info.value.all_paths() == ["[doc 1].apiVersion"]
    with pytest.raises(ConfigError, match="duplicate"):
        load_http_scaled_objects([_doc(), _doc()])
    with pytest.raises(ConfigError, match="unsupported kind"):
        load_http_scaled_objects({"kind": "Deployment"}, ignore_unknown_kinds=False)
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_http_scaled_objects("spec: [")


def test_errors_carry_lines_hints_and_the_32_bit_limit() -> None:
    text = """\
apiVersion: http.keda.sh/v1alpha1
kind: HTTPScaledObject
metadata: {name: a}
spec:
  host: a.test
  hosts: [a.test]
  scaleTargetRef: {name: a, service: a, port: 80}
  replicas: {max: 9999999999}
  scaledownPeriodd: 5
"""
    with pytest.raises(ConfigError) as info:
        load_http_scaled_objects(text)
    message = str(info.value)
    assert "spec.host: unknown field 'host' (the add-on renamed 'host' to 'hosts') (line 5)" in (
        message
    )
    assert "spec.replicas.max: 9999999999 is out of range for a 32-bit integer (line 8)" in message
    assert "(did you mean 'scaledownPeriod'?) (line 9)" in message
