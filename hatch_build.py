"""Hatch build hook: generate the KEDA external-scaler gRPC modules at build time.

``src/eventscale/external/externalscaler.proto`` is the only checked-in form of the
protocol. Every wheel build (regular and editable) compiles it with the grpcio-tools
pinned in ``[build-system].requires`` into ``src/eventscale/external/_generated/``:

* ``externalscaler_pb2.py`` and ``externalscaler_pb2.pyi``: the messages;
* ``externalscaler_pb2_grpc.py``: the stub, servicer and ``add_..._to_server``;
* ``__init__.py``: the .proto's SHA-256 and the generator versions, which
  :mod:`eventscale.external._proto` checks before importing the modules.

The directory is git-ignored and listed as a wheel ``artifact``, so a wheel carries it
and an editable install finds it in the source tree. The sdist carries the .proto (and
this file), not generated code: building a wheel from the sdist generates again.

The wheel is the same whatever extras are installed with it, so the modules are
generated for core installs too; they are a few kilobytes and are only imported when
the ``external`` extra is used. If grpcio-tools cannot be imported (a build without
isolation in an environment that lacks it), the hook warns and generates nothing; the
wheel then carries whatever an earlier build left in the directory, or nothing, and
eventscale checks what it finds at run time (compiling the .proto when needed).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = "eventscale/external/_generated"
PROTO = "src/eventscale/external/externalscaler.proto"
OUTPUT = "src/" + PACKAGE
STEM = "externalscaler"

INIT_TEMPLATE = '''\
"""Python modules generated from ``externalscaler.proto`` when eventscale was built.

Written by hatch_build.py; do not edit. :mod:`eventscale.external._proto` imports them
when they match the shipped .proto and the installed grpcio, and compiles the .proto
at run time otherwise.
"""

PROTO_SHA256 = {sha!r}
GRPCIO_TOOLS_VERSION = {tools!r}
PROTOBUF_GENCODE_VERSION = {gencode!r}
'''


class ExternalScalerStubs(BuildHookInterface):  # type: ignore[type-arg]
    """Generate ``eventscale.external._generated`` before a wheel is built."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Generate the modules (wheel and editable builds; nothing for the sdist)."""
        if self.target_name != "wheel":
            return
        try:
            from grpc_tools import grpc_version, protoc  # type: ignore[import-untyped]
        except ImportError as exc:
            left = (Path(self.root) / OUTPUT / "__init__.py").exists()
            self.app.display_warning(
                f"eventscale: grpcio-tools is not importable ({exc}), so the gRPC modules "
                "are not generated; "
                + (
                    f"the wheel carries those a previous build left in {OUTPUT}"
                    if left
                    else "the wheel carries none"
                )
                + " (eventscale.external checks them at run time and compiles the .proto "
                "when they are missing or do not match)"
            )
            return
        root = Path(self.root)
        proto = root / PROTO
        files = _generate(protoc, str(grpc_version.VERSION), proto, root / OUTPUT)
        self.app.display_info(f"eventscale: generated {', '.join(files)} in {OUTPUT}")

    def clean(self, versions: list[str]) -> None:
        """``hatch clean``: remove the generated package."""
        shutil.rmtree(Path(self.root) / OUTPUT, ignore_errors=True)


def _generate(protoc: Any, tools_version: str, proto: Path, output: Path) -> list[str]:
    """Compile ``proto`` into ``output``; returns the file names written there.

    protoc runs in a scratch directory where the .proto sits at ``PACKAGE``, so the
    service module imports the messages as ``eventscale.external._generated....``. The
    results replace the files in ``output`` one by one with :func:`os.replace`, so a
    process importing them meanwhile sees either the old or the new file, never half.
    """
    source = proto.read_bytes()
    with tempfile.TemporaryDirectory(prefix="eventscale-protoc-") as scratch:
        work = Path(scratch)
        (work / PACKAGE).mkdir(parents=True)
        (work / PACKAGE / f"{STEM}.proto").write_bytes(source)
        out = work / "out"
        out.mkdir()
        args = [
            "grpc_tools.protoc",
            f"--proto_path={work}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"{PACKAGE}/{STEM}.proto",
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto} (arguments: {args})")
        generated = out / PACKAGE
        messages = (generated / f"{STEM}_pb2.py").read_text(encoding="utf-8")
        found = re.search(r"^# Protobuf Python Version: (\S+)$", messages, re.MULTILINE)
        if found is None:
            raise RuntimeError("protoc wrote no 'Protobuf Python Version' line")
        (generated / "__init__.py").write_text(
            INIT_TEMPLATE.format(
                sha=hashlib.sha256(source).hexdigest(),
                tools=tools_version,
                gencode=found.group(1),
            ),
            encoding="utf-8",
        )
        output.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in generated.iterdir() if p.is_file())
        for name in names:
            new = (generated / name).read_bytes()
            target = output / name
            if target.exists() and target.read_bytes() == new:
                continue
            fd, tmp = tempfile.mkstemp(dir=output, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as f:
                f.write(new)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; installed files must be readable
            os.replace(tmp, target)
    return names
