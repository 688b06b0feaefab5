"""Kafka ``sasl: gssapi``: what eventscale can check on this machine.

The confluent-kafka wheel installed here bundles a librdkafka built without GSSAPI, so a
GSSAPI scaler is refused with a ConfigError that says so; and no broker here speaks
SASL/GSSAPI, so nothing authenticates to Kafka with Kerberos end to end. What is checked:
that the refusal matches what librdkafka itself does, that the files eventscale writes
(keytab or password, krb5.conf, ticket cache) are private, shared, refused when a second
login would clash and deleted on close, and, against a real MIT KDC started here, that
the exact ``kinit`` command eventscale gives librdkafka obtains a ticket with a keytab and
with a password (and fails with a wrong one).
"""

from __future__ import annotations

import base64
import importlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.scalers import TriggerContext
from eventscale.scalers.kafka import scaler as kafka_module
from eventscale.scalers.kafka._pool import (
    KafkaClientPool,
    KerberosFiles,
    KerberosLogin,
    KerberosRegistry,
    librdkafka_has_gssapi,
)
from eventscale.scalers.kafka.config import KafkaMetadata, parse_kafka_metadata
from eventscale.scalers.kafka.scaler import KafkaScaler
from servers._proc import Proc, ensure_apt, free_port, port_open, run, unique_name, wait_until

REALM = "EVENTSCALE.TEST"
KRB5_CONF = "[libdefaults]\n default_realm = EVENTSCALE.TEST\n"
META = {"bootstrapServers": "127.0.0.1:9", "consumerGroup": "g", "topic": "t"}


def gssapi_auth(**extra: str | Secret) -> dict[str, str | Secret]:
    return {
        "sasl": "gssapi",
        "username": "alice",
        "realm": REALM,
        "kerberosConfig": KRB5_CONF,
        **extra,
    }


def held(registry: KerberosRegistry) -> KerberosFiles | None:
    return registry.active


FAKE_KEYTAB = b"\x05\x02" + bytes(range(256))  # a keytab header and binary bytes


# ---------------------------------------------------------------------------- librdkafka


def test_gssapi_probe_agrees_with_librdkafka() -> None:
    """The capability check says exactly what creating a GSSAPI client does."""
    ck: Any = importlib.import_module("confluent_kafka.admin")

    def create() -> None:
        ck.AdminClient(
            {
                "bootstrap.servers": "127.0.0.1:9",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "GSSAPI",
                "sasl.kerberos.min.time.before.relogin": 0,
                "log_level": 0,
            }
        )

    if librdkafka_has_gssapi():
        create()
    else:
        with pytest.raises(ck.KafkaException, match="No provider for SASL mechanism GSSAPI"):
            create()


@pytest.mark.anyio
async def test_gssapi_scaler_without_gssapi_in_librdkafka_is_a_config_error() -> None:
    ctx = TriggerContext(
        metadata=META, auth=gssapi_auth(password="pw-never-shown"), trigger_type="kafka"
    )
    registry = KerberosRegistry()
    if librdkafka_has_gssapi():  # a confluent-kafka built with GSSAPI: the scaler builds
        scaler = KafkaScaler(
            KafkaMetadata.from_context(ctx), pool=KafkaClientPool(), kerberos=registry
        )
        assert held(registry) is not None
        await scaler.aclose()
        assert held(registry) is None
        return
    before = os.environ.get("KRB5_CONFIG")
    with pytest.raises(ConfigError, match="built with GSSAPI") as info:
        KafkaScaler(
            KafkaMetadata.from_context(ctx),
            pool=KafkaClientPool(),
            kerberos=registry,
            trigger_name=ctx.identity,
        )
    assert info.value.path == "metadata.sasl"
    assert "pw-never-shown" not in str(info.value)
    assert registry.active is None  # nothing written
    assert os.environ.get("KRB5_CONFIG") == before


# ---------------------------------------------------------------------------- parsing


def test_keytab_is_read_as_base64() -> None:
    encoded = base64.b64encode(FAKE_KEYTAB).decode()
    # line breaks, as `base64` wraps its output, are fine
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    meta = parse_kafka_metadata(
        TriggerContext(metadata=META, auth=gssapi_auth(keytab=wrapped), trigger_type="kafka")
    )
    assert meta.kerberos == KerberosLogin(
        principal=f"alice@{REALM}", config=KRB5_CONF.strip(), keytab=FAKE_KEYTAB, password=None
    )
    assert meta.librdkafka["sasl.mechanism"] == "GSSAPI"
    assert meta.librdkafka["sasl.kerberos.service.name"] == "kafka"
    assert meta.librdkafka["sasl.kerberos.principal"] == f"alice@{REALM}"
    assert meta.librdkafka["security.protocol"] == "SASL_PLAINTEXT"
    assert FAKE_KEYTAB.hex() not in repr(meta)


@pytest.mark.parametrize("keytab", ["not base64 at all!", base64.b64encode(b"plain text").decode()])
def test_a_keytab_that_is_not_one_is_a_config_error(keytab: str) -> None:
    with pytest.raises(ConfigError, match="base64") as info:
        parse_kafka_metadata(
            TriggerContext(metadata=META, auth=gssapi_auth(keytab=keytab), trigger_type="kafka")
        )
    assert info.value.path == "authenticationRef.keytab"
    assert keytab not in str(info.value)


