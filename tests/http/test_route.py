"""InterceptorRoute manifests (``http.keda.sh/v1beta1``) as the KEDA HTTP add-on defines them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventscale.errors import ConfigError
from eventscale.http import HTTPScaler, Interceptor, load_http_scaled_objects
from eventscale.http.manifest import FailoverRef, HeaderMatch
from eventscale.http.route import (
    KIND,
    InterceptorRouteSpec,
    RequestRate,
    RoutingRule,
    bind_scaled_object,
    load_interceptor_routes,
    route_references,
)
from eventscale.manifests.reader import load_manifests
from eventscale.scalers import create_scaler

FULL = """
apiVersion: http.keda.sh/v1beta1
kind: InterceptorRoute
metadata:
  name: shop
  namespace: web
  labels: {team: blue}
spec:
  target:
    service: shop-svc
    port: 8080
  rules:
    - hosts: [Shop.Example.com, "*.shop.example.com", "api.example.com:8443"]
      paths:
        - value: /api/
        - value: v2
      headers:
        - name: X-Tenant
          value: blue
        - name: X-Debug
  scalingMetric:
    concurrency:
      targetValue: 20
    requestRate:
      targetValue: 50
      window: 2m
      granularity: 2s
  coldStart:
    fallback:
      service:
        name: sorry
        port: 80
  timeouts:
    readiness: 12s
    responseHeader: 500ms
"""

MINIMAL = """
apiVersion: http.keda.sh/v1beta1
kind: InterceptorRoute
metadata:
  name: {name}
spec:
  target:
    service: app
    port: 80
  rules:
    - hosts: [app.test]
  scalingMetric:
    concurrency:
      targetValue: 5
"""

SCALED_OBJECT = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {so}
spec:
  scaleTargetRef:
    name: app
  pollingInterval: 5
  minReplicaCount: 0
  triggers:
    - type: cron
      metadata: {{timezone: UTC, start: "0 8 * * *", end: "0 18 * * *", desiredReplicas: "2"}}
    - type: external-push
      name: web
      metadata:
        scalerAddress: keda-add-ons-http-external-scaler.keda:9090
        interceptorRoute: {route}
"""

HTTPSO = """
apiVersion: http.keda.sh/v1alpha1
kind: HTTPScaledObject
metadata:
  name: legacy
spec:
  hosts: [legacy.test]
  scaleTargetRef: {name: legacy, service: legacy, port: 80}
"""


def test_every_field_is_read() -> None:
    (route,) = load_interceptor_routes(FULL)
    assert route == InterceptorRouteSpec(
        name="shop",
        namespace="web",
        labels={"team": "blue"},
        service="shop-svc",
        port=8080,
        rules=(
            RoutingRule(
                hosts=("shop.example.com", "*.shop.example.com", "api.example.com"),
                path_prefixes=("/api", "/v2"),
                headers=(HeaderMatch(name="X-Tenant", value="blue"), HeaderMatch(name="X-Debug")),
            ),
        ),
        concurrency=20,
        request_rate=RequestRate(target_value=50, window=120.0, granularity=2.0),
        fallback=FailoverRef(service="sorry", port=80, timeout_seconds=30.0),
        readiness=12.0,
        response_header_timeout=0.5,
    )
    assert route.key == "web/shop"


def test_to_route_gives_the_interceptor_route() -> None:
    (route,) = load_interceptor_routes(FULL)
    r = route.to_route({"web/shop-svc": "http://127.0.0.1:9001"}, max_held=7, retry_after=2)
    assert r.name == "web/shop"
    assert r.hosts == ("shop.example.com", "*.shop.example.com", "api.example.com")
    assert r.path_prefixes == ("/api", "/v2")
    assert r.headers == (("x-tenant", "blue"), ("x-debug", None))
    assert r.upstream == "http://127.0.0.1:9001"
    assert r.failover == "http://sorry:80"
    assert (r.hold_timeout, r.response_header_timeout) == (12.0, 0.5)
    assert (r.max_held, r.retry_after) == (7, 2)
    # --hold-timeout overrides the manifest
    assert route.to_route(hold_timeout=3).hold_timeout == 3


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", 20.0),  # the interceptor's default
        ("  coldStart: {fallback: {service: {name: f, port: 81}}}\n", 30.0),  # the add-on's
        (
            "  timeouts: {readiness: 0s}\n  coldStart: {fallback: {service: {name: f, port: 81}}}\n",
            30.0,
        ),
        ("  timeouts: {readiness: 1m30s}\n", 90.0),
    ],
)
def test_hold_timeout_follows_the_add_on(extra: str, expected: float) -> None:
    (route,) = load_interceptor_routes(MINIMAL.format(name="a") + extra)
    assert route.to_route().hold_timeout == expected


