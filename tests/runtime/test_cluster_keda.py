"""KEDA's status, conditions, admission rules and event reasons, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventscale.runtime.cluster import rules
from eventscale.runtime.cluster.keda import (
    FINALIZER,
    OWNED_FIELDS,
    Reason,
    StatusInputs,
    gvkr,
    scaled_job_status,
    scaled_object_status,
    status_patch,
)
from eventscale.runtime.cluster.tracker import Observed, Tracker
from eventscale.runtime.observability import Event, EventKind, TriggerResult


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {
        c["type"]: (c["status"], c.get("reason", ""), c.get("message", ""))
        for c in status["conditions"]
    }


def test_ready_object_has_keda_fields_and_conditions() -> None:
    status = scaled_object_status(
        StatusInputs(
            active=True,
            original_replicas=3,
            last_active_time=0.0,
            trigger_types=["redis", "cpu", "redis"],
            authentication_names=["ta"],
            external_metric_names=["s0-redis-orders"],
            resource_metric_names=["cpu"],
        )
    )
    assert status["scaleTargetKind"] == "apps/v1.Deployment"
    assert status["scaleTargetGVKR"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
        "resource": "deployments",
    }
    assert status["originalReplicaCount"] == 3
    assert status["lastActiveTime"] == "1970-01-01T00:00:00Z"
    assert status["triggersTypes"] == "redis,cpu"
    assert status["authenticationsTypes"] == "ta"
    assert status["externalMetricNames"] == ["s0-redis-orders"]
    assert status["resourceMetricNames"] == ["cpu"]
    assert "health" not in status  # only with a fallback, as KEDA
    conditions = _conditions(status)
    assert list(conditions) == ["Ready", "Active", "Fallback", "Paused"]
    assert conditions["Ready"] == (
        "True",
        "ScaledObjectReady",
        "ScaledObject is defined correctly and is ready for scaling",
    )
    assert conditions["Active"][:2] == ("True", "ScalerActive")
    assert conditions["Fallback"][:2] == ("False", "NoFallbackFound")
    assert conditions["Paused"] == ("False", "", "")


def test_refused_object_names_the_field_and_is_not_active() -> None:
    status = scaled_object_status(
        StatusInputs(
            error="spec.minReplicaCount: must be >= 0, got -1",
            error_message="ScaledObject doesn't have correct specification",
        )
    )
    ready = _conditions(status)["Ready"]
    assert ready[0:2] == ("False", "ScaledObjectCheckFailed")
    assert "spec.minReplicaCount" in ready[2]
    assert _conditions(status)["Active"][:2] == ("Unknown", "UnknownState")
    assert "scaleTargetKind" not in status


def test_pause_and_unpause_wording() -> None:
    paused = scaled_object_status(StatusInputs(paused=True, paused_replicas=2))
    assert _conditions(paused)["Paused"] == ("True", "ScaledObjectPaused", "ScaledObject is paused")
    assert paused["pausedReplicaCount"] == 2
    unpaused = scaled_object_status(StatusInputs(was_paused=True))
    assert _conditions(unpaused)["Paused"][:2] == ("False", "ScaledObjectUnpaused")
    assert "pausedReplicaCount" not in unpaused
    patch = status_patch(paused, unpaused)
    assert patch is not None
    assert patch["pausedReplicaCount"] is None


def test_fallback_and_health() -> None:
    status = scaled_object_status(
        StatusInputs(
            fallback_configured=True,
            fallback_active=True,
            failures={"s0-redis-a": 4, "s1-redis-b": 0},
        )
    )
    assert status["health"] == {
        "s0-redis-a": {"numberOfFailures": 4, "status": "Failing"},
        "s1-redis-b": {"numberOfFailures": 0, "status": "Happy"},
    }
    assert _conditions(status)["Fallback"][:2] == ("True", "FallbackExists")


def test_scaled_job_status() -> None:
    status = scaled_job_status(StatusInputs(active=False, trigger_types=["redis"], paused=True))
    conditions = _conditions(status)
    assert conditions["Ready"][1] == "ScaledJobReady"
    assert conditions["Paused"][1] == "ScaledJobPaused"
    assert status["Paused"] == "true"
    assert "scaleTargetKind" not in status


def test_gvkr_of_a_custom_kind_and_the_core_group() -> None:
    assert gvkr("batch.example.com/v1", "Worker")["resource"] == "workers"
    assert gvkr("v1", "ReplicationController") == {
        "group": "",
        "version": "v1",
        "kind": "ReplicationController",
        "resource": "replicationcontrollers",
    }


_values = st.one_of(st.none(), st.integers(0, 5), st.sampled_from(["a", "b"]))
_statuses = st.fixed_dictionaries(
    {},
    optional={
        "originalReplicaCount": _values,
        "triggersTypes": _values,
        "pausedReplicaCount": _values,
        "health": st.dictionaries(
            st.sampled_from(["m0", "m1", "m2"]),
            st.fixed_dictionaries({"numberOfFailures": st.integers(0, 3)}),
        ),
        "hpaName": _values,
    },
)


def _apply(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies a merge patch."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _apply(out[key], value)
        else:
            out[key] = value
    return out


@given(_statuses, _statuses)
def test_patch_reaches_the_wanted_status_and_is_none_when_equal(
    current: dict[str, Any], wanted: dict[str, Any]
) -> None:
    wanted = {k: v for k, v in wanted.items() if v is not None and k != "hpaName"}
    patch = status_patch(current, wanted)
    after = current if patch is None else _apply(current, patch)
    for key in OWNED_FIELDS:
        assert after.get(key) == wanted.get(key)
    assert after.get("hpaName") == current.get("hpaName")  # not ours: untouched
    assert status_patch(after, wanted) is None


def _so(name: str, target: str, created: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created, **meta},
        "spec": {"scaleTargetRef": {"name": target}, "triggers": []},
    }


def _hpa(name: str, target: str, owner: str | None = None, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "annotations": annotations}
    if owner is not None:
        meta["ownerReferences"] = [{"kind": "ScaledObject", "name": owner}]
    return {
        "metadata": meta,
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}},
    }


def test_the_older_scaled_object_keeps_the_target() -> None:
    old = _so("old", "web", "2026-01-01T00:00:00Z")
    new = _so("new", "web", "2026-01-02T00:00:00Z")
    other = _so("other", "api", "2025-01-01T00:00:00Z")
    objects = [old, new, other]
    assert rules.conflict(old, objects, []) is None
    assert rules.conflict(new, objects, []) == (
        "the workload 'web' of type 'apps/v1.Deployment' is already managed by the "
        "ScaledObject 'old'"
    )
    assert rules.conflict(other, objects, []) is None
    deleting = _so("old", "web", "2026-01-01T00:00:00Z", deletionTimestamp="x")
    assert rules.conflict(new, [deleting, new], []) is None


def test_an_hpa_not_owned_refuses_the_target() -> None:
    so = _so("so", "web", "2026-01-01T00:00:00Z")
    assert "already managed by the hpa 'manual'" in (
        rules.conflict(so, [so], [_hpa("manual", "web")]) or ""
    )
    assert rules.conflict(so, [so], [_hpa("keda-hpa-so", "web", owner="so")]) is None
    skip = _hpa("manual", "web", **{"validations.keda.sh/hpa-ownership": "false"})
    assert rules.conflict(so, [so], [skip]) is None
    assert rules.conflict(so, [so], [_hpa("manual", "other")]) is None


def test_fingerprint_ignores_status_and_finalizers() -> None:
    so = _so("a", "web", "t")
    base = rules.fingerprint(so)
    so["status"] = {"conditions": []}
    so["metadata"]["finalizers"] = [FINALIZER]
    so["metadata"]["resourceVersion"] = "9"
    assert rules.fingerprint(so) == base
    so["metadata"]["annotations"] = {"autoscaling.keda.sh/paused": "true"}
    assert rules.fingerprint(so) != base
    assert rules.with_finalizer(so) is None
    assert rules.without_finalizer(so) == []


def _poll(key: str, *errors: str | None, replicas: int | None = 2) -> Event:
    return Event(
        kind=EventKind.POLL,
        time=1.0,
        scaled_object=key,
        current_replicas=replicas,
        triggers=tuple(
            TriggerResult(
                index=i,
                type="redis",
                name=None,
                metric_name=f"s{i}-redis-q",
                value=None if err else 5.0,
                target=1.0,
                metric_type="AverageValue",
                activation_target=0.0,
                active=err is None,
                error=err,
            )
            for i, err in enumerate(errors)
        ),
    )


def _decision(key: str, t: float, active: bool, rule: str = "metrics") -> Event:
    return Event(kind=EventKind.DECISION, time=t, scaled_object=key, active=active, rule=rule)


def test_tracker_turns_controller_events_into_keda_reasons() -> None:
    changed: list[str] = []
    tracker = Tracker(changed.append)
    tracker.track("ns/a", Observed(target="apps/v1.Deployment ns/web"))
    tracker(_poll("ns/a", None, "boom"))
    tracker(_poll("ns/a", None, "boom", replicas=7))
    seen = tracker.objects["ns/a"]
    assert seen.original_replicas == 2  # the first count read, not a later one
    assert seen.failures == {"s0-redis-q": 0, "s1-redis-q": 2}
    tracker(_decision("ns/a", 10.0, True))
    tracker(_decision("ns/a", 20.0, True))
    assert seen.last_active_time == 10.0  # no rewrite per active poll
    tracker(_decision("ns/a", 30.0, False, "cooldown"))
    assert seen.last_active_time == 20.0
    assert seen.cooling_down
    tracker(_decision("ns/a", 40.0, False, "fallback"))
    tracker(_decision("ns/a", 50.0, False))
    tracker(
        Event(kind=EventKind.SCALE, time=51.0, scaled_object="ns/a", from_replicas=0, to_replicas=3)
    )
    tracker(
        Event(kind=EventKind.SCALE, time=52.0, scaled_object="ns/a", from_replicas=3, to_replicas=0)
    )
    tracker(_poll("ns/untracked", "x"))
    reasons = [(e.type, e.reason) for e in tracker.pending]
    assert reasons == [
        ("Warning", Reason.SCALER_FAILED),
        ("Warning", Reason.SCALER_FAILED),
        ("Normal", Reason.SCALED_OBJECT_FALLBACK_ACTIVATED),
        ("Normal", Reason.SCALED_OBJECT_FALLBACK_DEACTIVATED),
        ("Normal", Reason.SCALE_TARGET_ACTIVATED),
        ("Normal", Reason.SCALE_TARGET_DEACTIVATED),
    ]
    assert tracker.pending[4].message.startswith("Scaled apps/v1.Deployment ns/web from 0 to 3")
    assert tracker.pending[5].message == "Deactivated apps/v1.Deployment ns/web from 3 to 0"
    assert set(changed) == {"ns/a"}


def _status(**conditions: str) -> dict[str, Any]:
    return {
        "conditions": [
            {"type": kind, "status": value, "message": f"{kind} {value}"}
            for kind, value in conditions.items()
        ]
    }


def test_events_follow_status_transitions() -> None:
    from eventscale.runtime.cluster.writer import transitions

    assert transitions("ScaledObject", {}, _status(Ready="True", Paused="False")) == [
        ("Normal", "ScaledObjectReady", "ScaledObject is ready for scaling")
    ]
    # already ready in the API (a restart, a new owner): nothing to repeat
    assert transitions("ScaledObject", _status(Ready="True"), _status(Ready="True")) == []
    refused = transitions("ScaledJob", _status(Ready="True"), _status(Ready="False"))
    assert refused == [("Warning", "ScaledJobCheckFailed", "Ready False")]
    assert transitions("ScaledObject", _status(Ready="False"), _status(Ready="False")) == []
    paused = transitions("ScaledObject", _status(Paused="False"), _status(Paused="True"))
    assert paused == [("Normal", "ScaledObjectPaused", "ScaledObject is paused")]
    unpaused = transitions("ScaledObject", _status(Paused="True"), _status(Paused="False"))
    assert unpaused[0][1] == "ScaledObjectUnpaused"


@pytest.mark.anyio
async def test_cache_source_records_what_a_build_reads_found_or_not() -> None:
    import base64

    from eventscale.runtime.cluster.sources import CacheSource, Dependency

    docs = {("Secret", "ns", "s"): {"data": {"k": base64.b64encode(b"v").decode(), "bin": "//8="}}}
    used: set[Dependency] = set()
    source = CacheSource(lambda kind, ns, name: docs.get((kind, ns, name)), used)
    found = await source.get_secret("s", "ns")
    assert found is not None
    assert found.values["k"].reveal() == "v"
    assert found.unreadable == frozenset({"bin"})  # not UTF-8 text
    assert await source.get_config_map("missing", "ns") is None
    assert used == {("Secret", "ns", "s"), ("ConfigMap", "ns", "missing")}
    assert "v" not in repr(source)
