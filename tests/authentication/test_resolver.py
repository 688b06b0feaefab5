"""eventscale.authentication: trigger authentication from the stream, mounted directories,
files and a Kubernetes cluster (the API stand-in, through the real KubeClient)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventscale.authentication.resolver import AuthResolver, resolve_trigger_contexts_async
from eventscale.authentication.sources import (
    ClusterSource,
    DirectorySource,
    MappingSource,
    SecretData,
    SecretSource,
)
from eventscale.errors import ConfigError, ScalerError
from eventscale.manifests.reader import Manifests, load_manifests
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext
from eventscale.scalers.azure.storage_queue import AzureQueueMetadata
from eventscale.scalers.params import Params
from eventscale.targets.kubernetes import KubeClient, KubeConfig
from servers._proc import free_port, unique_name
from servers.kubernetes_srv import KubeStandIn

pytestmark = pytest.mark.anyio

VALUE = "Sup3rS3cretValue!"  # never to be seen in any message or repr


def so_with(auth_name: str, *, kind: str = "TriggerAuthentication", ns: str = "default") -> str:
    return f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: worker, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: worker}}
  triggers:
  - type: azure-queue
    metadata: {{queueName: jobs}}
    authenticationRef: {{name: {auth_name}, kind: {kind}}}
"""


def ta(name: str, body: str, *, kind: str = "TriggerAuthentication") -> str:
    return f"""
apiVersion: keda.sh/v1alpha1
kind: {kind}
metadata: {{name: {name}}}
spec:
{body}
"""


def stream(*docs: str) -> Manifests:
    return load_manifests("\n---\n".join(docs))


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


def gets(standin: KubeStandIn, ns: str) -> list[str]:
    return [p for m, p, _ in standin.api.log if m == "GET" and f"/namespaces/{ns}/" in p]


def assert_no_value(*texts: str, value: str = VALUE) -> None:
    for text in texts:
        assert value not in text, f"the secret value leaked into: {text[:300]}"


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


@pytest.fixture
async def kube_standin_client_fast(kube_standin: KubeStandIn, ns: str) -> AsyncIterator[KubeClient]:
    client = KubeClient(KubeConfig.from_kubeconfig(kube_standin.kubeconfig(ns)), timeout=0.3)
    try:
        yield client
    finally:
        await client.aclose()


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


async def test_source_order_first_holder_supplies_the_whole_secret(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str, tmp_path: Path
) -> None:
    kube_standin.api.secret("s", ns, {"only-in-cluster": "c", "k": "cluster"})
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "k").write_text("directory")
    m = stream(
        so_with("t", ns=ns), ta("t", "  secretTargetRef:\n  - {parameter: p, name: s, key: k}")
    )
    (ctx,) = await resolve_trigger_contexts_async(
        m.scaled_object(), m, secret_dirs={"s": tmp_path / "s"}, kube_client=kube
    )
    assert ctx.auth["p"] == Secret("directory")
    assert gets(kube_standin, ns) == []
    # A key the first holder lacks is an error, not a fall-through to the cluster.
    m2 = stream(
        so_with("t", ns=ns),
        ta("t", "  secretTargetRef:\n  - {parameter: p, name: s, key: only-in-cluster}"),
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(
            m2.scaled_object(), m2, secret_dirs={"s": tmp_path / "s"}, kube_client=kube
        )
    assert "directory" in str(info.value)
    assert "has no key 'only-in-cluster'" in str(info.value)
    # In-code secrets= merge over the stream key by key, as Manifests.trigger_contexts does.
    m3 = stream(
        so_with("t"),
        ta(
            "t",
            "  secretTargetRef:\n"
            "  - {parameter: p, name: s, key: k}\n"
            "  - {parameter: q, name: s, key: j}",
        ),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: stream, j: stream-j}",
    )
    (ctx3,) = await resolve_trigger_contexts_async(
        m3.scaled_object(), m3, secrets={"s": {"k": "code"}}
    )
    assert ctx3.auth == {"p": Secret("code"), "q": Secret("stream-j")}


