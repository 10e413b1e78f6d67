"""Tour section 5: the vanishing gradient — Nielsen's protocol on digits beside his MNIST
figures, then a deep sigmoid network against ReLU, leaky ReLU and He/Xavier initialisation,
and the same sigmoid network trained with Adam, which compensates for the vanishing gradient
by rescaling the starved layers' steps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...lab.vanishing import NIELSEN_SPEEDS, nielsen_speeds
from ..plots.diagnostics import plot_layer_norms, plot_sigmoid_bound, plot_vanish
from ._base import FigureFile, Section, Table, TourContext, fmt
from ._figures import plot_curves, plot_layer_speeds
from ._train import train_like_cli

DEPTH, WIDTH = 4, 30
#: (label, activation, init) — the deep sigmoid net of Nielsen's protocol and its fixes
CONFIGS = (
    ("sigmoid", "sigmoid", "scaled_normal"),
    ("sigmoid+xavier", "sigmoid", "xavier_uniform"),
    ("tanh+xavier", "tanh", "xavier_uniform"),
    ("relu+he", "relu", "he_normal"),
    ("leaky_relu+he", "leaky_relu", "he_normal"),
)
_LABELS = {"sigmoid": "sigmoid, N(0, 1/n_in)", "sigmoid+xavier": "sigmoid, Xavier",
           "tanh+xavier": "tanh, Xavier", "relu+he": "ReLU, He", "leaky_relu+he":
           "leaky ReLU, He", "sigmoid+adam": "sigmoid, N(0, 1/n_in), Adam"}
TRAINED = ("sigmoid", "sigmoid+xavier", "relu+he", "leaky_relu+he")
SGD_LR = 0.1
#: the deep sigmoid net once more, with Adam at the rate ``gradsight train`` uses by default
ADAM_LABEL, ADAM_LR = "sigmoid+adam", 0.01
BATCH_SIZE = 32


def build(ctx: TourContext) -> Section:
    samples, seeds = ctx.size(1000, 500), ctx.size(3, 1)
    protocol, fixes = _speeds(ctx, samples, seeds)
    runs = _train_runs(ctx)
    ratios = {label: r.ratio_last_first for label, r in fixes.items()}
    by_label = {r.label: r for r in runs}
    balance = {"sgd": first_epoch_balance(by_label["sigmoid"]),
               "adam": first_epoch_balance(by_label[ADAM_LABEL])}
    numbers = {"nielsen_ratio_ours": {str(d): r.ratio_last_first for d, r in protocol.items()},
               "ratio_last_first": ratios,
               "test_accuracy": {r.label: r.final["test_accuracy"] for r in runs},
               "optimizers": {name: {k: v for k, v in b.items() if k != "steps"}
                              for name, b in balance.items()}}
    return Section(
        id="vanishing", title="The vanishing gradient, layer after layer",
        headline=(f"sigmoid, {DEPTH} hidden layers: the last learns "
                  f"{fmt(protocol[4].ratio_last_first, 3)}× faster than the first (Nielsen: "
                  f"{fmt(NIELSEN_SPEEDS[4][-1] / NIELSEN_SPEEDS[4][0], 3)}×); ReLU + He: "
                  f"{fmt(ratios['relu+he'], 3)}×"),
        paragraphs=[*_paragraphs(protocol, fixes, runs, samples, seeds),
                    _adam_paragraph(by_label, balance)],
        figures=_figures(ctx, protocol, fixes, runs),
        tables=[_protocol_table(protocol), _fixes_table(fixes, runs),
                _optimizers_table(by_label, balance)],
        commands=_commands(samples, seeds, ctx.seed, runs),
        numbers=numbers,
        data={"nielsen_ours": {str(d): [row["speed_at_init"] for row in r.layers]
                               for d, r in protocol.items()},
              "nielsen_reference": {str(d): list(v) for d, v in NIELSEN_SPEEDS.items()},
              "nielsen_reference_source": "Nielsen, Neural Networks and Deep Learning, ch. 5 "
                                          "(MNIST, published figures)",
              "protocol": {str(d): r.to_dict() for d, r in protocol.items()},
              "fixes": {k: r.to_dict() for k, r in fixes.items()},
              "training": [r.summary() for r in runs],
              "optimizers": balance},
    )


def _speeds(ctx: TourContext, samples: int, seeds: int) -> tuple[dict[int, Any], dict[str, Any]]:
    """Nielsen's protocol with 2, 3, 4 hidden layers, and the 4-layer net with each fix."""
    digits = ctx.dataset("digits")
    protocol = {depth: nielsen_speeds(digits, hidden=(WIDTH,) * depth, samples=samples,
                                      seeds=seeds, seed=ctx.seed) for depth in (2, 3, 4)}
    fixes = {label: nielsen_speeds(digits, hidden=(WIDTH,) * DEPTH, activation=act, init=init,
                                   bias_init="zeros", samples=samples, seeds=seeds,
                                   seed=ctx.seed)
             for label, act, init in CONFIGS}
    return protocol, fixes


