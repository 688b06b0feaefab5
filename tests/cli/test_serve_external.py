"""``eventscale serve-external`` as a process, queried over gRPC, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from eventscale.external import _proto
from servers._proc import free_port, unique_name
from servers.redis_srv import RedisServer

pb: Any = _proto.messages()
# factory_module.py lives with the external-scaler tests.
HERE = Path(__file__).parents[1] / "external"


class Served:
    def __init__(self, popen: subprocess.Popen[str], port: int, banner: str) -> None:
        self.popen = popen
        self.port = port
        self.banner = banner

    def call(self, method: str, message: Any) -> Any:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub: Any = _proto.services().ExternalScalerStub(channel)
            return getattr(stub, method)(message, timeout=10)


def serve(*args: str) -> Iterator[Served]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    popen = subprocess.Popen(
        [sys.executable, "-m", "eventscale", "serve-external", *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert popen.stdout is not None
    banner = popen.stdout.readline()
    if not banner.startswith("serving on"):
        popen.kill()
        _, err = popen.communicate(timeout=10)
        pytest.fail(f"serve-external did not start: {banner}{err}")
    try:
        yield Served(popen, port, banner)
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.communicate(timeout=10)


def ref(**metadata: str) -> Any:
    return pb.ScaledObjectRef(name="x", namespace="default", scalerMetadata=metadata)


def test_serves_a_manifest_and_stops_on_sigterm(tmp_path: Path, redis_server: RedisServer) -> None:
    key = unique_name("ext-cli")
    manifest = tmp_path / "so.yaml"
    manifest.write_text(
        f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: orders}}
spec:
  scaleTargetRef: {{name: worker}}
  triggers:
    - type: redis
      metadata: {{addressFromEnv: REDIS_ADDR, listName: {key}, listLength: "3"}}
"""
    )
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.rpush(key, "a", "b", "c", "d")
    try:
        for served in serve(str(manifest), "--env", f"REDIS_ADDR={redis_server.address}"):
            assert "orders/0" in served.banner
            answer = served.call(
                "GetMetrics",
                pb.GetMetricsRequest(
                    scaledObjectRef=ref(scalerName="orders"), metricName=f"redis-{key}"
                ),
            )
            assert [(v.metricName, v.metricValueFloat) for v in answer.metricValues] == [
                (f"redis-{key}", 4.0)
            ]
            assert served.call("IsActive", ref(scalerName="orders/0")).result is True
            # no --allow-type: a request cannot build scalers
            with pytest.raises(grpc.RpcError) as info:
                served.call("IsActive", ref(scalerType="redis", listName="x"))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            served.popen.send_signal(signal.SIGTERM)
            assert served.popen.wait(timeout=20) == 0
    finally:
        client.delete(key)
        client.close()


def test_serves_a_factory_from_a_module() -> None:
    for served in serve("factory_module:build"):
        assert "busy, idle" in served.banner
        specs = served.call("GetMetricSpec", ref(scalerName="busy"))
        assert [(s.metricName, s.targetSize) for s in specs.metricSpecs] == [("busy", 4)]
        assert served.call("IsActive", ref(scalerName="idle")).result is False
        served.popen.send_signal(signal.SIGINT)
        assert served.popen.wait(timeout=20) == 0


def test_bad_arguments_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "eventscale", "serve-external", "nope_module:thing"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "nope_module" in proc.stderr
