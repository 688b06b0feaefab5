"""The external extra: named when missing, never imported by ``import eventscale``; the
protocol modules come from the build (hatch_build.py), or are compiled when they cannot."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from eventscale.external import _proto

ROOT = Path(__file__).resolve().parents[2]

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" or name.startswith("grpc.") or name.startswith("grpc_"):
            raise ImportError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def _python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("trigger_type", ["external", "external-push"])
def test_missing_grpc_names_the_extra(trigger_type: str) -> None:
    out = _python(
        f"""
        from eventscale.errors import MissingExtraError
        from eventscale.scalers import resolve_scaler_class
        try:
            resolve_scaler_class({trigger_type!r})
        except MissingExtraError as exc:
            print(exc)
        """
    )
    assert "pip install 'eventscale[external]'" in out


def test_the_command_line_and_package_load_without_grpc() -> None:
    out = _python(
        """
        import eventscale.external, eventscale.cli.serve_external
        from eventscale.cli._main import _build_parser
        help_text = _build_parser().format_help()
        print("serve-external" in help_text)
        try:
            eventscale.external.ExternalScalerServer
        except ImportError as exc:
            print(type(exc).__name__)
        """
    )
    assert out.split() == ["True", "MissingExtraError"]


def test_the_proto_matches_keda_field_for_field() -> None:
    """Names, numbers and types as KEDA's externalscaler.proto defines them."""
    pb = _proto.messages()
    fd = pb.DESCRIPTOR
    assert fd.package == "externalscaler"

    def fields(message: str) -> list[tuple[str, int, str]]:
        desc = fd.message_types_by_name[message]
        out = []
        for f in desc.fields:
            kind = f.message_type.name if f.message_type is not None else str(f.type)
            out.append((f.name, f.number, kind))
        return out

    t_string, t_bool, t_int64, t_double = "9", "8", "3", "1"  # FieldDescriptor.TYPE_*
    assert fields("ScaledObjectRef") == [
        ("name", 1, t_string),
        ("namespace", 2, t_string),
        ("scalerMetadata", 3, "ScalerMetadataEntry"),
    ]
    assert fields("IsActiveResponse") == [("result", 1, t_bool)]
    assert fields("GetMetricSpecResponse") == [("metricSpecs", 1, "MetricSpec")]
    assert fields("MetricSpec") == [
        ("metricName", 1, t_string),
        ("targetSize", 2, t_int64),
        ("targetSizeFloat", 3, t_double),
    ]
    assert fields("GetMetricsRequest") == [
        ("scaledObjectRef", 1, "ScaledObjectRef"),
        ("metricName", 2, t_string),
    ]
    assert fields("GetMetricsResponse") == [("metricValues", 1, "MetricValue")]
    assert fields("MetricValue") == [
        ("metricName", 1, t_string),
        ("metricValue", 2, t_int64),
        ("metricValueFloat", 3, t_double),
    ]
    service = fd.services_by_name["ExternalScaler"]
    methods = {
        m.name: (m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods
    }
    assert methods == {
        "IsActive": ("ScaledObjectRef", "IsActiveResponse", False),
        "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse", True),
        "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", False),
        "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse", False),
        "StreamMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", True),
    }


def test_the_installed_package_uses_the_build_time_modules() -> None:
    """The editable install ran hatch_build.py: its modules are current and are used."""
    messages, services = _proto.load()
    assert (_proto.loaded_from, _proto.fallback_reason) == ("generated", None)
    assert messages.__name__ == "eventscale.external._generated.externalscaler_pb2"
    assert services.__name__ == "eventscale.external._generated.externalscaler_pb2_grpc"
    info: Any = importlib.import_module("eventscale.external._generated")
    proto = ROOT / "src/eventscale/external/externalscaler.proto"
    assert hashlib.sha256(proto.read_bytes()).hexdigest() == info.PROTO_SHA256, (
        "externalscaler.proto changed since the last install: run `uv pip install -e .`"
    )


def _lower_bound(requirements: list[str], name: str) -> tuple[int, ...]:
    for requirement in requirements:
        found = re.fullmatch(rf"{re.escape(name)}\s*>=\s*([\d.]+)", requirement)
        if found:
            return tuple(int(part) for part in found.group(1).split("."))
    raise AssertionError(f"no {name}>=... in {requirements}")