def _figures(ctx: TourContext, protocol: dict[int, Any], fixes: dict[str, Any],
             runs: list[Any]) -> list[FigureFile]:
    speeds = {_LABELS[k]: [row["speed_at_init"] for row in r.layers] for k, r in fixes.items()}
    curves = [("training loss", {_LABELS[r.label]: r.history.loss for r in runs}),
              ("held-out accuracy", {_LABELS[r.label]: r.history.val_accuracy for r in runs})]
    epochs = len(runs[0].history.epochs)
    return [
        ctx.figure(plot_vanish(protocol[4]), "vanish-nielsen",
                   f"Nielsen's protocol, 4 hidden layers of {WIDTH} sigmoid units: the speed "
                   "of learning ‖∂C/∂b‖ per layer at initialisation on digits (ours) and on "
                   "MNIST (Nielsen's published figures, black)."),
        ctx.figure(plot_sigmoid_bound(protocol[4]), "vanish-bound",
                   "Each layer down multiplies δ by Wᵀ and by σ′(z) ≤ 0.25: the measured "
                   "shrinkage against 0.25^k."),
        ctx.figure(plot_layer_speeds(speeds, f"speed per hidden layer at initialisation, "
                                             f"{DEPTH} × {WIDTH} units, digits"),
                   "vanish-fixes",
                   "The fixes at initialisation: with ReLU, leaky ReLU (He init) or tanh "
                   "(Xavier) every layer learns at about the same speed; a sigmoid net keeps "
                   "its slope of ≈ 4–5× per layer whatever the initialisation."),
        ctx.figure(plot_curves(curves, f"training the {DEPTH}-hidden-layer nets on digits "
                                       f"(SGD, η = {SGD_LR:g}, except Adam, η = {ADAM_LR:g}; "
                                       f"{epochs} epochs)"),
                   "vanish-training",
                   "Training curves of the same set-ups: with SGD the deep sigmoid nets barely "
                   "move from chance, while ReLU and leaky ReLU learn from the first epoch; "
                   "the same deep sigmoid net trained with Adam learns too — Adam rescales "
                   "the starved layers' steps (see the table of optimizers)."),
        ctx.figure(plot_layer_norms(runs[0].monitor.history, field="grad_b_norm"),
                   "vanish-layer-norms",
                   "‖∂C/∂b‖ of every layer of the deep sigmoid net during training (log "
                   "axis): dense0, nearest the input, gets the smallest share."),
    ]


def _train_runs(ctx: TourContext) -> list[Any]:
    by_label = {label: (act, init) for label, act, init in CONFIGS}
    epochs = ctx.size(20, 6)
    runs = []
    for label in TRAINED:
        act, init = by_label[label]
        runs.append(train_like_cli(label, hidden=(WIDTH,) * DEPTH, activation=act, init=init,
                                   loss="cross_entropy", lr=SGD_LR, epochs=epochs,
                                   batch_size=BATCH_SIZE, seed=ctx.seed,
                                   monitor_every=5 if label == "sigmoid" else None,
                                   dataset=ctx.dataset("digits")))
    act, init = by_label["sigmoid"]
    runs.append(train_like_cli(ADAM_LABEL, hidden=(WIDTH,) * DEPTH, activation=act, init=init,
                               loss="cross_entropy", optimizer="adam", lr=ADAM_LR,
                               epochs=epochs, batch_size=BATCH_SIZE, seed=ctx.seed,
                               monitor_every=5, dataset=ctx.dataset("digits")))
    return runs


