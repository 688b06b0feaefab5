"""The external extra: named when missing, never imported by ``import eventscale``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from eventscale.external import _proto

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
        import eventscale.external, eventscale.external.cli
        from eventscale.cli import _build_parser
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
