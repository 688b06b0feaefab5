"""KEDA-style trigger parameter resolution, shared by every scaler.

A scaler's ``from_metadata()`` reads each parameter through one :class:`Params`
object, which reproduces KEDA's typed-config rules (KEDA's pkg/scalers/scalersconfig/typed_config.go):

* per-parameter lookup order over three sources: trigger ``metadata``, the
  TriggerAuthentication's resolved ``auth`` parameters, and ``env`` (through the
  ``<name>FromEnv`` indirection: the metadata names an environment variable);
* values are whitespace-trimmed and an empty value counts as absent;
* integers are JSON integers (``"10"`` yes; ``"10.0"``, ``"+5"``, ``"010"`` no), floats
  are JSON numbers, booleans follow Go's ``ParseBool``, durations Go's syntax or
  integer milliseconds;
* every field error is collected, the scaler's cross-field validation still runs, and
  :meth:`Params.finish` raises one :class:`~eventscale.errors.ConfigError` listing them all,
  each naming its field path (``spec.triggers[1].metadata.lagThreshold``).

Typical use::

    p = Params(ctx)
    topic = p.string("topic", default="")
    lag = p.integer("lagThreshold", default=10)
    if lag is not None and lag <= 0:
        p.fail('"lagThreshold" must be positive number', "lagThreshold")
    p.finish()
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Final, TypeVar, overload
from urllib.parse import parse_qsl

import attrs

from eventscale.errors import ConfigError, join_path
from eventscale.metrics import MetricType
from eventscale.redaction import Secret, is_secret_name, redact_text

__all__ = (
    "AUTH",
    "ENV",
    "META",
    "Params",
    "Source",
    "TriggerContext",
    "parse_go_bool",
    "parse_go_duration",
    "parse_json_float",
    "parse_json_int",
)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


class Source(enum.Enum):
    """Where a parameter may be found."""

    META = "triggerMetadata"
    AUTH = "authParams"
    ENV = "resolvedEnv"


META: Final = Source.META
AUTH: Final = Source.AUTH
ENV: Final = Source.ENV

_MISSING: Final = object()


def _redacted_repr(mapping: Mapping[str, Any], *, all_secret: bool = False) -> str:
    # a value under a harmless name may still carry a password (an http trigger's URL)
    shown = {
        key: "***"
        if all_secret or is_secret_name(key)
        else redact_text(value)
        if isinstance(value, str)
        else value
        for key, value in mapping.items()
    }
    return repr(shown)


@attrs.frozen(kw_only=True)
class TriggerContext:
    """Everything a scaler needs to parse one trigger.

    ``metadata``: the trigger's ``metadata`` mapping. ``auth``: parameters resolved from
    its TriggerAuthentication (values may be :class:`~eventscale.redaction.Secret`). ``env``:
    the environment ``...FromEnv`` names are resolved against (by default, nothing: pass
    ``os.environ`` or a container's env explicitly). ``index`` is the trigger's position,
    used in metric names (``s{index}-...``); ``path`` prefixes error field paths.
    ``object_name`` / ``object_namespace`` name the ScaledObject (or ScaledJob) the
    trigger belongs to (the external scaler sends them in its ``ScaledObjectRef``).
    ``env_origin`` says where ``env`` came from, for the message about an unset
    ``...FromEnv`` variable.
    """

    metadata: Mapping[str, Any] = attrs.field(factory=dict, repr=lambda m: _redacted_repr(m))
    auth: Mapping[str, str | Secret] = attrs.field(
        factory=dict, repr=lambda m: _redacted_repr(m, all_secret=True)
    )
    env: Mapping[str, str] = attrs.field(factory=dict, repr=lambda m: f"<{len(m)} variables>")
    index: int = 0
    name: str | None = None
    trigger_type: str = ""
    metric_type: MetricType = MetricType.AVERAGE_VALUE
    use_cached_metrics: bool = False
    path: str | None = None
    object_name: str = ""
    object_namespace: str = ""
    env_origin: str = "the environment given to eventscale"

    @property
    def identity(self) -> str:
        """How errors name this trigger: its ``name`` or ``{type}[{index}]``."""
        return self.name or f"{self.trigger_type or 'trigger'}[{self.index}]"

    def metadata_path(self, name: str) -> str:
        """The field path of metadata key ``name``."""
        return join_path(self.path, f"metadata.{name}") or name

    def auth_path(self, name: str) -> str:
        """The field path of auth parameter ``name``."""
        return join_path(self.path, f"authenticationRef.{name}") or name


# ---------------------------------------------------------------------------- parsers

_JSON_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_json_int(raw: str) -> int:
    """Parse ``raw`` as a JSON number that is an int64; :class:`ValueError` otherwise."""
    if not _JSON_INT.fullmatch(raw):
        raise ValueError(f"{raw!r} is not an integer")
    value = int(raw)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{raw!r} is out of range for a 64-bit integer")
    return value


def parse_json_float(raw: str) -> float:
    """Parse ``raw`` as a JSON number; :class:`ValueError` otherwise (no ``.5``, ``NaN``)."""
    if not _JSON_NUMBER.fullmatch(raw):
        raise ValueError(f"{raw!r} is not a number")
    value = float(raw)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{raw!r} is out of range")
    return value


def parse_go_bool(raw: str) -> bool:
    """Parse like Go's ``strconv.ParseBool``."""
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean (use true or false)")


def parse_go_duration(raw: str) -> timedelta:
    """Parse a Go duration (``"30s"``, ``"1m30s"``, ``"500ms"``) or integer milliseconds.

    Negative durations are an error.
    """
    text = raw
    sign = 1.0
    if text[:1] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return timedelta(0)
    pos = 0
    total = 0.0
    matched = False
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m or m.group(1) in ("", "."):
            matched = False
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
        matched = True
    if matched:
        if sign < 0 and total > 0:
            raise ValueError(f"{raw!r} is negative")
        return timedelta(seconds=total)
    try:
        millis = parse_json_int(raw)
    except ValueError:
        raise ValueError(
            f"{raw!r} is not a duration (use e.g. 30s, 500ms or milliseconds)"
        ) from None
    if millis < 0:
        raise ValueError(f"{raw!r} is negative")
    return timedelta(milliseconds=millis)


# ---------------------------------------------------------------------------- Params


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@attrs.frozen
class _Found:
    raw: str
    source: Source
    key: str


class Params:
    """Reads typed parameters from a :class:`TriggerContext`, collecting every error."""

    def __init__(self, ctx: TriggerContext) -> None:
        self.ctx = ctx
        self.errors: list[ConfigError] = []
        self._failed_validation = False
        self._unset_env: dict[str, str] = {}

    # -- lookup --------------------------------------------------------------------

    def _path(self, name: str, source: Source | None = None) -> str:
        if source is Source.AUTH:
            return self.ctx.auth_path(name)
        if source is Source.ENV:
            return self.ctx.metadata_path(f"{name}FromEnv")
        return self.ctx.metadata_path(name)

    def lookup(
        self, name: str, order: Sequence[Source] = (META,), aliases: Sequence[str] = ()
    ) -> _Found | None:
        """The first non-empty trimmed value of ``name`` (or an alias) along ``order``."""
        names = (name, *aliases)
        for source in order:
            for key in names:
                raw: str | None
                if source is Source.META:
                    raw = _as_text(self.ctx.metadata.get(key))
                elif source is Source.AUTH:
                    raw = _as_text(self.ctx.auth.get(key))
                else:
                    env_name = _as_text(self.ctx.metadata.get(f"{key}FromEnv"))
                    env_name = env_name.strip() if env_name else None
                    raw = self.ctx.env.get(env_name) if env_name else None
                    if env_name and not (raw or "").strip():
                        self._unset_env[key] = env_name
                if raw is None:
                    continue
                raw = raw.strip()
                if raw:
                    return _Found(raw, source, key)
        return None

    def found_path(self, found: _Found) -> str:
        """The field path of a value :meth:`lookup` found (``...FromEnv`` for the env)."""
        return self._path(found.key, found.source)

    def has(
        self, name: str, order: Sequence[Source] = (META,), aliases: Sequence[str] = ()
    ) -> bool:
        """Whether ``name`` is present (non-empty) in any of ``order``."""
        return self.lookup(name, order, aliases) is not None

    def _missing(self, name: str, order: Sequence[Source]) -> None:
        where = " ".join(s.value for s in order)
        message = f'missing required parameter "{name}" in [{where}]'
        path = self._path(name)
        env_name = (
            _as_text(self.ctx.metadata.get(f"{name}FromEnv")) if Source.ENV in order else None
        )
        if env_name and env_name.strip():
            # The metadata names a variable that is unset (or empty): say which, and where.
            message += (
                f"; {name}FromEnv names variable {env_name.strip()!r}, which is not set "
                f"(or empty) in {self.ctx.env_origin}"
            )
            path = self._path(name, Source.ENV)
        self.errors.append(ConfigError(message, path=path))

    def _read(
        self,
        name: str,
        parse: Callable[[str], T],
        order: Sequence[Source],
        aliases: Sequence[str],
        default: Any,
        required: bool,
    ) -> Any:
        found = self.lookup(name, order, aliases)
        if found is None:
            if default is not _MISSING:
                return default
            if required:
                self._missing(name, order)
            return None
        try:
            return parse(found.raw)
        except ValueError as exc:
            hide = found.source is Source.AUTH or is_secret_name(name)
            reason = "invalid value (not shown: it may be a secret)" if hide else str(exc)
            self.errors.append(
                ConfigError(
                    f'parameter "{name}": {reason}', path=self._path(found.key, found.source)
                )
            )
            return None

    # -- typed readers -------------------------------------------------------------

    @overload
    def string(
        self,
        name: str,
        *,
        order: Sequence[Source] = ...,
        aliases: Sequence[str] = ...,
        default: str,
    ) -> str: ...
    @overload
    def string(
        self,
        name: str,
        *,
        order: Sequence[Source] = ...,
        aliases: Sequence[str] = ...,
        required: bool = ...,
    ) -> str | None: ...
    def string(
        self,
        name: str,
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        default: Any = _MISSING,
        required: bool = False,
    ) -> str | None:
        """A string parameter; ``None`` when absent and not required (or required and missing)."""
        return self._read(name, str, order, aliases, default, required)  # type: ignore[no-any-return]

    def secret(
        self,
        name: str,
        *,
        order: Sequence[Source] = (AUTH,),
        aliases: Sequence[str] = (),
        required: bool = False,
    ) -> Secret | None:
        """A secret parameter, wrapped in :class:`~eventscale.redaction.Secret`."""
        found = self.lookup(name, order, aliases)
        if found is None:
            if required:
                self._missing(name, order)
            return None
        return Secret(found.raw)

    @overload
    def integer(
        self,
        name: str,
        *,
        order: Sequence[Source] = ...,
        aliases: Sequence[str] = ...,
        default: int,
    ) -> int: ...
    @overload
    def integer(
        self,
        name: str,
        *,
        order: Sequence[Source] = ...,
        aliases: Sequence[str] = ...,
        required: bool = ...,
    ) -> int | None: ...
    def integer(
        self,
        name: str,
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        default: Any = _MISSING,
        required: bool = False,
    ) -> int | None:
        """An int64 parameter written as a JSON integer."""
        return self._read(name, parse_json_int, order, aliases, default, required)  # type: ignore[no-any-return]

    @overload
    def number(
        self,
        name: str,
        *,
        order: Sequence[Source] = ...,
        aliases: Sequence[str] = ...,
        default: float,
    ) -> float: ...
    @overload
    def number(
        self,
        name: str,
        *,
        order: Sequence[Source] = ...,
        aliases: Sequence[str] = ...,
        required: bool = ...,
    ) -> float | None: ...
    def number(
        self,
        name: str,
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        default: Any = _MISSING,
        required: bool = False,
    ) -> float | None:
        """A float parameter written as a JSON number."""
        return self._read(name, parse_json_float, order, aliases, default, required)  # type: ignore[no-any-return]

    @overload
    def boolean(
        self,
        name: str,
        *,
        order: Sequence[Source] = ...,
        aliases: Sequence[str] = ...,
        default: bool,
    ) -> bool: ...
    @overload
    def boolean(
        self,
        name: str,
        *,
        order: Sequence[Source] = ...,
        aliases: Sequence[str] = ...,
        required: bool = ...,
    ) -> bool | None: ...
    def boolean(
        self,
        name: str,
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        default: Any = _MISSING,
        required: bool = False,
    ) -> bool | None:
        """A boolean parameter (Go ``ParseBool`` spellings)."""
        return self._read(name, parse_go_bool, order, aliases, default, required)  # type: ignore[no-any-return]

    def duration(
        self,
        name: str,
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        default: timedelta | None = None,
        required: bool = False,
    ) -> timedelta | None:
        """A duration parameter (Go syntax or integer milliseconds)."""
        return self._read(  # type: ignore[no-any-return]
            name,
            parse_go_duration,
            order,
            aliases,
            default if default is not None else _MISSING,
            required,
        )

    def choice(
        self,
        name: str,
        choices: Iterable[str],
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        default: str | None = None,
        required: bool = False,
    ) -> str | None:
        """An enum parameter: the value (each comma-separated element) must be in ``choices``.

        Comparison is case-sensitive, as in KEDA.
        """
        allowed = tuple(choices)

        def parse(raw: str) -> str:
            for part in raw.split(","):
                if part.strip() not in allowed:
                    listing = " ".join(allowed)
                    raise ValueError(f'value "{raw}" must be one of [{listing}]')
            return raw

        return self._read(  # type: ignore[no-any-return]
            name, parse, order, aliases, default if default is not None else _MISSING, required
        )

    def enum(
        self,
        name: str,
        enum_type: type[E],
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        default: E | None = None,
        required: bool = False,
    ) -> E | None:
        """An enum parameter mapped onto ``enum_type`` by member value."""
        raw = self.choice(
            name,
            [str(m.value) for m in enum_type],
            order=order,
            aliases=aliases,
            required=required,
        )
        if raw is None:
            return default
        return enum_type(raw)

    def string_list(
        self,
        name: str,
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        default: Sequence[str] | None = None,
        required: bool = False,
    ) -> tuple[str, ...] | None:
        """A comma-separated list, each element trimmed (empty elements kept)."""

        def parse(raw: str) -> tuple[str, ...]:
            return tuple(part.strip() for part in raw.split(","))

        return self._read(  # type: ignore[no-any-return]
            name,
            parse,
            order,
            aliases,
            tuple(default) if default is not None else _MISSING,
            required,
        )

    def int_list(
        self,
        name: str,
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
        allow_ranges: bool = False,
        required: bool = False,
    ) -> tuple[int, ...] | None:
        """A comma-separated list of integers; with ``allow_ranges``, ``a-b`` is inclusive."""

        def parse(raw: str) -> tuple[int, ...]:
            out: list[int] = []
            for part in raw.split(","):
                item = part.strip()
                if allow_ranges and "-" in item.lstrip("-"):
                    lo_text, _, hi_text = item.partition("-")
                    lo, hi = int(lo_text.strip()), int(hi_text.strip())
                    out.extend(range(lo, hi + 1))
                else:
                    out.append(int(item))
            return tuple(out)

        return self._read(name, parse, order, aliases, _MISSING, required)  # type: ignore[no-any-return]

    def query_map(
        self,
        name: str,
        *,
        order: Sequence[Source] = (META,),
        aliases: Sequence[str] = (),
    ) -> dict[str, list[str]] | None:
        """A ``a=b&c=d`` parameter as a mapping of lists (Go ``url.Values``)."""

        def parse(raw: str) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for key, value in parse_qsl(raw, keep_blank_values=True, strict_parsing=True):
                out.setdefault(key, []).append(value)
            return out

        return self._read(name, parse, order, aliases, _MISSING, False)  # type: ignore[no-any-return]

    # -- validation ----------------------------------------------------------------

    def fail(self, reason: str, name: str | None = None, source: Source | None = None) -> None:
        """Record a validation error for ``name`` (a parameter) or the whole trigger."""
        path = self._path(name, source) if name else self.ctx.path
        self.errors.append(ConfigError(reason, path=path))

    @property
    def ok(self) -> bool:
        """Whether no error has been recorded so far."""
        return not self.errors

    def finish(self) -> None:
        """Raise one :class:`ConfigError` with every recorded error, if any."""
        what = f"invalid {self.ctx.trigger_type or 'trigger'} trigger metadata"
        if self.ctx.path:
            what = f"{self.ctx.path}: {what}"
        errors = list(self.errors)
        if errors:
            # Say which ...FromEnv variables were unset, and where they were looked for.
            errors += [
                ConfigError(
                    f"{key}FromEnv names variable {var!r}, which is not set (or empty) "
                    f"in {self.ctx.env_origin}",
                    path=self._path(key, Source.ENV),
                )
                for key, var in self._unset_env.items()
                if not any(var in str(e) for e in errors)
            ]
        ConfigError.collect(errors, what=what)
