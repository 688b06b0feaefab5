"""kubeconfig files read as kubectl reads them: for merged files, relative paths, exec
plugins and proxies, eventscale and the real ``kubectl`` (``kubectl config view
--minify --flatten --raw``) agree on server, CA, credentials and namespace, and
``kubectl get --raw /version`` through the same file reaches the Kubernetes stand-in."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from eventscale.errors import ConfigError, TargetError
from eventscale.kube import KubeClient, KubeConfig
from kube._proxy import SocksProxy, connect_proxy, socks_proxy
from servers._proc import ensure_apt, free_port
from servers.kubernetes_srv import KubeStandIn


@pytest.fixture(scope="module")
def kubectl() -> str:
    return ensure_apt("kubectl", "kubectl")


def _kubectl(kubectl: str, home: Path, kubeconfig: str, *args: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    clean.update(HOME=str(home), KUBECONFIG=kubeconfig, **env)
    done = subprocess.run(
        [kubectl, *args], env=clean, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _view(kubectl: str, home: Path, kubeconfig: str) -> dict[str, Any]:
    out = _kubectl(kubectl, home, kubeconfig, "config", "view", "--minify", "--flatten", "--raw")
    doc = json.loads(_kubectl_json(out))
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"] if doc.get("users") else {}
    ctx = doc["contexts"][0]["context"]
    return {"cluster": cluster, "user": user, "namespace": ctx.get("namespace") or "default"}


def _kubectl_json(out: str) -> str:
    return json.dumps(yaml.safe_load(out))


def _agree(view: dict[str, Any], config: KubeConfig, base: Path | None = None) -> None:
    """``config`` says what kubectl's view says; ``base`` is the folder kubectl resolves
    the paths it leaves relative against (the file's own folder)."""

    def resolved(value: str | None) -> str | None:
        if value is None or base is None or os.path.isabs(value):
            return value
        return str(base / value)

    cluster, user = view["cluster"], view["user"]
    assert config.server == cluster["server"]
    ca = cluster.get("certificate-authority-data")
    assert config.ca_data == (base64.b64decode(ca) if ca else None)
    assert config.namespace == view["namespace"]
    assert (config.token.reveal() if config.token else None) == user.get("token")
    assert config.token_file == resolved(user.get("tokenFile"))
    cert, key = user.get("client-certificate-data"), user.get("client-key-data")
    assert config.client_cert_data == (base64.b64decode(cert) if cert else None)
    shown_key = config.client_key_data.reveal() if config.client_key_data else None
    assert shown_key == (base64.b64decode(key).decode() if key else None)
    exec_spec = user.get("exec")
    if exec_spec is None:
        assert config.exec_plugin is None
    else:
        assert config.exec_plugin is not None
        assert config.exec_plugin.command == resolved(exec_spec["command"])
        assert list(config.exec_plugin.args) == list(exec_spec.get("args") or [])
    assert config.proxy_url == cluster.get("proxy-url")


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


async def _version(config: KubeConfig) -> dict[str, Any]:
    client = KubeClient(config, timeout=10)
    try:
        return await client.request("GET", "/version")
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_merged_files_first_wins(
    kube_standin: KubeStandIn, kubectl: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = base64.b64encode(kube_standin.ca.cert_pem.bytes()).decode()
    # a.yaml: no current-context, the real cluster and user; b.yaml: the context, and a
    # cluster and user of the same names that lose to a.yaml's.
    a = _write(
        tmp_path / "a" / "config",
        {
            "clusters": [{"name": "c", "cluster": {"server": kube_standin.url}}],
            "users": [{"name": "u", "user": {"token": kube_standin.token}}],
        },
    )
    a_doc = yaml.safe_load(a.read_text())
    a_doc["clusters"][0]["cluster"]["certificate-authority-data"] = ca
    a.write_text(yaml.safe_dump(a_doc))
    b = _write(
        tmp_path / "b" / "config",
        {
            "current-context": "merged",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
            "users": [{"name": "u", "user": {"token": "loses"}}],
            "contexts": [
                {"name": "merged", "context": {"cluster": "c", "user": "u", "namespace": "m1"}}
            ],
        },
    )
    env = f"{a}{os.pathsep}{tmp_path / 'missing'}{os.pathsep}{b}"
    monkeypatch.setenv("KUBECONFIG", env)
    config = KubeConfig.from_kubeconfig()
    _agree(_view(kubectl, tmp_path, env), config)
    assert config.namespace == "m1"
    assert (await _version(config))["gitVersion"].endswith("standin")
    assert "standin" in _kubectl(kubectl, tmp_path, env, "get", "--raw", "/version")
    # current-context comes from the first file that sets one.
    c = _write(tmp_path / "c" / "config", {"current-context": "merged"})
    env2 = f"{c}{os.pathsep}{b}{os.pathsep}{a}"
    monkeypatch.setenv("KUBECONFIG", env2)
    second = KubeConfig.from_kubeconfig()
    _agree(_view(kubectl, tmp_path, env2), second)
    assert second.server == "https://127.0.0.1:9"  # b now comes before a


@pytest.mark.anyio
async def test_relative_paths_and_token_file(
    kube_standin: KubeStandIn, kubectl: str, tmp_path: Path
) -> None:
    folder = tmp_path / "kc"
    (folder / "certs").mkdir(parents=True)
    (folder / "certs" / "ca.pem").write_bytes(kube_standin.ca.cert_pem.bytes())
    (folder / "token").write_text(kube_standin.token + "\n")
    client_cert = kube_standin.ca.issue_cert("eventscale-client")
    (folder / "certs" / "client.pem").write_bytes(client_cert.cert_chain_pems[0].bytes())
    (folder / "certs" / "client.key").write_bytes(client_cert.private_key_pem.bytes())
    path = _write(
        folder / "config.yaml",
        {
            "current-context": "rel",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": kube_standin.url,
                        "certificate-authority": "certs/ca.pem",
                    },
                }
            ],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "tokenFile": "token",
                        "client-certificate": "certs/client.pem",
                        "client-key": "certs/client.key",
                    },
                }
            ],
            "contexts": [{"name": "rel", "context": {"cluster": "c", "user": "u"}}],
        },
    )
    # A relative KUBECONFIG entry, read from another working directory.
    config = KubeConfig.from_kubeconfig(path)
    _agree(_view(kubectl, tmp_path, str(path)), config, folder)
    assert config.token_file == str(folder / "token")
    assert (await _version(config))["major"] == "1"
    assert "standin" in _kubectl(kubectl, tmp_path, str(path), "get", "--raw", "/version")


