"""Bad PEM material in a kafka trigger is a ConfigError at the field, never a process abort.

librdkafka 2.x with ``sasl: oauthbearer`` (OIDC) and ``tls: enable`` aborts the whole
process (an assertion in its clean-up, exit 134) when the PEM material does not load. The
scaler loads it in Python first (scalers/kafka/_pem.py). The abort is tested in a
subprocess, as a user would meet it: the process lives on and reports the field.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from eventscale.errors import ConfigError
from eventscale.scalers.kafka.scaler import KafkaScaler
from eventscale.scalers.params import TriggerContext

KEY_PASSWORD = "kafka-key-pa55phrase"
SECRET = "oidc-client-s3cret"
BAD_CERT = "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n"
BAD_KEY = "-----BEGIN PRIVATE KEY-----\nQUJDREVG\n-----END PRIVATE KEY-----\n"
META = {"bootstrapServers": "127.0.0.1:1", "consumerGroup": "g", "topic": "t"}
OIDC = {
    "sasl": "oauthbearer",
    "username": "client",
    "password": SECRET,
    "oauthTokenEndpointUri": "https://127.0.0.1:1/token",
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("kafka-client.example")


def _text(blob: Any) -> str:
    return str(blob.bytes().decode())


def _encrypted(leaf: trustme.LeafCert) -> str:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
    ).decode()


def _scaler(auth: dict[str, str]) -> KafkaScaler:
    ctx = TriggerContext(
        metadata=META, auth={"tls": "enable", **OIDC, **auth}, trigger_type="kafka"
    )
    return KafkaScaler.from_context(ctx)


async def _build_and_close(auth: dict[str, str]) -> None:
    await _scaler(auth).aclose()


@pytest.mark.anyio
async def test_good_material_builds(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    cert, key = _text(leaf.cert_chain_pems[0]), _text(leaf.private_key_pem)
    await _build_and_close({"ca": _text(ca.cert_pem), "cert": cert, "key": key})
    encrypted = _encrypted(leaf)
    await _build_and_close({"cert": cert, "key": encrypted, "keyPassword": KEY_PASSWORD})


def _bad_cases(ca: trustme.CA, leaf: trustme.LeafCert) -> list[tuple[dict[str, str], str]]:
    cert, key = _text(leaf.cert_chain_pems[0]), _text(leaf.private_key_pem)
    other_key = _text(trustme.CA().issue_cert("other.example").private_key_pem)
    return [
        ({"ca": BAD_CERT}, "ca"),
        ({"ca": "caaa"}, "ca"),
        ({"cert": BAD_CERT, "key": key}, "cert"),
        ({"cert": cert, "key": BAD_KEY}, "key"),
        ({"cert": cert, "key": other_key}, "key"),
        # an encrypted key without keyPassword: an error, never OpenSSL's terminal prompt
        ({"cert": cert, "key": _encrypted(leaf)}, "key"),
        ({"cert": cert, "key": _encrypted(leaf), "keyPassword": "wrong"}, "keyPassword"),
        ({"ca": "x" * (300 * 1024)}, "ca"),
    ]


def test_bad_material_is_a_config_error_at_the_field(
    ca: trustme.CA, leaf: trustme.LeafCert
) -> None:
    for auth, field in _bad_cases(ca, leaf):
        with pytest.raises(ConfigError) as info:
            _scaler(auth)
        assert info.value.path == f"authenticationRef.{field}", (field, str(info.value))
        message = str(info.value)
        assert SECRET not in message
        assert KEY_PASSWORD not in message
        assert "BEGIN" not in message
        assert "QUJD" not in message


@pytest.mark.anyio
async def test_tls_disabled_ignores_the_material() -> None:
    # Without tls=enable the PEM parameters are not given to librdkafka (KEDA's rule).
    ctx = TriggerContext(metadata=META, auth={"ca": "caaa"}, trigger_type="kafka")
    await KafkaScaler.from_context(ctx).aclose()


_SURVIVOR = textwrap.dedent(
    """
    import sys
    import anyio
    from eventscale.errors import ConfigError, ScalerError
    from eventscale.scalers.kafka.scaler import KafkaScaler
    from eventscale.scalers.params import TriggerContext

    META = {"bootstrapServers": "127.0.0.1:1", "consumerGroup": "g", "topic": "t"}
    AUTH = {
        "tls": "enable", "sasl": "oauthbearer", "username": "client", "password": "p",
        "oauthTokenEndpointUri": "https://127.0.0.1:1/token", "ca": sys.argv[1],
    }

    async def healthy(ticks: list[int]) -> None:
        for i in range(20):
            ticks.append(i)
            await anyio.sleep(0.05)

    async def main() -> None:
        ticks: list[int] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(healthy, ticks)
            try:
                scaler = KafkaScaler.from_context(
                    TriggerContext(metadata=META, auth=AUTH, trigger_type="kafka")
                )
                try:
                    await scaler.get_metrics()
                except ScalerError as exc:
                    print("scaler error:", exc)
                finally:
                    await scaler.aclose()
            except ConfigError as exc:
                print("config error:", exc.path)
            await anyio.sleep(0.5)
        print("healthy ticks:", len(ticks))

    anyio.run(main)
    """
)


def test_the_process_survives_bad_pem_with_oidc(tmp_path: Path) -> None:
    script = tmp_path / "survivor.py"
    script.write_text(_SURVIVOR)
    proc = subprocess.run(
        [sys.executable, str(script), BAD_CERT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "config error: authenticationRef.ca" in proc.stdout
    assert "healthy ticks: 20" in proc.stdout