def test_service_name_and_tls() -> None:
    meta = parse_kafka_metadata(
        TriggerContext(
            metadata=META,
            auth=gssapi_auth(password="pw", kerberosServiceName="kafka-svc", tls="enable"),
            trigger_type="kafka",
        )
    )
    assert meta.librdkafka["sasl.kerberos.service.name"] == "kafka-svc"
    assert meta.librdkafka["security.protocol"] == "SASL_SSL"


# ---------------------------------------------------------------------------- files


@pytest.fixture
def registry() -> Iterator[KerberosRegistry]:
    reg = KerberosRegistry()
    saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME")}
    yield reg
    active = reg.active
    assert active is None, "a test left a Kerberos login held"
    assert {k: os.environ.get(k) for k in saved} == saved


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_shared_and_deleted(registry: KerberosRegistry) -> None:
    login = KerberosLogin(f"alice@{REALM}", KRB5_CONF, keytab=FAKE_KEYTAB)
    files = registry.acquire(login)
    assert mode(files.directory) == 0o700
    assert files.keytab_path is not None
    assert files.keytab_path.read_bytes() == FAKE_KEYTAB
    assert mode(files.keytab_path) == 0o600
    assert files.config_path.read_text() == KRB5_CONF
    assert mode(files.config_path) == 0o600
    assert os.environ["KRB5_CONFIG"] == str(files.config_path)
    assert os.environ["KRB5CCNAME"] == f"FILE:{files.ccache_path}"
    # an equal login shares the files
    again = registry.acquire(KerberosLogin(f"alice@{REALM}", KRB5_CONF, keytab=FAKE_KEYTAB))
    assert again is files
    registry.release(files)
    assert files.directory.exists()  # still held once
    registry.release(again)
    assert not files.directory.exists()


def test_password_file_reaches_kinit_on_stdin_only(registry: KerberosRegistry) -> None:
    files = registry.acquire(KerberosLogin(f"alice@{REALM}", KRB5_CONF, password=Secret("pw-x")))
    try:
        assert files.password_path is not None
        assert files.password_path.read_text() == "pw-x\n"
        assert mode(files.password_path) == 0o600
        assert "pw-x" not in files.kinit_command
        assert files.kinit_command.endswith(f"< {files.password_path}")
        assert "pw-x" not in repr(files)
    finally:
        registry.release(files)


@pytest.mark.parametrize(
    ("other", "what"),
    [
        (
            KerberosLogin(f"alice@{REALM}", KRB5_CONF + "# other\n", keytab=FAKE_KEYTAB),
            "kerberosConfig",
        ),
        (KerberosLogin(f"bob@{REALM}", KRB5_CONF, keytab=FAKE_KEYTAB), "principal"),
        (KerberosLogin(f"alice@{REALM}", KRB5_CONF, password=Secret("pw")), "credential"),
    ],
    ids=["config", "principal", "credential"],
)
def test_a_second_login_in_one_process_is_refused(
    registry: KerberosRegistry, other: KerberosLogin, what: str
) -> None:
    files = registry.acquire(KerberosLogin(f"alice@{REALM}", KRB5_CONF, keytab=FAKE_KEYTAB))
    try:
        with pytest.raises(ConfigError, match="process-wide") as info:
            registry.acquire(other, path="authenticationRef.kerberosConfig")
        assert what in str(info.value)
        assert info.value.path == "authenticationRef.kerberosConfig"
    finally:
        registry.release(files)