def first_epoch_balance(run: Any) -> dict[str, Any]:
    """How the first and the last hidden layer of a run compare over its first epoch, from
    its Monitor: the medians over the recorded steps of ‖∂C/∂W‖ last/first (how much the
    gradient vanishes) and of ‖ΔW‖/‖W‖ first/last (how large the first layer's steps are
    next to the last's), with the per-step values they come from."""
    layers = run.monitor.layer_history()
    params = layers.layers_of("param")
    first, last = params[0], params[-2]  # the hidden layers; params[-1] is the output layer
    steps_per_epoch = math.ceil(len(run.X_train) / BATCH_SIZE)
    steps, grad_first = layers.series("grad_W_norm", first)
    _, grad_last = layers.series("grad_W_norm", last)
    _, step_first = layers.series("update_ratio", first)
    _, step_last = layers.series("update_ratio", last)
    early = steps < steps_per_epoch
    with np.errstate(divide="ignore", invalid="ignore"):
        gradient_ratio = grad_last[early] / grad_first[early]
        step_ratio = step_first[early] / step_last[early]
    return {"first_layer": first, "last_layer": last, "steps_per_epoch": steps_per_epoch,
            "gradient_last_over_first": _finite_median(gradient_ratio),
            "step_first_over_last": _finite_median(step_ratio),
            "steps": {"step": steps[early].tolist(),
                      "grad_W_norm_first": grad_first[early].tolist(),
                      "grad_W_norm_last": grad_last[early].tolist(),
                      "update_ratio_first": step_first[early].tolist(),
                      "update_ratio_last": step_last[early].tolist()}}


def _paragraphs(protocol: dict[int, Any], fixes: dict[str, Any], runs: list[Any],
                samples: int, seeds: int) -> list[str]:
    deep = protocol[4]
    slower = [1.0 / row["factor_to_next"] for row in deep.layers if row["factor_to_next"]]
    accuracy = {r.label: r.final["test_accuracy"] for r in runs}
    return [
        "Backpropagation computes each layer's error from the one above it, "
        "δ^l = σ′(z^l) ⊙ (W^(l+1))ᵀ δ^(l+1), so every step towards the input multiplies by "
        "another σ′(z) — and σ′ never exceeds 0.25 (section 1). Layer after layer the "
        "gradient shrinks, and the first layers learn slowly or not at all: the vanishing "
        "gradient, as the article on it describes.",
        "Nielsen (Neural Networks and Deep Learning, chapter 5) measures it as each hidden "
        "layer's speed of learning ‖∂C/∂b^l‖ for the gradient averaged over 1,000 training "
        "samples, in sigmoid nets with weights N(0, 1/n_in) and biases N(0, 1). gradsight "
        f"repeats his protocol on scikit-learn's digits ({samples} samples, "
        f"{_networks(seeds)}) and prints his MNIST figures beside ours: the digits differ, the "
        "shape "
        f"is the same — with 4 hidden layers each layer learns {fmt(min(slower), 2)}–"
        f"{fmt(max(slower), 2)}× more slowly than the one above it, and the last "
        f"{fmt(deep.ratio_last_first, 3)}× faster than the first.",
        "The fixes of the article on the vanishing gradient change the factor each layer "
        "multiplies by. ReLU's derivative "
        "is 1 wherever the unit is on, so with He initialisation (variance 2/n_in, which "
        "keeps the signal's size through the layers) the last/first ratio — measured here "
        "with biases 0 in every set-up, so that only the activation and the weights change "
        f"(the plain sigmoid net then gives {fmt(fixes['sigmoid'].ratio_last_first, 3)}) — "
        "drops to "
        f"{fmt(fixes['relu+he'].ratio_last_first, 3)} (leaky ReLU "
        f"{fmt(fixes['leaky_relu+he'].ratio_last_first, 3)}, tanh with Xavier "
        f"{fmt(fixes['tanh+xavier'].ratio_last_first, 3)}). Better initialisation alone does "
        f"not save the sigmoid: with Xavier weights the ratio is still "
        f"{fmt(fixes['sigmoid+xavier'].ratio_last_first, 3)}.",
        "Trained the same way on digits (SGD, η = 0.1), the nets show what the ratios mean: "
        f"held-out accuracy {fmt(accuracy['sigmoid'], 3)} for the deep sigmoid net "
        f"({fmt(accuracy['sigmoid+xavier'], 3)} with Xavier weights; 10 classes, so 0.1 is "
        "guessing), "
        f"{fmt(accuracy['relu+he'], 3)} with ReLU + He and "
        f"{fmt(accuracy['leaky_relu+he'], 3)} with leaky ReLU + He.",
    ]


