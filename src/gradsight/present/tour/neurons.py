"""Tour section 6: the states of a trained network's neurons (the answer of the article on the
derivative in training), and the doctor's before/after table of fixes."""

from __future__ import annotations

from typing import Any

from ...diagnostics.fixes import DoctorSetup, doctor
from ...diagnostics.neurons import classify_neurons, neuron_derivative_map, state_counts
from ..plots.diagnostics import plot_neuron_map
from ._base import FigureFile, Section, Table, TourContext, fmt
from ._figures import plot_doctor, plot_state_counts
from ._train import train_like_cli

HIDDEN = (30, 30)
#: (label, activation, init, η): one set-up, three rates; ReLU at two rates
RUNS = (
    ("sigmoid, η = 0.1", "sigmoid", "xavier_uniform", 0.1),
    ("sigmoid, η = 15", "sigmoid", "xavier_uniform", 15.0),
    ("sigmoid, η = 40", "sigmoid", "xavier_uniform", 40.0),
    ("ReLU, η = 0.1", "relu", "he_normal", 0.1),
    ("ReLU, η = 1", "relu", "he_normal", 1.0),
)
STATES = ("dead", "saturated-wrong", "saturated-right", "learning")
DOCTOR: dict[str, Any] = {"data": "digits", "hidden": (30, 30, 30), "activation": "sigmoid",
                          "init": "scaled_normal", "bias_init": "zeros", "loss": "quadratic",
                          "optimizer": "sgd", "lr": 0.5, "batch_size": 32, "seed": 0}


def build(ctx: TourContext) -> Section:
    runs, counts, states_json = _state_runs(ctx)
    result = _doctor(ctx)
    numbers = {"states": counts, "hidden_units": sum(HIDDEN),
               "doctor_best": result.best, "doctor_baseline_loss": result.baseline.loss,
               "doctor_best_loss": min(c.loss for c in result.candidates)
               if result.candidates else None}
    return Section(
        id="neurons", title="Neuron states and the doctor",
        headline=_headline(counts, result),
        paragraphs=_paragraphs(counts, runs, result),
        figures=_figures(ctx, counts, runs, result),
        tables=[_states_table(counts, runs), _doctor_table(result)],
        commands=[*([*r.argv, "--neurons"] for r in runs), _doctor_argv(ctx)],
        numbers=numbers,
        data={"counts": counts, "hidden_units": sum(HIDDEN),
              "runs": [r.summary() for r in runs], "states": states_json,
              "doctor": result.to_dict()},
    )


def _state_runs(ctx: TourContext) -> tuple[list[Any], dict[str, dict[str, int]],
                                           dict[str, Any]]:
    """Train every run of :data:`RUNS` as ``gradsight train`` would; classify its units."""
    runs, counts, states_json = [], {}, {}
    for label, act, init, lr in RUNS:
        run = train_like_cli(label, hidden=HIDDEN, activation=act, init=init,
                             loss="cross_entropy", lr=lr, epochs=10, seed=ctx.seed,
                             dataset=ctx.dataset("digits"))
        states = classify_neurons(run.model, run.X_train, run.y_train, loss=run.loss)
        runs.append(run)
        counts[label] = state_counts(states)
        states_json[label] = states.to_dict()
    return runs, counts, states_json


def _figures(ctx: TourContext, counts: dict[str, dict[str, int]], runs: list[Any],
             result: Any) -> list[FigureFile]:
    saturated, dead = runs[2], runs[4]
    sample = slice(0, 300)
    rows = result.rows()
    return [
        ctx.figure(plot_state_counts(counts, "hidden units by state after 10 epochs on "
                                             "digits (2 hidden layers of 30)"),
                   "neuron-states",
                   "How many hidden units are learning, saturated (right or wrong) or dead, for "
                   "the same network trained at different rates."),
        ctx.figure(plot_neuron_map(neuron_derivative_map(saturated.model,
                                                         saturated.X_train[sample])),
                   "neuron-map-sigmoid",
                   "The \"learning ability\" (the article on the derivative in training) of "
                   "each unit (row) on each of 300 samples (column), σ′(z), for the sigmoid "
                   "net trained with η = 40: the dark rows are saturated units that no sample "
                   "can teach."),
        ctx.figure(plot_neuron_map(neuron_derivative_map(dead.model, dead.X_train[sample])),
                   "neuron-map-relu",
                   "The same picture for the ReLU net trained with η = 1: relu′(z) is 1 or 0, "
                   "and a row that is dark on every sample is a dead unit."),
        ctx.figure(plot_doctor([r["change"] for r in rows], [r["loss"] for r in rows],
                               result.best),
                   "doctor", "The doctor's before/after: held-out loss of the original deep "
                             "sigmoid + quadratic set-up and of each fix, same budget."),
    ]


def _doctor(ctx: TourContext) -> Any:
    setup = {**DOCTOR, "data": ctx.dataset(DOCTOR["data"]), "epochs": ctx.size(10, 4),
             "seed": ctx.seed}
    return doctor(DoctorSetup(**setup), limit=ctx.size(8, 4))


