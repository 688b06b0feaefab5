"""Read KEDA manifests into typed specs, and write specs back as manifests.

:func:`load_manifests` takes YAML text (one or more ``---`` documents), a mapping or a
list of mappings, and returns a :class:`Manifests` holding every
``keda.sh/v1alpha1`` ``ScaledObject``, ``ScaledJob``, ``TriggerAuthentication`` and
``ClusterTriggerAuthentication`` of the stream, plus the Kubernetes ``v1`` ``Secret`` and
``ConfigMap`` documents their ``secretTargetRef`` / ``configMapTargetRef`` entries point at.

Every field gets KEDA's default; unknown fields and bad values raise one
:class:`~eventscale.errors.ConfigError` per document that lists every problem, each
naming its field path (``spec.triggers[1].metadata.lagThreshold``) and, for YAML text,
its line. In a stream of several documents the paths are prefixed with ``[doc N]``
(0-based). No error message repeats a secret value.

:func:`to_manifest` writes a spec back as a manifest mapping such that
``load_manifests(to_manifest(spec))`` gives an equal spec again.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import attrs

from eventscale.authentication._resolve import resolve_trigger_contexts
from eventscale.errors import ConfigError, join_path
from eventscale.metrics import MetricType
from eventscale.redaction import Secret, redact_text
from eventscale.spec import (
    Advanced,
    AuthenticationRef,
    Behavior,
    ConfigMapRef,
    EnvRef,
    Fallback,
    FallbackBehavior,
    HPAConfig,
    JobRollout,
    PolicyType,
    ScaledJobSpec,
    ScaledObjectSpec,
    ScaleTargetRef,
    ScalingModifiers,
    ScalingPolicy,
    ScalingRules,
    ScalingStrategy,
    SecretRef,
    SelectPolicy,
    TriggerAuthenticationSpec,
    TriggerSpec,
)

if TYPE_CHECKING:
    import yaml

    from eventscale.scalers.params import TriggerContext

__all__ = (
    "KEDA_API_VERSION",
    "ManifestInput",
    "Manifests",
    "dump_manifests",
    "load_manifests",
    "load_scaled_job",
    "load_scaled_object",
    "load_trigger_authentication",
    "resolve_trigger_contexts",
    "to_manifest",
)

KEDA_API_VERSION: Final = "keda.sh/v1alpha1"

ManifestInput: TypeAlias = "str | bytes | Mapping[str, Any] | Sequence[Mapping[str, Any]]"
"""What :func:`load_manifests` reads: YAML text, one manifest mapping, or a list of them."""

Spec: TypeAlias = "ScaledObjectSpec | ScaledJobSpec | TriggerAuthenticationSpec"

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_TA_KINDS: Final = ("TriggerAuthentication", "ClusterTriggerAuthentication")
_KEDA_KINDS: Final = ("ScaledObject", "ScaledJob", *_TA_KINDS)
_CORE_KINDS: Final = ("Secret", "ConfigMap", "List")
_TOP_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_TOP_FIELDS_BY_KIND: Final = {
    "Secret": frozenset(
        {"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"}
    ),
    "ConfigMap": frozenset({"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}),
}
# Kubernetes ObjectMeta: accepted (a `kubectl get -o yaml` dump has them), mostly ignored.
_OBJECT_META_FIELDS: Final = frozenset(
    {
        "name",
        "namespace",
        "labels",
        "annotations",
        "generateName",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "finalizers",
        "managedFields",
        "selfLink",
    }
)
_POD_IDENTITY_PROVIDERS: Final = frozenset(
    {"none", "azure", "azure-workload", "aws", "aws-eks", "aws-kiam", "gcp"}
)
_UNRESOLVABLE_AUTH: Final = (
    "hashiCorpVault",
    "azureKeyVault",
    "awsSecretManager",
    "gcpSecretManager",
    "boundServiceAccountToken",
    "filePath",
)
_NO_CACHE_TYPES: Final = frozenset({"cpu", "memory", "cron"})
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")

E = TypeVar("E", bound=enum.Enum)
S = TypeVar("S")


def _key_path(parent: str | None, key: str) -> str:
    """``parent.key`` for plain keys, ``parent['a.b/c']`` for keys with dots or slashes."""
    part = key if _IDENT.fullmatch(key) else f"[{key!r}]"
    if part.startswith("["):
        return f"{parent}{part}" if parent else part
    return join_path(parent, part) or part


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _shown(value: Any, *, reveal: bool = False) -> str:
    """A secret-safe rendering of a bad value for an error message.

    Numbers are shown; strings only when ``reveal`` (``kind``, ``apiVersion``): any other
    field may hold a password pasted in the wrong place, so only its type is named.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{_type_name(value)} {value!r}"
    if reveal and isinstance(value, str):
        text = redact_text(repr(value))
        if len(text) > 60:
            text = text[:57] + "..."
        return f"{_type_name(value)} {text}"
    return _type_name(value)


def _did_you_mean(value: Any, choices: Iterable[str]) -> str:
    if not isinstance(value, str):
        return ""
    import difflib

    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if value.lower() in lowered:
            close = [lowered[value.lower()]]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _metric_type(r: _Reader, raw: Any, path: str) -> MetricType:
    """A trigger's or the modifiers' ``metricType``; never echoes the value."""
    if raw is None or raw == "":
        return MetricType.AVERAGE_VALUE
    if isinstance(raw, str):
        for member in MetricType:
            if member.value == raw:
                return member
    if raw == "Utilization":
        r.fail(
            path,
            "metricType 'Utilization' is only for cpu/memory triggers, which eventscale does "
            "not scale on; use 'AverageValue' or 'Value'",
        )
    else:
        choices = [m.value for m in MetricType]
        r.fail(
            path,
            f"must be one of {', '.join(choices)}; got {_shown(raw)}{_did_you_mean(raw, choices)}",
        )
    return MetricType.AVERAGE_VALUE


# --------------------------------------------------------------------------- YAML


@attrs.frozen
class _Document:
    """One manifest document, with the source line and raw text of its fields (from YAML)."""

    index: int
    data: Any
    lines: Mapping[str, int] = attrs.field(factory=dict)
    raw: Mapping[str, str] = attrs.field(factory=dict)


def _yaml_error(exc: Exception) -> ConfigError:
    # Only the problem and its position: the YAML library's own message quotes the
    # source line, which may hold a password.
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ConfigError(f"invalid YAML{where}: {problem}")


