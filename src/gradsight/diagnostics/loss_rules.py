"""The rules that read the loss: how it falls (stalled, rising, oscillating, slow), where it
starts (far above chance), and whether the network's output suits it (the output activation
and the loss: softmax twice, sigmoid into a categorical cross-entropy, probabilities into a
logits loss, a sigmoid with the quadratic cost).

They read ``ctx.losses`` — the epoch losses of ``fit``'s History when given, else the losses on
the records (the mean over the window of steps each record closes, where the backend kept it)
— and ``ctx.setup``, what the backend saw of the run: the output activation, the loss, the
number of classes and the first loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .context import (
    ADAM,
    CROSS_ENTROPY,
    HE,
    LR_DOWN,
    LR_UP,
    RELU_HE,
    XAVIER,
    Context,
    _finding,
    _median,
)
from .findings import Finding


def loss_progress(ctx: Context) -> float | None:
    """How far the loss fell from its first value: (first − last) / first, with the first loss
    point (the loss at initialisation) and the median of the last fifth (None without a loss
    curve)."""
    losses = np.array([v for v in ctx.losses if math.isfinite(v)], dtype=np.float64)
    if losses.size < 4:
        return None
    first = float(losses[0])
    last = float(np.median(losses[-max(1, math.ceil(0.2 * losses.size)):]))
    if first <= 0:
        return None
    return (first - last) / first


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


def _windows(ctx: Context, count: int) -> np.ndarray | None:
    """The loss averaged over ``count`` equal spans of training steps (of the points when the
    steps are unknown); spans without a point are left out. None with fewer than 8 points."""
    finite = [(i, v) for i, v in enumerate(ctx.losses) if math.isfinite(v)]
    if len(finite) < 8:
        return None
    losses = np.array([v for _, v in finite])
    if ctx.loss_steps is not None and len(ctx.loss_steps) == len(ctx.losses):
        steps = np.array([ctx.loss_steps[i] for i, _ in finite], dtype=np.float64)
    else:
        steps = np.arange(losses.size, dtype=np.float64)
    count = min(count, losses.size // 2)
    edges = np.linspace(steps[0], steps[-1], count + 1)
    which = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, count - 1)
    return np.array([float(np.mean(losses[which == k])) for k in range(count)
                     if np.any(which == k)])


def _gradients_small(ctx: Context) -> bool:
    """Whether the steps are small: the median ‖ΔW‖/‖W‖ of the last fifth below 1e-4, or
    the total gradient norm of the last fifth below a tenth of the first fifth's."""
    ratios, early, late = [], [], []
    for layer in ctx.layers.layers_of("param"):
        ratios.append(_median(ctx.values("update_ratio", layer, late=True)))
        grads = ctx.values("grad_W_norm", layer)
        fifth = max(1, math.ceil(0.2 * grads.size))
        early.append(_median(grads[:fifth]))
        late.append(_median(grads[-fifth:]))
    ratios = [r for r in ratios if not math.isnan(r)]
    if ratios and float(np.median(ratios)) < 1e-4:
        return True
    early_total = math.sqrt(sum(g * g for g in early if math.isfinite(g)))
    late_total = math.sqrt(sum(g * g for g in late if math.isfinite(g)))
    return early_total > 0 and late_total < 0.1 * early_total


def loss_curve(ctx: Context) -> list[Finding]:
    """A rising loss; a stalled one — flat over the second half, still within
    ``stall_level`` of the first loss, with small steps or gradients (a converged network
    whose loss sits at its data's noise floor has fallen far from its first loss)."""
    quarters = _loss_quarters(ctx)
    if quarters is None:
        return []
    losses = np.array([v for v in ctx.losses if math.isfinite(v)])
    first = float(losses[0])
    evidence: dict[str, Any] = {"loss_first": first, "loss_start": quarters[0],
                                "loss_end": quarters[-1], "points": int(losses.size),
                                "train_accuracy": ctx.accuracy}  # the last epoch's, on its batches
    if quarters[-1] > 1.1 * quarters[0] and quarters[-1] > 1.1 * first:
        text = (f"The loss rose from {quarters[0]:.4g} to {quarters[-1]:.4g}: gradient descent "
                "is stepping past the minimum instead of down to it (η too large).")
        return [_finding("rising-loss", "warning", "The loss is rising", [], evidence, text,
                         [LR_DOWN, ADAM])]
    recent_drop = (quarters[1] - quarters[-1]) / quarters[0]
    progress = loss_progress(ctx)
    evidence.update(recent_drop=recent_drop, loss_drop_from_first=progress,
                    thresholds={"stall_tolerance": ctx.limits.stall_tolerance,
                                "stall_level": ctx.limits.stall_level})
    converged = (progress is not None and progress > 1.0 - ctx.limits.stall_level) or (
        ctx.accuracy is not None and ctx.accuracy >= ctx.limits.converged_accuracy)
    if recent_drop >= ctx.limits.stall_tolerance or converged or not _gradients_small(ctx):
        return []
    text = (f"Over the second half of training the loss fell by only {recent_drop:.2%} and it "
            f"is still at {1 - (progress or 0):.0%} of its first value, with small steps: the "
            "network stopped learning before fitting the data (flat gradients, saturated or "
            "dead units, or a too small step).")
    fixes = [RELU_HE] if ctx.saturating() else []
    fixes += [CROSS_ENTROPY] if ctx.loss == "quadratic" else []
    fixes += [ADAM, LR_UP, XAVIER if ctx.saturating() else HE]
    return [_finding("stalled-loss", "warning", "The loss has stalled", [], evidence, text,
                     fixes)]


