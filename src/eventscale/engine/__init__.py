"""The scaling engine: one pure step that owns the whole replica range, 0 to N and back.

``decide(spec, state, observations, current_replicas, now) -> (new_state, Decision)``
reads nothing but its arguments. See docs/engine.md for every rule and docs/concepts.md
for the ideas (activation, cooldown, stabilization, fallback, pause).
"""

from __future__ import annotations

from eventscale.engine.behavior import ResolvedRules, resolve_behavior
from eventscale.engine.checks import EngineWarning, check_spec
from eventscale.engine.hpa import (
    Tolerance,
    average_value_replicas,
    metric_replicas,
    pods_average_replicas,
    value_replicas,
)
from eventscale.engine.jobs import (
    JobDecision,
    JobMetrics,
    JobScalerMetric,
    combine_job_metrics,
    decide_jobs,
    jobs_to_delete,
)
from eventscale.engine.lifecycle import Engine, decide, fallback_replicas
from eventscale.engine.model import (
    Combiner,
    Decision,
    EngineOptions,
    MetricDetail,
    Rule,
    TriggerDetail,
    TriggerObservation,
    TriggerStatus,
)
from eventscale.engine.modifiers import CompiledFormula, FormulaError, compile_formula
from eventscale.engine.state import ScalingState

__all__ = (
    "Combiner",
    "CompiledFormula",
    "Decision",
    "Engine",
    "EngineOptions",
    "EngineWarning",
    "FormulaError",
    "JobDecision",
    "JobMetrics",
    "JobScalerMetric",
    "MetricDetail",
    "ResolvedRules",
    "Rule",
    "ScalingState",
    "Tolerance",
    "TriggerDetail",
    "TriggerObservation",
    "TriggerStatus",
    "average_value_replicas",
    "check_spec",
    "combine_job_metrics",
    "compile_formula",
    "decide",
    "decide_jobs",
    "fallback_replicas",
    "jobs_to_delete",
    "metric_replicas",
    "pods_average_replicas",
    "resolve_behavior",
    "value_replicas",
)