def _finite_median(values: np.ndarray) -> float:
    """The median of the finite values (NaN, without NumPy's warning, when there are none)."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _adam_paragraph(runs: dict[str, Any], balance: dict[str, Any]) -> str:
    accuracy = {label: r.final["test_accuracy"] for label, r in runs.items()}
    sgd, adam = balance["sgd"], balance["adam"]
    return (
        "Not every optimizer stalls on this network. Trained with Adam (η = "
        f"{ADAM_LR:g}, the rate `gradsight train` uses by default) the same deep sigmoid "
        f"net reaches a held-out accuracy of {fmt(accuracy[ADAM_LABEL], 3)}, against "
        f"{fmt(accuracy['sigmoid'], 3)} with SGD. The gradient still vanishes: over the "
        f"first epoch the last hidden layer's ‖∂C/∂W‖ is "
        f"{fmt(adam['gradient_last_over_first'], 3)}× the first's "
        f"({fmt(sgd['gradient_last_over_first'], 3)}× with SGD). But Adam divides each "
        "weight's step by the size of that weight's own recent gradients (m/√v), so the "
        "starved layers take steps as large as the others: the first layer's steps "
        f"‖ΔW‖/‖W‖ are {fmt(adam['step_first_over_last'], 3)}× the last's, where SGD's "
        f"steps, η·∂C/∂W, are {fmt(sgd['step_first_over_last'], 3)}× theirs. Adam "
        "compensates for the vanishing gradient by rescaling the steps; it does not make "
        "the gradient reach the first layers — ReLU with He initialisation does.")


def _optimizers_table(runs: dict[str, Any], balance: dict[str, Any]) -> Table:
    rows = []
    for name, label, lr in (("SGD", "sigmoid", SGD_LR), ("Adam", ADAM_LABEL, ADAM_LR)):
        b = balance[name.lower()]
        rows.append([name, f"{lr:g}", fmt(b["gradient_last_over_first"], 3),
                     fmt(b["step_first_over_last"], 3),
                     fmt(runs[label].final["test_accuracy"], 3)])
    return Table(
        caption=f"The deep sigmoid net ({DEPTH} × {WIDTH}, N(0, 1/n_in)) with SGD and with "
                "Adam: the first epoch's gradients and steps, and the result",
        columns=["optimizer", "η", "‖∂C/∂W‖ last / first hidden layer",
                 "‖ΔW‖/‖W‖ first / last hidden layer", "held-out accuracy"],
        rows=rows,
        note="Medians over the steps the Monitor recorded in the first epoch (every 5th).",
    )


def _protocol_table(protocol: dict[int, Any]) -> Table:
    rows = []
    for depth, result in protocol.items():
        reference = result.nielsen_reference or []
        for row in result.layers:
            i = row["layer"] - 1
            rows.append([str(depth), str(row["layer"]), fmt(row["speed_at_init"], 3),
                         fmt(reference[i], 3) if i < len(reference) else "—",
                         fmt(row["factor_to_next"], 3)])
    return Table(
        caption="Speed of learning ‖∂C/∂b‖ per hidden layer at initialisation: ours (digits) "
                "and Nielsen's (MNIST)",
        columns=["hidden layers", "layer", "ours (digits)", "Nielsen (MNIST, published)",
                 "this layer / next"],
        rows=rows,
        note="Nielsen's column is copied from the book (chapter 5), not computed here.",
    )


def _fixes_table(fixes: dict[str, Any], runs: list[Any]) -> Table:
    trained = {r.label: r for r in runs}
    rows = []
    for label, result in fixes.items():
        speeds = ", ".join(fmt(row["speed_at_init"], 2) for row in result.layers)
        run = trained.get(label)
        rows.append([_LABELS[label], speeds, fmt(result.ratio_last_first, 3),
                     fmt(run.final["train_loss"], 3) if run else "—",
                     fmt(run.final["test_accuracy"], 3) if run else "—"])
    return Table(
        caption=f"The fixes: {DEPTH} hidden layers of {WIDTH} units, biases 0",
        columns=["set-up", "speeds at init (layer 1 → 4)", "last / first", "training loss",
                 "held-out accuracy"],
        rows=rows,
        note="Biases start at 0 in every row (Nielsen's protocol above draws them from "
             "N(0, 1)), so the first row's ratio differs from the protocol's. Training: SGD, "
             "η = 0.1, cross-entropy; tanh is measured at initialisation only.",
    )


def _networks(seeds: int) -> str:
    return "one network" if seeds == 1 else f"mean of {seeds} networks"


def _commands(samples: int, seeds: int, seed: int, runs: list[Any]) -> list[list[str]]:
    common = ["--samples", str(samples), "--seeds", str(seeds), "--seed", str(seed)]
    commands = [["vanish", "--hidden", ",".join([str(WIDTH)] * depth), *common]
                for depth in (2, 3, 4)]
    for _, act, init in CONFIGS[1:]:
        commands.append(["vanish", "--hidden", ",".join([str(WIDTH)] * DEPTH),
                         "--activation", act, "--init", init, "--bias-init", "zeros", *common])
    commands += [r.argv for r in runs]
    return commands
