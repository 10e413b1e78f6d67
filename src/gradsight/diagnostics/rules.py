"""The rules behind :func:`gradsight.diagnostics.diagnose`, one function per problem.

Every rule reads a :class:`Context` (the history pivoted per layer, plus the optional model,
data and loss curve) and returns the findings it supports — each with the numbers it rests
on, the mechanism in the articles' terms and ranked fixes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GradsightError, InvalidValueError
from .findings import Finding, Thresholds
from .history import LayerHistory, require_history
from .neurons import classify_neurons, hidden_layers, state_counts
from .speed import speed_ratio

# (fix text, configuration change for doctor) — the change is {} when doctor cannot try it
Fix = tuple[str, dict[str, Any]]
RELU_HE: Fix = ("Use ReLU in the hidden layers with He initialisation (Var w = 2/n_in): "
           "relu′(z) = 1 for z > 0, so δ passes back without shrinking",
           {"activation": "relu", "init": "he_normal"})
LEAKY_HE: Fix = ("Use leaky ReLU (slope 0.01 for z ≤ 0) with He initialisation: like ReLU, "
            "but a unit never gets a zero derivative, so none can die",
            {"activation": "leaky_relu", "init": "he_normal"})
XAVIER: Fix = ("Initialise with Xavier/Glorot (Var w = 2/(n_in+n_out)) so z stays near 0, where "
          "σ′ is largest", {"init": "xavier_uniform"})
TANH: Fix = ("Use tanh instead of sigmoid: tanh′(0) = 1 against σ′(0) = 0.25",
        {"activation": "tanh", "init": "xavier_uniform"})
ADAM: Fix = ("Use Adam (lr 0.001): it scales each weight's step by its own gradient history, so "
        "small gradients still move their weights", {"optimizer": "adam", "lr": 0.001})
LR_DOWN: Fix = ("Lower the learning rate η (×0.1): w_new = w_old − η∂C/∂w takes smaller steps",
           {"lr_factor": 0.1})
LR_UP: Fix = ("Raise the learning rate η (×10)", {"lr_factor": 10.0})
CROSS_ENTROPY: Fix = ("Use the cross-entropy cost instead of the quadratic cost: its gradient "
                 "(ŷ − y)·x has no σ′(z) factor, so a badly wrong output learns fastest",
                 {"loss": "cross_entropy"})
HE: Fix = ("Initialise with He (Var w = 2/n_in), scaled for ReLU layers", {"init": "he_normal"})
STANDARDISE: Fix = ("Standardise the inputs (mean 0, std 1) so that z = xW + b starts small", {})
FEWER_LAYERS: Fix = ("Use fewer hidden layers: each one multiplies δ by another f′(z)", {})
CLIP: Fix = ("Clip the gradient norm (e.g. to 1) before each update", {})
CHECK_DATA: Fix = ("Check the inputs and targets for NaN/inf", {})


def _finding(code: str, severity: str, title: str, layers: list[str], evidence: dict[str, Any],
             explanation: str, fixes: list[Fix]) -> Finding:
    return Finding(code, severity, title, layers, evidence, explanation,
                   [text for text, _ in fixes], [change for _, change in fixes if change])


def _median(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else math.nan


@dataclass
class Context:
    """What the rules read: the history per layer and the optional extras."""

    layers: LayerHistory
    limits: Thresholds
    hidden_params: list[str]
    hidden_acts: list[str]
    output_acts: list[str]
    act_name: dict[str, str]
    late_steps: np.ndarray
    losses: list[float] = field(default_factory=list)
    accuracy: float | None = None
    model: Any = None
    data: tuple[Any, Any] | None = None
    loss: str | None = None
    _states: Any = None

    def neuron_states(self) -> Any:
        """classify_neurons on the training data (once), or None without model and data."""
        if self._states is None and self.model is not None and self.data is not None:
            try:
                hidden_layers(self.model)
            except GradsightError:
                return None
            self._states = classify_neurons(self.model, self.data[0], self.data[1],
                                            loss=self.loss)
        return self._states

    @classmethod
    def build(cls, history: Any, model: Any, data: Any, train_history: Any,
              loss: str | None, limits: Thresholds) -> Context:
        layers = LayerHistory(require_history(history))
        params = layers.layers_of("param")
        last_param = max((r.index for r in layers.records if r.kind == "param"), default=-1)
        acts = layers.layers_of("activation")
        index = {r.layer: r.index for r in layers.records}
        names = {r.layer: (r.activation or "") for r in layers.records if r.kind == "activation"}
        late = layers.steps[-max(1, math.ceil(0.2 * len(layers.steps))):]
        losses, accuracy = _losses(train_history, history)
        if data is not None:
            data = _pair(data)
        return cls(layers, limits, params[:-1], [a for a in acts if index[a] < last_param],
                   [a for a in acts if index[a] > last_param], names, late, losses, accuracy,
                   model, data, loss)

    def values(self, field_name: str, layer: str, late: bool = False) -> np.ndarray:
        steps, values = self.layers.series(field_name, layer)
        return values[np.isin(steps, self.late_steps)] if late else values

    def hidden_kinds(self) -> set[str]:
        return {self.act_name[a].split(":")[0] for a in self.hidden_acts}

    def saturating(self) -> bool:
        """Whether a hidden layer uses a saturating activation (sigmoid, tanh)."""
        return bool(self.hidden_kinds() & {"sigmoid", "tanh"})


def _pair(data: Any) -> tuple[Any, Any]:
    """(X, y) from a pair or a Dataset."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    if hasattr(data, "X") and hasattr(data, "y"):
        return data.X, data.y
    raise InvalidValueError(f"data must be an (X, y) pair or a Dataset, got "
                            f"{type(data).__name__}")


