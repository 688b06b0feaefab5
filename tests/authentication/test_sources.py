"""eventscale.authentication.sources: Secrets and ConfigMaps from a Kubernetes cluster (the API
stand-in, through the real KubeClient) and from mounted directories, end to end."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from authentication._streams import VALUE, assert_no_value, gets, so_with, stream, ta
from eventscale.authentication.resolver import AuthResolver, resolve_trigger_contexts_async
from eventscale.authentication.sources import (
    ClusterSource,
    DirectorySource,
    MappingSource,
    SecretData,
)
from eventscale.errors import ConfigError, ScalerError
from eventscale.kube import KubeClient, KubeConfig
from eventscale.redaction import Secret
from servers._proc import free_port, unique_name
from servers.kubernetes_srv import KubeStandIn

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- cluster


async def test_secret_and_config_map_fetched_from_the_cluster(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    kube_standin.api.secret("queue-secret", ns, {"connection": VALUE, "other": "x" * 8})
    kube_standin.api.configmap("queue-config", ns, {"account": "acct01"})
    m = stream(
        so_with("queue-auth", ns=ns),
        ta(
            "queue-auth",
            "  secretTargetRef:\n"
            "  - {parameter: connection, name: queue-secret, key: connection}\n"
            "  configMapTargetRef:\n"
            "  - {parameter: accountName, name: queue-config, key: account}",
        ),
    )
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=kube)
    assert ctx.auth["connection"] == Secret(VALUE)
    assert isinstance(ctx.auth["connection"], Secret)
    assert ctx.auth["accountName"].reveal() == "acct01"  # type: ignore[union-attr]
    assert ctx.path == "spec.triggers[0]"
    assert ctx.trigger_type == "azure-queue"
    assert sorted(gets(kube_standin, ns)) == [
        f"/api/v1/namespaces/{ns}/configmaps/queue-config",
        f"/api/v1/namespaces/{ns}/secrets/queue-secret",
    ]
    assert_no_value(repr(ctx), str(ctx))


async def test_a_secret_in_the_stream_is_not_fetched(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    kube_standin.api.secret("in-both", ns, {"connection": "from-cluster"})
    m = stream(
        so_with("a", ns=ns),
        ta("a", "  secretTargetRef:\n  - {parameter: connection, name: in-both, key: connection}"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: in-both}\n"
        "stringData: {connection: from-stream}",
    )
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=kube)
    assert ctx.auth["connection"] == Secret("from-stream")
    assert gets(kube_standin, ns) == []


async def test_one_secret_used_twice_is_fetched_once(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    kube_standin.api.secret("shared", ns, {"a": "1111", "b": "2222"})
    m = stream(
        so_with("t", ns=ns),
        ta(
            "t",
            "  secretTargetRef:\n"
            "  - {parameter: connection, name: shared, key: a}\n"
            "  - {parameter: accountKey, name: shared, key: b}",
        ),
    )
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=kube)
    assert ctx.auth == {"connection": Secret("1111"), "accountKey": Secret("2222")}
    assert gets(kube_standin, ns) == [f"/api/v1/namespaces/{ns}/secrets/shared"]


async def test_missing_secret_and_missing_key_name_the_entry(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    kube_standin.api.secret("has-one-key", ns, {"present": VALUE})
    m = stream(
        so_with("broken", ns=ns),
        ta(
            "broken",
            "  secretTargetRef:\n"
            "  - {parameter: connection, name: not-there, key: connection}\n"
            "  - {parameter: accountKey, name: has-one-key, key: absent}",
        ),
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=kube)
    err = info.value
    assert sorted(err.all_paths()) == [
        "spec.secretTargetRef[0].name",
        "spec.secretTargetRef[1].key",
    ]
    text = str(err)
    assert "TriggerAuthentication 'broken' (used by spec.triggers[0])" in text
    assert "Secret 'not-there' not found" in text
    assert "the cluster" in text
    assert repr(ns) in text
    assert "has no key 'absent'" in text
    assert_no_value(text, repr(err))


async def test_forbidden_secret_is_a_config_error(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    name = unique_name("locked")
    kube_standin.api.secret(name, ns, {"connection": VALUE})
    kube_standin.api.deny("get", "secrets", name)
    m = stream(
        so_with("t", ns=ns),
        ta(
            "t", f"  secretTargetRef:\n  - {{parameter: connection, name: {name}, key: connection}}"
        ),
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=kube)
    assert info.value.path == "spec.secretTargetRef[0].name"
    assert "HTTP 403" in str(info.value)
    assert 'cannot get resource "secrets"' in str(info.value)
    assert "TriggerAuthentication 't'" in str(info.value)
    assert_no_value(str(info.value), repr(info.value))


async def test_unreachable_cluster_is_a_transient_scaler_error(ns: str) -> None:
    client = KubeClient(
        KubeConfig(server=f"https://127.0.0.1:{free_port()}", token=Secret(VALUE)), timeout=5
    )
    m = stream(
        so_with("t", ns=ns),
        ta("t", "  secretTargetRef:\n  - {parameter: connection, name: s, key: k}"),
    )
    try:
        with pytest.raises(ScalerError) as info:
            await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=client)
    finally:
        await client.aclose()
    assert info.value.transient
    assert "TriggerAuthentication 't'" in str(info.value)
    assert "cannot read Secret 's'" in str(info.value)
    assert_no_value(str(info.value), repr(info.value))


async def test_a_hung_api_is_a_transient_scaler_error(
    kube_standin: KubeStandIn, kube_standin_client_fast: KubeClient, ns: str
) -> None:
    kube_standin.api.secret("slow", ns, {"k": VALUE})
    release = kube_standin.api.hang(f"/namespaces/{ns}/secrets/slow")
    m = stream(
        so_with("t", ns=ns), ta("t", "  secretTargetRef:\n  - {parameter: p, name: slow, key: k}")
    )
    try:
        with pytest.raises(ScalerError) as info:
            await resolve_trigger_contexts_async(
                m.scaled_object(), m, kube_client=kube_standin_client_fast
            )
    finally:
        release.set()
    assert info.value.transient
    assert "timed out" in str(info.value)


async def test_binary_secret_value_is_reported_without_it(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    kube_standin.api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keytab", "namespace": ns},
            "data": {
                "keytab": base64.b64encode(b"\xff\xfe\x00binary").decode(),
                "text": base64.b64encode(b"fine").decode(),
            },
        }
    )
    m = stream(
        so_with("t", ns=ns),
        ta(
            "t",
            "  secretTargetRef:\n"
            "  - {parameter: keytab, name: keytab, key: keytab}\n"
            "  - {parameter: other, name: keytab, key: text}",
        ),
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=kube)
    assert info.value.path == "spec.secretTargetRef[0].key"
    assert "not UTF-8" in str(info.value)
    # The readable key of the same Secret resolves.
    source = ClusterSource(kube)
    data = await source.get_secret("keytab", ns)
    assert data is not None
    assert data.values == {"text": Secret("fine")}
    assert data.unreadable == frozenset({"keytab"})


async def test_names_that_are_not_kubernetes_names_are_not_requested(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    m = stream(
        so_with("t", ns=ns),
        ta("t", "  secretTargetRef:\n  - {parameter: p, name: '../configmaps/x', key: k}"),
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=kube)
    assert info.value.path == "spec.secretTargetRef[0].name"
    assert "not a valid Kubernetes object name" in str(info.value)
    with pytest.raises(ConfigError, match="not a valid Kubernetes namespace"):
        await ClusterSource(kube).get_config_map("fine", "Bad_NS")
    assert gets(kube_standin, ns) == []


async def test_cluster_trigger_authentication_reads_the_cluster_namespace(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    keda_ns = unique_name("keda")
    kube_standin.api.secret("global", keda_ns, {"connection": "cluster-wide"})
    m = stream(
        so_with("global-auth", kind="ClusterTriggerAuthentication", ns=ns),
        ta(
            "global-auth",
            "  secretTargetRef:\n  - {parameter: connection, name: global, key: connection}",
            kind="ClusterTriggerAuthentication",
        ),
    )
    (ctx,) = await resolve_trigger_contexts_async(
        m.scaled_object(), m, kube_client=kube, cluster_namespace=keda_ns
    )
    assert ctx.auth["connection"] == Secret("cluster-wide")
    # With the default cluster namespace ("keda") the Secret is not there.
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m, kube_client=kube)
    assert "namespace 'keda'" in str(info.value)


async def test_namespace_override(kube_standin: KubeStandIn, kube: KubeClient, ns: str) -> None:
    kube_standin.api.secret("s", ns, {"k": "here"})
    m = stream(so_with("t"), ta("t", "  secretTargetRef:\n  - {parameter: p, name: s, key: k}"))
    assert m.scaled_object().namespace == "default"
    (ctx,) = await resolve_trigger_contexts_async(
        m.scaled_object(), m, kube_client=kube, namespace=ns
    )
    assert ctx.auth["p"] == Secret("here")


# --------------------------------------------------------------------------- directories


def mount_like_kubernetes(root: Path, files: dict[str, bytes]) -> Path:
    """Lay files out as the kubelet's atomic writer does: a timestamped directory,
    a ``..data`` symlink to it, and one symlink per key."""
    folder = root / "mounted"
    stamp = folder / "..2024_05_01_10_00_00.000000001"
    stamp.mkdir(parents=True)
    for key, raw in files.items():
        (stamp / key).write_bytes(raw)
    (folder / "..data").symlink_to(stamp.name)
    for key in files:
        (folder / key).symlink_to(Path("..data") / key)
    return folder


async def test_secret_from_a_mounted_directory(tmp_path: Path) -> None:
    folder = mount_like_kubernetes(
        tmp_path,
        {
            "password": f"{VALUE}\n".encode(),
            "twice": b"abc\n\n",
            "crlf": b"line\r\n",
            "raw": b"x y",
        },
    )
    m = stream(
        so_with("t"),
        ta(
            "t",
            "  secretTargetRef:\n"
            "  - {parameter: password, name: rabbitmq-secret, key: password}\n"
            "  - {parameter: twice, name: rabbitmq-secret, key: twice}\n"
            "  - {parameter: crlf, name: rabbitmq-secret, key: crlf}\n"
            "  - {parameter: raw, name: rabbitmq-secret, key: raw}",
        ),
    )
    (ctx,) = await resolve_trigger_contexts_async(
        m.scaled_object(), m, secret_dirs={"rabbitmq-secret": folder}
    )
    assert ctx.auth == {
        "password": Secret(VALUE),
        "twice": Secret("abc\n"),  # only one trailing newline is dropped
        "crlf": Secret("line"),
        "raw": Secret("x y"),
    }
    data = await DirectorySource({"rabbitmq-secret": folder}).get_secret("rabbitmq-secret", "x")
    assert data is not None
    assert sorted(data.values) == ["crlf", "password", "raw", "twice"]  # no ..data entries
    assert_no_value(repr(data), repr(ctx))


async def test_config_map_from_a_mounted_directory(tmp_path: Path) -> None:
    (tmp_path / "cm").mkdir()
    (tmp_path / "cm" / "account").write_text("acct01\n")
    m = stream(
        so_with("t"),
        ta(
            "t", "  configMapTargetRef:\n  - {parameter: accountName, name: settings, key: account}"
        ),
    )
    (ctx,) = await resolve_trigger_contexts_async(
        m.scaled_object(), m, config_map_dirs={"settings": str(tmp_path / "cm")}
    )
    assert ctx.auth == {"accountName": Secret("acct01")}


async def test_mounted_directory_errors(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "bin").write_bytes(b"\xff\xfe")
    (tmp_path / "s" / "ok").write_text(VALUE)
    m = stream(
        so_with("t"),
        ta(
            "t",
            "  secretTargetRef:\n"
            "  - {parameter: a, name: gone, key: k}\n"
            "  - {parameter: b, name: s, key: bin}\n"
            "  - {parameter: c, name: s, key: missing}",
        ),
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(
            m.scaled_object(), m, secret_dirs={"gone": tmp_path / "nope", "s": tmp_path / "s"}
        )
    assert sorted(info.value.all_paths()) == [
        "spec.secretTargetRef[0].name",
        "spec.secretTargetRef[1].key",
        "spec.secretTargetRef[2].key",
    ]
    text = str(info.value)
    assert "does not exist" in text
    assert "not UTF-8" in text
    assert "has no key 'missing'" in text
    assert_no_value(text)


def test_reprs_hide_values(tmp_path: Path) -> None:
    data = SecretData(values={"k": Secret(VALUE)}, origin="x")
    source = MappingSource({"s": {"k": VALUE}}, {"cm": {"k": VALUE}})
    resolver = AuthResolver(sources=[source], env={"K": VALUE}, file_root=tmp_path)
    assert_no_value(
        repr(data), repr(source), repr(resolver), repr(DirectorySource({"s": tmp_path}))
    )
    assert "<1 variables>" in repr(resolver)
