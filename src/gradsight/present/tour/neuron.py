"""Tour section 4: one sigmoid neuron — the chain rule with numbers, then its training curve:
from a random start, where the cost falls fastest at once, and from a saturated, wrong start,
where the quadratic cost starts slowly (the lesson of the articles)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..explain import explain_neuron, train_neuron
from ..explain.neuron import ACCURACY_RULE
from ..plots.training import plot_history
from ._base import Section, Table, TourContext, fmt
from ._figures import plot_curves

TRUTH_TABLE = "or"
EPOCHS, LR = 1000, 4.0
#: a start saturated and wrong on OR: z ≤ −2 on every input, so ŷ ≤ 0.12 while three
#: targets are 1, and σ′(z) = ŷ(1 − ŷ) ≤ 0.105
SATURATED_W, SATURATED_B = (-3.0, -3.0), -2.0
#: the early window in which the text compares how much of its fall each run makes
EARLY = 30


def share_of_fall(losses: list[float], epochs: int) -> float:
    """The share of a run's whole fall in cost, C(0) − C(last), made in its first ``epochs``
    epochs: (C(0) − C(epochs)) / (C(0) − C(last))."""
    fall = losses[0] - losses[-1]
    return (losses[0] - losses[min(epochs, len(losses) - 1)]) / fall if fall > 0 else 0.0


def half_fall_epoch(losses: list[float]) -> int:
    """The first epoch at which the cost has made half of its whole fall."""
    target = losses[0] - (losses[0] - losses[-1]) / 2
    return next(i for i, loss in enumerate(losses) if loss <= target)


def build(ctx: TourContext) -> Section:
    walk = explain_neuron()
    epochs = ctx.size(EPOCHS, 300)
    trained = train_neuron(TRUTH_TABLE, epochs=epochs, lr=LR, seed=ctx.seed)
    saturated = train_neuron(TRUTH_TABLE, epochs=epochs, lr=LR, seed=ctx.seed,
                             w_start=SATURATED_W, b_start=SATURATED_B)
    rows = [{"epoch": i, "loss": loss, "accuracy": acc}
            for i, (loss, acc) in enumerate(zip(trained.losses, trained.accuracies,
                                                strict=True))]
    check = walk.check()
    starts = {"random": _start_numbers(trained), "saturated": _start_numbers(saturated)}
    numbers = {"z": walk.z, "y_hat": walk.y_hat, "dC_dyhat": walk.dC_dyhat,
               "dyhat_dz": walk.dyhat_dz, "dC_dw": list(walk.dC_dw), "dC_db": walk.dC_db,
               "agree": walk.agree, "max_rel_error_engine": check["max_rel_error_engine"],
               "max_rel_error_numeric": check["max_rel_error_numeric"],
               "loss_first": trained.losses[0], "loss_last": trained.losses[-1],
               "learned": trained.learned, "early_epochs": EARLY, "starts": starts}
    figures = [
        ctx.figure(plot_history(rows), "neuron-training",
                   f"The single neuron learning OR with the quadratic cost: C per epoch "
                   f"({epochs} epochs of w ← w − η ∂C/∂w, η = {LR:g}, all 4 inputs per "
                   f"step) and the share of inputs it gets right ({ACCURACY_RULE}). The "
                   f"cost falls fastest in the first epochs."),
        ctx.figure(plot_curves([("cost C (quadratic)", {
            "random start": trained.losses,
            f"saturated start w = {_pair(SATURATED_W)}, b = {SATURATED_B:g}":
                saturated.losses})], f"the neuron learning OR, η = {LR:g}: two starts"),
                   "neuron-slow-start",
                   f"The same neuron and rate from two starts. From the random start the cost "
                   f"makes {_percent(starts['random']['early_share'])} of its fall in the "
                   f"first {EARLY} epochs; started saturated and wrong it makes "
                   f"{_percent(starts['saturated']['early_share'])} — the quadratic cost's "
                   "slow start."),
    ]
    return Section(
        id="neuron", title="One sigmoid neuron: the chain rule with numbers",
        headline=(f"∂C/∂w = (ŷ − y)·σ(z)(1 − σ(z))·x = ({fmt(walk.dC_dw[0])}, "
                  f"{fmt(walk.dC_dw[1])}); engine and numeric check "
                  f"{'agree' if walk.agree else 'DISAGREE'}"),
        paragraphs=_paragraphs(walk, trained, saturated, check, starts),
        figures=figures,
        tables=[_chain_table(walk), _check_table(walk, check), _outputs_table(trained)],
        commands=[["explain", "--x", _csv(walk.x), "--w", _csv(walk.w), "--b", f"{walk.b:g}",
                   "--y", f"{walk.y:g}", "--lr", f"{walk.lr:g}"],
                  ["explain", "--train", TRUTH_TABLE, "--epochs", str(epochs), "--lr", f"{LR:g}",
                   "--seed", str(ctx.seed), "--plot", "neuron-training.png"]],
        numbers=numbers,
        data={"walkthrough": walk.to_dict(), "lines": walk.lines(),
              "training": {**trained.to_dict(), "loss": trained.losses},
              "saturated_training": saturated.to_dict()},
    )


def _start_numbers(run: Any) -> dict[str, Any]:
    """How a run's cost falls: its share in the first :data:`EARLY` epochs, the epoch of
    half its fall, and its start (outputs and σ′ on the 4 inputs)."""
    w, b = np.asarray(run.w_start), run.b_start
    z = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float) @ w + b
    y_hat = 1 / (1 + np.exp(-z))
    return {"w_start": list(run.w_start), "b_start": b, "loss_first": run.losses[0],
            "loss_last": run.losses[-1], "early_share": share_of_fall(run.losses, EARLY),
            "half_fall_epoch": half_fall_epoch(run.losses),
            "y_hat_start": y_hat.tolist(), "sigma_prime_start": (y_hat * (1 - y_hat)).tolist(),
            # the largest σ′ among the inputs the start answers wrongly (target 1, ŷ < ½)
            "sigma_prime_wrong": float(np.max(np.where((run.targets == 1) & (y_hat < 0.5),
                                                       y_hat * (1 - y_hat), 0.0)))}


def _pair(values: Any) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _percent(share: float) -> str:
    return f"{100 * share:.2g}%" if share < 0.1 else f"{100 * share:.0f}%"


def _csv(values: Any) -> str:
    """Values as a command-line argument: ``1,0.5``."""
    return ",".join(f"{v:g}" for v in values)


def _shown(values: Any) -> str:
    """Values as the page shows a vector: ``1, 0.5``."""
    return ", ".join(f"{v:g}" for v in values)


def _paragraphs(walk: Any, trained: Any, saturated: Any, check: dict[str, Any],
                starts: dict[str, Any]) -> list[str]:
    rand, sat = starts["random"], starts["saturated"]
    return [
        "The articles' first network is a single neuron: it weighs its inputs, adds a bias and "
        "squashes the sum, ŷ = σ(z) with z = wᵀx + b, and it is judged by the quadratic cost "
        "C = 1/(2N) Σ(ŷ − y)². To learn it needs ∂C/∂w, and the chain rule splits that into "
        "three factors, each easy on its own: ∂C/∂w = ∂C/∂ŷ · ∂ŷ/∂z · ∂z/∂w = "
        "(ŷ − y) · σ(z)(1 − σ(z)) · x.",
        f"With x = ({_shown(walk.x)}), w = ({_shown(walk.w)}), b = {walk.b:g} and target "
        f"y = {walk.y:g}: z = {fmt(walk.z)}, ŷ = σ(z) = {fmt(walk.y_hat)}, so ∂C/∂ŷ = "
        f"{fmt(walk.dC_dyhat)}, ∂ŷ/∂z = {fmt(walk.dyhat_dz)} (σ′ read off ŷ, as in section 1) "
        f"and ∂C/∂w = ({fmt(walk.dC_dw[0])}, {fmt(walk.dC_dw[1])}). One step of "
        f"w_new = w_old − η ∂C/∂w with η = {walk.lr:g} moves w to "
        f"({fmt(walk.w_new[0])}, {fmt(walk.w_new[1])}).",
        "The same gradient computed by gradsight's engine (its backward pass) and by central "
        f"differences matches the hand-made chain rule to "
        f"{fmt(max(check['max_rel_error_engine'], check['max_rel_error_numeric']), 2)} "
        "(largest relative difference).",
        f"Repeating that step on the four inputs of the OR truth table trains the neuron: the "
        f"cost falls from {fmt(trained.losses[0])} to {fmt(trained.losses[-1])} and it "
        f"{'answers all four inputs correctly' if trained.learned else 'still errs'}. From "
        "this small random start the cost falls fastest at once — the first "
        f"{EARLY} epochs make {_percent(rand['early_share'])} of its whole fall, half of it "
        f"is done by epoch {rand['half_fall_epoch']} — because every ŷ starts near 0.5, "
        "where σ′ is largest.",
        f"The articles' warning is about a different start. Begin the same neuron saturated "
        f"and wrong, w = {_pair(SATURATED_W)} and b = {SATURATED_B:g}: then ŷ = "
        f"{', '.join(fmt(v, 2) for v in sat['y_hat_start'])} on the four inputs while three "
        "targets are 1, and on those three σ′(z) = ŷ(1 − ŷ) is "
        f"≈ {fmt(sat['sigma_prime_wrong'], 2)} or less. ∂C/∂w carries that factor, "
        "so the neuron that is most wrong learns most slowly: with the same rate its first "
        f"{EARLY} epochs make only {_percent(sat['early_share'])} of its fall, and half of "
        f"the fall takes until epoch {sat['half_fall_epoch']} (the second figure; from "
        f"Python: `train_neuron(\"or\", w_start={_pair(SATURATED_W)}, "
        f"b_start={SATURATED_B:g})` in `gradsight.explain`). That slow start of the "
        "quadratic cost is what the cross-entropy cost removes: its ∂C/∂z is ŷ − y, with no "
        "σ′ factor.",
    ]


def _chain_table(walk: Any) -> Table:
    rows = [
        ["z = wᵀx + b", "", fmt(walk.z, 6)],
        ["ŷ = σ(z)", "1/(1 + e^(−z))", fmt(walk.y_hat, 6)],
        ["∂C/∂ŷ", "ŷ − y", fmt(walk.dC_dyhat, 6)],
        ["∂ŷ/∂z", "σ(z)(1 − σ(z))", fmt(walk.dyhat_dz, 6)],
        ["∂z/∂w", "x", _shown(walk.dz_dw)],
        ["∂C/∂w", "(ŷ − y)·σ(z)(1 − σ(z))·x", ", ".join(fmt(v, 6) for v in walk.dC_dw)],
        ["∂C/∂b", "(ŷ − y)·σ(z)(1 − σ(z))", fmt(walk.dC_db, 6)],
        ["w_new", "w_old − η ∂C/∂w", ", ".join(fmt(v, 6) for v in walk.w_new)],
        ["b_new", "b_old − η ∂C/∂b", fmt(walk.b_new, 6)],
    ]
    return Table(caption="The chain rule, factor by factor", columns=["quantity", "formula",
                                                                       "value"], rows=rows)


def _check_table(walk: Any, check: dict[str, Any]) -> Table:
    rows = [["chain rule (by hand)", ", ".join(fmt(v, 8) for v in walk.dC_dw),
             fmt(walk.dC_db, 8), "—"],
            ["engine backward pass", ", ".join(fmt(v, 8) for v in check["engine_dC_dw"]),
             fmt(check["engine_dC_db"], 8), fmt(check["max_rel_error_engine"], 2)],
            ["central differences", ", ".join(fmt(v, 8) for v in check["numeric_dC_dw"]),
             fmt(check["numeric_dC_db"], 8), fmt(check["max_rel_error_numeric"], 2)]]
    return Table(caption="Three ways to the same gradient",
                 columns=["method", "∂C/∂w", "∂C/∂b", "max relative difference"], rows=rows)


def _outputs_table(trained: Any) -> Table:
    inputs = ["0, 0", "0, 1", "1, 0", "1, 1"]
    rows = [[x, str(int(t)), fmt(o, 4), "undecided" if p < 0 else str(int(p))]
            for x, t, o, p in zip(inputs, trained.targets, trained.outputs, trained.predictions,
                                  strict=True)]
    return Table(caption=f"After training: w = ({_shown(round(v, 4) for v in trained.w)}), "
                         f"b = {trained.b:.4g}",
                 columns=["x", "target y", "ŷ", "answer"], rows=rows,
                 note=f"Answer: {ACCURACY_RULE}.")