def _losses(train_history: Any, history: Any) -> tuple[list[float], float | None]:
    """Loss per epoch (or per recorded batch) and the last accuracy, from what was given."""
    source = train_history
    if source is not None and hasattr(source, "epochs"):
        batches = list(getattr(source, "batch_losses", []) or [])
        if len(source.epochs) < 4 and len(batches) >= 4:  # too few epochs: use the batches
            last = source.epochs[-1].get("accuracy") if source.epochs else None
            return [float(v) for v in batches], None if last is None else float(last)
        source = source.epochs
    if isinstance(source, dict):
        source = source.get("epochs", [])
    if source:
        if isinstance(source[0], dict):
            accuracy = source[-1].get("accuracy")
            return [float(e["loss"]) for e in source if e.get("loss") is not None], (
                None if accuracy is None else float(accuracy))
        return [float(v) for v in source], None
    batch = getattr(history, "losses", None) or []
    return [float(loss) for _, loss in batch], None


# ---- rules ------------------------------------------------------------------------------------
def nonfinite(ctx: Context) -> list[Finding]:
    counts: dict[str, int] = {}
    overflowed: dict[str, int] = {}  # finite values whose norm overflowed even in float64
    first_step = None
    for r in ctx.layers.records:
        norms = (r.grad_W_norm, r.grad_b_norm, r.act_mean)
        bad_norm = any(v is not None and not math.isfinite(v) for v in norms)
        if r.nonfinite:
            counts[r.layer] = counts.get(r.layer, 0) + int(r.nonfinite)
        elif bad_norm:
            overflowed[r.layer] = overflowed.get(r.layer, 0) + 1
        if r.nonfinite or bad_norm:
            first_step = r.step if first_step is None else min(first_step, r.step)
    bad_losses = sum(not math.isfinite(v) for v in ctx.losses)
    if not counts and not overflowed and not bad_losses:
        return []
    total = sum(counts.values())
    evidence = {"nonfinite_values": total, "per_layer": counts, "first_step": first_step,
                "overflowed_norms": overflowed, "nonfinite_losses": bad_losses}
    where = "" if first_step is None else f" (first at step {first_step})"
    overflow = (f"; {sum(overflowed.values())} norms overflowed to inf on finite values"
                if overflowed else "")
    explanation = (f"{total} gradient or activation values were NaN or ±inf{where}{overflow}. "
                   "Once one weight is NaN, every z = xW + b that uses it is NaN and the whole "
                   "network follows; usually a too large learning rate made the updates blow "
                   "up, or an exp/log overflowed.")
    return [_finding("nonfinite", "critical", "Non-finite values (NaN/inf) in training",
                     list({**counts, **overflowed}), evidence, explanation,
                     [LR_DOWN, *([CROSS_ENTROPY] if ctx.loss == "quadratic" else []), CLIP,
                      CHECK_DATA])]


