"""CLI command ``gradsight train`` (see gradsight.cli); ``explain`` is in explain_cmds.

Heavy libraries (NumPy, matplotlib, the engine) are imported inside the functions so that
``gradsight --help`` stays fast; each such import says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InvalidValueError, require_positive_int
from ..present.plots import save_figure
from ._common import (
    DATA_HELP,
    check_output_paths,
    command,
    parse_hidden,
    print_json,
    show_progress,
)

_LOSS_HELP = ("cross_entropy (K logits), bce_with_logits (2 classes, 1 logit), quadratic "
              "(sigmoid outputs, one-hot targets; linear output for a numeric target) or auto "
              "(cross_entropy for classes, quadratic for a numeric target)")


# ---- train: pieces ------------------------------------------------------------------------
def _prepare_data(source: str, target: str | None, test_size: float, seed: int
                  ) -> tuple[Any, dict[str, Any], tuple[Any, ...]]:
    """Load, split (stratified) and standardise with the training statistics."""
    from ..engine import data as gdata  # late: NumPy, not needed for --help
    from ..engine.preprocess import MIN_SPLIT_SAMPLES, split_standardized  # late: NumPy

    if not 0 <= test_size < 1:
        raise InvalidValueError(f"--test-size must be in [0, 1), got {test_size}")
    dataset = gdata.load(source, target=target)
    X, y = dataset.X, dataset.y
    note = None
    if 0 < test_size and dataset.n_samples < MIN_SPLIT_SAMPLES:
        note = f"only {dataset.n_samples} samples: trained on all, no test split"
    X_train, X_test, y_train, y_test, mean, std = split_standardized(X, y, test_size, seed)
    info = {"data": dataset.name, "source": str(source), "target": dataset.target_name,
            "n_samples": dataset.n_samples, "n_features": dataset.n_features,
            "n_classes": dataset.n_classes, "classes": dataset.classes,
            "n_train": len(y_train), "n_test": 0 if y_test is None else len(y_test),
            "test_size": test_size if y_test is not None else 0.0, "standardized": True,
            "feature_names": dataset.feature_names, "mean": mean, "std": std, "note": note}
    return dataset, info, (X_train, X_test, y_train, y_test)


def _evaluate(model: Any, loss: Any, X: Any, y: Any) -> tuple[float | None, float | None]:
    """(C, accuracy) of the final model on a whole split; (None, None) without the split."""
    import numpy as np

    from ..engine.train import evaluate  # late: NumPy, not needed for --help

    if X is None:
        return None, None
    with np.errstate(all="ignore"):  # a diverged run reports C = nan, not a warning storm
        return evaluate(model, X, y, loss)


def _summary(config: dict[str, Any], final: dict[str, Any], stopped: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    def show(value: Any, percent: bool = False) -> str:
        if value is None:
            return "—"
        return f"{value:.1%}" if percent else f"{value:.4g}"

    table = Table()
    table.add_column("")
    table.add_column("loss", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_row(f"train ({config['n_train']})", show(final["train_loss"]),
                  show(final["train_accuracy"], True))
    if config["n_test"]:
        table.add_row(f"test ({config['n_test']})", show(final["test_loss"]),
                      show(final["test_accuracy"], True))
    console = Console()
    console.print(f"[bold]{config['data']}[/]: mlp {config['spec']} ({config['activation']}), "
                  f"{config['loss']}, {config['optimizer']} η = {config['lr']}, "
                  f"batch {config['batch_size']}", highlight=False)
    console.print(table)
    console.print(f"epochs run: {final['epochs']} of {config['epochs']}")
    if config.get("note"):
        console.print(f"note: {config['note']}")
    if stopped:
        console.print(f"[bold yellow]training stopped:[/] {stopped}")
    for key, label in (("save", "model saved to"), ("plot", "figure saved to"),
                       ("report", "report saved to")):
        if config.get(key):
            console.print(f"{label} {config[key]}")


def _neuron_states(model: Any, loss: Any, X: Any, y: Any) -> dict[str, Any]:
    """``classify_neurons`` on the training split, judged by the training loss: counts per
    hidden layer, over all layers, and every unit's state with its evidence."""
    import numpy as np

    from ..diagnostics.neurons import (  # late: NumPy, not needed for --help
        classify_neurons,
        state_counts,
    )

    with np.errstate(all="ignore"):  # a diverged run has NaN z: its units are saturated
        states = classify_neurons(model, X, y, loss=loss)
    return {"counts": states.counts(), "total": state_counts(states),
            "units": [unit.to_dict() for unit in states]}


