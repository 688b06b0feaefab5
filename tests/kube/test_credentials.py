"""Credentials a kubeconfig names: exec plugin failures, client certificates from an
exec plugin, rotated token files, auth-provider refusals and the proxy environment."""

from __future__ import annotations

import json
import logging
import ssl
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import pytest
import trustme
import yaml

from eventscale.errors import ConfigError, TargetError
from eventscale.kube import ExecCredentialPlugin, KubeClient, KubeConfig
from eventscale.kube.config import environment_proxy
from servers.kubernetes_srv import USER, KubeStandIn


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://api.example.com", {"HTTPS_PROXY": "p:3128"}, "http://p:3128"),
        ("https://api.example.com", {"https_proxy": "http://p:1"}, "http://p:1"),
        ("https://api.example.com", {"HTTP_PROXY": "http://p:1"}, None),
        ("http://api.example.com", {"HTTP_PROXY": "http://p:1"}, "http://p:1"),
        ("https://127.0.0.1:6443", {"HTTPS_PROXY": "http://p:1"}, None),
        ("https://localhost:6443", {"HTTPS_PROXY": "http://p:1"}, None),
        ("https://api.example.com", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, None),
        ("https://api.example.com", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, None),
        (
            "https://example.com",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"},
            "http://p:1",
        ),
        ("https://a.example.com", {"HTTPS_PROXY": "http://p:1", "no_proxy": ".example.com"}, None),
        (
            "https://badexample.com",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"},
            "http://p:1",
        ),
        ("https://10.1.2.3", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, None),
        (
            "https://10.1.2.3:6443",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.1.2.3:443"},
            "http://p:1",
        ),
        ("https://10.1.2.3:6443", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.1.2.3:6443"}, None),
    ],
)
def test_environment_proxy_follows_go(url: str, env: dict[str, str], expected: str | None) -> None:
    assert environment_proxy(url, env) == expected


def _config(kube: KubeStandIn, tmp_path: Path, user: dict[str, object]) -> Path:
    doc = yaml.safe_load(kube.kubeconfig("creds").read_text())
    doc["users"][0]["user"] = user
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_auth_provider_is_refused_with_a_clear_message(
    kube_standin: KubeStandIn, tmp_path: Path
) -> None:
    path = _config(
        kube_standin,
        tmp_path,
        {"auth-provider": {"name": "oidc", "config": {"id-token": "eyJsecret-token"}}},
    )
    with pytest.raises(ConfigError, match="auth-provider 'oidc' is not supported") as info:
        KubeConfig.from_kubeconfig(path)
    assert "kubelogin" in str(info.value)
    assert "eyJsecret-token" not in str(info.value)
    assert info.value.path == "users[controller].auth-provider"