class _CountingSource:
    """A custom SecretSource, to show the protocol is enough."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    @property
    def description(self) -> str:
        return "a vault of my own"

    async def get_secret(self, name: str, namespace: str) -> SecretData | None:
        self.asked.append((name, namespace))
        return SecretData(values={"k": Secret(f"{name}@{namespace}")}, origin="mine")

    async def get_config_map(self, name: str, namespace: str) -> SecretData | None:
        return None


async def test_custom_sources_replace_the_chain() -> None:
    custom = _CountingSource()
    assert isinstance(custom, SecretSource)
    m = stream(
        so_with("t", ns="team"),
        ta(
            "t",
            "  secretTargetRef:\n  - {parameter: p, name: s, key: k}\n"
            "  configMapTargetRef:\n  - {parameter: q, name: cm, key: k}",
        ),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: from-stream}",
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m, sources=[custom])
    assert "ConfigMap 'cm' not found (searched a vault of my own; namespace 'team')" in str(
        info.value
    )
    resolver = AuthResolver(sources=[custom])
    ta_spec = m.trigger_authentication("t")
    with pytest.raises(ConfigError):
        await resolver.resolve_authentication(ta_spec, namespace="team")
    assert custom.asked[-1] == ("s", "team")
    with pytest.raises(TypeError):
        await resolve_trigger_contexts_async(
            m.scaled_object(), m, sources=[custom], secrets={"s": {"k": "v"}}
        )


# --------------------------------------------------------------------------- filePath


def cta_file(
    path: str, *, kind: str = "ClusterTriggerAuthentication", extra: str = ""
) -> Manifests:
    return stream(
        so_with("file-auth", kind=kind),
        ta("file-auth", f"  filePath: {json.dumps(path)}\n{extra}", kind=kind),
    )


async def test_file_path_reads_json_params_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "queue.json").write_text(
        json.dumps({"connection": VALUE, "accountName": "acct"})
    )
    # As KEDA: with filePath the other entries are not read (this Secret does not exist).
    m = cta_file(
        "credentials/queue.json",
        extra="  secretTargetRef:\n  - {parameter: connection, name: nowhere, key: k}",
    )
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m, file_root=tmp_path)
    assert ctx.auth == {"connection": Secret(VALUE), "accountName": Secret("acct")}


@pytest.mark.parametrize(
    ("path", "kind", "with_root", "message"),
    [
        (
            "a.json",
            "TriggerAuthentication",
            True,
            "only supported in a ClusterTriggerAuthentication",
        ),
        ("a.json", "ClusterTriggerAuthentication", False, "needs a file root"),
        ("../a.json", "ClusterTriggerAuthentication", True, "not contain '..'"),
        ("/etc/passwd", "ClusterTriggerAuthentication", True, "must be relative"),
        ("missing.json", "ClusterTriggerAuthentication", True, "cannot read"),
        ("bad.json", "ClusterTriggerAuthentication", True, "is not valid JSON (line 1"),
        ("list.json", "ClusterTriggerAuthentication", True, "JSON object of parameter names"),
        ("numbers.json", "ClusterTriggerAuthentication", True, "JSON object of parameter names"),
        ("escape.json", "ClusterTriggerAuthentication", True, "resolves outside the file root"),
    ],
)
async def test_file_path_errors(
    tmp_path: Path, path: str, kind: str, with_root: bool, message: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.json").write_text("{}")
    (root / "bad.json").write_text(f"{{connection: {VALUE}}}")
    (root / "list.json").write_text(json.dumps([VALUE]))
    (root / "numbers.json").write_text(json.dumps({"port": 5672}))
    (tmp_path / "outside.json").write_text(json.dumps({"connection": VALUE}))
    (root / "escape.json").symlink_to(tmp_path / "outside.json")
    m = cta_file(path, kind=kind)
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(
            m.scaled_object(), m, file_root=root if with_root else None
        )
    assert info.value.path == "spec.filePath"
    assert message in str(info.value)
    assert f"{kind} 'file-auth'" in str(info.value)
    assert_no_value(str(info.value))


async def test_unreachable_providers_still_raise() -> None:
    m = stream(
        so_with("v"),
        ta("v", "  hashiCorpVault: {address: 'http://vault:8200', authentication: token}"),
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m)
    assert info.value.path == "spec.hashiCorpVault"
    assert "HashiCorp Vault" in str(info.value)
    m2 = stream(so_with("p"), ta("p", "  podIdentity: {provider: azure-workload}"))
    with pytest.raises(ConfigError) as info2:
        await resolve_trigger_contexts_async(m2.scaled_object(), m2)
    assert info2.value.path == "spec.podIdentity.provider"


# --------------------------------------------------------------------------- env


async def test_env_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    var = unique_name("ES_CONN").replace("-", "_").upper()
    monkeypatch.setenv(var, VALUE)
    m = stream(so_with("e"), ta("e", f"  env:\n  - {{parameter: connection, name: {var}}}"))
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m, env=os.environ)
    assert ctx.auth == {"connection": Secret(VALUE)}
    assert ctx.env[var] == VALUE  # the same environment backs ...FromEnv
    assert_no_value(repr(ctx))
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m, env={})
    assert info.value.path == "spec.env[0].name"
    assert f"environment variable {var!r} is not set" in str(info.value)


async def test_entries_apply_env_then_config_map_then_secret() -> None:
    m = stream(
        so_with("o"),
        ta(
            "o",
            "  env:\n  - {parameter: p, name: P}\n"
            "  configMapTargetRef:\n"
            "  - {parameter: p, name: cm, key: k}\n"
            "  - {parameter: q, name: cm, key: k}\n"
            "  secretTargetRef:\n  - {parameter: p, name: s, key: k}",
        ),
    )
    (ctx,) = await resolve_trigger_contexts_async(
        m.scaled_object(),
        m,
        env={"P": "env"},
        secrets={"s": {"k": "secret"}},
        config_maps={"cm": {"k": "configmap"}},
    )
    assert ctx.auth == {"p": Secret("secret"), "q": Secret("configmap")}


# --------------------------------------------------------------------------- parity, flow


async def test_same_result_as_the_synchronous_resolver() -> None:
    m = stream(
        so_with("a"),
        ta(
            "a",
            "  env:\n  - {parameter: accountName, name: ACCOUNT}\n"
            "  secretTargetRef:\n  - {parameter: connection, name: s, key: c}",
        ),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {c: "
        + base64.b64encode(VALUE.encode()).decode()
        + "}",
    )
    env = {"ACCOUNT": "acct", "OTHER": "1"}
    sync = m.trigger_contexts(m.scaled_object(), env=env)
    async_ = await resolve_trigger_contexts_async(m.scaled_object(), m, env=env)
    assert async_ == sync
    broken = stream(
        so_with("a"),
        ta("a", "  secretTargetRef:\n  - {parameter: connection, name: s, key: c}"),
    )
    with pytest.raises(ConfigError) as sync_err:
        broken.trigger_contexts(broken.scaled_object())
    with pytest.raises(ConfigError) as async_err:
        await resolve_trigger_contexts_async(broken.scaled_object(), broken)
    assert sync_err.value.all_paths() == async_err.value.all_paths()


async def test_resolved_params_flow_into_the_scaler_with_lookup_order(
    kube_standin: KubeStandIn, kube: KubeClient, ns: str
) -> None:
    """azure-queue reads ``connection`` as auth > metadata > env (spec 1.2): the cluster
    Secret wins over ``connectionFromEnv``; values are trimmed by Params."""
    conn = (
        "DefaultEndpointsProtocol=https;AccountName=acct;"
        f"AccountKey={VALUE};EndpointSuffix=core.windows.net"
    )
    auth_doc = ta("t", "  secretTargetRef:\n  - {parameter: connection, name: q, key: c}")
    kube_standin.api.secret("q", ns, {"c": conn + "\n"})
    m = load_manifests(
        f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: w, namespace: {ns}}}
spec:
  scaleTargetRef: {{name: w}}
  triggers:
  - type: azure-queue
    metadata: {{queueName: jobs, connectionFromEnv: CONN}}
    authenticationRef: {{name: t}}
  - type: azure-queue
    metadata: {{queueName: jobs, connectionFromEnv: CONN}}
---
{auth_doc}
"""
    )
    first, second = await resolve_trigger_contexts_async(
        m.scaled_object(), m, kube_client=kube, env={"CONN": "AccountName=envacct;AccountKey=abcd"}
    )
    assert AzureQueueMetadata.from_context(first).connection == Secret(conn)
    assert AzureQueueMetadata.from_context(second).connection == Secret(
        "AccountName=envacct;AccountKey=abcd"
    )
    assert isinstance(first, TriggerContext)
    # Params trims the value it reads; the Secret in ctx.auth is the value as stored.
    assert Params(first).secret("connection") == Secret(conn)
    assert first.auth["connection"] == Secret(conn + "\n")
    assert_no_value(repr(first), repr(AzureQueueMetadata.from_context(first)))