def _hidden_ratio(ctx: Context) -> tuple[np.ndarray, dict[str, float], str] | None:
    """Per-step ratio ‖∂C/∂b‖(last hidden) / ‖∂C/∂b‖(first hidden) and the median speeds."""
    if len(ctx.hidden_params) < 2:
        return None
    first, last = ctx.hidden_params[0], ctx.hidden_params[-1]
    name = "grad_b_norm"
    if np.all(np.isnan(ctx.values(name, first))):
        name = "grad_W_norm"
    ratio = speed_ratio(ctx.values(name, first), ctx.values(name, last))
    speeds = {layer: _median(ctx.values(name, layer)) for layer in ctx.hidden_params}
    return ratio, speeds, name


def vanishing(ctx: Context) -> list[Finding]:
    measured = _hidden_ratio(ctx)
    if measured is None:
        return []
    ratio, speeds, name = measured
    median = _median(ratio)
    if not median > ctx.limits.vanishing_warning:
        return []
    severity = "critical" if median > ctx.limits.vanishing_critical else "warning"
    first, last = ctx.hidden_params[0], ctx.hidden_params[-1]
    kinds = ctx.hidden_kinds()
    symbol = "‖∂C/∂b‖" if name == "grad_b_norm" else "‖∂C/∂W‖"
    measured_text = (f"Here {symbol} of the first hidden layer ({first}) is {median:.3g}× "
                     f"smaller than of the last ({last}): the early layers barely learn.")
    if "sigmoid" in kinds:
        mechanism = ("Backpropagation computes δˡ = (Wˡ⁺¹δˡ⁺¹) ⊙ σ′(zˡ), and σ′(z) = "
                     "σ(z)(1−σ(z)) ≤ 0.25: each sigmoid layer multiplies the backward signal "
                     "by at most 0.25 (times the weights), so it shrinks layer after layer — "
                     "the vanishing gradient of the article on it.")
        fixes = [RELU_HE, LEAKY_HE, XAVIER, TANH, ADAM, FEWER_LAYERS]
    elif "tanh" in kinds:
        mechanism = ("δˡ = (Wˡ⁺¹δˡ⁺¹) ⊙ tanh′(zˡ), and tanh′(z) = 1 − tanh²(z) falls well "
                     "below 1 once |z| grows: each layer shrinks the backward signal.")
        fixes = [RELU_HE, LEAKY_HE, XAVIER, ADAM, FEWER_LAYERS]
    else:
        mechanism = ("relu′(z) is 1 or 0, so the shrinking comes from the weights (too small "
                     "for the layer width) or from units that are off; He initialisation keeps "
                     "the size of δ from layer to layer.")
        fixes = [HE, LEAKY_HE, ADAM]
    evidence = {"ratio_last_first": median, "ratio_first_step": float(ratio[0]),
                "ratio_last_step": float(ratio[-1]), "field": name, "speed": speeds}
    return [_finding("vanishing-gradients", severity,
                     f"Vanishing gradients: {last}/{first} gradient ratio {median:.3g}",
                     ctx.hidden_params, evidence, f"{mechanism} {measured_text}", fixes)]


def exploding(ctx: Context) -> list[Finding]:
    params = ctx.layers.layers_of("param")
    # NaN (no value) counts as 0, inf stays inf: an overflowed norm is the largest of all
    totals = np.sqrt(sum(np.where(np.isnan(v := ctx.values("grad_W_norm", p)), 0.0, v) ** 2
                         for p in params)) if params else np.zeros(0)
    if totals.size == 0:
        return []
    window = max(1, math.ceil(0.2 * totals.size))
    start, end = float(np.median(totals[:window])), float(np.median(totals[-window:]))
    growth = end / start if start > 0 else (math.inf if end > 0 else 1.0)
    peak = float(np.max(totals[np.isfinite(totals)])) if np.isfinite(totals).any() else 0.0
    measured = _hidden_ratio(ctx)
    backward = _median(measured[0]) if measured else math.nan
    reasons = []
    if peak > ctx.limits.huge_gradient:
        reasons.append(f"the gradient norm reached {peak:.3g}")
    if totals.size > 1 and growth > ctx.limits.exploding_growth:
        reasons.append(f"the gradient norm grew {growth:.3g}× during training")
    if backward < 1.0 / ctx.limits.vanishing_warning:
        reasons.append(f"the first hidden layer's gradient is {1 / backward:.3g}× the last's")
    if not reasons:
        return []
    severity = "critical" if peak > ctx.limits.huge_gradient else "warning"
    explanation = ("δˡ = (Wˡ⁺¹δˡ⁺¹) ⊙ f′(zˡ): when |w·f′(z)| > 1 each layer multiplies the "
                   "backward signal by more than 1 and it grows with depth; the update "
                   "w − η∂C/∂w then overshoots the minimum. Here " + "; ".join(reasons) + ".")
    evidence = {"gradient_norm_start": start, "gradient_norm_end": end, "growth": growth,
                "gradient_norm_peak": peak, "ratio_last_first": backward}
    return [_finding("exploding-gradients", severity, "Exploding gradients", params, evidence,
                     explanation, [LR_DOWN, XAVIER if ctx.saturating() else HE, CLIP, ADAM])]