def _neuron_table(neurons: dict[str, Any]) -> None:
    """Units per state and hidden layer (saturated/quiet columns only when some unit is)."""
    from rich.console import Console
    from rich.table import Table

    total = neurons["total"]
    states = [s for s in total if total[s] or s in ("dead", "saturated-wrong",
                                                    "saturated-right", "learning")]
    table = Table(title=f"hidden units by state ({sum(total.values())} units, training "
                        "samples)")
    for column in ("layer", "units", *states):
        table.add_column(column, justify="left" if column == "layer" else "right")
    rows = list(neurons["counts"].items())
    if len(rows) > 1:
        rows.append(("all hidden", total))
    for layer, counts in rows:
        table.add_row(layer, str(sum(counts.values())), *(str(counts[s]) for s in states))
    console = Console()
    console.print(table)
    console.print("dead: relu′ = 0 on every sample; saturated: f′ ≈ 0 on ≥ 95% of the samples "
                  "and the network mostly wrong/right on them; learning: f′ clearly non-zero "
                  "on ≥ 5%", highlight=False)


def _write_outputs(model: Any, history: Any, split: tuple[Any, ...], info: dict[str, Any],
                   result: dict[str, Any], paths: dict[str, Path | None],
                   monitor: Any = None, findings: Any = None) -> None:
    """The model (with what a user needs to feed it: x′ = (x − mean)/std, class names), the
    figure and the HTML report."""
    if paths["save"] is not None:
        from ..engine.serialize import save as save_model  # late: NumPy, not for --help

        keys = ("data", "source", "target", "feature_names", "mean", "std", "n_classes",
                "classes")
        save_model(model, paths["save"], metadata={"trained_by": "gradsight train",
                                                   **{key: info[key] for key in keys}})
    if paths["plot"] is None and paths["report"] is None:
        return
    from ..present.plots.training import plot_training  # late: matplotlib, not for --help

    X_train, _, y_train, _ = split
    two_d = X_train.shape[1] == 2 and info["n_classes"] is not None
    figure = plot_training(history, *((model, X_train, y_train) if two_d else ()))
    if paths["plot"] is not None:
        save_figure(figure, paths["plot"])
    if paths["report"] is not None:
        _write_report(paths["report"], model, history, monitor, split, result, figure,
                      findings)


# ---- the diagnosis of the run ----------------------------------------------------------------
#: at most about this many recorded steps in a report's Monitor (every k-th step beyond it)
_REPORT_STEPS = 1000
_NO_HIDDEN = ("the model has no hidden layer, so there is no layer-to-layer gradient flow to "
              "diagnose (give e.g. --hidden 16,16)")


