"""KEDA's vocabulary at the edges of a cluster: reasons, conditions and status fields.

The names and wording KEDA's operator writes (``pkg/eventreason``, the condition
reasons and messages of ``apis/keda/v1alpha1``, the finalizer and the annotations),
and the pure functions that turn what is known of one object into the ``status`` KEDA
would write: :func:`scaled_object_status`, :func:`scaled_job_status`, and
:func:`status_patch`, the merge patch from the status the API holds to the one wanted
(``None`` when nothing changed, so an unchanged object costs no write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from eventscale.kube.client import KNOWN_PLURALS

__all__ = (
    "CONDITION_TYPES",
    "FINALIZER",
    "HPA_OWNERSHIP_ANNOTATION",
    "Condition",
    "Reason",
    "StatusInputs",
    "OWNED_FIELDS",
    "gvk_string",
    "gvkr",
    "rfc3339",
    "scaled_job_status",
    "scaled_object_status",
    "status_patch",
)

#: The finalizer KEDA's operator puts on every ScaledObject and ScaledJob.
FINALIZER: Final = "finalizer.keda.sh"
#: An HPA annotated ``"false"`` here is not checked for ownership (KEDA's webhook).
HPA_OWNERSHIP_ANNOTATION: Final = "validations.keda.sh/hpa-ownership"
#: The condition types KEDA initialises, in its order.
CONDITION_TYPES: Final = ("Ready", "Active", "Fallback", "Paused")


class Reason:
    """Kubernetes Event reasons KEDA's operator uses (``pkg/eventreason``)."""

    SCALED_OBJECT_READY: Final = "ScaledObjectReady"
    SCALED_JOB_READY: Final = "ScaledJobReady"
    SCALED_OBJECT_CHECK_FAILED: Final = "ScaledObjectCheckFailed"
    SCALED_JOB_CHECK_FAILED: Final = "ScaledJobCheckFailed"
    SCALED_OBJECT_UPDATE_FAILED: Final = "ScaledObjectUpdateFailed"
    SCALED_JOB_UPDATE_FAILED: Final = "ScaledJobUpdateFailed"
    SCALED_OBJECT_DELETED: Final = "ScaledObjectDeleted"
    SCALED_JOB_DELETED: Final = "ScaledJobDeleted"
    SCALED_OBJECT_PAUSED: Final = "ScaledObjectPaused"
    SCALED_OBJECT_UNPAUSED: Final = "ScaledObjectUnpaused"
    SCALED_JOB_PAUSED: Final = "ScaledJobPaused"
    SCALED_JOB_UNPAUSED: Final = "ScaledJobUnpaused"
    SCALED_OBJECT_FALLBACK_ACTIVATED: Final = "ScaledObjectFallbackActivated"
    SCALED_OBJECT_FALLBACK_DEACTIVATED: Final = "ScaledObjectFallbackDeactivated"
    SCALED_JOB_ACTIVE: Final = "ScaledJobActive"
    SCALED_JOB_INACTIVE: Final = "ScaledJobInactive"
    SCALERS_STARTED: Final = "KEDAScalersStarted"
    SCALERS_STOPPED: Final = "KEDAScalersStopped"
    SCALER_FAILED: Final = "KEDAScalerFailed"
    SCALE_TARGET_ACTIVATED: Final = "KEDAScaleTargetActivated"
    SCALE_TARGET_DEACTIVATED: Final = "KEDAScaleTargetDeactivated"
    SCALE_TARGET_ACTIVATION_FAILED: Final = "KEDAScaleTargetActivationFailed"
    SCALE_TARGET_DEACTIVATION_FAILED: Final = "KEDAScaleTargetDeactivationFailed"
    JOBS_CREATED: Final = "KEDAJobsCreated"