def _plugin(folder: Path, token: str) -> Path:
    script = folder / "bin" / "credential"
    script.parent.mkdir(parents=True, exist_ok=True)
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s" "$KUBERNETES_EXEC_INFO" > "{folder}/exec-info-$1.json"\n'
        f"echo '{json.dumps(credential)}'\n"
    )
    script.chmod(0o755)
    return script


@pytest.mark.anyio
async def test_exec_plugin_relative_command_and_cluster_info(
    kube_standin: KubeStandIn, kubectl: str, tmp_path: Path
) -> None:
    folder = tmp_path / "exec"
    _plugin(folder, kube_standin.token)
    ca = base64.b64encode(kube_standin.ca.cert_pem.bytes()).decode()
    marker = uuid.uuid4().hex
    path = _write(
        folder / "config",
        {
            "current-context": "x",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": kube_standin.url,
                        "certificate-authority-data": ca,
                        "extensions": [
                            {
                                "name": "client.authentication.k8s.io/exec",
                                "extension": {"marker": marker},
                            }
                        ],
                    },
                }
            ],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1",
                            "command": "./bin/credential",
                            "args": ["who"],
                            "interactiveMode": "Never",
                            "provideClusterInfo": True,
                        }
                    },
                }
            ],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "e"}}],
        },
    )
    config = KubeConfig.from_kubeconfig(path)
    _agree(_view(kubectl, tmp_path, str(path)), config, folder)
    assert config.exec_plugin is not None
    assert config.exec_plugin.command == str(folder / "bin" / "credential")

    assert "standin" in _kubectl(kubectl, tmp_path, str(path), "get", "--raw", "/version")
    by_kubectl = json.loads((folder / "exec-info-who.json").read_text())
    (folder / "exec-info-who.json").unlink()
    assert (await _version(config))["major"] == "1"
    by_us = json.loads((folder / "exec-info-who.json").read_text())
    for info in (by_kubectl, by_us):
        cluster = info["spec"]["cluster"]
        assert cluster["server"] == kube_standin.url
        assert cluster["certificate-authority-data"] == ca
        assert cluster["config"] == {"marker": marker}