def _doctor_argv(ctx: TourContext) -> list[str]:
    d = DOCTOR
    return ["doctor", "--data", d["data"], "--hidden", ",".join(str(h) for h in d["hidden"]),
            "--activation", d["activation"], "--init", d["init"], "--bias-init",
            d["bias_init"], "--loss", d["loss"], "--optimizer", d["optimizer"],
            "--lr", f"{d['lr']:g}", "--epochs", str(ctx.size(10, 4)), "--batch-size",
            str(d["batch_size"]), "--seed", str(ctx.seed), "--limit", str(ctx.size(8, 4))]


def _headline(counts: dict[str, dict[str, int]], result: Any) -> str:
    wrong = counts["sigmoid, η = 40"]["saturated-wrong"]
    dead = counts["ReLU, η = 1"]["dead"]
    return (f"{wrong} saturated-and-wrong sigmoid units at η = 40, {dead} dead ReLU units at "
            f"η = 1; doctor's best fix: {result.best}")


def _paragraphs(counts: dict[str, dict[str, int]], runs: list[Any], result: Any) -> list[str]:
    accuracy = {r.label: r.final["test_accuracy"] for r in runs}
    base = result.baseline
    best = next((c for c in result.candidates if c.change == result.best), None)
    text = [
        "The article on the derivative in training reads a unit's derivative f′(z) as its "
        "learning ability on one "
        "sample, and then looks at all samples. If the derivative is ≈ 0 on all of them and "
        "the network is wrong on them, the unit is saturated and will not improve "
        "(saturated-wrong); if it is ≈ 0 everywhere and the network is right, the unit has "
        "learned — or overfits (saturated-right); if it is non-zero on a real share of "
        "samples, the unit is still learning. The article on the vanishing gradient adds the "
        "ReLU case: a unit whose "
        "z ≤ 0 on every sample has relu′ = 0 everywhere and never changes again — dead.",
        "`gradsight.diagnostics.classify_neurons` applies those rules to every hidden unit "
        "(≈ 0 means below 1% of the activation's largest slope; \"all\" means 95% of the "
        "samples). The same two-layer network, trained for 10 epochs on digits, shows each "
        f"state. At η = 0.1: {_describe(counts['sigmoid, η = 0.1'])} (held-out accuracy "
        f"{fmt(accuracy['sigmoid, η = 0.1'], 3)}). A rate far too large pushes the weights so "
        "far that z lands deep in σ's flat tails — at η = 15: "
        f"{_describe(counts['sigmoid, η = 15'])} (accuracy "
        f"{fmt(accuracy['sigmoid, η = 15'], 3)}); at η = 40: "
        f"{_describe(counts['sigmoid, η = 40'])}, and the network is right on only "
        f"{fmt(accuracy['sigmoid, η = 40'], 2)} of the held-out samples. For ReLU the same "
        f"mistake kills units: after training with η = 1, {_describe(counts['ReLU, η = 1'])}.",
        "Knowing what is wrong is half the job; `gradsight doctor` measures which fix helps. "
        "It trains the original set-up and each candidate fix with the same data split, random "
        "seed and number of epochs and ranks them by the held-out loss. On a deep sigmoid net "
        f"(3 × 30) with the quadratic cost the original reaches a held-out loss of "
        f"{fmt(base.loss, 3)} (accuracy {fmt(base.outcome.accuracy, 3)}); its findings: "
        f"{', '.join(base.verdicts) or 'none'}.",
    ]
    if best is not None:
        text.append(f"The best fix, {result.best}, brings the loss to {fmt(best.loss, 3)} and "
                    f"the accuracy to {fmt(best.outcome.accuracy, 3)} — the cures the article "
                    "on the vanishing gradient names, now with numbers attached.")
    return text


def _describe(counts: dict[str, int]) -> str:
    """"44 units saturated-wrong and 16 learning" — the non-zero states, largest first."""
    parts = [f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n]
    text = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    return text.replace(" ", " units ", 1) if parts else "no hidden units"


def _states_table(counts: dict[str, dict[str, int]], runs: list[Any]) -> Table:
    rows = [[r.label, fmt(r.final["test_accuracy"], 3),
             *[str(counts[r.label].get(s, 0)) for s in STATES]] for r in runs]
    return Table(caption=f"Hidden units by state (of {sum(HIDDEN)}), on the training samples",
                 columns=["run", "held-out accuracy", *STATES], rows=rows)


def _doctor_table(result: Any) -> Table:
    rows = []
    for i, row in enumerate(result.rows()):
        rows.append(["—" if i == 0 else str(i), row["change"], fmt(row["loss"], 4),
                     fmt(row["accuracy"], 3), fmt(row["gradient_ratio"], 3),
                     ", ".join(row["verdicts"]) or "—"])
    return Table(caption="The doctor's before/after table (same data, random seed and budget)",
                 columns=["rank", "change", "held-out loss", "accuracy",
                          "gradient ratio last/first", "findings"], rows=rows,
                 note=f"best: {result.best}")
