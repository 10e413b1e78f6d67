"""Verdicts: read a monitored training run and say plainly what is wrong and what to try.

:func:`diagnose` turns a history of :class:`~gradsight.diagnostics.LayerStats` (and, when
given, the model, its data and the loss curve) into :class:`Findings`. Each
:class:`Finding` names the layers concerned, shows the numbers it rests on, explains the
mechanism in the articles' terms and ranks fixes (with the configuration ``changes`` that
``doctor`` can try). The findings and thresholds are defined in :mod:`.findings`, the rules
that produce them live in :mod:`.rules`; this module runs the rules in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GradsightError
from .context import Context
from .coverage import Coverage, coverage_findings
from .findings import SEVERITIES, Finding, Findings, Thresholds
from .neurons import hidden_layers
from .rules import RULES

__all__ = ["Finding", "Findings", "Thresholds", "diagnose", "SEVERITIES"]


def diagnose(history: Any, model: Any = None, data: Any = None, train_history: Any = None,
             *, loss: str | None = None, thresholds: Thresholds | None = None,
             coverage: Coverage | None = None, **overrides: float) -> Findings:
    """Findings about a monitored run, most severe first.

    history : a :class:`~gradsight.diagnostics.Monitor`, a list of LayerStats or of their
        dicts (must not be empty).
    model, data : the trained engine model and ``(X, y)`` (or a Dataset): adds the neuron
        states of :func:`~gradsight.diagnostics.classify_neurons` (dead, saturated-wrong).
    train_history : the ``History`` of ``fit`` (or its epoch dicts, or a list of losses):
        for the stalled/rising-loss rules; without it the Monitor's batch losses are used.
    loss : the cost's name ("quadratic", ...): enables the quadratic-cost-with-sigmoid rule.
    thresholds, overrides : see :class:`Thresholds`; e.g. ``diagnose(h, vanishing_warning=5)``.
    coverage : which parameters were watched (:class:`~gradsight.diagnostics.coverage.
        Coverage`); by default the history's own (``watcher.history.coverage``, or a
        watcher's ``coverage``). It is put in ``findings.coverage``, and an info finding
        ("not watched: ...") is added when parameters were left out.

    Raises :class:`~gradsight.GradsightError` for an empty history, for a network without a
    hidden layer (the history holds fewer than two layers with weights, or ``model`` has no
    activation before its last Dense layer) and for thresholds out of range.

    Rules: non-finite values, vanishing and exploding gradients, saturated layers, dead
    units, too large / too small updates, stalled or rising loss, quadratic cost with a
    sigmoid output, saturated-wrong neurons, steps the mixed-precision GradScaler skipped.
    Records of skipped steps (``skipped=True``) are left out of every other rule; the
    losses on the records (``loss``, from ``watch(..., loss_fn=...)``) feed the loss rules
    when ``train_history`` is not given.

    >>> from gradsight.diagnostics import LayerStats
    >>> h = [LayerStats(f"dense{i}", 2 * i, 0, grad_b_norm=g)
    ...      for i, g in enumerate([1e-4, 1e-3, 1e-2, 1.0])]
    >>> [(f.code, f.severity, round(f.evidence["ratio_last_first"])) for f in diagnose(h)]
    [('vanishing-gradients', 'warning', 100)]
    """
    limits = (thresholds or Thresholds()).with_overrides(**overrides)
    context = Context.build(history, model, data, train_history, loss, limits)
    _require_hidden_layer(context.all_params, model)
    # a broken run holds inf and NaN: the rules handle them explicitly, without warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        findings = [finding for rule in RULES for finding in rule(context)]
    if coverage is None:
        coverage = getattr(history, "coverage", None)
    findings += coverage_findings(coverage)
    findings.sort(key=_cause_first)
    result = Findings(findings)
    result.coverage = coverage
    return result


#: the order in which findings that are problems (warning, critical) are listed: a cause
#: before its consequences. A mismatched output or a broken number comes first; an explosion
#: or a too large η kills units and saturates layers, dead units block the gradient (so
#: they come before "vanishing"), saturation shrinks it, a vanishing gradient makes the
#: updates small, and all of them stall the loss.
CAUSES = ("nonfinite", "output-loss-mismatch", "exploding-gradients", "exploding-over-time",
          "skipped-steps", "large-updates", "oscillating-loss", "rising-loss", "dead-units",
          "saturated-layers", "saturated-wrong-units", "quadratic-sigmoid-output",
          "vanishing-gradients", "vanishing-over-time", "attention-collapse", "small-updates",
          "bad-initial-loss", "stalled-loss")


def _cause_first(finding: Finding) -> tuple[int, int, int]:
    """Problems (warning, critical) before info; among problems the cause first (by
    :data:`CAUSES`), then the more severe."""
    severity = SEVERITIES.index(finding.severity)
    problem = 0 if finding.severity != "info" else 1
    cause = CAUSES.index(finding.code) if finding.code in CAUSES else len(CAUSES)
    return (problem, cause, severity) if problem == 0 else (problem, severity, cause)


def _require_hidden_layer(param_layers: list[str], model: Any) -> None:
    """A clear error when the network has no hidden layer: with a single weight layer there
    is no backward flow from layer to layer to judge (and no hidden unit to classify)."""
    if len(param_layers) < 2:
        found = ", ".join(param_layers) or "none"
        raise GradsightError(
            f"diagnose needs a network with at least one hidden layer, but the history holds "
            f"{len(param_layers)} layer(s) with weights ({found}): without one there is no "
            f"layer-to-layer gradient flow to judge")
    if model is not None and hasattr(model, "layers"):  # an engine model (torch: no check)
        try:
            hidden_layers(model)
        except GradsightError:
            raise GradsightError(
                f"diagnose needs a model with at least one hidden layer; the model given "
                f"({len(model.layers)} layer(s): "
                f"{', '.join(getattr(x, 'name', '?') for x in model.layers)}) has none "
                f"before its last Dense layer") from None