def test_the_external_extra_is_new_enough_for_the_generated_code() -> None:
    """The build pin, what it generated, and what the extra requires agree."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [r for r in pyproject["build-system"]["requires"] if r.startswith("grpcio-tools")]
    assert len(pins) == 1
    assert re.fullmatch(r"grpcio-tools==[\d.]+", pins[0]), "pin grpcio-tools exactly"
    info: Any = importlib.import_module("eventscale.external._generated")
    assert pins[0] == f"grpcio-tools=={info.GRPCIO_TOOLS_VERSION}"
    extra = pyproject["project"]["optional-dependencies"]["external"]
    gencode = tuple(int(part) for part in info.PROTOBUF_GENCODE_VERSION.split("."))
    assert _lower_bound(extra, "protobuf") >= gencode
    tools = tuple(int(part) for part in info.GRPCIO_TOOLS_VERSION.split("."))
    assert _lower_bound(extra, "grpcio") >= tools
    # the generated modules check exactly these at import time
    generated = ROOT / "src/eventscale/external/_generated"
    pb2 = (generated / "externalscaler_pb2.py").read_text()
    assert f"# Protobuf Python Version: {info.PROTOBUF_GENCODE_VERSION}\n" in pb2
    pb2_grpc = (generated / "externalscaler_pb2_grpc.py").read_text()
    assert f"GRPC_GENERATED_VERSION = '{info.GRPCIO_TOOLS_VERSION}'" in pb2_grpc


# Breaks the build-time modules in one way (argv[1]), then serves a scaler and reads it
# back through eventscale's own client, and prints what was loaded as JSON.
FALLBACK = """
import json, sys

mode = sys.argv[1]
GENERATED = "eventscale.external._generated"


class Break:
    def find_spec(self, name, path=None, target=None):
        if mode == "missing" and name.startswith(GENERATED):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        if mode == "no-tools" and (name.startswith(GENERATED) or name.startswith("grpc_tools")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        if mode == "messages" and name == GENERATED + ".externalscaler_pb2":
            from google.protobuf.runtime_version import VersionError
            raise VersionError("runtime older than the gencode (simulated)")
        if mode == "services" and name == GENERATED + ".externalscaler_pb2_grpc":
            raise RuntimeError("generated code depends on a newer grpcio (simulated)")
        return None


sys.meta_path.insert(0, Break())
if mode == "stale":
    import eventscale.external._generated as info
    info.PROTO_SHA256 = "0" * 64

import anyio
from eventscale.errors import ConfigError
from eventscale.external import ExternalScaler, ExternalScalerServer, _proto
from eventscale.testing import StaticScaler


async def main():
    try:
        messages, services = _proto.load()
    except ConfigError as exc:
        print(json.dumps({"error": str(exc)}))
        return
    server = ExternalScalerServer({"busy": StaticScaler(12, name="s0-busy", target=4)})
    async with server:
        scaler = ExternalScaler.from_metadata(
            {"scalerAddress": f"127.0.0.1:{server.port}", "scalerName": "busy"}
        )
        try:
            report = await scaler.get_metrics()
        finally:
            await scaler.aclose()
    print(json.dumps({
        "loaded_from": _proto.loaded_from,
        "reason": _proto.fallback_reason,
        "messages": messages.__name__,
        "services": services.__name__,
        "active": report.is_active,
        "values": [v.value for v in report.values],
    }))


anyio.run(main)
"""


def _fallback(mode: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", FALLBACK, mode],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("mode", "reason", "messages"),
    [
        ("missing", "are not installed", "eventscale.external.externalscaler_pb2"),
        ("stale", "another externalscaler.proto", "eventscale.external.externalscaler_pb2"),
        ("messages", "VersionError: runtime older", "eventscale.external.externalscaler_pb2"),
        # the generated messages imported: only the service module is compiled
        (
            "services",
            "RuntimeError: generated code depends",
            "eventscale.external._generated.externalscaler_pb2",
        ),
    ],
)
def test_without_usable_build_time_modules_the_proto_is_compiled(
    mode: str, reason: str, messages: str
) -> None:
    out = _fallback(mode)
    assert out["loaded_from"] == "compiled"
    assert reason in out["reason"]
    assert out["messages"] == messages
    assert out["services"] == "eventscale.external.externalscaler_pb2_grpc"
    assert (out["active"], out["values"]) == (True, [12.0])


def test_the_fallback_without_grpcio_tools_says_what_to_install() -> None:
    out = _fallback("no-tools")
    assert "'grpcio-tools'" in out["error"]
    assert "are not installed" in out["error"]