@attrs.frozen
class Condition:
    """One entry of ``status.conditions`` (KEDA's conditions carry no timestamps)."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, str]:
        """The API's form (empty reason and message omitted, as KEDA's ``omitempty``)."""
        out = {"type": self.type, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.message:
            out["message"] = self.message
        return out


@attrs.frozen(kw_only=True)
class StatusInputs:
    """What is known of one object, from which its status is computed (pure data).

    ``error`` is why the object was refused (an invalid spec with its field path, a
    conflict with another ScaledObject or an HPA); ``active`` is ``None`` until the first
    decision; ``failures`` maps each metric name to its consecutive failed polls (read
    only with ``fallback_configured``); ``paused`` is whether a pause annotation is set
    and ``was_paused`` whether the status said so before (KEDA words the way out of a
    pause differently from a plain not-paused).
    """

    kind: str = "ScaledObject"
    error: str | None = None
    error_message: str | None = None
    active: bool | None = None
    cooling_down: bool = False
    fallback_configured: bool = False
    fallback_active: bool = False
    paused: bool = False
    was_paused: bool = False
    paused_replicas: int | None = None
    target_api_version: str = "apps/v1"
    target_kind: str = "Deployment"
    target_resource: str | None = None
    original_replicas: int | None = None
    last_active_time: float | None = None
    trigger_types: Sequence[str] = ()
    authentication_names: Sequence[str] = ()
    external_metric_names: Sequence[str] = ()
    resource_metric_names: Sequence[str] = ()
    failures: Mapping[str, int] = attrs.field(factory=dict)


def rfc3339(seconds: float) -> str:
    """Wall-clock seconds as the API writes times (``2026-01-02T03:04:05Z``)."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gvkr(api_version: str, kind: str, resource: str | None = None) -> dict[str, str]:
    """KEDA's ``scaleTargetGVKR`` for a target's ``apiVersion`` and ``kind``.

    The resource is the built-in plural when known, else ``resource``, else the
    lower-case kind plus ``s`` (what API discovery gives for nearly every kind).
    """
    group, _, version = api_version.rpartition("/")
    plural = KNOWN_PLURALS.get((group, kind)) or resource or kind.lower() + "s"
    return {"group": group, "version": version, "kind": kind, "resource": plural}


def gvk_string(api_version: str, kind: str) -> str:
    """KEDA's ``GVKString()``: ``apps/v1.Deployment`` (``/v1.Pod`` for the core group)."""
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}.{kind}"


def _unique(items: Sequence[str]) -> str:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return ",".join(seen)


def _conditions(inputs: StatusInputs) -> list[dict[str, str]]:
    kind = inputs.kind
    if inputs.error is not None:
        message = inputs.error_message or f"{kind} doesn't have correct specification"
        ready = Condition("Ready", "False", f"{kind}CheckFailed", f"{message}: {inputs.error}")
        active = Condition("Active", "Unknown", "UnknownState", f"{kind} check failed")
    else:
        ready = Condition(
            "Ready",
            "True",
            f"{kind}Ready",
            f"{kind} is defined correctly and is ready for scaling",
        )
        if inputs.active is None:
            active = Condition("Active", "Unknown")
        elif inputs.active:
            active = Condition(
                "Active", "True", "ScalerActive", "Scaling is performed because triggers are active"
            )
        elif inputs.cooling_down:
            active = Condition(
                "Active",
                "False",
                "ScalerCooldown",
                "Scaler cooling down because triggers are not active",
            )
        else:
            active = Condition(
                "Active",
                "False",
                "ScalerNotActive",
                "Scaling is not performed because triggers are not active",
            )
    if inputs.fallback_active:
        fallback = Condition(
            "Fallback",
            "True",
            "FallbackExists",
            "At least one trigger is falling back on this scaled object",
        )
    else:
        fallback = Condition(
            "Fallback", "False", "NoFallbackFound", "No fallbacks are active on this scaled object"
        )
    if inputs.paused:
        paused = Condition("Paused", "True", f"{kind}Paused", f"{kind} is paused")
    elif inputs.was_paused:
        paused = Condition(
            "Paused", "False", f"{kind}Unpaused", f"pause annotation removed for {kind}"
        )
    else:
        paused = Condition("Paused", "False")
    return [c.to_dict() for c in (ready, active, fallback, paused)]