@pytest.mark.anyio
async def test_scaler_wires_the_files_into_librdkafka_settings(
    registry: KerberosRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a GSSAPI-capable librdkafka, a scaler passes the kinit command and keytab path
    and deletes the files on close. (This librdkafka has no GSSAPI, so the capability
    check is bypassed; no client is created, the test stops before any poll.)"""
    monkeypatch.setattr(kafka_module, "librdkafka_has_gssapi", lambda: True)
    keytab = base64.b64encode(FAKE_KEYTAB).decode()
    ctx = TriggerContext(metadata=META, auth=gssapi_auth(keytab=keytab), trigger_type="kafka")
    pool = KafkaClientPool()
    first = KafkaScaler(
        KafkaMetadata.from_context(ctx), pool=pool, kerberos=registry, trigger_name=ctx.identity
    )
    second = KafkaScaler(
        KafkaMetadata.from_context(ctx), pool=pool, kerberos=registry, trigger_name=ctx.identity
    )
    files = registry.active
    assert files is not None
    assert first.connection is second.connection  # same login, same client
    conn = first.connection
    assert conn is not None
    settings = dict(conn.key)
    assert settings["sasl.kerberos.kinit.cmd"] == files.kinit_command
    assert settings["sasl.kerberos.keytab"] == str(files.keytab_path)
    other = TriggerContext(
        metadata=META,
        auth=gssapi_auth(keytab=keytab, kerberosConfig=KRB5_CONF + "# changed\n"),
        trigger_type="kafka",
    )
    with pytest.raises(ConfigError, match="process-wide") as info:
        KafkaScaler(
            KafkaMetadata.from_context(other),
            pool=pool,
            kerberos=registry,
            trigger_name=other.identity,
        )
    assert info.value.path == "authenticationRef.kerberosConfig"
    await first.aclose()
    assert files.directory.exists()
    await second.aclose()
    assert not files.directory.exists()
    assert len(pool) == 0


# ---------------------------------------------------------------------------- a real KDC


@attrs.frozen
class Kdc:
    """An MIT Kerberos KDC on 127.0.0.1 with two principals: alice (password) and bob
    (keytab)."""

    port: int
    workdir: Path
    krb5_conf: str
    alice_password: str
    bob_keytab: bytes


@pytest.fixture(scope="module")
def kdc() -> Iterator[Kdc]:
    for binary, package in (
        ("krb5kdc", "krb5-kdc"),
        ("kadmin.local", "krb5-admin-server"),
        ("kinit", "krb5-user"),
    ):
        ensure_apt(binary, package)
    with tempfile.TemporaryDirectory(prefix="es-kdc-") as tmp:
        work = Path(tmp)
        port = free_port()
        (work / "kdc.conf").write_text(
            f"[realms]\n {REALM} = {{\n  database_name = {work}/principal\n"
            f"  key_stash_file = {work}/stash\n  kdc_ports = {port}\n"
            f"  kdc_tcp_ports = {port}\n }}\n"
        )
        krb5_conf = (
            f"[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n"
            f" dns_lookup_realm = false\n[realms]\n {REALM} = {{\n"
            f"  kdc = 127.0.0.1:{port}\n }}\n"
        )
        (work / "krb5.conf").write_text(krb5_conf)
        env = {
            **os.environ,
            "KRB5_CONFIG": str(work / "krb5.conf"),
            "KRB5_KDC_PROFILE": str(work / "kdc.conf"),
        }
        password = unique_name("pw")
        run(["kdb5_util", "create", "-s", "-r", REALM, "-P", unique_name("master")], env=env)
        for query in (
            f"addprinc -pw {password} alice",
            "addprinc -randkey bob",
            f"ktadd -k {work}/bob.keytab bob",
        ):
            run(["kadmin.local", "-r", REALM, "-q", query], env=env)
        proc = Proc(["krb5kdc", "-n", "-r", REALM], log=work / "kdc.log", env=env)
        try:
            wait_until(lambda: port_open(port), timeout=20, what="the KDC", log=proc.log)
            yield Kdc(port, work, krb5_conf, password, (work / "bob.keytab").read_bytes())
        finally:
            proc.stop()


def run_kinit(files: KerberosFiles) -> subprocess.CompletedProcess[str]:
    """Run the command as librdkafka does (``system()``: ``/bin/sh -c``), with the
    environment eventscale sets for the process."""
    env = {**os.environ, **files.environment}
    return subprocess.run(
        ["/bin/sh", "-c", files.kinit_command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def ticket_owner(files: KerberosFiles) -> str:
    out = subprocess.run(
        ["klist"],
        env={**os.environ, **files.environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if "principal" in line)


def login_from_trigger(kdc: Kdc, auth: dict[str, str | Secret]) -> KerberosLogin:
    auth = {"sasl": "gssapi", "realm": REALM, "kerberosConfig": kdc.krb5_conf, **auth}
    meta = parse_kafka_metadata(TriggerContext(metadata=META, auth=auth, trigger_type="kafka"))
    assert meta.kerberos is not None
    return meta.kerberos


def test_kinit_with_the_keytab_gets_a_ticket(kdc: Kdc, registry: KerberosRegistry) -> None:
    keytab = Secret(base64.b64encode(kdc.bob_keytab).decode())
    files = registry.acquire(login_from_trigger(kdc, {"username": "bob", "keytab": keytab}))
    try:
        done = run_kinit(files)
        assert done.returncode == 0, done.stderr
        assert ticket_owner(files) == f"bob@{REALM}"
    finally:
        registry.release(files)


def test_kinit_with_the_password_gets_a_ticket(kdc: Kdc, registry: KerberosRegistry) -> None:
    auth: dict[str, str | Secret] = {"username": "alice", "password": Secret(kdc.alice_password)}
    files = registry.acquire(login_from_trigger(kdc, auth))
    try:
        done = run_kinit(files)
        assert done.returncode == 0, done.stderr
        assert ticket_owner(files) == f"alice@{REALM}"
        assert kdc.alice_password not in done.stdout + done.stderr
    finally:
        registry.release(files)


def test_kinit_with_a_wrong_password_fails(kdc: Kdc, registry: KerberosRegistry) -> None:
    auth: dict[str, str | Secret] = {"username": "alice", "password": Secret("not-the-password")}
    files = registry.acquire(login_from_trigger(kdc, auth))
    try:
        done = run_kinit(files)
        assert done.returncode != 0
        assert "incorrect" in done.stderr.lower()
        assert not files.ccache_path.exists()
    finally:
        registry.release(files)
