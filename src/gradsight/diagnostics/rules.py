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
BF16: Fix = ("Use bfloat16 autocast instead of float16: it has float32's range, so nothing "
             "overflows and no GradScaler is needed", {})
UNSCALE_CLIP: Fix = ("Clip the gradient norm after scaler.unscale_(optimizer), before "
                     "scaler.step(optimizer)", {})


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
    skipped_steps: list[int] = field(default_factory=list)  # the GradScaler skipped them
    recorded_steps: list[int] = field(default_factory=list)  # every recorded step, skipped too
    all_params: list[str] = field(default_factory=list)  # param layers, skipped steps too
    loss_steps: list[int] | None = None  # the step of each of ``losses``, when known
    skips_between: dict[int, int] = field(default_factory=dict)  # step → skips not recorded

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
        everything = require_history(history)
        # steps the GradScaler skipped (inf/NaN from its scale search) are no training step:
        # every rule but the one on skipped steps reads the others only
        kept = [r for r in everything if not r.skipped]
        layers = LayerHistory(kept)
        params = layers.layers_of("param")
        last_param = max((r.index for r in layers.records if r.kind == "param"), default=-1)
        acts = layers.layers_of("activation")
        index = {r.layer: r.index for r in layers.records}
        names = {r.layer: (r.activation or "") for r in layers.records if r.kind == "activation"}
        late = layers.steps[-max(1, math.ceil(0.2 * len(layers.steps))):]
        losses, accuracy = _losses(train_history, history)
        loss_steps = None
        if train_history is None:  # the batch losses on the records, skipped steps left out
            steps, batch_losses = _record_losses(kept)
            if batch_losses:
                losses, loss_steps = batch_losses, steps
        if data is not None:
            data = _pair(data)
        context = cls(layers, limits, _hidden(layers, params),
                      [a for a in acts if index[a] < last_param],
                      [a for a in acts if index[a] > last_param], names, late, losses,
                      accuracy, model, data, loss)
        context.skipped_steps = sorted({r.step for r in everything if r.skipped})
        context.skips_between = {r.step: int(r.skipped_between) for r in everything
                                 if r.skipped_between is not None}
        context.recorded_steps = sorted({r.step for r in everything})
        context.all_params = LayerHistory(everything).layers_of("param")
        context.loss_steps = loss_steps
        return context

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


def _hidden(layers: LayerHistory, params: list[str]) -> list[str]:
    """The hidden layers whose gradients the depth rules compare, in forward order: the param
    records with role "hidden" (not norm, embedding, output or other: a BatchNorm's ∂C/∂γ
    is not a conv's ∂C/∂W); in a history without roles, every param layer but the last."""
    roles = {r.layer: r.role for r in layers.records if r.kind == "param"}
    if all(role is None for role in roles.values()):
        return params[:-1]
    return [name for name in params if roles.get(name) == "hidden"]


def zero_by_construction(ctx: Context, layer: str) -> str | None:
    """Why ``layer``'s bias gradient is zero by construction, or None when it is not.

    From the model's structure when the backend found it (``LayerStats.bias_zero_by``: a conv
    followed by BatchNorm, which subtracts the channel mean and b with it; an attention key
    bias, which the softmax ignores); else from the numbers: ‖∂C/∂b‖/‖∂C/∂W‖ ≤ ``BIAS_ZERO``
    at every recorded step. A bias that learns has ‖∂C/∂b‖ = ‖Σδ‖ of the order of
    ‖∂C/∂W‖ = ‖Σδaᵀ‖/‖a‖."""
    bias, weight = ctx.values("grad_b_norm", layer), ctx.values("grad_W_norm", layer)
    usable = np.isfinite(bias) & np.isfinite(weight) & (weight > 0)
    worst = float(np.max(bias[usable] / weight[usable])) if usable.any() else None
    measured = "" if worst is None else f"‖∂C/∂b‖ ≤ {worst:.2g}·‖∂C/∂W‖ at every step"
    for record in ctx.layers.records:
        if record.layer == layer and record.bias_zero_by:
            return f"{record.bias_zero_by}" + (f" (measured: {measured})" if measured else "")
    if worst is not None and worst <= BIAS_ZERO:
        return f"{measured}: zero by construction (a bias followed by a normalisation)"
    return None


