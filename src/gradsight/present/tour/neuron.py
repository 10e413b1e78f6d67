"""Tour section 4: one sigmoid neuron — the chain rule with numbers, then its training curve."""

from __future__ import annotations

from typing import Any

from ..explain import explain_neuron, train_neuron
from ..plots.training import plot_history
from ._base import Section, Table, TourContext, fmt

TRUTH_TABLE = "or"
EPOCHS, LR = 1000, 4.0


def build(ctx: TourContext) -> Section:
    walk = explain_neuron()
    epochs = ctx.size(EPOCHS, 300)
    trained = train_neuron(TRUTH_TABLE, epochs=epochs, lr=LR, seed=ctx.seed)
    rows = [{"epoch": i, "loss": loss, "accuracy": acc}
            for i, (loss, acc) in enumerate(zip(trained.losses, trained.accuracies,
                                                strict=True))]
    check = walk.check()
    numbers = {"z": walk.z, "y_hat": walk.y_hat, "dC_dyhat": walk.dC_dyhat,
               "dyhat_dz": walk.dyhat_dz, "dC_dw": list(walk.dC_dw), "dC_db": walk.dC_db,
               "agree": walk.agree, "max_rel_error_engine": check["max_rel_error_engine"],
               "max_rel_error_numeric": check["max_rel_error_numeric"],
               "loss_first": trained.losses[0], "loss_last": trained.losses[-1],
               "learned": trained.learned}
    figure = ctx.figure(plot_history(rows), "neuron-training",
                        f"The single neuron learning OR with the quadratic cost: C per epoch "
                        f"({epochs} epochs of w ← w − η ∂C/∂w, η = {LR:g}, all 4 inputs per "
                        f"step) and the share of inputs it gets right.")
    return Section(
        id="neuron", title="One sigmoid neuron: the chain rule with numbers",
        headline=(f"∂C/∂w = (ŷ − y)·σ(z)(1 − σ(z))·x = ({fmt(walk.dC_dw[0])}, "
                  f"{fmt(walk.dC_dw[1])}); engine and numeric check "
                  f"{'agree' if walk.agree else 'DISAGREE'}"),
        paragraphs=_paragraphs(walk, trained, check),
        figures=[figure],
        tables=[_chain_table(walk), _check_table(walk, check), _outputs_table(trained)],
        commands=[["explain", "--x", _csv(walk.x), "--w", _csv(walk.w), "--b", f"{walk.b:g}",
                   "--y", f"{walk.y:g}", "--lr", f"{walk.lr:g}"],
                  ["explain", "--train", TRUTH_TABLE, "--epochs", str(epochs), "--lr", f"{LR:g}",
                   "--seed", str(ctx.seed), "--plot", "neuron-training.png"]],
        numbers=numbers,
        data={"walkthrough": walk.to_dict(), "lines": walk.lines(),
              "training": {**trained.to_dict(), "loss": trained.losses}},
    )


def _csv(values: Any) -> str:
    """Values as a command-line argument: ``1,0.5``."""
    return ",".join(f"{v:g}" for v in values)


def _shown(values: Any) -> str:
    """Values as the page shows a vector: ``1, 0.5``."""
    return ", ".join(f"{v:g}" for v in values)


def _paragraphs(walk: Any, trained: Any, check: dict[str, Any]) -> list[str]:
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
        f"{'answers all four inputs correctly' if trained.learned else 'still errs'}. Note "
        "the slow start — ∂ŷ/∂z is at most 0.25, and smaller still once ŷ nears 0 or 1.",
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
    rows = [[x, str(int(t)), fmt(o, 4), str(int(p))]
            for x, t, o, p in zip(inputs, trained.targets, trained.outputs, trained.predictions,
                                  strict=True)]
    return Table(caption=f"After training: w = ({_shown(round(v, 4) for v in trained.w)}), "
                         f"b = {trained.b:.4g}",
                 columns=["x", "target y", "ŷ", "ŷ > 0.5"], rows=rows)
