"""The protocol modules (``externalscaler_pb2`` and ``_pb2_grpc``), loaded on first use.

Two sources, tried in this order by :func:`load`:

1. ``generated``: ``eventscale.external._generated``, written from
   ``externalscaler.proto`` by grpcio-tools when the wheel (or editable install) was
   built (``hatch_build.py``). The ``external`` extra requires grpcio and protobuf at
   least as new as that grpcio-tools, so in an installed eventscale these import.
2. ``compiled``: the shipped ``.proto`` compiled in this process by grpcio-tools
   (``grpc.protos_and_services``), used only when the generated modules are absent (a
   source checkout used without installing it, a build without grpcio-tools), were
   generated from a different ``.proto`` (it was edited since), or do not import (an
   older grpcio or protobuf than they were generated for). This needs grpcio-tools.

Before importing the generated modules, :func:`load` checks what it can check without
importing them (the .proto's hash and grpcio's version), because protobuf registers the
messages in its process-wide descriptor pool on import and the compiled fallback could
not register the same names again. protobuf's own check (runtime not older than the
generated code) runs before it registers anything. Should the message module import and
the service module still fail, the fallback compiles only the service module, on top of
the generated messages.

:data:`loaded_from` and :data:`fallback_reason` say which source was used and why, for
diagnostics and tests.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import sys
import threading
from importlib import resources
from types import ModuleType
from typing import Any, Final

from eventscale._optional import import_optional
from eventscale.errors import ConfigError

__all__ = (
    "PROTO_FILE",
    "fallback_reason",
    "grpc",
    "grpc_aio",
    "load",
    "loaded_from",
    "messages",
    "require",
    "services",
)

# The path protoc resolves against sys.path (the installed package directory).
PROTO_FILE: Final = "eventscale/external/externalscaler.proto"
GENERATED: Final = "eventscale.external._generated"
SERVICE_NAME: Final = "externalscaler.ExternalScaler"
WHAT: Final = "KEDA external scalers"

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_modules: tuple[Any, Any] | None = None

#: ``"generated"`` (the build-time modules), ``"compiled"`` (the .proto compiled in this
#: process) or ``None`` before :func:`load` has run.
loaded_from: str | None = None
#: Why the generated modules were not used (``None`` when they were, or before loading).
fallback_reason: str | None = None


def grpc() -> ModuleType:
    """The ``grpc`` package, or :class:`~eventscale.errors.MissingExtraError`."""
    return import_optional("grpc", extra="external", what=WHAT)


def grpc_aio() -> ModuleType:
    """The ``grpc.aio`` package, or :class:`~eventscale.errors.MissingExtraError`."""
    grpc()
    return import_optional("grpc.aio", extra="external", what=WHAT)


def require() -> None:
    """Import grpcio and protobuf, or raise :class:`~eventscale.errors.MissingExtraError`."""
    grpc_aio()
    import_optional("google.protobuf", extra="external", what=WHAT)


def load() -> tuple[Any, Any]:
    """``(messages, services)``: the ``externalscaler_pb2`` and ``_pb2_grpc`` modules.

    :raises MissingExtraError: grpcio or protobuf is not installed.
    :raises ConfigError: the fallback compilation was needed and failed (or grpcio-tools,
        which it needs, is not installed).
    """
    global _modules, loaded_from, fallback_reason
    if _modules is not None:
        return _modules
    with _lock:
        if _modules is None:
            require()
            pb2, pb2_grpc, reason = _import_generated()
            if pb2_grpc is None:
                _modules = _compile(reason, pb2)
                loaded_from, fallback_reason = "compiled", reason
            else:
                _modules = pb2, pb2_grpc
                loaded_from, fallback_reason = "generated", None
    return _modules


def messages() -> Any:
    """The message classes (``ScaledObjectRef``, ``IsActiveResponse``, ...)."""
    return load()[0]


def services() -> Any:
    """The service module (``ExternalScalerStub``, ``ExternalScalerServicer``, ...)."""
    return load()[1]


def _version(text: str) -> tuple[int, ...]:
    """The leading numeric release of a version string (``"1.85.1rc1"`` -> (1, 85, 1))."""
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(piece):
            break
    return tuple(parts)


def _import_generated() -> tuple[Any, Any, str]:
    """``(pb2, pb2_grpc, "")``, or what imported and why the rest cannot be used."""
    try:
        info = importlib.import_module(GENERATED)
    except ImportError as exc:
        return None, None, f"the build-time modules are not installed ({exc})"
    proto = resources.files("eventscale.external").joinpath("externalscaler.proto")
    sha = hashlib.sha256(proto.read_bytes()).hexdigest()
    if getattr(info, "PROTO_SHA256", None) != sha:
        return None, None, "the build-time modules were generated from another externalscaler.proto"
    needed = str(getattr(info, "GRPCIO_TOOLS_VERSION", ""))
    installed = str(grpc().__version__)
    if _version(installed) < _version(needed):
        return None, None, f"the build-time modules need grpcio>={needed}, found {installed}"
    pb2 = None
    try:
        pb2 = importlib.import_module(f"{GENERATED}.externalscaler_pb2")
        pb2_grpc = importlib.import_module(f"{GENERATED}.externalscaler_pb2_grpc")
    except Exception as exc:  # a version check, or anything else: compile instead
        return pb2, None, f"the build-time modules do not import: {type(exc).__name__}: {exc}"
    return pb2, pb2_grpc, ""


def _compile(reason: str, pb2: Any) -> tuple[Any, Any]:
    """Compile the shipped .proto in this process (needs grpcio-tools).

    ``pb2`` is the generated message module when it imported (only the service module
    failed): its messages are already in protobuf's descriptor pool, where compiling
    them again would clash, so only the service module is compiled, on top of it.
    """
    _log.info("compiling %s at run time: %s", PROTO_FILE, reason)
    try:
        importlib.import_module("grpc_tools")
    except ImportError as exc:
        raise ConfigError(
            f"{WHAT} cannot use eventscale's generated gRPC modules ({reason}), and "
            "compiling externalscaler.proto instead needs the 'grpcio-tools' package: "
            "install eventscale (`pip install 'eventscale[external]'` builds the modules) "
            "or `pip install grpcio-tools`"
        ) from exc
    try:
        if pb2 is None:
            result: tuple[Any, Any] = grpc().protos_and_services(PROTO_FILE)
        else:
            # the compiled service module imports its messages under this name
            sys.modules.setdefault(PROTO_FILE[: -len(".proto")].replace("/", ".") + "_pb2", pb2)
            result = (pb2, grpc().services(PROTO_FILE))
    except Exception as exc:
        raise ConfigError(
            f"{WHAT}: cannot compile {PROTO_FILE} at run time "
            f"({type(exc).__name__}: {exc}); it was needed because {reason}"
        ) from exc
    return result