@pytest.mark.anyio
async def test_exec_plugin_failure_shows_stderr_and_install_hint(
    kube_standin: KubeStandIn, tmp_path: Path
) -> None:
    script = tmp_path / "fails.py"
    script.write_text(
        "import sys\nsys.stderr.write('login expired: run aws sso login\\n')\nsys.exit(2)\n"
    )
    path = _config(
        kube_standin,
        tmp_path,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": [str(script)],
                "interactiveMode": "Never",
                "installHint": "install the cloud CLI",
            }
        },
    )
    client = KubeClient(KubeConfig.from_kubeconfig(path))
    try:
        with pytest.raises(TargetError, match="exit code 2: login expired: run aws sso login"):
            await client.request("GET", "/version")
    finally:
        await client.aclose()
    missing = _config(
        kube_standin,
        tmp_path,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "eventscale-no-such-plugin",
                "installHint": "install the cloud CLI",
            }
        },
    )
    client = KubeClient(KubeConfig.from_kubeconfig(missing))
    try:
        with pytest.raises(TargetError, match="install the cloud CLI"):
            await client.request("GET", "/version")
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_token_file_is_re_read_on_a_401(
    kube_standin: KubeStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    kube_standin.api.tokens[first] = USER
    token_file = tmp_path / "token"
    token_file.write_text(first)
    config = attrs.evolve(
        KubeConfig.from_kubeconfig(kube_standin.kubeconfig("rot")),
        token=None,
        token_file=str(token_file),
    )
    client = KubeClient(config)
    caplog.set_level(logging.DEBUG)
    try:
        await client.request("GET", "/version")
        # Rotated: the old token is revoked and the file holds a new one, within 60 s.
        del kube_standin.api.tokens[first]
        kube_standin.api.tokens[second] = USER
        token_file.write_text(second)
        await client.request("GET", "/version")
        users = [u for m, p, u in kube_standin.api.log[-2:] if p == "/version"]
        assert users == ["", USER]  # refused once, then accepted with the new token
    finally:
        await client.aclose()
        kube_standin.api.tokens.pop(second, None)
    assert first not in caplog.text
    assert second not in caplog.text


class _EchoPeer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        peer = self.connection.getpeercert()
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        raw = json.dumps({"cn": subject.get("commonName", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mtls_server() -> Iterator[tuple[str, trustme.CA]]:
    """An HTTPS server that requires a client certificate and echoes its CN."""
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoPeer)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.anyio
async def test_exec_plugin_client_certificate(
    mtls_server: tuple[str, trustme.CA], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, ca = mtls_server
    cn = f"user-{uuid.uuid4().hex[:8]}"
    leaf = ca.issue_cert(f"{cn}.example", common_name=cn)
    status = {
        "clientCertificateData": leaf.cert_chain_pems[0].bytes().decode(),
        "clientKeyData": leaf.private_key_pem.bytes().decode(),
    }
    script = tmp_path / "cert.py"
    script.write_text(
        "import json\nprint(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
        f"'kind': 'ExecCredential', 'status': {status!r}}}))\n"
    )
    config = KubeConfig(
        server=url,
        ca_data=ca.cert_pem.bytes(),
        exec_plugin=ExecCredentialPlugin(command=sys.executable, args=(str(script),)),
    )
    caplog.set_level(logging.DEBUG)
    client = KubeClient(config)
    try:
        assert await client.request("GET", "/whoami") == {"cn": cn}
    finally:
        await client.aclose()
    key_line = status["clientKeyData"].splitlines()[1]
    assert key_line not in caplog.text
    assert key_line not in repr(client.config)


@pytest.mark.anyio
async def test_secrets_stay_out_of_plugin_errors_and_proxy_failures(
    kube_standin: KubeStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = f"tok-{uuid.uuid4().hex}"
    script = tmp_path / "leaky.py"
    script.write_text(
        f"import sys\nprint({token!r})\nsys.stderr.write('refused token {token}\\n')\nsys.exit(1)\n"
    )
    path = _config(
        kube_standin,
        tmp_path,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": [str(script)],
            }
        },
    )
    client = KubeClient(KubeConfig.from_kubeconfig(path))
    try:
        with pytest.raises(TargetError) as info:
            await client.request("GET", "/version")
    finally:
        await client.aclose()
    assert "refused token" in str(info.value)
    assert token not in str(info.value)

    password = f"pw-{uuid.uuid4().hex}"
    doc = yaml.safe_load(kube_standin.kubeconfig("proxied").read_text())
    doc["clusters"][0]["cluster"]["proxy-url"] = f"http://user:{password}@127.0.0.1:9"
    proxied = tmp_path / "proxied"
    proxied.write_text(yaml.safe_dump(doc))
    config = KubeConfig.from_kubeconfig(proxied)
    assert password not in repr(config)
    client = KubeClient(config, timeout=5)
    try:
        with pytest.raises(TargetError) as info:
            await client.request("GET", "/version")
    finally:
        await client.aclose()
    assert password not in str(info.value)
    assert token not in caplog.text
    assert password not in caplog.text


def test_hostile_kubeconfigs_are_config_errors(tmp_path: Path) -> None:
    deep = tmp_path / "deep"
    deep.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=r"nested too deeply|not valid YAML"):
        KubeConfig.from_kubeconfig(deep)
    big = tmp_path / "big"
    big.write_text("# " + "x" * (5 * 1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        KubeConfig.from_kubeconfig(big)
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no current-context"):
        KubeConfig.from_kubeconfig(empty)