def _moving_updates(ctx: Context, layer: str) -> float:
    """Median ‖ΔW‖/‖W‖ over the steps with a finite, non-zero ∂C/∂W: a zero gradient (dead or
    saturated units) gives a zero step whatever η is, which says nothing about η."""
    ratios, grads = ctx.values("update_ratio", layer), ctx.values("grad_W_norm", layer)
    return _median(ratios[np.isfinite(grads) & (grads > 0)])


def updates(ctx: Context) -> list[Finding]:
    ratios = {p: _moving_updates(ctx, p) for p in ctx.layers.layers_of("param")}
    ratios = {p: r for p, r in ratios.items() if not math.isnan(r)}
    if not ratios:
        return []
    limits, overall = ctx.limits, float(np.median(list(ratios.values())))
    large = {p: r for p, r in ratios.items() if r > limits.update_high}
    if large:
        severity = "critical" if max(large.values()) > limits.update_critical else "warning"
        text = (f"Each step changes these layers' weights by ‖ΔW‖/‖W‖ up to "
                f"{max(large.values()):.3g} (≈1e-3 is the usual healthy size). With "
                "w_new = w_old − η∂C/∂w a too large η makes the steps overshoot: 'too big a "
                "step and you shoot past the village' (the article on the derivative in "
                "training).")
        return [_finding("large-updates", severity, "Updates too large: learning rate too high",
                         list(large), {"update_ratio": ratios}, text, [LR_DOWN, ADAM, CLIP])]
    if overall < limits.update_low:
        text = (f"The median step changes the weights by ‖ΔW‖/‖W‖ = {overall:.3g} "
                "(≈1e-3 is healthy): with such small steps 'you will die on the mountain' "
                "before reaching the minimum (the article on the derivative in training).")
        return [_finding("small-updates", "warning", "Updates tiny: learning rate too low",
                         list(ratios), {"update_ratio": ratios, "median": overall}, text,
                         [LR_UP, ADAM])]
    return []


def saturated(ctx: Context) -> list[Finding]:
    shares = {a: _median(ctx.values("saturated_fraction", a, late=True))
              for a in ctx.hidden_acts}
    heavy = {a: s for a, s in shares.items() if s >= ctx.limits.saturated_warning}
    if not heavy:
        return []
    severity = "critical" if max(heavy.values()) >= ctx.limits.saturated_critical else "warning"
    text = (f"Up to {max(heavy.values()):.0%} of these layers' values have a local derivative "
            "below 1% of its peak (σ′ < 0.0025, i.e. |z| ≳ 6): there the unit's 'learning "
            "ability' (the article on the derivative in training) is ≈ 0 and ∂C/∂w = δ·a ≈ 0. "
            "Large weights or inputs push z "
            "into the flat tails of the sigmoid.")
    return [_finding("saturated-layers", severity, "Saturated hidden layers", list(heavy),
                     {"saturated_fraction": shares}, text,
                     [XAVIER, STANDARDISE, RELU_HE, LEAKY_HE, LR_DOWN])]


def dead(ctx: Context) -> list[Finding]:
    relu = [a for a in ctx.hidden_acts if ctx.act_name[a].split(":")[0]
            in {"relu", "leaky_relu", "elu"}]
    shares = {a: _median(ctx.values("dead_fraction", a, late=True)) for a in relu}
    evidence: dict[str, Any] = {"dead_fraction": shares}
    states = ctx.neuron_states() if relu else None
    if states is not None:
        counts = states.counts()
        evidence["dead_on_data"] = {layer: c["dead"] for layer, c in counts.items()}
        for layer, c in counts.items():
            if layer in shares:
                shares[layer] = max(shares[layer], c["dead"] / max(sum(c.values()), 1))
    heavy = {a: s for a, s in shares.items() if s >= ctx.limits.dead_warning}
    if not heavy:
        return []
    plain = any(ctx.act_name[a] == "relu" for a in heavy)
    severity = "critical" if max(heavy.values()) >= ctx.limits.dead_critical else "warning"
    text = (f"Up to {max(heavy.values()):.0%} of these units have z ≤ 0 on every sample. "
            "relu′(z) = 0 there, so ∂C/∂w = 0 and their weights never change again: dead "
            "units (the article on the vanishing gradient). A large learning rate or a large "
            "negative bias puts them there.")
    if not plain:
        severity = "info"
        text += " With leaky ReLU/ELU they still pass a small slope and can come back."
    return [_finding("dead-units", severity, "Dead ReLU units", list(heavy), evidence, text,
                     [LEAKY_HE, HE, LR_DOWN])]