def test_defaults_rule_without_hosts_and_paths_is_a_catch_all() -> None:
    text = MINIMAL.format(name="a").replace("- hosts: [app.test]", "- headers: [{name: X-A}]")
    (route,) = load_interceptor_routes(text)
    r = route.to_route()
    assert (r.hosts, r.path_prefixes, r.headers) == (("*",), ("/",), (("x-a", None),))
    icpt = Interceptor([r])
    assert icpt.match("any.host", "/x", {"x-a": "1"}) == r
    assert icpt.match("any.host", "/x", {}) is None


def test_rules_that_fit_one_route_are_merged() -> None:
    text = MINIMAL.format(name="a").replace(
        "    - hosts: [app.test]\n",
        "    - hosts: [a.test]\n      paths: [{value: /x}]\n"
        "    - hosts: [b.test]\n      paths: [{value: /x}]\n",
    )
    (route,) = load_interceptor_routes(text)
    r = route.to_route()
    assert (r.hosts, r.path_prefixes) == (("a.test", "b.test"), ("/x",))


def test_a_single_metric_gives_one_http_trigger_reading_the_route() -> None:
    (route,) = load_interceptor_routes(MINIMAL.format(name="one"))
    (trigger,) = route.triggers(activity_window=5, name="web")
    assert trigger.type == "http"
    assert trigger.name == "web"
    assert dict(trigger.metadata) == {
        "name": "default/one",
        "metric": "concurrency",
        "targetValue": "5",
        "activityWindow": "5s",
    }
    (full,) = load_interceptor_routes(FULL)
    conc, rate = full.triggers(activity_window=1)
    assert (conc.name, rate.name) == ("http-concurrency", "http-rate")
    assert rate.metadata["metric"] == "requestRate"
    assert (rate.metadata["targetValue"], rate.metadata["window"]) == ("50", "120s")


def test_a_scaled_object_is_bound_to_its_route() -> None:
    text = "\n---\n".join([MINIMAL.format(name="r1"), SCALED_OBJECT.format(so="app", route="r1")])
    routes = {r.key: r for r in load_interceptor_routes(text)}
    (so,) = load_manifests(text, ignore_unknown_kinds=True).scaled_objects
    assert route_references(so) == ((1, "r1"),)
    bound = bind_scaled_object(so, routes)
    assert [t.type for t in bound.triggers] == ["cron", "http"]
    assert bound.triggers[0] == so.triggers[0]
    http = bound.triggers[1]
    assert (http.name, http.metadata["name"], http.metadata["activityWindow"]) == (
        "web",
        "default/r1",
        "5s",
    )
    assert route_references(bound) == ()
    # The bound trigger builds a real http scaler reading the route's stats in process.
    manifests = load_manifests(text, ignore_unknown_kinds=True)
    ctx = manifests.trigger_contexts(bound)[1]
    scaler = create_scaler(ctx)
    assert isinstance(scaler, HTTPScaler)
    assert scaler.config.name == "default/r1"
    assert scaler.config.target == 5.0


def test_binding_errors_name_the_trigger() -> None:
    text = SCALED_OBJECT.format(so="app", route="missing").replace(
        "interceptorRoute: missing", "interceptorRoute: missing\n        hosts: x"
    )
    (so,) = load_manifests(text).scaled_objects
    with pytest.raises(ConfigError) as info:
        bind_scaled_object(so, {})
    assert sorted(info.value.all_paths()) == [
        "[ScaledObject default/app].spec.triggers[1].metadata.hosts",
        "[ScaledObject default/app].spec.triggers[1].metadata.interceptorRoute",
    ]
    assert "no InterceptorRoute 'missing' in namespace 'default'" in str(info.value)