def _index_node(
    node: yaml.Node,
    path: str | None,
    lines: dict[str, int],
    raw: dict[str, str],
    active: set[int],
) -> None:
    import yaml

    if id(node) in active:  # a recursive alias: nothing more to learn
        return
    if path is not None:
        lines.setdefault(path, node.start_mark.line + 1)
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = _key_path(path, key_node.value)
                    lines.setdefault(child, key_node.start_mark.line + 1)
                    _index_node(value_node, child, lines, raw, active)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                _index_node(item, f"{path or ''}[{i}]", lines, raw, active)
        elif (
            isinstance(node, yaml.ScalarNode)
            and node.style is None
            and node.tag != "tag:yaml.org,2002:str"
            and path is not None
        ):
            raw[path] = node.value
    finally:
        active.discard(id(node))


def _parse_yaml(text: str) -> list[_Document]:
    import yaml

    docs: list[_Document] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        for node in nodes:
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                continue  # an empty document, as kubectl skips it
            data = yaml.SafeLoader("").construct_document(node)
            lines: dict[str, int] = {}
            raw: dict[str, str] = {}
            _index_node(node, None, lines, raw, set())
            docs.append(_Document(len(docs), data, lines, raw))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    return docs


# --------------------------------------------------------------------------- reader


class _Reader:
    """Reads the fields of one document, collecting every error with its path."""

    def __init__(self, doc: _Document) -> None:
        self.doc = doc
        self.errors: list[ConfigError] = []

    def fail(self, path: str | None, reason: str) -> None:
        self.errors.append(ConfigError(reason, path=path))

    def failed_under(self, path: str) -> bool:
        return any(
            e.path is not None and (e.path == path or e.path.startswith((path + ".", path + "[")))
            for e in self.errors
        )

    # -- shapes --------------------------------------------------------------------

    def mapping(
        self, value: Any, path: str, allowed: Iterable[str] | None = None
    ) -> Mapping[str, Any] | None:
        """``value`` as a mapping with string keys; unknown keys are errors when ``allowed``."""
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {_type_name(value)}")
            return None
        allowed_set = frozenset(allowed) if allowed is not None else None
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {_shown(key)}")
                continue
            if allowed_set is not None and key not in allowed_set:
                self.fail(
                    _key_path(path, key), f"unknown field {key!r}{_suggest(key, allowed_set)}"
                )
                continue
            out[key] = item
        return out

    def sub(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        allowed: Iterable[str] | None = None,
        *,
        required: bool = False,
    ) -> Mapping[str, Any] | None:
        """An optional (or required) nested mapping; ``null`` counts as absent."""
        value = obj.get(key)
        sub_path = _key_path(path, key) if path else key
        if value is None:
            if required:
                self.fail(sub_path, "is required")
            return None
        return self.mapping(value, sub_path, allowed)

    def items(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any] | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            self.fail(_key_path(path, key), f"must be a list, got {_type_name(value)}")
            return None
        return list(value)

    # -- scalars -------------------------------------------------------------------

    def string(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: str | None = None,
        choices: Sequence[str] | None = None,
    ) -> str | None:
        field = _key_path(path, key) if path else key
        value = obj.get(key)
        if value is None or value == "":
            if required:
                self.fail(field, "is required")
            return default
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {_shown(value)}")
            return default
        if choices is not None and value not in choices:
            shown = ", ".join(choices)
            hint = _did_you_mean(value, choices)
            self.fail(field, f"must be one of {shown}; got {_shown(value)}{hint}")
            return default
        return value

    def integer(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: int | None,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        field = _key_path(path, key) if path else key
        value = obj.get(key)
        if value is None:
            if required:
                self.fail(field, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, got {_shown(value)}")
            return default
        if not _INT32_MIN <= value <= _INT32_MAX:
            self.fail(field, f"{value} is out of range for a 32-bit integer")
            return default
        if minimum is not None and value < minimum:
            self.fail(field, f"must be >= {minimum}, got {value}")
            return default
        if maximum is not None and value > maximum:
            self.fail(field, f"must be <= {maximum}, got {value}")
            return default
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        field = _key_path(path, key) if path else key
        value = obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {_shown(value)}")
            return default
        return value

    def number(
        self, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> float | None:
        """A float written as a number or a numeric string (KEDA keeps these as strings)."""
        field = _key_path(path, key) if path else key
        value = obj.get(key)
        if value is None or value == "":
            if required:
                self.fail(field, "is required")
            return None
        parsed: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            parsed = float(value)
        elif isinstance(value, str):
            try:
                parsed = float(value.strip())
            except ValueError:
                parsed = None
        if parsed is None or not math.isfinite(parsed):
            self.fail(field, f"must be a finite number, got {_shown(value)}")
            return None
        return parsed

    def enum(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        enum_type: type[E],
        *,
        default: E,
    ) -> E:
        field = _key_path(path, key) if path else key
        value = obj.get(key)
        if value is None or value == "":
            return default
        for member in enum_type:
            if member.value == value:
                return member
        choices = ", ".join(str(m.value) for m in enum_type)
        hint = _did_you_mean(value, [str(m.value) for m in enum_type])
        self.fail(field, f"must be one of {choices}; got {_shown(value)}{hint}")
        return default

    def string_map(self, obj: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        """A ``map[string]string``: YAML numbers and booleans become their text."""
        field = _key_path(path, key) if path else key
        value = obj.get(key)
        if value is None:
            return {}
        mapping = self.mapping(value, field)
        if mapping is None:
            return {}
        out: dict[str, str] = {}
        for name, item in mapping.items():
            item_path = _key_path(field, name)
            text = self.scalar_text(item, item_path)
            if text is None:
                # Only the type: a mapping under `password` may hold the password.
                self.fail(item_path, f"must be a string, got {_type_name(item)}")
                continue
            out[name] = text
        return out

    def scalar_text(self, value: Any, path: str) -> str | None:
        """The text of a scalar as KEDA would see it: ``None`` for mappings and lists."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        raw = self.doc.raw.get(path)
        if raw is not None:
            return raw
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, Mapping | list | tuple):
            return None
        return str(value)

    # -- final error ---------------------------------------------------------------

    def with_line(self, err: ConfigError) -> ConfigError:
        if err.errors:
            return ConfigError(
                err.reason, path=err.path, errors=[self.with_line(e) for e in err.errors]
            )
        line = self.line_of(err.path)
        if line is None:
            return err
        return ConfigError(f"{err.reason} (line {line})", path=err.path)

    def line_of(self, path: str | None) -> int | None:
        lines = self.doc.lines
        while path:
            if path in lines:
                return lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else None
        return None


def _suggest(key: str, allowed: frozenset[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return ""


# --------------------------------------------------------------------------- documents


@attrs.frozen
class _Meta:
    name: str
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


def _read_meta(r: _Reader, doc: Mapping[str, Any]) -> _Meta:
    meta = r.sub(doc, "metadata", "", _OBJECT_META_FIELDS, required=True) or {}
    name = r.string(meta, "name", "metadata", required=True) or ""
    namespace = r.string(meta, "namespace", "metadata", default="default") or "default"
    return _Meta(
        name=name,
        namespace=namespace,
        labels=r.string_map(meta, "labels", "metadata"),
        annotations=r.string_map(meta, "annotations", "metadata"),
    )


def _read_trigger(r: _Reader, value: Any, path: str) -> TriggerSpec | None:
    trig = r.mapping(
        value,
        path,
        ("type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"),
    )
    if trig is None:
        return None
    trigger_type = r.string(trig, "type", path, required=True) or ""
    name = r.string(trig, "name", path)
    if "metadata" not in trig:
        r.fail(f"{path}.metadata", "is required")
    metadata = r.string_map(trig, "metadata", path)
    metric_type = _metric_type(r, trig.get("metricType"), f"{path}.metricType")
    cached = r.boolean(trig, "useCachedMetrics", path, default=False)
    if cached and trigger_type in _NO_CACHE_TYPES:
        r.fail(f"{path}.useCachedMetrics", f"is not supported for {trigger_type!r} triggers")
    auth_ref: AuthenticationRef | None = None
    ref = r.sub(trig, "authenticationRef", path, ("name", "kind"))
    if ref is not None:
        ref_path = f"{path}.authenticationRef"
        auth_ref = AuthenticationRef(
            name=r.string(ref, "name", ref_path, required=True) or "",
            kind=r.string(ref, "kind", ref_path, default=_TA_KINDS[0], choices=_TA_KINDS)
            or _TA_KINDS[0],
        )
    return TriggerSpec(
        type=trigger_type,
        metadata=metadata,
        name=name,
        metric_type=metric_type,
        use_cached_metrics=cached,
        authentication_ref=auth_ref,
    )


def _read_triggers(r: _Reader, spec: Mapping[str, Any]) -> tuple[TriggerSpec, ...]:
    items = r.items(spec, "triggers", "spec")
    if items is None:
        if "triggers" not in spec or spec.get("triggers") is None:
            r.fail("spec.triggers", "is required")
        return ()
    if not items:
        r.fail("spec.triggers", "at least one trigger is required")
    out: list[TriggerSpec] = []
    for i, item in enumerate(items):
        trig = _read_trigger(r, item, f"spec.triggers[{i}]")
        if trig is not None:
            out.append(trig)
    return tuple(out)


def _read_rules(
    r: _Reader, behavior: Mapping[str, Any], key: str, path: str
) -> ScalingRules | None:
    rules = r.sub(
        behavior, key, path, ("stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance")
    )
    if rules is None:
        return None
    rpath = f"{path}.{key}"
    window = r.integer(
        rules, "stabilizationWindowSeconds", rpath, default=None, minimum=0, maximum=3600
    )
    select = None
    if rules.get("selectPolicy") is not None:
        select = r.enum(rules, "selectPolicy", rpath, SelectPolicy, default=SelectPolicy.MAX)
    policies: tuple[ScalingPolicy, ...] | None = None
    items = r.items(rules, "policies", rpath)
    if items is not None:
        if not items:
            r.fail(f"{rpath}.policies", "must hold at least one policy (omit it for the default)")
        collected: list[ScalingPolicy] = []
        for j, item in enumerate(items):
            ppath = f"{rpath}.policies[{j}]"
            pol = r.mapping(item, ppath, ("type", "value", "periodSeconds"))
            if pol is None:
                continue
            before = len(r.errors)
            if pol.get("type") is None:
                r.fail(f"{ppath}.type", "is required")
            ptype = r.enum(pol, "type", ppath, PolicyType, default=PolicyType.PODS)
            value = r.integer(pol, "value", ppath, default=None, required=True, minimum=1)
            period = r.integer(
                pol, "periodSeconds", ppath, default=None, required=True, minimum=1, maximum=1800
            )
            if len(r.errors) == before and value is not None and period is not None:
                collected.append(ScalingPolicy(type=ptype, value=value, period_seconds=period))
        policies = tuple(collected)
    tolerance = None
    if rules.get("tolerance") is not None:
        tolerance = _read_quantity(r, rules, "tolerance", rpath)
    return ScalingRules(
        stabilization_window_seconds=window,
        select_policy=select,
        policies=policies,
        tolerance=tolerance,
    )


_QUANTITY: Final = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<milli>m?)")


def _read_quantity(r: _Reader, obj: Mapping[str, Any], key: str, path: str) -> float | None:
    """A non-negative Kubernetes quantity such as ``0.05``, ``"0.1"`` or ``"50m"``."""
    value = obj.get(key)
    field = f"{path}.{key}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            r.fail(field, f"must be a quantity >= 0, got {_shown(value)}")
            return None
        return float(value)
    if isinstance(value, str):
        m = _QUANTITY.fullmatch(value.strip())
        if m:
            number = float(m["num"])
            return number / 1000 if m["milli"] else number
    r.fail(field, f"must be a quantity >= 0 such as 0.1 or '100m', got {_shown(value)}")
    return None


def _read_advanced(r: _Reader, spec: Mapping[str, Any]) -> Advanced:
    adv = r.sub(
        spec,
        "advanced",
        "spec",
        ("restoreToOriginalReplicaCount", "horizontalPodAutoscalerConfig", "scalingModifiers"),
    )
    if adv is None:
        return Advanced()
    path = "spec.advanced"
    restore = r.boolean(adv, "restoreToOriginalReplicaCount", path, default=False)
    hpa = HPAConfig()
    hpa_map = r.sub(adv, "horizontalPodAutoscalerConfig", path, ("name", "behavior"))
    if hpa_map is not None:
        hpath = f"{path}.horizontalPodAutoscalerConfig"
        behavior = None
        beh = r.sub(hpa_map, "behavior", hpath, ("scaleUp", "scaleDown"))
        if beh is not None:
            bpath = f"{hpath}.behavior"
            behavior = Behavior(
                scale_up=_read_rules(r, beh, "scaleUp", bpath),
                scale_down=_read_rules(r, beh, "scaleDown", bpath),
            )
        hpa = HPAConfig(name=r.string(hpa_map, "name", hpath), behavior=behavior)
    modifiers = None
    mods = r.sub(
        adv, "scalingModifiers", path, ("formula", "target", "activationTarget", "metricType")
    )
    if mods is not None:
        mpath = f"{path}.scalingModifiers"
        formula = r.string(mods, "formula", mpath, required=True)
        target = r.number(mods, "target", mpath, required=True)
        activation = r.number(mods, "activationTarget", mpath)
        metric_type = _metric_type(r, mods.get("metricType"), f"{mpath}.metricType")
        if formula is not None and target is not None:
            modifiers = ScalingModifiers(
                formula=formula,
                target=target,
                activation_target=activation if activation is not None else 0.0,
                metric_type=metric_type,
            )
    return Advanced(
        restore_to_original_replica_count=restore,
        horizontal_pod_autoscaler_config=hpa,
        scaling_modifiers=modifiers,
    )


def _read_fallback(r: _Reader, spec: Mapping[str, Any]) -> Fallback | None:
    fb = r.sub(spec, "fallback", "spec", ("failureThreshold", "replicas", "behavior"))
    if fb is None:
        return None
    path = "spec.fallback"
    threshold = r.integer(fb, "failureThreshold", path, default=None, required=True, minimum=0)
    replicas = r.integer(fb, "replicas", path, default=None, required=True, minimum=0)
    behavior = r.enum(fb, "behavior", path, FallbackBehavior, default=FallbackBehavior.STATIC)
    if threshold is None or replicas is None:
        return None
    return Fallback(failure_threshold=threshold, replicas=replicas, behavior=behavior)


_SO_SPEC_FIELDS: Final = (
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "advanced",
    "fallback",
    "triggers",
)


def _read_scaled_object(r: _Reader, doc: Mapping[str, Any]) -> ScaledObjectSpec | None:
    meta = _read_meta(r, doc)
    spec = r.sub(doc, "spec", "", _SO_SPEC_FIELDS, required=True)
    if spec is None:
        return None
    target = r.sub(
        spec,
        "scaleTargetRef",
        "spec",
        ("name", "kind", "apiVersion", "envSourceContainerName"),
        required=True,
    )
    target_ref = None
    if target is not None:
        tpath = "spec.scaleTargetRef"
        target_ref = ScaleTargetRef(
            name=r.string(target, "name", tpath, required=True) or "",
            kind=r.string(target, "kind", tpath, default="Deployment") or "Deployment",
            api_version=r.string(target, "apiVersion", tpath, default="apps/v1") or "apps/v1",
            env_source_container_name=r.string(target, "envSourceContainerName", tpath),
        )
    polling = r.integer(spec, "pollingInterval", "spec", default=30, minimum=1)
    cooldown = r.integer(spec, "cooldownPeriod", "spec", default=300, minimum=0)
    initial = r.integer(spec, "initialCooldownPeriod", "spec", default=0, minimum=0)
    min_count = r.integer(spec, "minReplicaCount", "spec", default=0, minimum=0)
    max_count = r.integer(spec, "maxReplicaCount", "spec", default=100, minimum=1)
    idle = r.integer(spec, "idleReplicaCount", "spec", default=None, minimum=0)
    advanced = _read_advanced(r, spec)
    fallback = _read_fallback(r, spec)
    triggers = _read_triggers(r, spec)
    if target_ref is None:
        return None
    return _build(
        r,
        lambda: ScaledObjectSpec(
            name=meta.name,
            namespace=meta.namespace,
            labels=meta.labels,
            annotations=meta.annotations,
            scale_target_ref=target_ref,
            triggers=triggers,
            polling_interval=float(polling if polling is not None else 30),
            cooldown_period=float(cooldown if cooldown is not None else 300),
            initial_cooldown_period=float(initial if initial is not None else 0),
            min_replica_count=min_count if min_count is not None else 0,
            max_replica_count=max_count if max_count is not None else 100,
            idle_replica_count=idle,
            fallback=fallback,
            advanced=advanced,
        ),
        check=_check_paused_replicas,
    )


def _check_paused_replicas(spec: ScaledObjectSpec) -> None:
    _ = spec.paused_replicas  # raises ConfigError naming the annotation


_SJ_SPEC_FIELDS: Final = (
    "jobTargetRef",
    "pollingInterval",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "rolloutStrategy",
    "rollout",
    "envSourceContainerName",
    "minReplicaCount",
    "maxReplicaCount",
    "scalingStrategy",
    "triggers",
)


def _read_scaled_job(r: _Reader, doc: Mapping[str, Any]) -> ScaledJobSpec | None:
    meta = _read_meta(r, doc)
    spec = r.sub(doc, "spec", "", _SJ_SPEC_FIELDS, required=True)
    if spec is None:
        return None
    job = r.sub(spec, "jobTargetRef", "spec", required=True)
    if job is not None and not isinstance(job.get("template"), Mapping):
        r.fail("spec.jobTargetRef.template", "is required (a Job's pod template)")
    polling = r.integer(spec, "pollingInterval", "spec", default=30, minimum=1)
    ok_limit = r.integer(spec, "successfulJobsHistoryLimit", "spec", default=100, minimum=0)
    bad_limit = r.integer(spec, "failedJobsHistoryLimit", "spec", default=100, minimum=0)
    min_count = r.integer(spec, "minReplicaCount", "spec", default=0, minimum=0)
    max_count = r.integer(spec, "maxReplicaCount", "spec", default=100, minimum=0)
    env_container = r.string(spec, "envSourceContainerName", "spec")
    legacy = r.string(spec, "rolloutStrategy", "spec", choices=("default", "gradual"))
    rollout = JobRollout(strategy=legacy or "default")
    ro = r.sub(spec, "rollout", "spec", ("strategy", "propagationPolicy"))
    if ro is not None:
        rollout = JobRollout(
            strategy=r.string(
                ro,
                "strategy",
                "spec.rollout",
                default=legacy or "default",
                choices=("default", "gradual"),
            )
            or "default",
            propagation_policy=r.string(
                ro,
                "propagationPolicy",
                "spec.rollout",
                default="background",
                choices=("background", "foreground"),
            )
            or "background",
        )
    strategy = ScalingStrategy.DEFAULT
    deduction: int | None = None
    percentage: str | None = None
    pending: tuple[str, ...] = ()
    calculation = "max"
    ss = r.sub(
        spec,
        "scalingStrategy",
        "spec",
        (
            "strategy",
            "customScalingQueueLengthDeduction",
            "customScalingRunningJobPercentage",
            "pendingPodConditions",
            "multipleScalersCalculation",
        ),
    )
    if ss is not None:
        spath = "spec.scalingStrategy"
        strategy = r.enum(ss, "strategy", spath, ScalingStrategy, default=ScalingStrategy.DEFAULT)
        deduction = r.integer(ss, "customScalingQueueLengthDeduction", spath, default=None)
        raw_pct = ss.get("customScalingRunningJobPercentage")
        if raw_pct is not None:
            pct_path = f"{spath}.customScalingRunningJobPercentage"
            percentage = r.scalar_text(raw_pct, pct_path)
            if percentage is None or isinstance(raw_pct, bool):
                r.fail(pct_path, f"must be a number written as a string, got {_shown(raw_pct)}")
                percentage = None
            else:
                try:
                    float(percentage)
                except ValueError:
                    r.fail(pct_path, f"must be a number such as '0.5', got {_shown(raw_pct)}")
        conds = r.items(ss, "pendingPodConditions", spath)
        if conds is not None:
            good: list[str] = []
            for k, cond in enumerate(conds):
                if isinstance(cond, str) and cond:
                    good.append(cond)
                else:
                    r.fail(f"{spath}.pendingPodConditions[{k}]", "must be a condition type name")
            pending = tuple(good)
        calculation = (
            r.string(
                ss,
                "multipleScalersCalculation",
                spath,
                default="max",
                choices=("max", "min", "avg", "sum"),
            )
            or "max"
        )
    triggers = _read_triggers(r, spec)
    if job is None:
        return None
    return _build(
        r,
        lambda: ScaledJobSpec(
            name=meta.name,
            namespace=meta.namespace,
            labels=meta.labels,
            annotations=meta.annotations,
            job_target_ref=dict(job),
            triggers=triggers,
            env_source_container_name=env_container,
            polling_interval=float(polling if polling is not None else 30),
            successful_jobs_history_limit=ok_limit if ok_limit is not None else 100,
            failed_jobs_history_limit=bad_limit if bad_limit is not None else 100,
            min_replica_count=min_count if min_count is not None else 0,
            max_replica_count=max_count if max_count is not None else 100,
            rollout=rollout,
            strategy=strategy,
            custom_scaling_queue_length_deduction=deduction,
            custom_scaling_running_job_percentage=percentage,
            pending_pod_conditions=pending,
            multiple_scalers_calculation=calculation,
        ),
    )


_TA_SPEC_FIELDS: Final = (
    "podIdentity",
    "secretTargetRef",
    "configMapTargetRef",
    "env",
    *_UNRESOLVABLE_AUTH,
)


def _read_refs(
    r: _Reader,
    spec: Mapping[str, Any],
    key: str,
    fields: tuple[str, ...],
    required: tuple[str, ...],
) -> list[dict[str, str | None]]:
    out: list[dict[str, str | None]] = []
    for j, item in enumerate(r.items(spec, key, "spec") or ()):
        path = f"spec.{key}[{j}]"
        entry = r.mapping(item, path, fields)
        if entry is None:
            continue
        before = len(r.errors)
        values = {f: r.string(entry, f, path, required=f in required) for f in fields}
        if len(r.errors) == before:
            out.append(values)
    return out


def _read_trigger_auth(r: _Reader, doc: Mapping[str, Any], kind: str) -> TriggerAuthenticationSpec:
    meta = _read_meta(r, doc)
    spec = r.sub(doc, "spec", "", _TA_SPEC_FIELDS) or {}
    secret_refs = tuple(
        SecretRef(parameter=v["parameter"] or "", name=v["name"] or "", key=v["key"] or "")
        for v in _read_refs(
            r, spec, "secretTargetRef", ("parameter", "name", "key"), ("parameter", "name", "key")
        )
    )
    cm_refs = tuple(
        ConfigMapRef(parameter=v["parameter"] or "", name=v["name"] or "", key=v["key"] or "")
        for v in _read_refs(
            r,
            spec,
            "configMapTargetRef",
            ("parameter", "name", "key"),
            ("parameter", "name", "key"),
        )
    )
    env_refs = tuple(
        EnvRef(
            parameter=v["parameter"] or "", name=v["name"] or "", container_name=v["containerName"]
        )
        for v in _read_refs(
            r, spec, "env", ("parameter", "name", "containerName"), ("parameter", "name")
        )
    )
    pod_identity = None
    pid = r.sub(spec, "podIdentity", "spec")
    if pid is not None:
        r.string(
            pid,
            "provider",
            "spec.podIdentity",
            required=True,
            choices=tuple(sorted(_POD_IDENTITY_PROVIDERS)),
        )
        pod_identity = dict(pid)
    other = {key: spec[key] for key in _UNRESOLVABLE_AUTH if spec.get(key) is not None}
    return TriggerAuthenticationSpec(
        name=meta.name,
        kind=kind,
        namespace=meta.namespace,
        secret_target_ref=secret_refs,
        config_map_target_ref=cm_refs,
        env=env_refs,
        pod_identity=pod_identity,
        other=other,
    )


@attrs.frozen
class _SecretDoc:
    name: str
    values: Mapping[str, Secret]
    undecodable: frozenset[str]


def _read_secret(r: _Reader, doc: Mapping[str, Any]) -> _SecretDoc:
    meta = r.sub(doc, "metadata", "", _OBJECT_META_FIELDS, required=True) or {}
    name = r.string(meta, "name", "metadata", required=True) or ""
    values: dict[str, Secret] = {}
    undecodable: set[str] = set()
    data = r.sub(doc, "data", "") or {}
    for key, item in data.items():
        path = _key_path("data", key)
        if not isinstance(item, str):
            r.fail(path, f"must be a base64 string, got {_type_name(item)}")
            continue
        try:
            decoded = base64.b64decode("".join(item.split()), validate=True)
        except (binascii.Error, ValueError):
            r.fail(path, "is not valid base64 (value not shown)")
            continue
        try:
            values[key] = Secret(decoded.decode("utf-8"))
        except UnicodeDecodeError:
            undecodable.add(key)
    string_data = r.sub(doc, "stringData", "") or {}
    for key, item in string_data.items():
        path = _key_path("stringData", key)
        text = r.scalar_text(item, path)
        if text is None:
            r.fail(path, f"must be a string, got {_type_name(item)}")
            continue
        values[key] = Secret(text)
        undecodable.discard(key)
    return _SecretDoc(name, values, frozenset(undecodable))


def _read_config_map(r: _Reader, doc: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    meta = r.sub(doc, "metadata", "", _OBJECT_META_FIELDS, required=True) or {}
    name = r.string(meta, "name", "metadata", required=True) or ""
    return name, r.string_map(doc, "data", "")


def _build(r: _Reader, make: Callable[[], S], check: Callable[[S], None] | None = None) -> S | None:
    """Build a spec; its cross-field errors join the field errors (minus duplicates)."""
    try:
        spec = make()
        if check is not None:
            check(spec)
    except ConfigError as exc:
        for err in exc.errors or (exc,):
            if err.path is None or not r.failed_under(err.path):
                r.errors.append(err)
        return None
    return spec


# --------------------------------------------------------------------------- Manifests


@attrs.frozen(kw_only=True)
class Manifests:
    """Everything one manifest stream holds, by kind.

    ``trigger_authentications`` is keyed by ``(kind, name)``; ``secrets`` maps a Secret's
    name to its keys and :class:`~eventscale.redaction.Secret` values; ``config_maps`` maps a
    ConfigMap's name to its data. Namespaces are recorded on the specs but not used to
    look references up: one stream is one namespace.
    """

    scaled_objects: tuple[ScaledObjectSpec, ...] = ()
    scaled_jobs: tuple[ScaledJobSpec, ...] = ()
    trigger_authentications: Mapping[tuple[str, str], TriggerAuthenticationSpec] = attrs.field(
        factory=dict
    )
    secrets: Mapping[str, Mapping[str, Secret]] = attrs.field(factory=dict)
    config_maps: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    undecodable_secret_keys: frozenset[tuple[str, str]] = frozenset()

    def scaled_object(self, name: str | None = None) -> ScaledObjectSpec:
        """The ScaledObject called ``name`` (or the only one when ``name`` is ``None``)."""
        return _pick(self.scaled_objects, name, "ScaledObject")

    def scaled_job(self, name: str | None = None) -> ScaledJobSpec:
        """The ScaledJob called ``name`` (or the only one when ``name`` is ``None``)."""
        return _pick(self.scaled_jobs, name, "ScaledJob")

    def trigger_authentication(
        self, name: str, kind: str = "TriggerAuthentication"
    ) -> TriggerAuthenticationSpec:
        """The (Cluster)TriggerAuthentication ``name``; :class:`KeyError` when absent."""
        return self.trigger_authentications[(kind, name)]

    def trigger_contexts(
        self,
        spec: ScaledObjectSpec | ScaledJobSpec,
        *,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
    ) -> tuple[TriggerContext, ...]:
        """One :class:`~eventscale.scalers.TriggerContext` per trigger of ``spec``.

        Authentication references are resolved against this stream's
        TriggerAuthentications, Secrets and ConfigMaps; ``secrets`` adds (or overrides)
        Secrets by name; ``env`` is the scale target container's environment.
        """
        merged: dict[str, Mapping[str, str | Secret]] = dict(self.secrets)
        for name, values in (secrets or {}).items():
            merged[name] = {**merged.get(name, {}), **values}
        return resolve_trigger_contexts(
            spec,
            trigger_authentications=self.trigger_authentications,
            secrets=merged,
            config_maps=self.config_maps,
            env=env,
            undecodable=self.undecodable_secret_keys,
        )


T = TypeVar("T", ScaledObjectSpec, ScaledJobSpec)


def _pick(specs: tuple[T, ...], name: str | None, kind: str) -> T:
    if name is None:
        if len(specs) != 1:
            raise ConfigError(f"expected exactly one {kind}, found {len(specs)}")
        return specs[0]
    for spec in specs:
        if spec.name == name:
            return spec
    raise ConfigError(f"no {kind} named {name!r}")


def _documents(source: ManifestInput) -> tuple[list[_Document], bool]:
    """The documents of ``source`` and whether it was a multi-document stream."""
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("manifest text is not UTF-8") from None
    if isinstance(source, str):
        docs = _parse_yaml(source)
    elif isinstance(source, Mapping):
        docs = [_Document(0, source)]
    elif isinstance(source, Sequence):
        docs = [_Document(i, item) for i, item in enumerate(source)]
    else:
        raise ConfigError(
            f"expected YAML text, a mapping or a list of mappings, got {_type_name(source)}"
        )
    expanded: list[_Document] = []
    for doc in docs:
        data = doc.data
        if (
            isinstance(data, Mapping)
            and data.get("kind") == "List"
            and data.get("apiVersion") == "v1"
            and isinstance(data.get("items"), list)
        ):
            for j, item in enumerate(data["items"]):
                prefix = f"items[{j}]"
                expanded.append(
                    _Document(
                        len(expanded),
                        item,
                        _strip(doc.lines, prefix),
                        _strip(doc.raw, prefix),
                    )
                )
        else:
            expanded.append(attrs.evolve(doc, index=len(expanded)))
    return expanded, len(expanded) > 1


def _strip(table: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in table.items():
        if path.startswith(prefix + "."):
            out[path[len(prefix) + 1 :]] = value
        elif path.startswith(prefix + "["):
            out[path[len(prefix) :]] = value
    return out


def load_manifests(source: ManifestInput, *, ignore_unknown_kinds: bool = False) -> Manifests:
    """Read every KEDA object (and backing Secret/ConfigMap) of ``source``.

    ``source`` is YAML text (``---``-separated documents, a ``v1`` ``List`` is expanded),
    one manifest mapping, or a list of them. Other kinds (a Deployment in the same file)
    are a :class:`~eventscale.errors.ConfigError` unless ``ignore_unknown_kinds``.

    :raises ConfigError: listing every problem of every document, each with its path.
    """
    docs, multi = _documents(source)
    scaled_objects: list[ScaledObjectSpec] = []
    scaled_jobs: list[ScaledJobSpec] = []
    auths: dict[tuple[str, str], TriggerAuthenticationSpec] = {}
    secrets: dict[str, Mapping[str, Secret]] = {}
    config_maps: dict[str, Mapping[str, str]] = {}
    undecodable: set[tuple[str, str]] = set()
    seen: dict[tuple[str, str], int] = {}
    problems: list[ConfigError] = []

    for doc in docs:
        r = _Reader(doc)
        prefix = f"[doc {doc.index}]"
        data = doc.data
        if not isinstance(data, Mapping):
            problems.append(
                ConfigError(
                    f"a manifest document must be a mapping, got {_type_name(data)}", path=prefix
                )
            )
            continue
        kind = data.get("kind")
        api_version = data.get("apiVersion")
        what = f"{kind}" if isinstance(kind, str) else "document"
        name = None
        meta = data.get("metadata")
        if isinstance(meta, Mapping) and isinstance(meta.get("name"), str):
            name = meta["name"]
            what = f"{what} {name!r}"
        if kind in _KEDA_KINDS or kind in _CORE_KINDS:
            expected = KEDA_API_VERSION if kind in _KEDA_KINDS else "v1"
            if api_version != expected:
                r.fail(
                    "apiVersion",
                    f"{kind} needs apiVersion {expected!r}, got {_shown(api_version, reveal=True)}",
                )
        elif ignore_unknown_kinds:
            continue
        else:
            known = ", ".join((*_KEDA_KINDS, "Secret", "ConfigMap"))
            r.fail(
                "kind", f"unsupported kind {_shown(kind, reveal=True)} (eventscale reads {known})"
            )
        if not r.errors:
            r.mapping(data, "", _TOP_FIELDS_BY_KIND.get(str(kind), _TOP_FIELDS))
            if kind == "ScaledObject":
                so = _read_scaled_object(r, data)
                if so is not None:
                    scaled_objects.append(so)
            elif kind == "ScaledJob":
                sj = _read_scaled_job(r, data)
                if sj is not None:
                    scaled_jobs.append(sj)
            elif kind in _TA_KINDS:
                ta = _read_trigger_auth(r, data, str(kind))
                auths[(ta.kind, ta.name)] = ta
            elif kind == "Secret":
                sec = _read_secret(r, data)
                secrets[sec.name] = sec.values
                undecodable.update((sec.name, key) for key in sec.undecodable)
            elif kind == "ConfigMap":
                cm_name, cm_data = _read_config_map(r, data)
                config_maps[cm_name] = cm_data
            if name is not None and isinstance(kind, str):
                ident = (kind, name)
                if ident in seen:
                    r.fail("metadata.name", f"duplicate {kind} {name!r} (also [doc {seen[ident]}])")
                seen.setdefault(ident, doc.index)
        if r.errors:
            errors = [r.with_line(e) for e in r.errors]
            if len(errors) == 1:
                err = errors[0]
            else:
                line = r.line_of("kind")
                at = f", line {line}" if line is not None and multi else ""
                err = ConfigError(f"invalid {what}{at} ({len(errors)} problems)", errors=errors)
            problems.append(err.prefixed(prefix) if multi else err)

    ConfigError.collect(problems, what="invalid manifests")
    return Manifests(
        scaled_objects=tuple(scaled_objects),
        scaled_jobs=tuple(scaled_jobs),
        trigger_authentications=auths,
        secrets=secrets,
        config_maps=config_maps,
        undecodable_secret_keys=frozenset(undecodable),
    )


def load_scaled_object(source: ManifestInput, name: str | None = None) -> ScaledObjectSpec:
    """The ScaledObject of ``source`` (the one called ``name`` when there are several)."""
    return load_manifests(source).scaled_object(name)


def load_scaled_job(source: ManifestInput, name: str | None = None) -> ScaledJobSpec:
    """The ScaledJob of ``source`` (the one called ``name`` when there are several)."""
    return load_manifests(source).scaled_job(name)


def load_trigger_authentication(
    source: ManifestInput, name: str | None = None
) -> TriggerAuthenticationSpec:
    """The (Cluster)TriggerAuthentication of ``source``."""
    auths = load_manifests(source).trigger_authentications
    found = [ta for ta in auths.values() if name is None or ta.name == name]
    if len(found) != 1:
        raise ConfigError(f"expected exactly one TriggerAuthentication, found {len(found)}")
    return found[0]


# --------------------------------------------------------------------------- writing


def _seconds(value: float, path: str) -> int:
    if not float(value).is_integer():
        raise ConfigError(
            f"KEDA durations are whole seconds; {value} cannot be written to a manifest",
            path=path,
        )
    return int(value)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


def _meta_out(
    name: str, namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace and namespace != "default":
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _trigger_out(trig: TriggerSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": trig.type}
    if trig.name:
        out["name"] = trig.name
    out["metadata"] = dict(trig.metadata)
    if trig.metric_type is not MetricType.AVERAGE_VALUE:
        out["metricType"] = trig.metric_type.value
    if trig.use_cached_metrics:
        out["useCachedMetrics"] = True
    if trig.authentication_ref is not None:
        ref: dict[str, Any] = {"name": trig.authentication_ref.name}
        if trig.authentication_ref.kind != "TriggerAuthentication":
            ref["kind"] = trig.authentication_ref.kind
        out["authenticationRef"] = ref
    return out


def _rules_out(rules: ScalingRules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rules.stabilization_window_seconds is not None:
        out["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
    if rules.select_policy is not None:
        out["selectPolicy"] = rules.select_policy.value
    if rules.policies is not None:
        out["policies"] = [
            {"type": p.type.value, "value": p.value, "periodSeconds": p.period_seconds}
            for p in rules.policies
        ]
    if rules.tolerance is not None:
        out["tolerance"] = rules.tolerance
    return out


def _scaled_object_out(so: ScaledObjectSpec) -> dict[str, Any]:
    ref = so.scale_target_ref
    target: dict[str, Any] = {"name": ref.name}
    if ref.api_version != "apps/v1":
        target["apiVersion"] = ref.api_version
    if ref.kind != "Deployment":
        target["kind"] = ref.kind
    if ref.env_source_container_name:
        target["envSourceContainerName"] = ref.env_source_container_name
    spec: dict[str, Any] = {"scaleTargetRef": target}
    for key, value, default in (
        ("pollingInterval", so.polling_interval, 30),
        ("cooldownPeriod", so.cooldown_period, 300),
        ("initialCooldownPeriod", so.initial_cooldown_period, 0),
    ):
        if value != default:
            spec[key] = _seconds(value, f"spec.{key}")
    if so.idle_replica_count is not None:
        spec["idleReplicaCount"] = so.idle_replica_count
    if so.min_replica_count != 0:
        spec["minReplicaCount"] = so.min_replica_count
    if so.max_replica_count != 100:
        spec["maxReplicaCount"] = so.max_replica_count
    if so.fallback is not None:
        fb: dict[str, Any] = {
            "failureThreshold": so.fallback.failure_threshold,
            "replicas": so.fallback.replicas,
        }
        if so.fallback.behavior is not FallbackBehavior.STATIC:
            fb["behavior"] = so.fallback.behavior.value
        spec["fallback"] = fb
    adv_out: dict[str, Any] = {}
    adv = so.advanced
    if adv.restore_to_original_replica_count:
        adv_out["restoreToOriginalReplicaCount"] = True
    hpa = adv.horizontal_pod_autoscaler_config
    hpa_out: dict[str, Any] = {}
    if hpa.name:
        hpa_out["name"] = hpa.name
    if hpa.behavior is not None:
        beh: dict[str, Any] = {}
        if hpa.behavior.scale_up is not None:
            beh["scaleUp"] = _rules_out(hpa.behavior.scale_up)
        if hpa.behavior.scale_down is not None:
            beh["scaleDown"] = _rules_out(hpa.behavior.scale_down)
        hpa_out["behavior"] = beh
    if hpa_out:
        adv_out["horizontalPodAutoscalerConfig"] = hpa_out
    mods = adv.scaling_modifiers
    if mods is not None:
        mods_out: dict[str, Any] = {"formula": mods.formula, "target": _number_text(mods.target)}
        if mods.activation_target != 0:
            mods_out["activationTarget"] = _number_text(mods.activation_target)
        if mods.metric_type is not MetricType.AVERAGE_VALUE:
            mods_out["metricType"] = mods.metric_type.value
        adv_out["scalingModifiers"] = mods_out
    if adv_out:
        spec["advanced"] = adv_out
    spec["triggers"] = [_trigger_out(t) for t in so.triggers]
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": _meta_out(so.name, so.namespace, so.labels, so.annotations),
        "spec": spec,
    }


def _scaled_job_out(sj: ScaledJobSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {"jobTargetRef": _plain(sj.job_target_ref)}
    if sj.polling_interval != 30:
        spec["pollingInterval"] = _seconds(sj.polling_interval, "spec.pollingInterval")
    for key, value, default in (
        ("successfulJobsHistoryLimit", sj.successful_jobs_history_limit, 100),
        ("failedJobsHistoryLimit", sj.failed_jobs_history_limit, 100),
        ("minReplicaCount", sj.min_replica_count, 0),
        ("maxReplicaCount", sj.max_replica_count, 100),
    ):
        if value != default:
            spec[key] = value
    if sj.env_source_container_name:
        spec["envSourceContainerName"] = sj.env_source_container_name
    rollout: dict[str, Any] = {}
    if sj.rollout.strategy != "default":
        rollout["strategy"] = sj.rollout.strategy
    if sj.rollout.propagation_policy != "background":
        rollout["propagationPolicy"] = sj.rollout.propagation_policy
    if rollout:
        spec["rollout"] = rollout
    strategy: dict[str, Any] = {}
    if sj.strategy is not ScalingStrategy.DEFAULT:
        strategy["strategy"] = sj.strategy.value
    if sj.custom_scaling_queue_length_deduction is not None:
        strategy["customScalingQueueLengthDeduction"] = sj.custom_scaling_queue_length_deduction
    if sj.custom_scaling_running_job_percentage is not None:
        strategy["customScalingRunningJobPercentage"] = sj.custom_scaling_running_job_percentage
    if sj.pending_pod_conditions:
        strategy["pendingPodConditions"] = list(sj.pending_pod_conditions)
    if sj.multiple_scalers_calculation != "max":
        strategy["multipleScalersCalculation"] = sj.multiple_scalers_calculation
    if strategy:
        spec["scalingStrategy"] = strategy
    spec["triggers"] = [_trigger_out(t) for t in sj.triggers]
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledJob",
        "metadata": _meta_out(sj.name, sj.namespace, sj.labels, sj.annotations),
        "spec": spec,
    }


def _trigger_auth_out(ta: TriggerAuthenticationSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if ta.pod_identity is not None:
        spec["podIdentity"] = _plain(ta.pod_identity)
    if ta.secret_target_ref:
        spec["secretTargetRef"] = [
            {"parameter": s.parameter, "name": s.name, "key": s.key} for s in ta.secret_target_ref
        ]
    if ta.config_map_target_ref:
        spec["configMapTargetRef"] = [
            {"parameter": c.parameter, "name": c.name, "key": c.key}
            for c in ta.config_map_target_ref
        ]
    if ta.env:
        spec["env"] = [
            {"parameter": e.parameter, "name": e.name}
            | ({"containerName": e.container_name} if e.container_name else {})
            for e in ta.env
        ]
    for key, value in ta.other.items():
        spec[key] = _plain(value)
    meta: dict[str, Any] = {"name": ta.name}
    if ta.namespace and ta.namespace != "default":
        meta["namespace"] = ta.namespace
    return {"apiVersion": KEDA_API_VERSION, "kind": ta.kind, "metadata": meta, "spec": spec}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_manifest(spec: Spec) -> dict[str, Any]:
    """Write ``spec`` as a KEDA manifest mapping (camelCase, non-default fields only).

    ``load_manifests(to_manifest(spec))`` reads back an equal spec.

    :raises ConfigError: for a value KEDA cannot express (a duration that is not whole seconds).
    """
    if isinstance(spec, ScaledObjectSpec):
        return _scaled_object_out(spec)
    if isinstance(spec, ScaledJobSpec):
        return _scaled_job_out(spec)
    if isinstance(spec, TriggerAuthenticationSpec):
        return _trigger_auth_out(spec)
    raise TypeError(
        f"to_manifest() takes a ScaledObjectSpec, ScaledJobSpec or "
        f"TriggerAuthenticationSpec, got {type(spec).__name__}"
    )


def dump_manifests(*specs: Spec) -> str:
    """``specs`` as one multi-document YAML text (see :func:`to_manifest`)."""
    import yaml

    return yaml.safe_dump_all(
        [to_manifest(s) for s in specs], sort_keys=False, default_flow_style=False
    )
