"""The scale target's environment as KEDA resolves it: KEDA's own env-resolution cases
(``TestResolveDependentEnv``, ``TestResolveNonExistingConfigMapsOrSecretsEnv``, the
envFrom and prefix cases of ``pkg/scaling/resolver/scale_resolvers_test.go``) as table
tests, then the pod template read from manifest documents and from the cluster."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from eventscale.authentication import ClusterSource, MappingSource, workload_env
from eventscale.authentication.workload import resolve_container_env
from eventscale.errors import ConfigError
from eventscale.kube import KubeClient, expand_references
from eventscale.spec import ScaledObjectSpec, ScaleTargetRef, TriggerSpec
from servers.kubernetes_srv import KubeStandIn

SECRET_DATA = "secretDataHere"
SOURCE = MappingSource(
    {"supersecret": {"mysecretkey": SECRET_DATA}},
    {"supercm": {"mycmkey": "cmDataHere"}},
    description="the test objects",
)


def _plain(env: dict[str, Any]) -> dict[str, str]:
    return {k: v.reveal() for k, v in env.items()}


def _env(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"env": [{"name": n, "value": v} for n, v in pairs]}


# TestResolveDependentEnv
@pytest.mark.parametrize(
    ("container", "expected"),
    [
        pytest.param(
            _env(
                ("test-env-key", "test-env-value"),
                ("dependent-env-key", "$(test-env-key)-dependent-env-value"),
            ),
            {
                "test-env-key": "test-env-value",
                "dependent-env-key": "test-env-value-dependent-env-value",
            },
            id="dependent reference env",
        ),
        pytest.param(
            _env(
                ("test-env-key", "test-env-value"),
                ("dependent-env-key2", "dependent-env-value2-$(test-env-key)"),
            ),
            {
                "test-env-key": "test-env-value",
                "dependent-env-key2": "dependent-env-value2-test-env-value",
            },
            id="dependent reference env2",
        ),
        pytest.param(
            _env(
                ("dependent-env-key", "$(test-env-key)-dependent-env-value"),
                ("test-env-key", "test-env-value"),
            ),
            {
                "dependent-env-key": "$(test-env-key)-dependent-env-value",
                "test-env-key": "test-env-value",
            },
            id="unchanged reference env",
        ),
        pytest.param(
            _env(
                ("test-env-key", "test-env-value"),
                ("escaped-env-key", "$$(test-env-key)-escaped-env-value"),
            ),
            {
                "test-env-key": "test-env-value",
                "escaped-env-key": "$(test-env-key)-escaped-env-value",
            },
            id="escaped reference env",
        ),
        pytest.param(
            _env(("test-env-key", "test-env-value"), ("empty-env-key", "$()-empty-env-value")),
            {"test-env-key": "test-env-value", "empty-env-key": "$()-empty-env-value"},
            id="empty reference env",
        ),
        pytest.param(
            _env(
                ("test-env-key", "test-env-value"),
                ("incomplete-env-key", "$(test-env-key-incomplete-env-value"),
            ),
            {
                "test-env-key": "test-env-value",
                "incomplete-env-key": "$(test-env-key-incomplete-env-value",
            },
            id="incomplete reference env",
        ),
        # The envFrom / valueFrom cases (TestEnvWithRestrictedNamespace's expectations).
        pytest.param(
            {
                "env": [
                    {
                        "name": "test-env-key",
                        "valueFrom": {
                            "secretKeyRef": {"name": "supersecret", "key": "mysecretkey"}
                        },
                    }
                ]
            },
            {"test-env-key": SECRET_DATA},
            id="env reference secret key",
        ),
        pytest.param(
            {"envFrom": [{"secretRef": {"name": "supersecret"}}]},
            {"mysecretkey": SECRET_DATA},
            id="env reference secret name",
        ),
        pytest.param(
            {"envFrom": [{"secretRef": {"name": "supersecret"}, "prefix": "PREFIX_"}]},
            {"PREFIX_mysecretkey": SECRET_DATA},
            id="env reference secret key with prefix",
        ),
        pytest.param(
            {
                "envFrom": [{"configMapRef": {"name": "supercm"}}],
                "env": [
                    {"name": "url", "value": "amqp://$(mycmkey)/vhost"},
                    {
                        "name": "host",
                        "valueFrom": {"configMapKeyRef": {"name": "supercm", "key": "mycmkey"}},
                    },
                    {"name": "pod", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
            },
            {"mycmkey": "cmDataHere", "url": "amqp://cmDataHere/vhost", "host": "cmDataHere"},
            id="configmap envFrom, then env expanded against it",
        ),
    ],
)
@pytest.mark.anyio
async def test_keda_env_resolution(container: dict[str, Any], expected: dict[str, str]) -> None:
    env = await resolve_container_env(container, sources=[SOURCE], namespace="test-namespace")
    assert _plain(env) == expected


def _ref(kind: str, *, optional: bool | None, key: bool) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": f"do-not-exist-{uuid.uuid4().hex[:6]}"}
    if key:
        ref["key"] = "test"
    if optional is not None:
        ref["optional"] = optional
    return ref


# TestResolveNonExistingConfigMapsOrSecretsEnv
@pytest.mark.parametrize("optional", [None, False, True])
@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("envFrom.configMapRef", "ConfigMap"),
        ("envFrom.secretRef", "Secret"),
        ("env.configMapKeyRef", "ConfigMap"),
        ("env.secretKeyRef", "Secret"),
    ],
)
@pytest.mark.anyio
async def test_missing_objects_fail_unless_optional(
    field: str, kind: str, optional: bool | None
) -> None:
    where, ref_kind = field.split(".")
    ref = _ref(kind, optional=optional, key=where == "env")
    if where == "envFrom":
        container: dict[str, Any] = {"name": "app", "envFrom": [{ref_kind: ref}]}
    else:
        container = {"name": "app", "env": [{"name": "test", "valueFrom": {ref_kind: ref}}]}
    if optional:
        assert await resolve_container_env(container, sources=[SOURCE], namespace="n") == {}
        return
    with pytest.raises(ConfigError) as info:
        await resolve_container_env(container, sources=[SOURCE], namespace="n")
    message = str(info.value)
    assert f"{kind} {ref['name']!r} not found" in message
    assert "container 'app'" in message
    assert "searched the test objects" in message


@pytest.mark.anyio
async def test_a_missing_key_names_the_secret_and_key_never_a_value() -> None:
    container = {
        "name": "worker",
        "env": [
            {
                "name": "PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "supersecret", "key": "nokey"}},
            }
        ],
    }
    with pytest.raises(ConfigError) as info:
        await resolve_container_env(container, sources=[SOURCE], namespace="n")
    message = str(info.value)
    assert "variable 'PASSWORD'" in message
    assert "key 'nokey' of Secret 'supersecret' is missing" in message
    assert SECRET_DATA not in message
    assert (info.value.errors or (info.value,))[0].path == "env[0].valueFrom.secretKeyRef.key"


def test_expand_references_keeps_what_kubernetes_keeps() -> None:
    env = {"A": "1", "B.c-d": "2"}
    assert expand_references("$(A)$(B.c-d)$$$(Z)$x$", env) == "12$$(Z)$x$"


def _spec(name: str, ns: str, container: str | None = None) -> ScaledObjectSpec:
    return ScaledObjectSpec(
        name=f"so-{name}",
        namespace=ns,
        scale_target_ref=ScaleTargetRef(name=name, env_source_container_name=container),
        triggers=(TriggerSpec(type="redis", metadata={"hostFromEnv": "REDIS_HOST"}),),
    )


def _deployment(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "sidecar", "env": [{"name": "REDIS_HOST", "value": "wrong"}]},
                        {
                            "name": "app",
                            "envFrom": [{"secretRef": {"name": "redis-secret"}, "prefix": "R_"}],
                            "env": [
                                {"name": "PORT", "value": "6379"},
                                {"name": "REDIS_HOST", "value": "$(R_host):$(PORT)"},
                            ],
                        },
                    ]
                },
            },
        },
    }


@pytest.mark.anyio
async def test_workload_env_from_files_then_the_cluster(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = f"redis-{uuid.uuid4().hex[:6]}.internal"
    kube_standin.api.secret("redis-secret", ns, {"host": host})
    sources = [ClusterSource(kube)]
    spec = _spec("web", ns, container="app")
    # Nowhere yet: None, the caller falls back to the environment it was given.
    assert await workload_env(spec, sources=sources, client=kube) is None
    # In the manifest documents.
    doc = _deployment("web", ns)
    env = await workload_env(spec, sources=sources, documents=[doc], client=kube)
    assert env is not None
    assert env["REDIS_HOST"].reveal() == f"{host}:6379"
    # In the cluster.
    kube_standin.api.put(_deployment("web", ns))
    env = await workload_env(spec, sources=sources, client=kube)
    assert env is not None
    assert env["REDIS_HOST"].reveal() == f"{host}:6379"
    # The first container by default.
    first = await workload_env(_spec("web", ns), sources=sources, client=kube)
    assert first is not None
    assert first["REDIS_HOST"].reveal() == "wrong"
    with pytest.raises(ConfigError, match=r"no container named 'nope'.*'sidecar', 'app'"):
        await workload_env(_spec("web", ns, "nope"), sources=sources, client=kube)
    assert host not in caplog.text


@pytest.mark.anyio
async def test_workload_env_rbac_refusal_names_verb_and_resource(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    name = f"locked-{uuid.uuid4().hex[:6]}"
    kube_standin.api.put(_deployment(name, ns))
    kube_standin.api.deny("get", "deployments", name)
    with pytest.raises(ConfigError, match="HTTP 403; RBAC verb 'get' on resource 'deployments'"):
        await workload_env(_spec(name, ns), sources=[ClusterSource(kube)], client=kube)