def test_a_mixed_file_gives_each_reader_its_kind() -> None:
    text = "\n---\n".join(
        [
            HTTPSO,
            MINIMAL.format(name="new"),
            SCALED_OBJECT.format(so="app", route="new"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n",
        ]
    )
    assert [s.key for s in load_http_scaled_objects(text)] == ["default/legacy"]
    assert [r.key for r in load_interceptor_routes(text)] == ["default/new"]
    assert [s.name for s in load_manifests(text, ignore_unknown_kinds=True).scaled_objects] == [
        "app"
    ]


@pytest.mark.parametrize(
    ("change", "paths"),
    [
        (("port: 80", "port: 80\n    portName: http"), ["spec.target"]),
        (("    port: 80\n", ""), ["spec.target"]),
        (("port: 80", "port: 70000"), ["spec.target.port"]),
        (("target:", "targt:"), ["spec.targt", "spec.target"]),
        (("targetValue: 5", "targetValue: 0"), ["spec.scalingMetric.concurrency.targetValue"]),
        (
            ("targetValue: 5", "targetValue: 9999999999"),
            ["spec.scalingMetric.concurrency.targetValue"],
        ),
        (("    concurrency:\n      targetValue: 5\n", "    {}\n"), ["spec.scalingMetric"]),
        (("- hosts: [app.test]", "- hosts: [app.test]\n      path: [/x]"), ["spec.rules[0].path"]),
        (("- hosts: [app.test]", "- paths: [/x]"), ["spec.rules[0].paths[0]"]),
        (("  rules:\n    - hosts: [app.test]\n", ""), ["spec.rules"]),
        (
            ("- hosts: [app.test]", "- headers: [{name: A}, {name: a}]"),
            ["spec.rules[0].headers[1].name"],
        ),
        (
            (
                "- hosts: [app.test]",
                "- hosts: [a.test]\n    - hosts: [b.test]\n      paths: [{value: /x}]",
            ),
            ["spec.rules[1]"],
        ),
        (
            (
                "- hosts: [app.test]",
                "- hosts: [a.test]\n    - hosts: [a.test]\n      headers: [{name: X}]",
            ),
            ["spec.rules[1]"],
        ),
        (("apiVersion: http.keda.sh/v1beta1", "apiVersion: http.keda.sh/v1alpha1"), ["apiVersion"]),
        (("  name: a\n", "  namespace: x\n"), ["metadata.name"]),
        (("spec:", "status: {}\nspec:"), []),
    ],
)
def test_field_errors_name_their_paths(change: tuple[str, str], paths: list[str]) -> None:
    text = MINIMAL.format(name="a").replace(*change)
    if not paths:
        assert len(load_interceptor_routes(text)) == 1
        return
    with pytest.raises(ConfigError) as info:
        load_interceptor_routes(text)
    assert sorted(info.value.all_paths()) == sorted(paths)


@pytest.mark.parametrize(
    ("extra", "path", "words"),
    [
        (
            (
                "  staticRoutes:\n    - rules: [{paths: [{value: /healthz}]}]\n"
                "      response: {statusCode: 200}\n"
            ),
            "spec.staticRoutes",
            "static responses",
        ),
        (
            "  coldStart:\n    placeholder:\n      response: {statusCode: 503}\n",
            "spec.coldStart.placeholder",
            "not supported",
        ),
        ("  coldStart: {}\n", "spec.coldStart", "'fallback' or 'placeholder'"),
        ("  timeouts:\n    request: 30s\n", "spec.timeouts.request", "not the whole request"),
        ("  timeouts:\n    readiness: 0s\n", "spec.timeouts.readiness", "bounded time"),
        ("  timeouts:\n    readiness: soon\n", "spec.timeouts.readiness", ""),
        ("  timeouts:\n    readiness: 30\n", "spec.timeouts.readiness", "duration string"),
    ],
)
def test_unsupported_fields_are_errors_never_ignored(extra: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_interceptor_routes(MINIMAL.format(name="a") + extra)
    assert info.value.all_paths() == [path]
    assert words in str(info.value)


def test_request_timeout_zero_means_disabled_and_is_accepted() -> None:
    (route,) = load_interceptor_routes(MINIMAL.format(name="a") + "  timeouts: {request: 0s}\n")
    assert route.readiness is None


def test_errors_carry_lines_and_document_numbers() -> None:
    text = "\n---\n".join(
        [
            MINIMAL.format(name="a"),
            MINIMAL.format(name="b").replace("port: 80", "port: 0").replace("hosts:", "hostz:"),
            MINIMAL.format(name="a"),
        ]
    )
    with pytest.raises(ConfigError) as info:
        load_interceptor_routes(text)
    message = str(info.value)
    assert sorted(info.value.all_paths()) == [
        "[doc 1].spec.rules[0].hostz",
        "[doc 1].spec.target.port",
        "[doc 2].metadata.name",
    ]
    # lines count from the top of the file
    assert "spec.target.port: must be >= 1, got 0 (line 25)" in message
    assert "unknown field 'hostz' (did you mean 'hosts'?) (line 27)" in message
    assert "duplicate InterceptorRoute 'default/a' (line 37)" in message


def test_port_name_needs_an_upstream_url() -> None:
    text = MINIMAL.format(name="a").replace("port: 80", "portName: http")
    (route,) = load_interceptor_routes(text)
    with pytest.raises(ConfigError) as info:
        route.to_route()
    assert info.value.path == "spec.target.portName"
    assert route.to_route({"app": "http://127.0.0.1:1"}).upstream == "http://127.0.0.1:1"


def test_the_docs_example_loads_and_binds() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "http.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", page, flags=re.S) if KIND in b]
    assert blocks
    for block in blocks:
        (route,) = load_interceptor_routes(block)
        assert route.to_route().upstream == "http://shop:8080"
        assert route.to_route().hold_timeout == 30
        (so,) = load_manifests(block, ignore_unknown_kinds=True).scaled_objects
        (trigger,) = bind_scaled_object(so, {route.key: route}).triggers
        assert (trigger.type, trigger.metadata["name"]) == ("http", "web/shop")