@pytest.mark.anyio
async def test_proxy_url_is_used_like_kubectl(
    kube_standin: KubeStandIn, kubectl: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect_proxy() as (proxy, seen):
        path = kube_standin.kubeconfig("p")
        doc = yaml.safe_load(path.read_text())
        doc["clusters"][0]["cluster"]["proxy-url"] = proxy
        path.write_text(yaml.safe_dump(doc))
        config = KubeConfig.from_kubeconfig(path)
        _agree(_view(kubectl, tmp_path, str(path)), config)
        host = kube_standin.url.removeprefix("https://")
        assert "standin" in _kubectl(kubectl, tmp_path, str(path), "get", "--raw", "/version")
        assert seen
        assert set(seen) == {f"CONNECT {host}"}
        by_kubectl = len(seen)
        assert (await _version(config))["major"] == "1"
        assert len(seen) == by_kubectl + 1
        assert set(seen) == {f"CONNECT {host}"}

        # HTTPS_PROXY: kubectl (Go) never proxies a loopback server, and neither do we.
        plain = kube_standin.kubeconfig("p")
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        assert "standin" in _kubectl(
            kubectl, tmp_path, str(plain), "get", "--raw", "/version", HTTPS_PROXY=proxy
        )
        assert len(seen) == by_kubectl + 1
        assert (await _version(KubeConfig.from_kubeconfig(plain)))["major"] == "1"
        assert len(seen) == by_kubectl + 1


@pytest.fixture(scope="module")
def socks() -> Iterator[SocksProxy]:
    with socks_proxy() as proxy:
        yield proxy


def _with_proxy(kube_standin: KubeStandIn, proxy: str) -> Path:
    path = kube_standin.kubeconfig("p", name=f"socks-{uuid.uuid4().hex[:8]}")
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["cluster"]["proxy-url"] = proxy
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.anyio
async def test_socks5_proxy_url_is_used_like_kubectl(
    kube_standin: KubeStandIn, kubectl: str, tmp_path: Path, socks: SocksProxy
) -> None:
    port = int(kube_standin.url.rsplit(":", 1)[1])
    path = _with_proxy(kube_standin, socks.url)
    config = KubeConfig.from_kubeconfig(path)
    _agree(_view(kubectl, tmp_path, str(path)), config)
    before = socks.connects_to(port)
    assert "standin" in _kubectl(kubectl, tmp_path, str(path), "get", "--raw", "/version")
    by_kubectl = socks.connects_to(port)
    assert by_kubectl > before
    assert (await _version(config))["major"] == "1"
    assert socks.connects_to(port) == by_kubectl + 1


@pytest.mark.anyio
async def test_socks5h_proxy_url(
    kube_standin: KubeStandIn, kubectl: str, tmp_path: Path, socks: SocksProxy
) -> None:
    # The host name goes to the proxy, which resolves it (here: localhost).
    port = int(kube_standin.url.rsplit(":", 1)[1])
    path = _with_proxy(kube_standin, f"socks5h://127.0.0.1:{socks.port}")
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://localhost:{port}"
    path.write_text(yaml.safe_dump(doc))
    config = KubeConfig.from_kubeconfig(path)
    assert config.proxy_url == f"socks5h://127.0.0.1:{socks.port}"
    # kubectl 1.32 refuses the scheme (client-go accepts http, https and socks5 only):
    # socks5h is eventscale's, documented as such in docs/targets/kubernetes.md.
    with anyio.fail_after(60):
        refused = await anyio.run_process(
            [kubectl, "get", "--raw", "/version"],
            env={**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(path)},
            check=False,
        )
    assert refused.returncode != 0
    assert 'unsupported scheme "socks5h"' in refused.stderr.decode()
    before = socks.connects_to(port)
    assert (await _version(config))["major"] == "1"
    assert socks.connects_to(port) == before + 1


@pytest.mark.anyio
async def test_socks_proxy_down_is_an_error_without_its_password(
    kube_standin: KubeStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = f"socks-{uuid.uuid4().hex}"
    path = _with_proxy(kube_standin, f"socks5://user:{password}@127.0.0.1:{free_port()}")
    config = KubeConfig.from_kubeconfig(path)
    with pytest.raises(TargetError, match="cannot reach the Kubernetes API") as info:
        await _version(config)
    for text in (str(info.value), repr(info.value), repr(config), caplog.text):
        assert password not in text


def test_other_proxy_schemes_are_refused(kube_standin: KubeStandIn) -> None:
    path = _with_proxy(kube_standin, "socks4://user:hunter2@127.0.0.1:1080")
    with pytest.raises(ConfigError, match="must be http, https, socks5 or socks5h") as info:
        KubeConfig.from_kubeconfig(path)
    assert info.value.path == "clusters[standin].proxy-url"
    assert "hunter2" not in str(info.value)