#: the spans of training the oscillation rule compares (chosen on the detection benchmark:
#: with 20, the healthy runs' rising share is ≤ 0.12 and the oscillating runs' ≥ 0.25)
OSCILLATION_WINDOWS = 20


def oscillating(ctx: Context) -> list[Finding]:
    """The loss goes up and down: at least ``oscillation_share`` of its 20 consecutive spans
    rise, each by more than ``oscillation_swing`` of the first loss (a rise measured against
    the first loss, so the relative noise of a loss near 0 is no swing), and it turns at
    least twice. The spans average the loss curve (every step's loss, in short means)."""
    means = _windows(ctx, OSCILLATION_WINDOWS)
    if means is None or means.size < 4 or not means[0] > 0:
        return []
    first = float(ctx.losses[0]) if math.isfinite(ctx.losses[0]) else float(means[0])
    steps = np.diff(means)
    swing = ctx.limits.oscillation_swing * max(first, float(means[0]))
    # each window averages many steps (the loss curve holds every step's loss), so batch
    # noise is averaged away; a rise counts when it is larger than the swing
    rises = steps > swing
    share = float(np.mean(rises))
    # up and down, not up: the rises are separated by falls (a loss that creeps up over the
    # last spans of a run is rising, or overfitting, not oscillating)
    signs = np.sign(steps[steps != 0])
    turns = int(np.sum(signs[1:] != signs[:-1]))
    if share < ctx.limits.oscillation_share or rises.sum() < 2 or turns < 2:
        return []
    size = float(np.median(np.abs(steps))) / max(first, float(means[0]))
    evidence = {"rising_share": share, "windows": int(means.size), "first_loss": first,
                "turns": turns,
                "median_swing_of_first_loss": size, "window_losses": means.tolist(),
                "thresholds": {"oscillation_share": ctx.limits.oscillation_share,
                               "oscillation_swing": ctx.limits.oscillation_swing}}
    text = (f"The loss rose in {share:.0%} of the {means.size - 1} spans of training, by more "
            f"than {ctx.limits.oscillation_swing:.0%} of its first value each time: the steps "
            "w − η∂C/∂w jump across the valley of the cost from one side to the other instead "
            "of down it — 'too big a step and you shoot past the village' (the article on the "
            "derivative in training).")
    return [_finding("oscillating-loss", "warning", "The loss oscillates", [], evidence, text,
                     [LR_DOWN, ("Use a learning-rate schedule that decays η", {}), ADAM])]


def slow_convergence(ctx: Context) -> list[Finding]:
    """Still falling at the end: the last quarter of training lowered the loss by more than
    10% of where that quarter started — more steps (or a larger η) would lower it further.
    Info only: the run was stopped early, nothing is broken."""
    quarters = _loss_quarters(ctx)
    if quarters is None or not quarters[2] > 0:
        return []
    last_drop = (quarters[2] - quarters[3]) / quarters[2]
    falling = all(b < a for a, b in zip(quarters, quarters[1:], strict=False))
    if not falling or last_drop < 0.1:
        return []
    text = (f"The loss was still falling when training stopped: {last_drop:.0%} lower over "
            "the last quarter. Train for more steps, or raise η if each step is small.")
    return [_finding("slow-convergence", "info", "Still converging", [],
                     {"last_quarter_drop": last_drop, "quarters": quarters}, text,
                     [LR_UP])]


def _setup(ctx: Context) -> dict[str, Any]:
    setup = ctx.setup
    if setup is None:
        return {}
    if hasattr(setup, "to_dict"):
        setup = setup.to_dict()
    return dict(setup) if isinstance(setup, dict) else {}


