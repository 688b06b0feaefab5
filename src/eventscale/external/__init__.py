"""KEDA external scalers over gRPC, both ways (needs ``eventscale[external]``).

* Serve: :class:`ExternalScalerServer` / :func:`serve_external` (and the
  ``eventscale serve-external`` command) expose any eventscale scaler as a KEDA external
  scaler, so a KEDA install can scale on it.
* Consume: :class:`ExternalScaler` (trigger type ``external``) and
  :class:`ExternalPushScaler` (``external-push``) read any KEDA external scaler, in any
  language, from an eventscale ScaledObject.

The protocol is KEDA's ``externalscaler.proto``, shipped in this package; its Python
modules are generated when eventscale is built, or compiled on first use when they are
missing (see :mod:`eventscale.external._proto`). Names are loaded lazily, so the
command line can list ``serve-external`` without grpcio installed; using one without
the extra raises :class:`~eventscale.errors.MissingExtraError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from eventscale.external.client import (
        ExternalPushScaler,
        ExternalScaler,
        ExternalScalerConfig,
        scaler_metadata_for,
    )
    from eventscale.external.server import (
        SCALER_NAME_KEY,
        SCALER_TYPE_KEY,
        ExternalScalerServer,
        ScalerRef,
        ServerTLS,
        build_server,
        load_server_target,
        scalers_from_manifest,
        serve_external,
    )

__all__ = (
    "SCALER_NAME_KEY",
    "SCALER_TYPE_KEY",
    "ExternalPushScaler",
    "ExternalScaler",
    "ExternalScalerConfig",
    "ExternalScalerServer",
    "ScalerRef",
    "ServerTLS",
    "build_server",
    "load_server_target",
    "scaler_metadata_for",
    "scalers_from_manifest",
    "serve_external",
)

_CLIENT = ("ExternalPushScaler", "ExternalScaler", "ExternalScalerConfig", "scaler_metadata_for")

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {name: f"{__name__}.client" if name in _CLIENT else f"{__name__}.server" for name in __all__},
    __all__,
)