#: ‖∂C/∂b‖/‖∂C/∂W‖ at or below this at every step: the bias gradient is zero by construction
#: (float32 rounding leaves ~1e-7 for a conv bias before BatchNorm; bf16 autocast 7e-4 and
#: fp16 6e-5, which is why the structure, when known, decides first).
BIAS_ZERO = 1e-4


def _record_losses(records: list[Any]) -> tuple[list[int], list[float]]:
    """(steps, batch losses) from the records' ``loss`` field, one per recorded step."""
    by_step: dict[int, float] = {}
    for record in records:
        if record.loss is not None:
            by_step.setdefault(record.step, float(record.loss))
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


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
    """Per-step ratio ‖∂C/∂b‖(last hidden) / ‖∂C/∂b‖(first hidden) and the median speeds —
    ‖∂C/∂W‖ of both instead when either has no bias or a bias gradient that is zero by
    construction (:func:`zero_by_construction`): like is compared with like."""
    if len(ctx.hidden_params) < 2:
        return None
    first, last = ctx.hidden_params[0], ctx.hidden_params[-1]
    name = "grad_b_norm"
    if any(np.all(np.isnan(ctx.values(name, layer))) or zero_by_construction(ctx, layer)
           is not None for layer in (first, last)):
        name = "grad_W_norm"
    ratio = speed_ratio(ctx.values(name, first), ctx.values(name, last))
    speeds = {layer: _median(ctx.values(name, layer)) for layer in ctx.hidden_params}
    return ratio, speeds, name


def _excluded_biases(ctx: Context) -> dict[str, str]:
    """The hidden layers whose bias gradient is zero by construction, with the measurement:
    for the evidence of the depth rules, which never read them."""
    excluded = {}
    for layer in ctx.hidden_params:
        why = zero_by_construction(ctx, layer)
        if why is not None:
            excluded[layer] = why
    return excluded


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
    excluded = _excluded_biases(ctx)
    if excluded:
        evidence["excluded_biases"] = excluded
    return [_finding("vanishing-gradients", severity,
                     f"Vanishing gradients: {last}/{first} gradient ratio {median:.3g}",
                     ctx.hidden_params, evidence, f"{mechanism} {measured_text}", fixes)]


def _step_totals(ctx: Context) -> np.ndarray:
    """The total gradient norm per recorded step: the norm before clipping where it was
    recorded (so a spike clipped away still counts), else √Σ‖∂C/∂W‖² over the param layers.
    A layer without a gradient (None) adds nothing; a NaN norm makes the step's total NaN —
    never 0 — and inf stays inf (an overflowed norm is the largest of all)."""
    squares: dict[int, float] = {}
    clipped: dict[int, float] = {}
    for r in ctx.layers.records:
        if r.kind != "param":
            continue
        if r.grad_norm_before_clip is not None:
            clipped[r.step] = float(r.grad_norm_before_clip)
        if r.grad_W_norm is not None:
            squares[r.step] = squares.get(r.step, 0.0) + float(r.grad_W_norm) ** 2
    steps = sorted(set(squares) | set(clipped))
    return np.array([clipped[s] if s in clipped else math.sqrt(squares[s]) for s in steps],
                    dtype=np.float64)


def exploding(ctx: Context) -> list[Finding]:
    params = ctx.layers.layers_of("param")
    totals = _step_totals(ctx)
    if totals.size == 0:
        return []
    totals = totals[~np.isnan(totals)]  # a NaN total is judged by the non-finite rule
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
    evidence: dict[str, Any] = {"gradient_norm_start": start, "gradient_norm_end": end,
                                "growth": growth, "gradient_norm_peak": peak,
                                "ratio_last_first": backward}
    if measured:
        evidence["field"] = measured[2]
        excluded = _excluded_biases(ctx)
        if excluded:
            evidence["excluded_biases"] = excluded
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


def _loss_quarters(ctx: Context) -> list[float] | None:
    """Median loss of each quarter of training: of the steps when each loss's step is known
    (the default recording schedule is dense at the start, so four quarters of the points
    would be four slices of the first steps), else of the points."""
    finite = [(i, v) for i, v in enumerate(ctx.losses) if math.isfinite(v)]
    losses = np.array([v for _, v in finite])
    if losses.size < 4 or losses[0] <= 0:
        return None
    if ctx.loss_steps is not None and len(ctx.loss_steps) == len(ctx.losses):
        steps = np.array([ctx.loss_steps[i] for i, _ in finite], dtype=np.float64)
        edges = np.linspace(steps[0], steps[-1], 5)
        parts = [losses[(steps >= lo) & ((steps < hi) if k < 3 else (steps <= hi))]
                 for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))]
        if all(part.size for part in parts):
            return [float(np.median(part)) for part in parts]
    return [float(np.median(q)) for q in np.array_split(losses, 4)]


