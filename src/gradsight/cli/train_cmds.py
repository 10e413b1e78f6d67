"""CLI command ``gradsight train`` (see gradsight.cli); ``explain`` is in explain_cmds.

Heavy libraries (NumPy, matplotlib, the engine) are imported inside the functions so that
``gradsight --help`` stays fast; each such import says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..errors import InvalidValueError, require_positive_int
from ..io import require_folder
from ..present.plots import save_figure
from ._common import (
    check_output_paths,
    command,
    parse_hidden,
    print_json,
    show_progress,
    wrote,
)

_LOSS_HELP = ("cross_entropy (K logits), bce_with_logits (2 classes, 1 logit), quadratic "
              "(sigmoid outputs, one-hot targets; linear output for a numeric target) or auto "
              "(cross_entropy for classes, quadratic for a numeric target)")


_DATA_HELP = ("moons, xor, circles, spirals, gauss, digits, or a PATH.csv of your own (the "
              "header row, delimiter and decimal mark are detected and said on stderr; the "
              "target is the last column unless --target)")
_TARGET_HELP = ("the target column of a CSV: its name, or its number counting the first "
                "column as 1 (default: the last column)")
_TASK_HELP = ("auto, classification or regression. auto: text is class labels, numbers with "
              "decimals a regression target, whole numbers class labels when they have at "
              "most 10 distinct values, or at most 20 and fewer than half the rows")
#: train's options that only a CSV file takes: option key → its flag
_CSV_FLAGS = {"target": "--target", "task": "--task", "header": "--header/--no-header",
              "delimiter": "--delimiter", "decimal": "--decimal",
              "categorical": "--categorical", "missing": "--missing"}
_CHOICES = {"task": ("auto", "classification", "regression"), "decimal": (".", ","),
            "categorical": ("onehot",), "missing": ("drop", "mean")}
#: the default --lr, suggested after a divergence from a much larger one
_DEFAULT_LR = 0.01
#: a run whose training cost ends this many times above the cost before training diverged
_DIVERGED_GROWTH = 1.5


# ---- train: pieces ------------------------------------------------------------------------
def _csv_options(o: dict[str, Any]) -> dict[str, Any]:
    """The CSV reader's options given on the command line (a one-line error for a value
    outside its choices, or for one given with a built-in data set)."""
    given = {key: o.get(key) for key in _CSV_FLAGS
             if o.get(key) is not None and not (key == "task" and o.get(key) == "auto")}
    for key, value in given.items():
        if key in _CHOICES and value not in _CHOICES[key]:
            *others, last = _CHOICES[key]
            allowed = f"{', '.join(others)} or {last}" if others else last
            raise InvalidValueError(f"{_CSV_FLAGS[key]} must be {allowed}, got {value!r}")
    if given and not str(o["data"]).lower().endswith(".csv"):
        flag = _CSV_FLAGS[next(iter(given))]
        raise InvalidValueError(f"{flag} applies to a CSV file (--data PATH.csv), not to the "
                                f"data set {o['data']!r}")
    return given


def _prepare_data(o: dict[str, Any]) -> tuple[Any, dict[str, Any], tuple[Any, ...]]:
    """Load, split (stratified) and standardise with the training statistics."""
    from ..engine import data as gdata  # late: NumPy, not needed for --help
    from ..engine.preprocess import MIN_SPLIT_SAMPLES, split_standardized  # late: NumPy

    test_size = o["test_size"]
    if not 0 <= test_size < 1:
        raise InvalidValueError(f"--test-size must be in [0, 1), got {test_size}")
    dataset = gdata.load(o["data"], **_csv_options(o))
    X, y = dataset.X, dataset.y
    note = None
    if 0 < test_size and dataset.n_samples < MIN_SPLIT_SAMPLES:
        note = f"only {dataset.n_samples} samples: trained on all, no test split"
    # a regression target (whole numbers such as ages repeat) is no class to stratify by
    X_train, X_test, y_train, y_test, mean, std = split_standardized(
        X, y, test_size, o["seed"], stratify=dataset.n_classes is not None)
    reading = dataset.reading
    info = {"data": dataset.name, "source": str(o["data"]), "target": dataset.target_name,
            "task": "regression" if dataset.n_classes is None else "classification",
            "n_samples": dataset.n_samples, "n_features": dataset.n_features,
            "n_classes": dataset.n_classes, "classes": dataset.classes,
            "n_train": len(y_train), "n_test": 0 if y_test is None else len(y_test),
            "test_size": test_size if y_test is not None else 0.0, "standardized": True,
            "feature_names": dataset.feature_names, "mean": mean, "std": std, "note": note,
            "csv": None if reading is None else reading.to_dict(),
            "read": [] if reading is None else reading.lines()}
    return dataset, info, (X_train, X_test, y_train, y_test)


def _evaluate(model: Any, loss: Any, X: Any, y: Any) -> tuple[float | None, float | None]:
    """(C, accuracy) of the final model on a whole split; (None, None) without the split."""
    import numpy as np

    from ..engine.train import evaluate  # late: NumPy, not needed for --help

    if X is None:
        return None, None
    with np.errstate(all="ignore"):  # a diverged run reports C = nan, not a warning storm
        return evaluate(model, X, y, loss)


def _regression_errors(model: Any, X: Any, y: Any) -> tuple[float | None, float | None]:
    """(RMSE, MAE) of the model's single output against a numeric target, in the target's
    units; (None, None) without the split."""
    import numpy as np

    if X is None:
        return None, None
    with np.errstate(all="ignore"):  # a diverged run's errors are inf/nan, said as such
        error = model.predict(X)[:, 0] - y
        return float(np.sqrt(np.mean(error ** 2))), float(np.mean(np.abs(error)))


def _divergence(stopped: str | None, initial_loss: float | None, train_loss: float | None,
                config: dict[str, Any]) -> str | None:
    """One line saying that training diverged, with η and a smaller η to try — when a step
    made the cost non-finite or the cost ended well above where it started — else None."""
    lr = config["lr"]
    if (stopped or "").startswith("non-finite") or train_loss is None or not math.isfinite(
            train_loss):
        what = "the cost became non-finite (NaN or ∞)"
    elif (initial_loss is not None and math.isfinite(initial_loss)
          and train_loss > _DIVERGED_GROWTH * initial_loss):
        what = f"the cost rose from {initial_loss:.4g} before training to {train_loss:.4g}"
    else:
        return None
    hint = f"--lr {lr / 10:g} (η/10)"
    if lr / 10 > _DEFAULT_LR:
        hint += f", or start from the default --lr {_DEFAULT_LR:g}"
    return (f"training diverged: {what} with the learning rate η = {lr:g} "
            f"({config['optimizer']}); try a smaller one, e.g. {hint}")


def _summary(config: dict[str, Any], final: dict[str, Any], stopped: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def show(value: Any, percent: bool = False) -> str:
        if value is None:
            return "—"
        return f"{value:.1%}" if percent else f"{value:.4g}"

    regression = config["task"] == "regression"
    metrics = (("rmse", "RMSE", False), ("mae", "MAE", False)) if regression else (
        ("accuracy", "accuracy", True),)
    table = Table()
    table.add_column("")
    table.add_column("loss", justify="right")
    for _, title, _ in metrics:
        table.add_column(title, justify="right")
    parts = [("train", config["n_train"])] + ([("test", config["n_test"])]
                                              if config["n_test"] else [])
    for part, n in parts:
        table.add_row(f"{part} ({n})", show(final[f"{part}_loss"]),
                      *(show(final[f"{part}_{key}"], percent) for key, _, percent in metrics))
    console = Console()
    task = f", regression of {config['target']!r}" if regression else ""
    console.print(f"[bold]{escape(config['data'])}[/]: mlp {config['spec']} "
                  f"({config['activation']}), {config['loss']}, {config['optimizer']} "
                  f"η = {config['lr']}, batch {config['batch_size']}{escape(task)}",
                  highlight=False, soft_wrap=True)
    console.print(table)
    if regression:
        console.print(f"RMSE, MAE: root mean squared and mean absolute error of the predicted "
                      f"{escape(repr(config['target']))}, in its units", highlight=False,
                      soft_wrap=True)
    console.print(f"epochs run: {final['epochs']} of {config['epochs']}")
    if config.get("note"):
        console.print(f"note: {config['note']}")
    if stopped:
        console.print(f"[bold yellow]training stopped:[/] {escape(stopped)}")
    if final.get("diverged"):
        console.print(f"[bold red]{escape(final['diverged'])}[/]", highlight=False,
                      soft_wrap=True)  # one line, however narrow the terminal
    for key in ("save", "plot", "report"):
        if config.get(key):
            wrote(config[key])  # the one message of every command: on stderr


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


def _save_model(model: Any, info: dict[str, Any], path: Path) -> None:
    """The model with what a user needs to feed it: x′ = (x − mean)/std, class names."""
    from ..engine.serialize import save as save_model  # late: NumPy, not for --help

    keys = ("data", "source", "target", "task", "feature_names", "mean", "std", "n_classes",
            "classes")
    save_model(model, path, metadata={"trained_by": "gradsight train",
                                      **{key: info[key] for key in keys}})


def _write_outputs(model: Any, history: Any, split: tuple[Any, ...], info: dict[str, Any],
                   result: dict[str, Any], paths: dict[str, Path | None],
                   monitor: Any = None, findings: Any = None) -> None:
    """The model (with what a user needs to feed it: x′ = (x − mean)/std, class names), the
    figure and the HTML report."""
    if paths["save"] is not None:
        _save_model(model, info, paths["save"])
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
    from ..present.console import print_findings  # late: rich, not needed for --help

    print_findings(None if diagnosis is None else diagnosis["findings"], "Diagnosis",
                   empty=_NO_HIDDEN)


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
    if final.get("test_rmse") is not None:
        parts.append(f"test RMSE {final['test_rmse']:.4g}, MAE {final['test_mae']:.4g}")
    if result["stopped"]:
        parts.append(f"training stopped: {result['stopped']}")
    if final.get("diverged"):
        parts.append(final["diverged"])
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


def _check_folders(paths: dict[str, Path | None], mkdir: bool, create: bool) -> None:
    """Every output's folder must exist (a typo is an error, not a new folder) unless
    ``--mkdir``, which creates the missing ones — once the run is about to start."""
    for path in paths.values():
        if path is not None and create == mkdir:
            require_folder(path, mkdir)


def _stop_interrupted(model: Any, history: Any, info: dict[str, Any],
                      paths: dict[str, Path | None], epochs: int,
                      announce: Callable[[str], None]) -> None:
    """Ctrl-C during training: keep the model so far only when --save asked for a model,
    write no figure or report (they would describe a run that did not finish), and say so
    in one line; the command then exits with code 130."""
    done = f"interrupted after {len(history.epochs)} of {epochs} epochs"
    if paths["save"] is not None:
        _save_model(model, info, paths["save"])
        extra = "" if paths["plot"] is None and paths["report"] is None else (
            "; no figure or report is written for an interrupted run")
        announce(f"{done}: the model so far is saved to {paths['save']}{extra}")
    elif paths["plot"] is not None or paths["report"] is not None:
        announce(f"{done}: no figure or report is written for an interrupted run")


def run_train(options: dict[str, Any],
              announce: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Everything ``gradsight train`` does, minus the printing; returns the JSON document:
    ``config``, ``history``, ``final``, ``stopped``, ``diagnosis`` (the run's findings as
    :meth:`Findings.to_dict` gives them — ``worst``, ``counts``, ``findings`` —, or None
    when the model has no hidden layer) and, when ``options["neurons"]``, ``neurons``
    (the hidden units' states).

    ``announce`` receives, once the run is about to start, what was assumed reading a CSV
    file (one line each), and the line about an interrupted run. Ctrl-C during training
    raises KeyboardInterrupt after keeping the model so far (with --save only)."""
    from ..engine.train import fit  # late: NumPy, not needed for --help

    say = announce or (lambda line: None)
    o = options
    for option in ("epochs", "batch_size"):
        require_positive_int(f"--{option.replace('_', '-')}", o[option])
    paths = {key: o.get(key) for key in ("save", "plot", "report")}
    check_output_paths(paths["save"], paths["plot"], paths["report"])
    _check_folders(paths, bool(o.get("mkdir")), create=False)
    if not parse_hidden(o["hidden"]) and o.get("neurons"):  # fail before loading data
        raise InvalidValueError("--neurons classifies hidden units, but --hidden gives no "
                                "hidden layer; use e.g. --hidden 16,16")
    dataset, info, split = _prepare_data(o)
    model, loss, optimizer, built = _build(o, dataset.n_features, dataset.n_classes)
    X_train, X_test, y_train, y_test = split
    monitor = _run_monitor(paths["report"], built, len(y_train))
    _check_folders(paths, bool(o.get("mkdir")), create=True)
    for line in info["read"]:
        say(line)
    initial_loss, _ = _evaluate(model, loss, X_train, y_train)
    history = fit(model, X_train, y_train, loss=loss, optimizer=optimizer, epochs=o["epochs"],
                  batch_size=o["batch_size"], seed=o["seed"],
                  validation=None if X_test is None else (X_test, y_test),
                  callbacks=[monitor], progress=show_progress(o["quiet"]))
    if history.stopped == "interrupted":
        _stop_interrupted(model, history, info, paths, o["epochs"], say)
        raise KeyboardInterrupt
    train_loss, train_accuracy = _evaluate(model, loss, X_train, y_train)
    test_loss, test_accuracy = _evaluate(model, loss, X_test, y_test)
    config = {**{k: v for k, v in info.items()
                 if k not in ("feature_names", "mean", "std", "read")},
              **built, **{k: None if v is None else str(v) for k, v in paths.items()}}
    final: dict[str, Any] = {"epochs": len(history.epochs), "train_loss": train_loss,
                             "train_accuracy": train_accuracy, "test_loss": test_loss,
                             "test_accuracy": test_accuracy}
    regression = dataset.n_classes is None
    for part, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        rmse, mae = _regression_errors(model, X, y) if regression else (None, None)
        final.update({f"{part}_rmse": rmse, f"{part}_mae": mae})
    final["initial_loss"] = initial_loss
    final["diverged"] = _divergence(history.stopped, initial_loss,
                                    train_loss, built)
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
        data: str = typer.Option("moons", "--data", help=_DATA_HELP),
        target: str | None = typer.Option(None, "--target", help=_TARGET_HELP),
        task: str = typer.Option("auto", "--task", help=_TASK_HELP),
        header: bool | None = typer.Option(None, "--header/--no-header",
                                           help="the CSV's first row is (or is not) a header "
                                                "(default: detected — text above columns of "
                                                "numbers is a header)"),
        delimiter: str | None = typer.Option(None, "--delimiter",
                                             help="the CSV's cell separator, e.g. ';' or tab "
                                                  "(default: sniffed)"),
        decimal: str | None = typer.Option(None, "--decimal",
                                           help="the CSV's decimal mark, . or , (default: "
                                                "sniffed)"),
        categorical: str | None = typer.Option(None, "--categorical",
                                               help="onehot: encode each text column of a CSV "
                                                    "(≤ 20 values) as one 0/1 column per "
                                                    "value"),
        missing: str | None = typer.Option(None, "--missing",
                                           help="drop: drop the CSV rows with empty cells; "
                                                "mean: fill each with its column's mean"),
        hidden: str = typer.Option("16,16", "--hidden", help="hidden layer widths, e.g. 16,16"),
        activation: str = typer.Option("relu", "--activation", help="hidden activation"),
        init: str = typer.Option("he_normal", "--init", help="weight initialiser"),
        loss: str = typer.Option("auto", "--loss", help=_LOSS_HELP),
        optimizer: str = typer.Option("adam", "--optimizer",
                                      help="sgd, momentum, nesterov, adagrad, rmsprop, adam"),
        lr: float = typer.Option(_DEFAULT_LR, "--lr", help="learning rate η"),
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
        mkdir: bool = typer.Option(False, "--mkdir",
                                   help="create the missing folders of --save, --plot and "
                                        "--report (default: a missing folder is an error)"),
        neurons: bool = typer.Option(False, "--neurons",
                                     help="after training, count the hidden units that are "
                                          "dead, saturated (right/wrong) or learning"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Train an MLP on a toy data set or a CSV file and report loss and accuracy (or, for
        a numeric target, the error). Ctrl-C stops with exit code 130, keeping the model so
        far only with --save; a diverged run is reported and exits 0."""
        options = dict(locals())
        for key in ("save", "plot", "report"):
            options[key] = None if options[key] is None else Path(options[key])
        result = run_train(options, lambda line: typer.echo(line, err=True))
        if json_out:
            print_json(result)
        else:
            _summary(result["config"], result["final"], result["stopped"])
            if neurons:
                _neuron_table(result["neurons"])
            _diagnosis_section(result["diagnosis"])