async def test_errors_of_several_triggers_are_reported_together() -> None:
    m = load_manifests(
        """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: w}
spec:
  scaleTargetRef: {name: w}
  triggers:
  - type: azure-queue
    metadata: {queueName: a}
    authenticationRef: {name: missing-auth}
  - type: azure-queue
    metadata: {queueName: b}
    authenticationRef: {name: t}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: t}
spec:
  secretTargetRef:
  - {parameter: connection, name: s, key: k}
"""
    )
    with pytest.raises(ConfigError) as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m)
    assert sorted(info.value.all_paths()) == [
        "spec.secretTargetRef[0].name",
        "spec.triggers[0].authenticationRef.name",
    ]
    assert "Secret 's' not found (searched the manifest stream" in str(info.value)
    # A resolver without sources says so.
    with pytest.raises(ConfigError) as bare:
        await AuthResolver().trigger_contexts(m.scaled_object(), m.trigger_authentications)
    assert "Secret 's' not found (no Secret or ConfigMap source is configured)" in str(bare.value)


def test_reprs_hide_values(tmp_path: Path) -> None:
    data = SecretData(values={"k": Secret(VALUE)}, origin="x")
    source = MappingSource({"s": {"k": VALUE}}, {"cm": {"k": VALUE}})
    resolver = AuthResolver(sources=[source], env={"K": VALUE}, file_root=tmp_path)
    assert_no_value(
        repr(data), repr(source), repr(resolver), repr(DirectorySource({"s": tmp_path}))
    )
    assert "<1 variables>" in repr(resolver)