def loss_curve(ctx: Context) -> list[Finding]:
    quarters = _loss_quarters(ctx)
    if quarters is None:
        return []
    losses = np.array([v for v in ctx.losses if math.isfinite(v)])
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


def _runs(steps: list[int], marked: set[int]) -> list[list[int]]:
    """The runs of consecutive recorded steps that are all marked."""
    runs: list[list[int]] = []
    current: list[int] = []
    for step in steps:
        if step in marked:
            current.append(step)
        elif current:
            runs.append(current)
            current = []
    return runs + [current] if current else runs


def skipped_steps(ctx: Context) -> list[Finding]:
    """Steps the mixed-precision GradScaler skipped. At the start of an float16 run the scaler
    searches its scale — it starts high, and every step whose scaled gradients overflow is
    skipped and the scale halved — and later each growth of the scale (every 2000 clean
    steps by default) may cost one more skip: those are routine, not findings. After the
    search, a run of ``skipped_run`` consecutive recorded skips, or skips at a share above
    ``skipped_share`` of the recorded steps, means the gradients themselves overflow; so
    does a search of ``skipped_search`` skips (16 halvings take the default scale 2¹⁶ below
    1: the gradients overflow float16 unscaled) or one that never ends."""
    skipped, steps = set(ctx.skipped_steps), ctx.recorded_steps
    if not skipped:
        return []
    runs = _runs(steps, skipped)
    search = runs[0] if steps[0] in skipped else []
    longest = max((len(run) for run in runs if run is not search), default=0)
    first_clean = next((s for s in steps if s not in skipped), None)
    later = [] if first_clean is None else sorted(s for s in skipped if s > first_clean)
    after = [] if first_clean is None else [s for s in steps if s > first_clean]
    later_count, share = len(later), len(later) / max(len(after), 1)
    if ctx.skips_between and first_clean is not None:  # the steps between records too
        later_count += sum(n for s, n in ctx.skips_between.items() if s > first_clean)
        share = later_count / max(steps[-1] - first_clean, 1)
    limits = ctx.limits
    evidence: dict[str, Any] = {
        "skipped_steps": len(skipped), "recorded_steps": len(steps), "longest_run": longest,
        "scale_search_skips": len(search),
        "skips_after_search": later_count, "share_after_search": share,
        "first_skipped": min(skipped), "last_skipped": max(skipped)}
    if first_clean is None:
        severity, what = "critical", f"the GradScaler skipped all {len(steps)} recorded steps"
    elif len(search) >= limits.skipped_search:
        severity, what = "warning", (f"the GradScaler's scale search took {len(search)} "
                                     "skipped steps")
    elif longest >= limits.skipped_run:
        start = next(run[0] for run in runs if len(run) == longest)
        severity, what = "warning", (f"the GradScaler skipped {longest} consecutive recorded "
                                     f"steps (from step {start})")
    elif later_count >= 2 and share > limits.skipped_share:
        severity, what = "warning", (f"after its scale search the GradScaler still skipped "
                                     f"{later_count} steps ({share:.1%} of the steps)")
    else:
        return []
    text = (f"Here {what}. A skipped step is one whose float16 gradients, multiplied by the "
            "loss scale, overflowed to inf/NaN: the optimizer does not update the weights and "
            "the scale is halved. Skips at the start are the scale search; skips that go on "
            "mean the gradients themselves are too large for float16 (or NaN), so the network "
            "is not learning on those steps. These steps are left out of the other findings.")
    return [_finding("skipped-steps", severity, "Mixed precision: steps skipped by the "
                     "GradScaler", [], evidence, text, [LR_DOWN, UNSCALE_CLIP, BF16,
                                                       CHECK_DATA])]


ORTHOGONAL: Fix = ("Initialise the recurrent weights W_hh orthogonally (nn.init.orthogonal_): "
                   "their singular values are 1, so a step back in time neither shrinks nor "
                   "grows the error by the weights", {})
GATED: Fix = ("Use an LSTM or GRU instead of a plain RNN: the gated, additive cell state "
              "carries the error back through time without a tanh′ factor per step", {})