def _run_monitor(report: Path | None, built: dict[str, Any], n_train: int) -> Any:
    """The Monitor of the run, for its diagnosis: on the default schedule; with ``--report``
    every step, or every k-th step of a long run so that the report's figures stay
    readable."""
    from ..diagnostics import Monitor  # late: NumPy, not needed for --help

    if report is None:
        return Monitor()
    steps = built["epochs"] * -(-n_train // built["batch_size"])
    return Monitor(every=max(1, steps // _REPORT_STEPS))


def _diagnose_run(monitor: Any, model: Any, history: Any, split: tuple[Any, ...],
                  config: dict[str, Any]) -> Any:
    """:func:`gradsight.diagnose` of the run — its Monitor history, the model and the
    training split (so the neuron-state rules run) and the epoch losses; None when the
    model has no hidden layer (no gradient flow to judge) or nothing was recorded."""
    import numpy as np

    from ..diagnostics import diagnose  # late: NumPy, not needed for --help

    if not config["hidden"] or not monitor.history:
        return None
    X_train, _, y_train, _ = split
    with np.errstate(all="ignore"):  # a diverged run: NaN is a finding, not a warning
        return diagnose(monitor, model, (X_train, y_train), history, loss=config["loss"])


def _diagnosis_section(diagnosis: dict[str, Any] | None) -> None:
    """A "Diagnosis" heading, then one line per finding (severity, title; the first fix of
    a warning or a critical finding), or "no problem found"."""
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print("[bold]Diagnosis[/]")
    if diagnosis is None:
        console.print(f"  {escape(_NO_HIDDEN)}", highlight=False)
        return
    if not diagnosis["findings"]:
        console.print("  no problem found", highlight=False)
        return
    colour = {"critical": "bold red", "warning": "yellow", "info": "blue"}
    for finding in diagnosis["findings"]:
        severity = finding["severity"]
        console.print(f"  [{colour.get(severity, 'bold')}]{escape(severity):<8}[/] "
                      f"{escape(finding['title'])}", highlight=False)
        if severity in ("critical", "warning") and finding["fixes"]:
            console.print(f"           fix: {escape(finding['fixes'][0])}", highlight=False)


# ---- train --report: findings first, then the evidence -------------------------------------
def _write_report(path: Path, model: Any, history: Any, monitor: Any,
                  split: tuple[Any, ...], result: dict[str, Any], figure: Any,
                  findings: Any = None) -> None:
    """Findings of :func:`gradsight.diagnostics.diagnose` (``findings``, the run's) first,
    then the run, the hidden units (derivative map, activation distributions) and the
    per-layer gradient flow."""
    import numpy as np

    from ..present.report import (  # late: matplotlib, not needed for --help
        build_report,
        hidden_units_section,
        write_html,
    )

    X_train, _, y_train, _ = split
    config = result["config"]
    hidden = bool(config["hidden"])
    rows = [{"setting": k, "value": v} for k, v in config.items()
            if not isinstance(v, dict) and v is not None]
    # the units per state are in the "Hidden units" section (also with --neurons)
    sections: list[Any] = [{"heading": "Run", "tables": [rows], "figures": {"training": figure},
                            "text": _verdict_text(result, hidden)}]
    if hidden:
        with np.errstate(all="ignore"):
            known = result.get("neurons")  # classified already with --neurons
            sections.append(hidden_units_section(
                model, X_train, y_train, config["loss"],
                counts=None if known is None else known["counts"]))
    report = build_report(
        f"gradsight train — {config['data']} ({config['spec']})", findings=findings,
        layer_history=monitor, train_history=history, sections=sections,
        data={"final": result["final"], "stopped": result["stopped"],
              "findings": None if findings is None else findings.to_dict()})
    write_html(report, path)


def _verdict_text(result: dict[str, Any], hidden: bool = True) -> str:
    final = result["final"]
    parts = [f"{final['epochs']} epochs; final training cost {final['train_loss']:.4g}"]
    if final["test_accuracy"] is not None:
        parts.append(f"test accuracy {final['test_accuracy']:.1%}")
    if result["stopped"]:
        parts.append(f"training stopped: {result['stopped']}")
    text = "; ".join(parts) + "."
    if not hidden:
        text += (" The model has no hidden layer, so there is no layer-to-layer gradient flow "
                 "to diagnose (give e.g. --hidden 16,16).")
    return text


def _build(o: dict[str, Any], n_features: int, n_classes: int | None
           ) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model, loss, optimizer, their part of the config) from the options and data dims."""
    from .. import engine as nn  # late: NumPy, not needed for --help
    from .. import optim  # late: NumPy, not needed for --help
    from ..engine.losses import resolve_loss  # late: NumPy, not needed for --help

    hidden = parse_hidden(o["hidden"])
    loss_name, n_out, output_activation = resolve_loss(o["loss"], n_classes, "--loss")
    spec = "-".join(str(s) for s in (n_features, *hidden, n_out))
    model = nn.mlp(spec, activation=o["activation"], output_activation=output_activation,
                   init=o["init"], seed=o["seed"])
    hyper: dict[str, Any] = {"lr": o["lr"]}
    if o["momentum"] is not None:
        hyper["momentum"] = o["momentum"]
    optimizer = optim.get(o["optimizer"], **hyper)
    config = {
        "hidden": hidden, "spec": spec, "activation": o["activation"],
        "output_activation": output_activation, "init": o["init"], "loss": loss_name,
        "optimizer": o["optimizer"], "hyperparameters": optimizer.hyperparameters(),
        "lr": o["lr"], "momentum": o["momentum"], "epochs": o["epochs"],
        "batch_size": o["batch_size"], "seed": o["seed"],
    }
    return model, nn.loss(loss_name), optimizer, config


def run_train(options: dict[str, Any]) -> dict[str, Any]:
    """Everything ``gradsight train`` does, minus the printing; returns the JSON document:
    ``config``, ``history``, ``final``, ``stopped``, ``diagnosis`` (the run's findings as
    :meth:`Findings.to_dict` gives them — ``worst``, ``counts``, ``findings`` —, or None
    when the model has no hidden layer) and, when ``options["neurons"]``, ``neurons``
    (the hidden units' states)."""
    from ..engine.train import fit  # late: NumPy, not needed for --help

    o = options
    for option in ("epochs", "batch_size"):
        require_positive_int(f"--{option.replace('_', '-')}", o[option])
    paths = {key: o.get(key) for key in ("save", "plot", "report")}
    check_output_paths(paths["save"], paths["plot"], paths["report"])
    if not parse_hidden(o["hidden"]) and o.get("neurons"):  # fail before loading data
        raise InvalidValueError("--neurons classifies hidden units, but --hidden gives no "
                                "hidden layer; use e.g. --hidden 16,16")
    dataset, info, split = _prepare_data(o["data"], o["target"], o["test_size"], o["seed"])
    model, loss, optimizer, built = _build(o, dataset.n_features, dataset.n_classes)
    X_train, X_test, y_train, y_test = split
    monitor = _run_monitor(paths["report"], built, len(y_train))
    history = fit(model, X_train, y_train, loss=loss, optimizer=optimizer, epochs=o["epochs"],
                  batch_size=o["batch_size"], seed=o["seed"],
                  validation=None if X_test is None else (X_test, y_test),
                  callbacks=[monitor], progress=show_progress(o["quiet"]))
    train_loss, train_accuracy = _evaluate(model, loss, X_train, y_train)
    test_loss, test_accuracy = _evaluate(model, loss, X_test, y_test)
    config = {**{k: v for k, v in info.items() if k not in ("feature_names", "mean", "std")},
              **built, **{k: None if v is None else str(v) for k, v in paths.items()}}
    final = {"epochs": len(history.epochs), "train_loss": train_loss,
             "train_accuracy": train_accuracy, "test_loss": test_loss,
             "test_accuracy": test_accuracy}
    findings = _diagnose_run(monitor, model, history, split, built)
    result = {"config": config, "history": [dict(row) for row in history.epochs],
              "final": final, "stopped": history.stopped,
              "diagnosis": None if findings is None else findings.to_dict()}
    if o.get("neurons"):
        result["neurons"] = _neuron_states(model, loss, X_train, y_train)
    _write_outputs(model, history, split, info, result, paths, monitor, findings)
    return result


# ---- registration -------------------------------------------------------------------------
def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app``."""

    @command(app, "train")
    def train(
        data: str = typer.Option("moons", "--data", help=DATA_HELP),
        target: str | None = typer.Option(None, "--target", help="target column of a CSV"),
        hidden: str = typer.Option("16,16", "--hidden", help="hidden layer widths, e.g. 16,16"),
        activation: str = typer.Option("relu", "--activation", help="hidden activation"),
        init: str = typer.Option("he_normal", "--init", help="weight initialiser"),
        loss: str = typer.Option("auto", "--loss", help=_LOSS_HELP),
        optimizer: str = typer.Option("adam", "--optimizer",
                                      help="sgd, momentum, nesterov, adagrad, rmsprop, adam"),
        lr: float = typer.Option(0.01, "--lr", help="learning rate η"),
        epochs: int = typer.Option(200, "--epochs"),
        batch_size: int = typer.Option(32, "--batch-size"),
        seed: int = typer.Option(0, "--seed", help="seed of weights, split and shuffling"),
        momentum: float | None = typer.Option(None, "--momentum",
                                              help="momentum μ (sgd, momentum, nesterov, "
                                                   "rmsprop)"),
        test_size: float = typer.Option(0.2, "--test-size",
                                        help="held-out fraction (0: train on all)"),
        save: str | None = typer.Option(None, "--save", help="write the model (.npz)"),
        plot: str | None = typer.Option(None, "--plot",
                                         help="write loss curves and, for 2-D data, the "
                                              "decision boundary (.png/.svg/.pdf)"),
        report: str | None = typer.Option(None, "--report",
                                          help="write a self-contained HTML report "
                                               "(gradsight.report)"),
        neurons: bool = typer.Option(False, "--neurons",
                                     help="after training, count the hidden units that are "
                                          "dead, saturated (right/wrong) or learning"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Train an MLP on a toy data set or a CSV file and report loss and accuracy."""
        options = dict(locals())
        for key in ("save", "plot", "report"):
            options[key] = None if options[key] is None else Path(options[key])
        result = run_train(options)
        if json_out:
            print_json(result)
        else:
            _summary(result["config"], result["final"], result["stopped"])
            if neurons:
                _neuron_table(result["neurons"])
            _diagnosis_section(result["diagnosis"])
