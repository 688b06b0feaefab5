"""Rule 3, the composite: ``scalingModifiers`` (or a :class:`Combiner`) over the triggers.

The formula (or the plain-Python combiner) turns the triggers' values into one
composite value; the HPA formula turns that into replicas, and the object is active
when the composite is strictly above its activation target. See docs/engine.md,
"scalingModifiers", and KEDA's pkg/scaling/modifiers (formula evaluation and the
``scalingModifiers`` fallback behavior).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from eventscale.engine.hpa import Tolerance, metric_replicas
from eventscale.engine.model import Combiner
from eventscale.engine.modifiers import CompiledFormula
from eventscale.errors import FormulaError
from eventscale.metrics import MetricType
from eventscale.spec import Fallback

__all__ = ("Composite",)


@attrs.frozen
class Composite:
    """One composite metric: a compiled formula or a combiner, with its targets."""

    formula: CompiledFormula | None
    combiner: Combiner | None
    target: float
    activation_target: float
    metric_type: MetricType

    def value(self, values: Mapping[str, float | None]) -> float | None:
        """The composite value of the triggers' *values* (``None``: unknown).

        :raises FormulaError: the formula failed, or the combiner raised.
        """
        if self.formula is not None:
            return self.formula.evaluate(values)
        assert self.combiner is not None
        try:
            result = self.combiner.function(values)
        except FormulaError:
            raise
        except Exception as exc:  # a user callable: report it as an error of the composite
            raise FormulaError(f"combiner raised {type(exc).__name__}: {exc}") from exc
        if result is None:
            return None
        try:
            value = float(result)
        except (TypeError, ValueError, OverflowError):
            raise FormulaError(f"combiner gave {type(result).__name__}, not a number") from None
        if not math.isfinite(value):  # no replica count comes from it (docs/errors.md)
            raise FormulaError(f"combiner gave {value!r}")
        return value

    def replicas(
        self,
        variables: Mapping[str, float | None],
        unresolved: list[tuple[str, str]],
        fallen: list[str],
        fallback: Fallback | None,
        current: int,
        ready_replicas: int | None,
        tolerance: Tolerance,
    ) -> tuple[int | None, bool, int | None]:
        """``(raw replicas, active, fallback replicas)`` from the composite.

        Unknown while a trigger has no value (nothing is computed). A formula that fails
        or gives nil is an error of the ``composite`` (appended to *unresolved*), or,
        when a trigger is in fallback, engages fallback with ``fallback.replicas``.
        """
        if unresolved:
            return None, False, None  # the composite is unknown while a trigger has no value
        try:
            comp_value = self.value(variables)
        except FormulaError as exc:
            if fallback is not None and fallen:
                # a trigger in fallback is nil and the formula could not route around it
                return None, False, fallback.replicas
            unresolved.append(("composite", str(exc)))
            return None, False, None
        if comp_value is None:
            if fallback is not None and fallen:
                return None, False, fallback.replicas
            unresolved.append(("composite", "the formula gave nil"))
            return None, False, None
        raw = metric_replicas(
            self.metric_type,
            max(comp_value, 0.0),
            self.target,
            current,
            ready=ready_replicas,
            tolerance=tolerance,
        )
        return raw, comp_value > self.activation_target, None