SHORTER: Fix = ("Shorten the sequences the gradient must cross (truncated backpropagation "
                "through time, or a loss at every step), or add attention/skip connections "
                "to early steps", {})


def _time_ratios(ctx: Context) -> tuple[dict[str, float], dict[str, str]]:
    """Per recurrent layer, the median over recorded steps of ‖∂C/∂x_first‖/‖∂C/∂x_last‖
    (0 — an underflowed first step — counts; NaN, no gradient at all, does not), and the
    notes of the layers where it was not measured."""
    ratios: dict[str, list[float]] = {}
    unmeasured: dict[str, str] = {}
    for r in ctx.layers.records:
        if r.kind != "sequence":
            continue
        if r.time_grad_ratio is None or math.isnan(r.time_grad_ratio):
            unmeasured.setdefault(r.layer, r.note or "")
        else:
            ratios.setdefault(r.layer, []).append(float(r.time_grad_ratio))
    medians = {layer: float(np.median(values)) for layer, values in ratios.items()}
    return medians, {k: v for k, v in unmeasured.items() if k not in medians}


def over_time(ctx: Context) -> list[Finding]:
    """Vanishing or exploding gradients along time in recurrent layers.

    Backpropagation through time multiplies the error by ∂h_t/∂h_{t−1} = diag(f′)·W_hhᵀ per
    step back; the gradient reaching the layer's input at step t, ‖∂C/∂x_t‖, shows what is
    left after T − t of them. The ratio first/last is the decay over the whole sequence
    when the loss reads the late steps (sequence classification); with a loss at every step
    each step also gets its own error, so a ratio near 1 there does not prove that errors
    cross the whole sequence."""
    ratios, unmeasured = _time_ratios(ctx)
    limits, findings = ctx.limits, []
    notes = {r.layer: r.note for r in ctx.layers.records if r.kind == "sequence" and r.note}
    gates = next((n.split("; ")[-1] for n in notes.values() if "not measurable" in n), None)
    small = {layer: v for layer, v in ratios.items()
             if v < 1.0 / limits.time_vanishing_warning}
    large = {layer: v for layer, v in ratios.items() if v > limits.time_exploding}
    if small:
        worst = min(small.values())
        severity = "critical" if worst < 1.0 / limits.time_vanishing_critical else "warning"
        text = (f"The gradient that reaches the first time step is {worst:.3g} of the one at "
                "the last (‖∂C/∂x_first‖/‖∂C/∂x_last‖): each step back in time multiplies the "
                "error δ by ∂h_t/∂h_{t−1} = diag(f′(z))·W_hhᵀ, and when that is below 1 the "
                "error shrinks geometrically with the distance — the vanishing gradient of the "
                "article on it, along time instead of depth. The early steps of each sequence "
                "barely influence learning: long-range dependencies are not learnt.")
        evidence: dict[str, Any] = {"time_grad_ratio": small, "gate_saturation": gates}
        findings.append(_finding("vanishing-over-time", severity,
                                 f"Vanishing gradients over time: first/last step {worst:.3g}",
                                 list(small), evidence, text, [GATED, ORTHOGONAL, SHORTER]))
    if large:
        worst = max(large.values())
        severity = "critical" if worst > limits.time_vanishing_critical else "warning"
        text = (f"The gradient that reaches the first time step is {worst:.3g}× the one at the "
                "last: each step back multiplies δ by diag(f′(z))·W_hhᵀ, larger than 1 here, "
                "so the error grows geometrically along the sequence and the updates of "
                "W_hh overshoot.")
        findings.append(_finding("exploding-over-time", severity,
                                 f"Exploding gradients over time: first/last step {worst:.3g}",
                                 list(large), {"time_grad_ratio": large,
                                               "gate_saturation": gates},
                                 text, [CLIP, ORTHOGONAL, LR_DOWN]))
    if unmeasured:
        text = "; ".join(f"{layer}: {note.split('; ')[0]}" for layer, note in
                         unmeasured.items())
        findings.append(_finding("time-gradient-not-measured", "info",
                                 "Gradient over time not measured", list(unmeasured),
                                 {"notes": unmeasured}, text, []))
    return findings


RULES: list[Callable[[Context], list[Finding]]] = [
    nonfinite, vanishing, exploding, updates, saturated, dead, neuron_states, loss_curve,
    quadratic_sigmoid, skipped_steps, over_time,
]