def initial_loss(ctx: Context) -> list[Finding]:
    """A first cross-entropy loss far above the chance level ln C of a C-class task (more
    than ``initial_loss_factor`` × ln C and more than ln C + 3 nats): the
    output layer starts confidently wrong (large initial output weights, an embedding drawn
    from N(0, 1) tied to the output head)."""
    setup = _setup(ctx)
    classes, first = setup.get("classes"), setup.get("first_loss")
    if first is None and ctx.losses:
        first = ctx.losses[0]
    if setup.get("loss") not in ("cross_entropy", "nll") or not classes or classes < 2 \
            or first is None or not math.isfinite(first):
        return []
    chance = math.log(classes)
    # both far in ratio and in nats: ln 2 = 0.69 makes "3× chance" only 2.1, which a healthy
    # binary classifier with PyTorch's default initialisation reaches
    if first <= ctx.limits.initial_loss_factor * chance or first <= chance + 3.0:
        return []
    text = (f"The first loss is {first:.3g}, {first / chance:.3g}× the chance level ln C = "
            f"{chance:.3g} of a {classes}-class output: a network that knows nothing should "
            "start near ln C (all classes equally likely). It starts confidently wrong — its "
            "output logits are large from the initialisation — and spends its first steps "
            "undoing that.")
    return [_finding("bad-initial-loss", "warning", "The first loss is far above chance", [],
                     {"first_loss": first, "chance_level": chance, "classes": classes,
                      "threshold": ctx.limits.initial_loss_factor}, text,
                     [("Initialise the output layer small (e.g. scale its weights by 0.01, "
                       "bias 0); a tied embedding with std 1/√d", {}), XAVIER])]


_MISMATCH: dict[tuple[Any, Any], tuple[str, str]] = {
    ("softmax", "cross_entropy"): (
        "The network ends in a softmax and the loss is a cross-entropy that applies "
        "log-softmax itself (nn.CrossEntropyLoss): softmax is applied twice. The loss sees "
        "probabilities in [0, 1] as logits, so the predicted distribution is squashed towards "
        "uniform and ∂C/∂z shrinks: the network learns slowly and never becomes confident.",
        "Remove the final softmax: nn.CrossEntropyLoss takes logits"),
    ("sigmoid", "cross_entropy"): (
        "The network ends in a sigmoid and the loss is a categorical cross-entropy that applies "
        "log-softmax itself: the logits are squashed into (0, 1), so the class scores can "
        "differ by at most 1 and the loss cannot fall far below ln C.",
        "Remove the final sigmoid: nn.CrossEntropyLoss takes logits"),
    ("sigmoid", "bce_with_logits"): (
        "The network ends in a sigmoid and the loss (BCEWithLogitsLoss) applies a sigmoid "
        "again: σ(σ(z)) lies in (0.5, 0.73), so the predicted probability can never go below "
        "one half and the gradient is damped by σ′ twice.",
        "Remove the final sigmoid (BCEWithLogitsLoss takes logits), or use nn.BCELoss"),
    ("softmax", "bce_with_logits"): (
        "The network ends in a softmax and the loss (BCEWithLogitsLoss) applies a sigmoid to "
        "it: probabilities are read as logits.",
        "Remove the final softmax: BCEWithLogitsLoss takes logits"),
    ("softmax", "nll"): (
        "The network ends in a softmax and the loss is NLLLoss, which expects log-"
        "probabilities: it minimises −p instead of −log p, whose gradient does not grow for a "
        "badly wrong answer.",
        "Use log_softmax as the last step (or logits with nn.CrossEntropyLoss)"),
    (None, "nll"): (
        "The network outputs raw logits and the loss is NLLLoss, which expects log-"
        "probabilities: −z is minimised without a normalisation, so the logits can grow "
        "without bound.",
        "Add log_softmax as the last step, or use nn.CrossEntropyLoss on the logits"),
}


def output_loss_mismatch(ctx: Context) -> list[Finding]:
    """The network's last activation does not suit its loss (from what the backend saw: the
    autograd node that produced the loss's input, and whether those values were
    probabilities). By construction, not by the numbers of the run."""
    setup = _setup(ctx)
    activation, loss = setup.get("output_activation"), setup.get("loss")
    known: tuple[str, str] | None = _MISMATCH.get((activation, loss))
    if known is None and setup.get("probabilities") is True \
            and loss in ("cross_entropy", "bce_with_logits"):
        known = (f"The values fed to the loss ({loss}, which takes logits) are probabilities: "
                 "each row lies in [0, 1] and sums to 1. The loss applies its own softmax or "
                 "sigmoid to them, so the prediction is squashed and the gradient shrinks.",
                 "Feed the loss the logits: remove the final softmax/sigmoid")
    if known is None:
        return []
    text, fix = known
    evidence = {"output_activation": activation, "loss": loss,
                "probabilities": setup.get("probabilities")}
    return [_finding("output-loss-mismatch", "warning",
                     f"Output activation and loss do not match: {activation or 'logits'} "
                     f"into {loss}", [], evidence, text, [(fix, {})])]


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
                     {"output_saturated_fraction": share, "warning_above": 0.1}, text,
                     [CROSS_ENTROPY])]




LOSS_RULES = [output_loss_mismatch, initial_loss, loss_curve, oscillating, slow_convergence,
              quadratic_sigmoid]
