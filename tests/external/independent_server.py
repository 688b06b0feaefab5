"""A small KEDA external scaler written without eventscale, run as its own process.

It compiles ``externalscaler.proto`` with grpcio-tools into a scratch directory (under
KEDA's file name, as a hand-written Python scaler would) and serves it with the
*synchronous* grpc server, so nothing of eventscale's server or loader is involved.

Usage: ``python independent_server.py PORT LOGFILE WORKDIR``. Commands on stdin, one
per line: ``value 7.5`` sets the reported value; ``push true|false`` sends that
activity to every open StreamIsActive stream. Each request is appended to LOGFILE as
one JSON line. Prints ``ready`` once it listens.
"""

from __future__ import annotations

import json
import math
import queue
import shutil
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_tools import protoc  # type: ignore[import-untyped]

PROTO = Path(__file__).resolve().parents[2] / "src/eventscale/external/externalscaler.proto"


def _compile(workdir: Path) -> tuple[Any, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROTO, workdir / "externalscaler.proto")
    code = protoc.main(
        [
            "protoc",
            f"-I{workdir}",
            f"--python_out={workdir}",
            f"--grpc_python_out={workdir}",
            str(workdir / "externalscaler.proto"),
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")
    sys.path.insert(0, str(workdir))
    import externalscaler_pb2  # type: ignore[import-not-found]
    import externalscaler_pb2_grpc  # type: ignore[import-not-found]

    return externalscaler_pb2, externalscaler_pb2_grpc


class State:
    def __init__(self, log: Path) -> None:
        self.value = 0.0
        self.log = log
        self.lock = threading.Lock()
        self.streams: list[queue.Queue[bool | None]] = []

    def record(self, method: str, ref: Any, **extra: Any) -> None:
        entry = {
            "method": method,
            "name": ref.name,
            "namespace": ref.namespace,
            "metadata": dict(ref.scalerMetadata),
            **extra,
        }
        with self.lock, self.log.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def main() -> None:
    port, log, workdir = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    pb, pb_grpc = _compile(workdir)
    state = State(log)

    base: Any = pb_grpc.ExternalScalerServicer

    class Scaler(base):  # type: ignore[misc]
        def IsActive(self, request: Any, context: Any) -> Any:  # noqa: N802
            state.record("IsActive", request)
            return pb.IsActiveResponse(result=state.value > 0)

        def GetMetricSpec(self, request: Any, context: Any) -> Any:  # noqa: N802
            state.record("GetMetricSpec", request)
            return pb.GetMetricSpecResponse(
                metricSpecs=[
                    pb.MetricSpec(metricName="queue", targetSize=10),
                    pb.MetricSpec(metricName="backlog", targetSizeFloat=2.5),
                ]
            )

        def GetMetrics(self, request: Any, context: Any) -> Any:  # noqa: N802
            state.record("GetMetrics", request.scaledObjectRef, metricName=request.metricName)
            if request.metricName == "queue":  # the deprecated integer field only
                whole = int(state.value) if math.isfinite(state.value) else 0
                value = pb.MetricValue(metricName="queue", metricValue=whole)
            elif request.metricName == "backlog":
                value = pb.MetricValue(metricName="backlog", metricValueFloat=state.value / 2)
            else:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no metric {request.metricName!r}")
            return pb.GetMetricsResponse(metricValues=[value])

        def StreamIsActive(self, request: Any, context: Any) -> Iterator[Any]:  # noqa: N802
            state.record("StreamIsActive", request)
            inbox: queue.Queue[bool | None] = queue.Queue()
            with state.lock:
                state.streams.append(inbox)
            context.add_callback(lambda: inbox.put(None))
            while True:
                item = inbox.get()
                if item is None:
                    return
                yield pb.IsActiveResponse(result=item)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_ExternalScalerServicer_to_server(Scaler(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "value":
            state.value = float(arg)
        elif command == "push":
            with state.lock:
                for inbox in state.streams:
                    inbox.put(arg == "true")
        print(f"ok {command}", flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()
