"""Every failure of the ``rabbitmq`` scaler as one redacted, KEDA-worded ScalerError."""

from __future__ import annotations

import re

import attrs

from eventscale.errors import ScalerError, ScalerTimeout
from eventscale.redaction import redact_text
from eventscale.scalers.rabbitmq.config import RabbitMQConfig

__all__ = ("ErrorFactory", "anonymize_error")

_USERINFO = re.compile(r"[^ /:]+:[^/:]+@")


def anonymize_error(message: str) -> str:
    """KEDA's error text: ``error inspecting RabbitMQ: `` + message with userinfo masked."""
    return "error inspecting RabbitMQ: " + _USERINFO.sub("user:password@", message)


@attrs.frozen
class ErrorFactory:
    """Builds the scaler's errors: anonymised as KEDA does, scrubbed of every secret."""

    config: RabbitMQConfig
    identity: str

    def __call__(self, what: str, exc: BaseException | None, *, transient: bool) -> ScalerError:
        """The error for ``what`` went wrong (caused by ``exc``, if any)."""
        detail = f"{what}: {type(exc).__name__}: {exc}" if exc is not None and str(exc) else what
        if exc is not None and not str(exc):
            detail = f"{what}: {type(exc).__name__}"
        message = redact_text(anonymize_error(detail), self.config.secrets())
        cls = ScalerTimeout if isinstance(exc, TimeoutError) else ScalerError
        return cls(message, trigger=self.identity, transient=transient)
