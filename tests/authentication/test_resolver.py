"""eventscale.authentication: trigger authentication from the stream, mounted directories,
files and a Kubernetes cluster (the API stand-in, through the real KubeClient)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from authentication._streams import VALUE, assert_no_value, gets, so_with, stream, ta
from eventscale.authentication.resolver import AuthResolver, resolve_trigger_contexts_async
from eventscale.authentication.sources import (
    SecretData,
    SecretSource,
)
from eventscale.errors import ConfigError
from eventscale.kube import KubeClient
from eventscale.manifests.reader import Manifests, load_manifests
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext
from eventscale.scalers.azure.storage_queue import AzureQueueMetadata
from eventscale.scalers.params import Params
from servers._proc import unique_name
from servers.kubernetes_srv import KubeStandIn

pytestmark = pytest.mark.anyio


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
    m2 = stream(so_with("p"), ta("p", "  podIdentity: {provider: gcp}"))
    with pytest.raises(ConfigError) as info2:
        await resolve_trigger_contexts_async(m2.scaled_object(), m2)
    assert info2.value.path == "spec.podIdentity.provider"


async def test_aws_pod_identity_only_for_kafka() -> None:
    # so_with's trigger is azure-queue: aws is refused, naming the provider.
    m = stream(so_with("p"), ta("p", "  podIdentity: {provider: aws}"))
    with pytest.raises(ConfigError, match="'aws'") as info:
        await resolve_trigger_contexts_async(m.scaled_object(), m)
    assert info.value.path == "spec.triggers[0].authenticationRef.name"
    kafka = so_with("p").replace("type: azure-queue", "type: kafka")
    m2 = stream(kafka, ta("p", "  podIdentity: {provider: aws, roleArn: 'arn:aws:iam::1:role/r'}"))
    (ctx,) = await resolve_trigger_contexts_async(m2.scaled_object(), m2)
    assert ctx.auth == {"podIdentity": Secret("aws"), "roleArn": Secret("arn:aws:iam::1:role/r")}


async def test_azure_workload_identity_reaches_the_trigger() -> None:
    m = stream(
        so_with("p"),
        ta("p", "  podIdentity: {provider: azure-workload, identityId: cid, roleArn: ''}"),
    )
    (ctx,) = await resolve_trigger_contexts_async(m.scaled_object(), m)
    assert ctx.auth == {"podIdentity": Secret("azure-workload"), "identityId": Secret("cid")}


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
