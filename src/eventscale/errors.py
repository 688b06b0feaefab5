"""The one exception tree of eventscale.

::

    EventscaleError
     ├── ConfigError (also a ValueError)        bad manifest, metadata or argument
     │    └── MissingExtraError (also ImportError) a scaler/target whose extra is not installed
     ├── FormulaError                           a scalingModifiers formula failed on these values
     ├── ScalerError                            a trigger could not be read
     │    └── ScalerTimeout (also TimeoutError)
     └── TargetError                            a replica count could not be read or written
          ├── TargetNotFound (also LookupError)
          ├── TargetConflict                    optimistic-concurrency conflict that outlived its retries
          └── LeadershipLost                    a leader could not renew its Lease, or lost it

Driver exceptions (redis, aio-pika, confluent-kafka, azure, HTTP) are translated at the
boundary with ``raise ... from exc``, so the original is always on ``__cause__``.

No message built here contains a secret: callers pass values through
:func:`eventscale.redaction.redact_text` or :class:`eventscale.redaction.Secret` before they reach
an exception.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = (
    "ConfigError",
    "EventscaleError",
    "FormulaError",
    "LeadershipLost",
    "MissingExtraError",
    "ScalerError",
    "ScalerTimeout",
    "TargetConflict",
    "TargetError",
    "TargetNotFound",
    "join_path",
)


class EventscaleError(Exception):
    """Root of every exception eventscale raises on purpose."""


class ConfigError(EventscaleError, ValueError):
    """A manifest, trigger metadata or argument is invalid.

    ``path`` names the field, in manifest terms, for example
    ``spec.triggers[1].metadata.lagThreshold``. When several fields are wrong at once,
    ``errors`` holds one :class:`ConfigError` per field and the message lists them all.
    """

    path: str | None
    reason: str
    errors: tuple[ConfigError, ...]

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        errors: Sequence[ConfigError] = (),
    ) -> None:
        self.reason = reason
        self.path = path
        self.errors = tuple(errors)
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.path}: {self.reason}" if self.path else self.reason
        if not self.errors:
            return head
        lines = [head]
        lines.extend(f"  - {err}" for err in self.errors)
        return "\n".join(lines)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_config_error, (self.reason, self.path, self.errors))

    @classmethod
    def collect(cls, errors: Sequence[ConfigError], *, what: str = "invalid configuration") -> None:
        """Raise one :class:`ConfigError` for ``errors`` if there are any.

        A single error is raised as it is; several are grouped under ``what``.
        """
        if not errors:
            return
        if len(errors) == 1:
            raise errors[0]
        raise cls(f"{what} ({len(errors)} problems)", errors=errors)

    def prefixed(self, prefix: str) -> ConfigError:
        """Return a copy whose path (and the paths of grouped errors) starts with ``prefix``."""
        path = join_path(prefix, self.path)
        return type(self)(self.reason, path=path, errors=[e.prefixed(prefix) for e in self.errors])

    def all_paths(self) -> list[str]:
        """Every field path named by this error and its grouped errors."""
        paths = [self.path] if self.path and not self.errors else []
        for err in self.errors:
            paths.extend(err.all_paths())
        return paths


def _rebuild_config_error(
    reason: str, path: str | None, errors: tuple[ConfigError, ...]
) -> ConfigError:
    return ConfigError(reason, path=path, errors=errors)


def join_path(prefix: str | None, path: str | None) -> str | None:
    """Join two field paths: ``join_path("spec", "triggers[0]") == "spec.triggers[0]"``."""
    if not prefix:
        return path
    if not path:
        return prefix
    if path.startswith("["):
        return f"{prefix}{path}"
    return f"{prefix}.{path}"


class MissingExtraError(ConfigError, ImportError):
    """A scaler or target needs an optional dependency that is not installed."""

    extra: str

    def __init__(self, what: str, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        ConfigError.__init__(
            self,
            f"{what} needs the {module!r} package: install it with "
            f"`pip install 'eventscale[{extra}]'`",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_missing_extra, (self.reason, self.extra, self.module))


def _rebuild_missing_extra(reason: str, extra: str, module: str) -> MissingExtraError:
    err = MissingExtraError("x", extra, module)
    err.reason = reason
    err.args = (reason,)
    return err


class FormulaError(EventscaleError):
    """A formula could not be evaluated for the given values (type error, division by 0)."""


class ScalerError(EventscaleError):
    """A trigger's source could not be read: unreachable, refused, timed out, or malformed.

    An error is never a metric of 0: the engine sees it as "unknown" and applies the
    object's fallback policy. ``transient`` is ``True`` when retrying later may succeed
    (network, timeout, broker unavailable) and ``False`` when it will not without a
    change (missing queue, bad credentials, unsupported server).
    """

    trigger: str | None
    transient: bool

    def __init__(self, message: str, *, trigger: str | None = None, transient: bool = True) -> None:
        self.message = message
        self.trigger = trigger
        self.transient = transient
        super().__init__(message)

    def __str__(self) -> str:
        if self.trigger:
            return f"[{self.trigger}] {self.message}"
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_scaler_error, (type(self), self.message, self.trigger, self.transient))

    def with_trigger(self, trigger: str) -> ScalerError:
        """Set the trigger identity if it is not set yet, and return ``self``."""
        if self.trigger is None:
            self.trigger = trigger
        return self


def _rebuild_scaler_error(
    cls: type[ScalerError], message: str, trigger: str | None, transient: bool
) -> ScalerError:
    return cls(message, trigger=trigger, transient=transient)


class ScalerTimeout(ScalerError, TimeoutError):
    """A scaler call did not finish within its timeout."""


class TargetError(EventscaleError):
    """A target's replica count could not be read or written.

    ``status`` carries the HTTP status of an API-backed target when there is one.
    """

    def __init__(
        self, message: str, *, target: str | None = None, status: int | None = None
    ) -> None:
        self.message = message
        self.target = target
        self.status = status
        super().__init__(message)

    def __str__(self) -> str:
        prefix = f"[{self.target}] " if self.target else ""
        suffix = f" (status {self.status})" if self.status is not None else ""
        return f"{prefix}{self.message}{suffix}"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_target_error, (type(self), self.message, self.target, self.status))


def _rebuild_target_error(
    cls: type[TargetError], message: str, target: str | None, status: int | None
) -> TargetError:
    return cls(message, target=target, status=status)


class TargetNotFound(TargetError, LookupError):
    """The target (Deployment, container set, ...) does not exist."""


class TargetConflict(TargetError):
    """A write kept conflicting with concurrent writers after every retry."""


class LeadershipLost(TargetError):
    """The leader could not renew its Lease in time, or another holder took it."""