def neuron_states(ctx: Context) -> list[Finding]:
    states = ctx.neuron_states()
    if states is None:
        return []
    counts = state_counts(states)
    wrong = states.of_state("saturated-wrong")
    share = len(wrong) / max(len(states), 1)
    if share < ctx.limits.saturated_wrong_share:
        return []
    layers = sorted({n.layer for n in wrong}, key=[n.layer for n in states].index)
    text = (f"{len(wrong)} of {len(states)} hidden units have a derivative ≈ 0 on nearly "
            "all training samples while the network is mostly wrong on them: 'the neuron is "
            "saturated (dumb) and will not improve' (the article on the derivative in training).")
    return [_finding("saturated-wrong-units", "warning", "Saturated units stuck on wrong "
                     "answers", layers, {"states": counts, "share": share}, text,
                     [XAVIER, RELU_HE, LEAKY_HE, STANDARDISE])]


def loss_curve(ctx: Context) -> list[Finding]:
    losses = np.array([v for v in ctx.losses if math.isfinite(v)])
    if losses.size < 4 or losses[0] <= 0:
        return []
    quarters = [float(np.median(q)) for q in np.array_split(losses, 4)]
    first = quarters[0]
    evidence = {"loss_start": first, "loss_end": quarters[-1], "points": int(losses.size),
                "accuracy": ctx.accuracy}
    if quarters[-1] > 1.1 * first:
        text = (f"The loss rose from {first:.4g} to {quarters[-1]:.4g}: gradient descent is "
                "stepping past the minimum instead of down to it (η too large).")
        return [_finding("rising-loss", "warning", "The loss is rising", [], evidence, text,
                         [LR_DOWN, ADAM])]
    recent_drop = (quarters[1] - quarters[-1]) / first
    converged = quarters[-1] <= ctx.limits.stall_level * first or (
        ctx.accuracy is not None and ctx.accuracy >= ctx.limits.converged_accuracy)
    evidence["recent_drop"] = recent_drop
    if recent_drop >= ctx.limits.stall_tolerance or converged:
        return []
    text = (f"Over the second half of training the loss fell by only {recent_drop:.2%} of its "
            f"first value and it is still at {quarters[-1] / first:.0%} of it: the network has "
            "stopped learning before fitting the data (flat gradients, saturated units or a "
            "too small step).")
    fixes = [RELU_HE] if ctx.saturating() else []
    fixes += [CROSS_ENTROPY] if ctx.loss == "quadratic" else []
    fixes += [ADAM, LR_UP, XAVIER if ctx.saturating() else HE]
    return [_finding("stalled-loss", "warning", "The loss has stalled", [], evidence, text,
                     fixes)]


def quadratic_sigmoid(ctx: Context) -> list[Finding]:
    outputs = [a for a in ctx.output_acts if ctx.act_name[a] == "sigmoid"]
    if ctx.loss != "quadratic" or not outputs:
        return []
    share = _median(ctx.values("saturated_fraction", outputs[-1], late=True))
    severity = "warning" if share > 0.1 else "info"
    text = ("With the quadratic cost C = 1/(2N)Σ(ŷ−y)² and a sigmoid output ŷ = σ(z), "
            "∂C/∂w = (ŷ−y)·σ′(z)·x: when the output saturates on a wrong answer σ′(z) ≈ 0 "
            "and the neuron learns slowest exactly when it is most wrong. The cross-entropy "
            f"cost cancels σ′. Here {share:.0%} of the output values are saturated.")
    return [_finding("quadratic-sigmoid-output", severity,
                     "Quadratic cost with a sigmoid output: learning slowdown", outputs,
                     {"output_saturated_fraction": share}, text, [CROSS_ENTROPY])]


RULES: list[Callable[[Context], list[Finding]]] = [
    nonfinite, vanishing, exploding, updates, saturated, dead, neuron_states, loss_curve,
    quadratic_sigmoid,
]
