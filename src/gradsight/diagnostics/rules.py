"""The rules behind :func:`gradsight.diagnostics.diagnose`, one function per problem.

Every rule reads a :class:`Context` (the history pivoted per layer, plus the optional model,
data and loss curve) and returns the findings it supports — each with the numbers it rests
on, the mechanism in the articles' terms and ranked fixes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .context import (
    ADAM,
    BF16,
    CHECK_DATA,
    CLIP,
    CROSS_ENTROPY,
    FEWER_LAYERS,
    HE,
    LEAKY_HE,
    LR_DOWN,
    LR_UP,
    RELU_HE,
    STANDARDISE,
    TANH,
    UNSCALE_CLIP,
    XAVIER,
    Context,
    Fix,
    _finding,
    _median,
)
from .findings import Finding, Thresholds
from .loss_rules import LOSS_RULES, loss_progress
from .neurons import state_counts
from .speed import speed_ratio


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


def median_hidden_ratio(history: Any) -> float | None:
    """The vanishing-gradient finding's number for a run: the median over the recorded steps
    of ‖∂C/∂b‖(last hidden layer) / ‖∂C/∂b‖(first) — ‖∂C/∂W‖ of both where a bias is missing
    or zero by construction — as the ``ratio_last_first`` evidence reads it; None without
    records or two hidden layers."""
    if not history:
        return None
    ctx = Context.build(history, None, None, None, None, Thresholds())
    measured = _hidden_ratio(ctx)
    if measured is None:
        return None
    value = _median(measured[0])
    return None if math.isnan(value) else value


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
    """The vanishing-gradient finding (see :func:`_vanishing`), judged once per run: the
    small-updates rule reads it too."""
    return list(ctx.once("vanishing", lambda: _vanishing(ctx)))


def _vanishing(ctx: Context) -> list[Finding]:
    """The first hidden layer's gradient far below the last's.

    Judged by what it does to learning, not by the ratio alone: when dead ReLU units block
    the gradient (a ReLU-family layer mostly dead, or a first-layer gradient of exactly 0)
    the dead units are the cause and this rule stays quiet; when the early layers still move
    (their ‖ΔW‖/‖W‖ within ``vanishing_warning``× of the last's — Adam rescales each weight's
    step by its own gradient history, so its steps are 10× better balanced than its
    gradients) or the ratio of the last fifth of training is below the threshold (it vanished
    early and the network grew out of it), the finding is info.
    The loss falling is no such sign: a deep sigmoid network with the quadratic cost lowers
    its loss by 73% by pushing every output towards 0 while its accuracy stays at chance."""
    measured = _hidden_ratio(ctx)
    if measured is None:
        return []
    ratio, speeds, name = measured
    median = _median(ratio)
    early = _median(ratio[:max(1, math.ceil(0.2 * ratio.size))])
    if not median > ctx.limits.vanishing_warning:
        if not early > ctx.limits.vanishing_warning:
            return []
        median = early  # vanished at the start only: judged below, an info at most
    dead_layers = _dead_blocking(ctx)
    if dead_layers or math.isinf(median):
        if dead_layers or _relu_family(ctx):
            return []  # the dead-units rule names the cause
    severity = "critical" if median > ctx.limits.vanishing_critical else "warning"
    first, last = ctx.hidden_params[0], ctx.hidden_params[-1]
    kinds = ctx.hidden_kinds()
    symbol = "‖∂C/∂b‖" if name == "grad_b_norm" else "‖∂C/∂W‖"
    measured_text = (f"Here {symbol} of the first hidden layer ({first}) is {median:.3g}× "
                     f"smaller than of the last ({last}): the early layers barely learn.")
    if "sigmoid" in kinds:
        mechanism = ("Backpropagation computes δˡ = (δˡ⁺¹(Wˡ⁺¹)ᵀ) ⊙ σ′(zˡ), and σ′(z) = "
                     "σ(z)(1−σ(z)) ≤ 0.25: each sigmoid layer multiplies the backward signal "
                     "by at most 0.25 (times the weights), so it shrinks layer after layer — "
                     "the vanishing gradient of the article on it.")
        fixes = [RELU_HE, LEAKY_HE, XAVIER, TANH, ADAM, FEWER_LAYERS]
    elif "tanh" in kinds:
        mechanism = ("δˡ = (δˡ⁺¹(Wˡ⁺¹)ᵀ) ⊙ tanh′(zˡ), and tanh′(z) = 1 − tanh²(z) falls well "
                     "below 1 once |z| grows: each layer shrinks the backward signal.")
        fixes = [RELU_HE, LEAKY_HE, XAVIER, ADAM, FEWER_LAYERS]
    else:
        mechanism = ("relu′(z) is 1 or 0, so the shrinking comes from the weights (too small "
                     "for the layer width) or from units that are off; He initialisation keeps "
                     "the size of δ from layer to layer.")
        fixes = [HE, LEAKY_HE, ADAM]
    evidence: dict[str, Any] = {"ratio_last_first": median, "ratio_first_step": float(ratio[0]),
                                "ratio_last_step": float(ratio[-1]), "field": name,
                                "speed": speeds, "threshold": ctx.limits.vanishing_warning}
    excluded = _excluded_biases(ctx)
    if excluded:
        evidence["excluded_biases"] = excluded
    only_early = not _median(ratio) > ctx.limits.vanishing_warning
    window = max(1, math.ceil(0.2 * ratio.size)) if only_early else None
    moves = _update_balance(ctx, first, last, window)
    progress = loss_progress(ctx)
    evidence["update_ratio_first_last"] = moves
    evidence["loss_drop_from_first"] = progress
    title = f"Vanishing gradients: {last}/{first} gradient ratio {median:.3g}"
    grads = _median(speed_ratio(ctx.values("grad_W_norm", first)[:window],
                                ctx.values("grad_W_norm", last)[:window]))
    late = _median(ratio[np.isin(ctx.layers.steps, ctx.late_steps)]) \
        if ratio.size == ctx.layers.steps.size else median
    evidence["ratio_late"] = late
    if moves is not None and moves >= 1.0 / ctx.limits.vanishing_warning and grads > 0 \
            and moves * grads >= ctx.limits.vanishing_warning:
        severity = "info"
        title += ", compensated by the optimizer"
        measured_text += (
            f" Yet the first layer's steps ‖ΔW‖/‖W‖ are {moves:.3g}× the last's while its "
            f"‖∂C/∂W‖ is {grads:.3g}× smaller: an adaptive optimizer such as Adam divides "
            "each weight's step by the size of its own recent gradients, so the starved "
            "layers take steps as large as the others and the network learns anyway. With "
            "plain SGD (w − η∂C/∂w) the same network would barely move.")
    elif late <= ctx.limits.vanishing_warning:
        severity = "info"
        title += ", early in training only"
    if only_early:
        severity = "info"
        evidence["ratio_last_first"] = _median(ratio)
        evidence["ratio_early"] = early
        if "early in training" not in title:
            title += ", early in training only"
        measured_text += (f" Over the last fifth of training the ratio is {late:.3g}: the "
                          "network grew out of it as its weights changed.")
    return [_finding("vanishing-gradients", severity, title, ctx.hidden_params, evidence,
                     f"{mechanism} {measured_text}", fixes)]


def _update_balance(ctx: Context, first: str, last: str,
                    until: int | None = None) -> float | None:
    """median ‖ΔW‖/‖W‖ of the first hidden layer over the last's, over the first ``until``
    recorded steps or all of them (None when unknown)."""
    a, b = _moving_updates(ctx, first, until), _moving_updates(ctx, last, until)
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return None
    return a / b


def _tiny_updates(ctx: Context) -> bool:
    """Whether the median ‖ΔW‖/‖W‖ over the layers is below ``update_low``."""
    ratios = [_moving_updates(ctx, p) for p in ctx.layers.layers_of("param")]
    ratios = [r for r in ratios if not math.isnan(r)]
    return bool(ratios) and float(np.median(ratios)) < ctx.limits.update_low


def _relu_family(ctx: Context) -> list[str]:
    return [a for a in ctx.hidden_acts
            if ctx.act_name[a].split(":")[0] in {"relu", "leaky_relu", "elu", "relu6"}]


def _dead_shares(ctx: Context, late: bool = True) -> dict[str, float]:
    return dict(ctx.once(f"dead_shares_{late}", lambda: _measure_dead_shares(ctx, late)))


def _measure_dead_shares(ctx: Context, late: bool) -> dict[str, float]:
    """The median share of dead units per ReLU layer (over the last fifth of the recorded
    steps, or the first fifth with ``late=False``), raised to the share dead over the whole
    training data when the model and data were given (``late`` only)."""
    relu = _relu_family(ctx)
    if late:
        shares = {a: _median(ctx.values("dead_fraction", a, late=True)) for a in relu}
    else:
        shares = {}
        for a in relu:
            values = ctx.values("dead_fraction", a)
            shares[a] = _median(values[:max(1, math.ceil(0.2 * values.size))])
    shares = {a: s for a, s in shares.items() if not math.isnan(s)}
    states = ctx.neuron_states() if late and relu else None
    if states is not None:
        for layer, c in states.counts().items():
            if layer in shares:
                shares[layer] = max(shares[layer], c["dead"] / max(sum(c.values()), 1))
    return shares


def _dead_blocking(ctx: Context) -> list[str]:
    """The ReLU layers at least ``dead_warning`` dead: they block the gradient below them
    (leaky ReLU and ELU pass a small slope where z ≤ 0: they block nothing)."""
    return [a for a, s in _dead_shares(ctx).items()
            if s >= ctx.limits.dead_warning and ctx.act_name[a].split(":")[0] == "relu"]


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


def _spike(totals: np.ndarray) -> tuple[float, int]:
    """The largest ratio of a total gradient norm to the median of the norms recorded before
    it, and its position: a transient explosion — in the first steps (Adam at a too large η)
    or in the middle of a run — which the start/end comparison of ``growth`` cannot see.

    The running median is kept in two heaps (the lower half as a max-heap, the upper half as
    a min-heap): O(n log n) over a run recorded at every step, where re-sorting each prefix
    would be quadratic."""
    low: list[float] = []  # the lower half, negated (a max-heap)
    high: list[float] = []  # the upper half (a min-heap)
    best, where = 1.0, -1
    for i, value in enumerate(float(v) for v in totals):
        if i:
            before = -low[0] if len(low) > len(high) else (-low[0] + high[0]) / 2
            if before > 0 and math.isfinite(value) and value / before > best:
                best, where = value / before, i
        if not low or value <= -low[0]:
            heapq.heappush(low, -value)
        else:
            heapq.heappush(high, value)
        if len(low) > len(high) + 1:
            heapq.heappush(high, -heapq.heappop(low))
        elif len(high) > len(low):
            heapq.heappush(low, -heapq.heappop(high))
    return best, where


def exploding(ctx: Context) -> list[Finding]:
    """Gradients of real size, growing or spiking, or a loss that grows by orders of magnitude
    — never a ratio between layers alone (a
    first layer with a larger gradient than the last, at norms of 1–4 that do not grow, is
    a saturated or deep tanh network that learns)."""
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
    spike, at = _spike(totals)
    measured = _hidden_ratio(ctx)
    backward = _median(measured[0]) if measured else math.nan
    limits, reasons = ctx.limits, []
    if peak > limits.huge_gradient:
        reasons.append(f"the gradient norm reached {peak:.3g}")
    if totals.size > 1 and growth > limits.exploding_growth:
        reasons.append(f"the gradient norm grew {growth:.3g}× during training")
    if spike > limits.gradient_spike:
        reasons.append(f"the gradient norm spiked to {spike:.3g}× its median before")
    # the loss sees every step (``loss_window``), the gradient norms only the recorded ones:
    # a loss that grows by orders of magnitude is weights that blew up between two records
    losses = np.array([v for v in ctx.losses if math.isfinite(v)], dtype=np.float64)
    loss_growth = float(np.max(losses) / losses[0]) if losses.size > 1 and losses[0] > 0 \
        else 1.0
    if loss_growth > limits.exploding_growth:
        reasons.append(f"the loss grew to {loss_growth:.3g}× its first value")
    if not reasons:
        return []
    severity = "critical" if peak > limits.huge_gradient else "warning"
    explanation = ("δˡ = (δˡ⁺¹(Wˡ⁺¹)ᵀ) ⊙ f′(zˡ): when |w·f′(z)| > 1 each layer multiplies the "
                   "backward signal by more than 1 and it grows with depth; the update "
                   "w − η∂C/∂w then overshoots the minimum. Here " + "; ".join(reasons) + ".")
    evidence: dict[str, Any] = {"gradient_norm_start": start, "gradient_norm_end": end,
                                "growth": growth, "gradient_norm_peak": peak, "spike": spike,
                                "loss_growth": loss_growth,
                                "spike_at_record": at, "ratio_last_first": backward,
                                "thresholds": {"huge_gradient": limits.huge_gradient,
                                               "exploding_growth": limits.exploding_growth,
                                               "gradient_spike": limits.gradient_spike}}
    if measured:
        evidence["field"] = measured[2]
        excluded = _excluded_biases(ctx)
        if excluded:
            evidence["excluded_biases"] = excluded
    return [_finding("exploding-gradients", severity, "Exploding gradients", params, evidence,
                     explanation, [LR_DOWN, XAVIER if ctx.saturating() else HE, CLIP, ADAM])]


def _moving_updates(ctx: Context, layer: str, until: int | None = None) -> float:
    """Median ‖ΔW‖/‖W‖ over the steps with a finite, non-zero ∂C/∂W (the first ``until``
    recorded steps, or all): a zero gradient (dead or saturated units) gives a zero step
    whatever η is, which says nothing about η."""
    ratios = ctx.values("update_ratio", layer)[:until]
    grads = ctx.values("grad_W_norm", layer)[:until]
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
                         list(large), {"update_ratio": ratios,
                                       "thresholds": {"warning": limits.update_high,
                                                      "critical": limits.update_critical}},
                         text, [LR_DOWN, ADAM, CLIP])]
    # the layers a vanishing gradient starves take tiny steps whatever η is: judge the others,
    # and leave a network whose gradient vanishes to that finding
    if any(f.severity != "info" for f in vanishing(ctx)):
        return []
    grads = {p: _median(ctx.values("grad_W_norm", p)) for p in ratios}
    largest = max((g for g in grads.values() if math.isfinite(g)), default=math.nan)
    moving = {p: r for p, r in ratios.items()
              if not largest > 0 or grads[p] >= largest / limits.vanishing_warning}
    overall = float(np.median(list(moving.values()))) if moving else overall
    if overall < limits.update_low:
        text = (f"The median step changes the weights by ‖ΔW‖/‖W‖ = {overall:.3g} "
                "(≈1e-3 is healthy): with such small steps 'you will die on the mountain' "
                "before reaching the minimum (the article on the derivative in training).")
        return [_finding("small-updates", "warning", "Updates tiny: learning rate too low",
                         list(moving), {"update_ratio": ratios, "median": overall,
                                        "threshold": limits.update_low}, text,
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
                     {"saturated_fraction": shares,
                      "thresholds": {"warning": ctx.limits.saturated_warning,
                                     "critical": ctx.limits.saturated_critical}}, text,
                     [XAVIER, STANDARDISE, RELU_HE, LEAKY_HE, LR_DOWN])]


def dead(ctx: Context) -> list[Finding]:
    """Dead ReLU units, judged by whether they matter. A ReLU network normally carries some
    dead units (10–20% in a layer of a network that reaches its accuracy ceiling): that is
    info. A warning needs a large share (``dead_warning``), a share that keeps growing
    (``dead_growth`` from the first to the last fifth of training), or dead units while the
    loss does not fall; critical, a layer nearly all dead (``dead_critical``)."""
    relu = _relu_family(ctx)
    shares = _dead_shares(ctx)
    if not relu or not shares:
        return []
    limits = ctx.limits
    early = _dead_shares(ctx, late=False)
    growth = {a: shares[a] - early.get(a, shares[a]) for a in shares}
    evidence: dict[str, Any] = {"dead_fraction": shares, "dead_fraction_early": early,
                                "thresholds": {"info": limits.dead_info,
                                               "warning": limits.dead_warning,
                                               "critical": limits.dead_critical,
                                               "growth": limits.dead_growth}}
    states = ctx.neuron_states()
    if states is not None:  # the units dead over the whole training data
        evidence["dead_on_data"] = {layer: c["dead"] for layer, c in states.counts().items()}
    heavy = {a: s for a, s in shares.items() if s >= limits.dead_info}
    if not heavy:
        return []
    progress = loss_progress(ctx)
    evidence["loss_drop_from_first"] = progress
    worst = max(heavy.values())
    growing = {a: g for a, g in growth.items() if a in heavy and g >= limits.dead_growth}
    # a loss that does not fall because every step is tiny is the learning rate's doing
    not_learning = progress is not None and progress < 1.0 - limits.stall_level \
        and not _tiny_updates(ctx)
    if worst >= limits.dead_critical:
        severity = "critical"
    elif worst >= limits.dead_warning or growing or not_learning:
        severity = "warning"
    else:
        severity = "info"
    text = (f"Up to {worst:.0%} of these units have z ≤ 0 on every sample. relu′(z) = 0 there, "
            "so ∂C/∂w = 0 and their weights never change again: dead units (the article on "
            "the vanishing gradient).")
    if growing:
        text += (f" The dead share grew by up to {max(growing.values()):.0%} during training: "
                 "units keep dying, as a too large learning rate or a large negative bias "
                 "pushes them there.")
    elif severity == "info":
        text += (" A ReLU network normally carries a few dead units; at this share the "
                 "others do the work.")
    elif not_learning:
        text += " The loss is not falling: too few live units are left to learn."
    if not any(ctx.act_name[a].split(":")[0] == "relu" for a in heavy):
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
                     "answers", layers, {"states": counts, "share": share,
                                         "threshold": ctx.limits.saturated_wrong_share}, text,
                     [XAVIER, RELU_HE, LEAKY_HE, STANDARDISE])]


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
        "first_skipped": min(skipped), "last_skipped": max(skipped),
        "thresholds": {"skipped_run": limits.skipped_run, "skipped_search": limits.skipped_search,
                       "skipped_share": limits.skipped_share}}
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
        evidence: dict[str, Any] = {"time_grad_ratio": small, "gate_saturation": gates,
                                    "thresholds": {"warning": 1 / limits.time_vanishing_warning,
                                                   "critical":
                                                       1 / limits.time_vanishing_critical}}
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
                                               "gate_saturation": gates,
                                               "threshold": limits.time_exploding},
                                 text, [CLIP, ORTHOGONAL, LR_DOWN]))
    if unmeasured:
        text = "; ".join(f"{layer}: {note.split('; ')[0]}" for layer, note in
                         unmeasured.items())
        findings.append(_finding("time-gradient-not-measured", "info",
                                 "Gradient over time not measured", list(unmeasured),
                                 {"notes": unmeasured}, text, []))
    return findings


def attention(ctx: Context) -> list[Finding]:
    """Attention heads whose entropy over the recorded steps of the last fifth of training is
    ≈ 0 (collapsed onto one key: a warning) or stays ≈ ln T from the first records to the
    last (uniform attention that never moved: info, the heads average instead of attend)."""
    heads: dict[str, list[tuple[int, float, float]]] = {}
    for r in ctx.layers.records:
        if r.kind == "attention" and r.attention_entropy is not None \
                and r.attention_entropy_uniform:
            heads.setdefault(r.layer, []).append(
                (r.step, float(r.attention_entropy), float(r.attention_entropy_uniform)))
    if not heads:
        return []
    collapsed, uniform = {}, {}
    for head, points in heads.items():
        points.sort()
        share = np.array([e / u for _, e, u in points])
        fifth = max(1, math.ceil(0.2 * share.size))
        late, early = float(np.median(share[-fifth:])), float(np.median(share[:fifth]))
        if late < ctx.limits.attention_collapse:
            collapsed[head] = late
        elif share.size >= 5 and min(late, early) > 0.98:
            uniform[head] = late
    findings = []
    if collapsed:
        text = ("The attention of these heads has collapsed: their entropy −Σ p log p over the "
                f"keys is {max(collapsed.values()):.1%} or less of the uniform ln T, so each "
                "query reads one key only. softmax(q·k/√d) saturates when the scores q·k grow "
                "large, and a saturated softmax passes back almost no gradient to q and k.")
        findings.append(_finding("attention-collapse", "warning", "Attention collapsed onto "
                                 "one key", list(collapsed),
                                 {"entropy_share_of_uniform": collapsed,
                                  "threshold": ctx.limits.attention_collapse}, text,
                                 [LR_DOWN, ("Normalise q and k (QK-norm) or lower the "
                                            "temperature's scale; warm the learning rate up",
                                            {})]))
    if uniform:
        text = ("These heads attend uniformly (entropy ≈ ln T, the maximum) from the start of "
                "training to its end: they average the sequence instead of selecting from it.")
        findings.append(_finding("attention-uniform", "info", "Attention stays uniform",
                                 list(uniform), {"entropy_share_of_uniform": uniform}, text,
                                 []))
    return findings


RULES: list[Callable[[Context], list[Finding]]] = [
    nonfinite, vanishing, exploding, updates, saturated, dead, neuron_states, skipped_steps,
    over_time, attention, *LOSS_RULES,
]