def scaled_object_status(inputs: StatusInputs) -> dict[str, Any]:
    """The ``status`` KEDA writes on a ScaledObject, for ``inputs``.

    Fields KEDA leaves out when empty (``omitempty``) are left out here too.
    """
    status: dict[str, Any] = {
        "scaleTargetKind": gvk_string(inputs.target_api_version, inputs.target_kind),
        "scaleTargetGVKR": gvkr(
            inputs.target_api_version, inputs.target_kind, inputs.target_resource
        ),
        "conditions": _conditions(inputs),
    }
    if inputs.error is not None and inputs.original_replicas is None:
        # KEDA fills the target fields only once the target was checked.
        del status["scaleTargetKind"], status["scaleTargetGVKR"]
    if inputs.original_replicas is not None:
        status["originalReplicaCount"] = inputs.original_replicas
    if inputs.last_active_time is not None:
        status["lastActiveTime"] = rfc3339(inputs.last_active_time)
    if inputs.external_metric_names:
        status["externalMetricNames"] = list(inputs.external_metric_names)
    if inputs.resource_metric_names:
        status["resourceMetricNames"] = list(inputs.resource_metric_names)
    if inputs.trigger_types:
        status["triggersTypes"] = _unique(inputs.trigger_types)
    if inputs.trigger_types or inputs.authentication_names:
        status["authenticationsTypes"] = _unique(inputs.authentication_names)
    if inputs.fallback_configured and inputs.failures:
        status["health"] = {
            name: {"numberOfFailures": count, "status": "Failing" if count else "Happy"}
            for name, count in sorted(inputs.failures.items())
        }
    if inputs.paused_replicas is not None:
        status["pausedReplicaCount"] = inputs.paused_replicas
    return status


def scaled_job_status(inputs: StatusInputs) -> dict[str, Any]:
    """The ``status`` KEDA writes on a ScaledJob (conditions, activity, trigger types)."""
    status: dict[str, Any] = {"conditions": _conditions(attrs.evolve(inputs, kind="ScaledJob"))}
    if inputs.last_active_time is not None:
        status["lastActiveTime"] = rfc3339(inputs.last_active_time)
    if inputs.trigger_types:
        status["triggersTypes"] = _unique(inputs.trigger_types)
        status["authenticationsTypes"] = _unique(inputs.authentication_names)
    if inputs.paused:
        status["Paused"] = "true"
    return status


#: The status fields this module writes (others, written by someone else, are kept).
OWNED_FIELDS: Final = frozenset(
    {
        "scaleTargetKind",
        "scaleTargetGVKR",
        "originalReplicaCount",
        "lastActiveTime",
        "externalMetricNames",
        "resourceMetricNames",
        "conditions",
        "health",
        "pausedReplicaCount",
        "triggersTypes",
        "authenticationsTypes",
        "Paused",
    }
)


def status_patch(
    current: Mapping[str, Any] | None, wanted: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The JSON merge patch (RFC 7386) of ``status`` from ``current`` to ``wanted``.

    Only fields of :data:`OWNED_FIELDS` are compared; one wanted no more is set to
    ``null`` (removed). A map field (``health``) is patched key by key. ``None`` when
    nothing differs: the caller writes nothing.
    """
    current = current or {}
    patch: dict[str, Any] = {}
    for key in OWNED_FIELDS:
        have, want = current.get(key), wanted.get(key)
        if have == want:
            continue
        if isinstance(have, Mapping) and isinstance(want, Mapping) and key == "health":
            patch[key] = {
                k: want.get(k) for k in set(have) | set(want) if have.get(k) != want.get(k)
            }
        else:
            patch[key] = want
    return patch or None
