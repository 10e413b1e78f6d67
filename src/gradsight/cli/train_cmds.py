"""CLI commands ``gradsight train`` and ``gradsight explain`` (see gradsight.cli).

Heavy libraries (NumPy, matplotlib, the engine) are imported inside the functions so that
``gradsight --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._common import command, fail, parse_floats, print_json, show_progress

_DATA_HELP = ("moons, xor, circles, spirals, gauss, digits, or a PATH.csv (header row; the "
              "target is the last column unless --target)")
_LOSS_HELP = ("cross_entropy (K logits), bce_with_logits (2 classes, 1 logit), quadratic "
              "(sigmoid outputs, one-hot targets; linear output for a numeric target) or auto "
              "(cross_entropy for classes, quadratic for a numeric target)")
_FIGURE_SUFFIXES = {".png", ".svg", ".pdf", ".jpg", ".jpeg"}


# ---- train: pieces ------------------------------------------------------------------------
def _positive_int(option: str, value: int) -> int:
    from ..errors import InvalidValueError

    if value < 1:
        raise InvalidValueError(f"{option} must be an integer ≥ 1, got {value}")
    return value


def _parse_hidden(text: str) -> list[int]:
    """``"16,16"`` → [16, 16]; ``""``, ``"0"`` or ``"none"`` → no hidden layer."""
    from ..errors import InvalidValueError

    cleaned = text.strip().lower()
    if cleaned in ("", "0", "none"):
        return []
    sizes = []
    for part in cleaned.replace("-", ",").split(","):
        if not part.strip().isdigit() or int(part) < 1:
            raise InvalidValueError(f"--hidden must be positive integers like '16,16', got "
                                    f"{part.strip()!r} in {text!r}")
        sizes.append(int(part))
    return sizes


def _check_output_paths(save: Path | None, plot: Path | None, report: Path | None) -> None:
    """Fail before training, not after it, when an output path cannot be written."""
    from ..errors import InvalidValueError

    if save is not None and save.suffix.lower() != ".npz":
        raise InvalidValueError(f"--save must be a .npz path, got {str(save)!r}")
    if plot is not None and plot.suffix.lower() not in _FIGURE_SUFFIXES:
        raise InvalidValueError(f"--plot must end in .png, .svg, .pdf or .jpg, "
                                f"got {str(plot)!r}")
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise InvalidValueError(f"--report must be an .html path, got {str(report)!r}")
    for path in (save, plot, report):
        if path is not None and path.is_dir():
            raise InvalidValueError(f"{str(path)!r} is a directory, not a file path")


def _resolve_loss(loss: str, n_classes: int | None) -> tuple[str, int | None, str | None]:
    """(loss name, number of outputs or None for K, output activation) for the data."""
    from ..errors import InvalidValueError, UnknownNameError
    from ..nn import loss_names

    name = loss.strip().lower()
    if name == "auto":
        name = "cross_entropy" if n_classes is not None else "quadratic"
    if name not in loss_names():
        raise UnknownNameError("loss", loss, [*loss_names(), "auto"])
    if n_classes is None:
        if name != "quadratic":
            raise InvalidValueError(f"loss {name} needs class labels but the target is a "
                                    f"continuous number; use --loss quadratic")
        return name, 1, None
    if name == "cross_entropy":
        if n_classes < 2:
            raise InvalidValueError("cross_entropy needs at least 2 classes in the data")
        return name, n_classes, None
    if name == "bce_with_logits":
        if n_classes != 2:
            raise InvalidValueError(f"bce_with_logits needs exactly 2 classes, the data has "
                                    f"{n_classes}; use --loss cross_entropy")
        return name, 1, None
    return name, n_classes, "sigmoid"  # quadratic on one-hot targets, sigmoid outputs


def _prepare_data(source: str, target: str | None, test_size: float, seed: int
                  ) -> tuple[Any, dict[str, Any], tuple[Any, ...]]:
    """Load, split (stratified) and standardise with the training statistics."""
    from .. import data as gdata
    from ..errors import InvalidValueError

    if not 0 <= test_size < 1:
        raise InvalidValueError(f"--test-size must be in [0, 1), got {test_size}")
    dataset = gdata.load(source, target=target)
    X, y = dataset.X, dataset.y
    note = None
    if test_size > 0 and dataset.n_samples >= 20:
        X_train, X_test, y_train, y_test = gdata.train_test_split(X, y, test_size, seed)
    else:
        if test_size > 0:
            note = f"only {dataset.n_samples} samples: trained on all, no test split"
        X_train, X_test, y_train, y_test = X, None, y, None
    X_train, X_test, mean, std = gdata.standardize(X_train, X_test)
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

    from ..train import evaluate

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

    from ..diagnostics.neurons import classify_neurons, state_counts

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
                   result: dict[str, Any], paths: dict[str, Path | None]) -> None:
    """The model (with what a user needs to feed it: x′ = (x − mean)/std, class names), the
    figure and the HTML report."""
    if paths["save"] is not None:
        from ..serialize import save as save_model

        keys = ("data", "source", "target", "feature_names", "mean", "std", "n_classes",
                "classes")
        save_model(model, paths["save"], metadata={"trained_by": "gradsight train",
                                                   **{key: info[key] for key in keys}})
    if paths["plot"] is None and paths["report"] is None:
        return
    from ..plots import save_figure
    from ..plots.training import plot_training

    X_train, _, y_train, _ = split
    two_d = X_train.shape[1] == 2 and info["n_classes"] is not None
    figure = plot_training(history, *((model, X_train, y_train) if two_d else ()))
    if paths["plot"] is not None:
        save_figure(figure, paths["plot"])
    if paths["report"] is not None:
        from ..report import build_report, write_html

        config = result["config"]
        rows = [{"setting": k, "value": v} for k, v in config.items()
                if not isinstance(v, dict) and v is not None]
        tables = [rows]
        if "neurons" in result:
            tables.append([{"layer": layer, **counts}
                           for layer, counts in result["neurons"]["counts"].items()])
        report = build_report(
            f"gradsight train — {config['data']} ({config['spec']})", train_history=history,
            sections=[{"heading": "Run", "tables": tables, "figures": {"training": figure},
                       "text": _verdict_text(result)}],
            data={"final": result["final"], "stopped": result["stopped"]})
        write_html(report, paths["report"])


def _verdict_text(result: dict[str, Any]) -> str:
    final = result["final"]
    parts = [f"{final['epochs']} epochs; final training cost {final['train_loss']:.4g}"]
    if final["test_accuracy"] is not None:
        parts.append(f"test accuracy {final['test_accuracy']:.1%}")
    if result["stopped"]:
        parts.append(f"training stopped: {result['stopped']}")
    return "; ".join(parts) + "."


def _build(o: dict[str, Any], n_features: int, n_classes: int | None
           ) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model, loss, optimizer, their part of the config) from the options and data dims."""
    from .. import nn, optim

    hidden = _parse_hidden(o["hidden"])
    loss_name, n_out, output_activation = _resolve_loss(o["loss"], n_classes)
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
    """Everything ``gradsight train`` does, minus the printing; returns the JSON document
    (with ``neurons``, the hidden units' states, when ``options["neurons"]``)."""
    from ..errors import InvalidValueError
    from ..train import fit

    o = options
    for option in ("epochs", "batch_size"):
        _positive_int(f"--{option.replace('_', '-')}", o[option])
    paths = {key: o.get(key) for key in ("save", "plot", "report")}
    _check_output_paths(paths["save"], paths["plot"], paths["report"])
    if not _parse_hidden(o["hidden"]) and o.get("neurons"):  # fail before loading data
        raise InvalidValueError("--neurons classifies hidden units, but --hidden gives no "
                                "hidden layer; use e.g. --hidden 16,16")
    dataset, info, split = _prepare_data(o["data"], o["target"], o["test_size"], o["seed"])
    model, loss, optimizer, built = _build(o, dataset.n_features, dataset.n_classes)
    X_train, X_test, y_train, y_test = split
    history = fit(model, X_train, y_train, loss=loss, optimizer=optimizer, epochs=o["epochs"],
                  batch_size=o["batch_size"], seed=o["seed"],
                  validation=None if X_test is None else (X_test, y_test),
                  progress=show_progress(o["quiet"]))
    train_loss, train_accuracy = _evaluate(model, loss, X_train, y_train)
    test_loss, test_accuracy = _evaluate(model, loss, X_test, y_test)
    config = {**{k: v for k, v in info.items() if k not in ("feature_names", "mean", "std")},
              **built, **{k: None if v is None else str(v) for k, v in paths.items()}}
    final = {"epochs": len(history.epochs), "train_loss": train_loss,
             "train_accuracy": train_accuracy, "test_loss": test_loss,
             "test_accuracy": test_accuracy}
    result = {"config": config, "history": [dict(row) for row in history.epochs],
              "final": final, "stopped": history.stopped}
    if o.get("neurons"):
        result["neurons"] = _neuron_states(model, loss, X_train, y_train)
    _write_outputs(model, history, split, info, result, paths)
    return result


# ---- explain ------------------------------------------------------------------------------
def run_explain(x: str | None, w: str | None, b: float | None, y: str | None, lr: float,
                network: str | None, seed: int, activation: str) -> Any:
    """The walkthrough object for ``gradsight explain``'s options."""
    from .. import explain
    from ..errors import InvalidValueError

    xs = parse_floats(x, "--x") if x is not None else None
    ys = parse_floats(y, "--y") if y is not None else None
    if network is None:
        if ys is not None and len(ys) != 1:
            raise InvalidValueError(f"--y must be one number for the single neuron, got {y!r}")
        ws = parse_floats(w, "--w") if w is not None else None
        n_x = len(xs) if xs is not None else 2  # the defaults x = (1, 0.5), w = (0.4, −0.6)
        n_w = len(ws) if ws is not None else 2
        if n_x != n_w:
            x_text = "--x has" if xs is not None else "the default x has"
            w_text = "--w has" if ws is not None else "the default w has"
            raise InvalidValueError(f"{x_text} {n_x} values and {w_text} {n_w}; x and w "
                                    f"need the same length (give both)")
        kwargs: dict[str, Any] = {"lr": lr}
        for key, value in (("x", xs), ("w", ws), ("b", b), ("y", ys[0] if ys else None)):
            if value is not None:
                kwargs[key] = value
        return explain.explain_neuron(**kwargs)
    if w is not None or b is not None:
        raise InvalidValueError("--w and --b set the single neuron; with --network the "
                                "weights are drawn from --seed")
    return explain.explain_network(network, x=xs, y=ys, seed=seed, activation=activation,
                                   output_activation="sigmoid", lr=lr)


_TRUTH_INPUTS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))  # train_neuron's X


def run_train_neuron(table: str, epochs: int, lr: float, seed: int,
                     plot: Path | None) -> tuple[Any, dict[str, Any]]:
    """``explain --train``: the seeds' neuron trained on a truth table, its JSON document,
    and the training curve written to ``plot``."""
    from ..explain import train_neuron

    _positive_int("--epochs", epochs)
    _check_output_paths(None, plot, None)
    trained = train_neuron(table, epochs=epochs, lr=lr, seed=seed)
    doc = {**trained.to_dict(), "inputs": [list(x) for x in _TRUTH_INPUTS],
           "targets": trained.targets.tolist(), "epochs_run": len(trained.losses),
           "plot": None if plot is None else str(plot)}
    if plot is not None:
        from ..plots import save_figure
        from ..plots.training import plot_history

        rows = [{"epoch": i, "loss": loss, "accuracy": accuracy} for i, (loss, accuracy)
                in enumerate(zip(trained.losses, trained.accuracies, strict=True))]
        save_figure(plot_history(rows), plot)
    return trained, doc


def _sampled_epochs(n: int, count: int = 12) -> list[int]:
    """Epoch indices to print: all of a short run, else log-spaced (the slow start shows)."""
    import numpy as np

    if n <= count:
        return list(range(n))
    return sorted({0, n - 1, *(int(k) - 1 for k in np.geomspace(1, n, count).round())})


def _neuron_training_lines(trained: Any, doc: dict[str, Any]) -> list[str]:
    from ..explain import fmt

    name = trained.data.upper()
    out = [f"One sigmoid neuron ŷ = σ(w₁x₁ + w₂x₂ + b) learning {name}: "
           f"C = 1/(2N) Σ(ŷ − y)² over the N = 4 inputs",
           f"w ← w − η ∂C/∂w on all 4 inputs per epoch, η = {fmt(trained.lr)}, "
           f"{trained.epochs} epochs, seed {trained.seed}",
           "C and accuracy at the start of each epoch (before its update); end: after the "
           "last update", "  epoch  C           accuracy"]
    for i in _sampled_epochs(len(trained.losses)):
        accuracy = trained.accuracies[i]
        shown = "—" if accuracy is None else f"{accuracy:.0%}"
        out.append(f"  {i:>5}  {fmt(trained.losses[i]):<10}  {shown:>8}")
    out.append(f"  {'end':>5}  {fmt(trained.final_cost):<10}  {trained.accuracy:>8.0%}")
    out.append("  x1  x2  target y  ŷ       ŷ > 0.5")
    for (x1, x2), t, o, p in zip(_TRUTH_INPUTS, trained.targets, trained.outputs,
                                 trained.predictions, strict=True):
        out.append(f"  {x1:>2g}  {x2:>2g}  {int(t):>8}  {fmt(o):<7} {int(p):>7}")
    out.append(f"w = ({fmt(trained.w[0])}, {fmt(trained.w[1])}), b = {fmt(trained.b)}")
    if trained.stopped:
        out.append(f"training stopped: {trained.stopped}")
    if trained.learned:
        out.append(f"learned {name}: ŷ > 0.5 exactly on the inputs whose target is 1")
    elif trained.data == "xor":
        out.append("did not learn XOR: no single neuron can — no line separates its 1s "
                   "from its 0s (a hidden layer can: gradsight train --data xor)")
    elif all(o * (1 - o) < 0.0025 for o in trained.outputs):  # σ′ < 1% of its peak ¼
        out.append(f"did not learn {name}: the neuron saturated — σ′(z) = ŷ(1 − ŷ) ≈ 0 on "
                   "every input, so ∂C/∂w ≈ 0 and it stays stuck (try a smaller --lr)")
    else:
        out.append(f"did not learn {name} yet: try more --epochs or another --lr")
    if doc["plot"]:
        out.append(f"figure saved to {doc['plot']}")
    return out


def _explain_mode(o: dict[str, Any]) -> None:
    """Refuse options of the other mode: --train trains on a truth table's 4 inputs;
    --epochs and --plot only mean something with it."""
    from ..errors import InvalidValueError

    if o["train"] is not None:
        given = [f"--{key}" for key in ("x", "w", "b", "y", "network", "activation")
                 if o[key] is not None]
        if given:
            raise InvalidValueError(f"--train uses the 4 inputs of the truth table and one "
                                    f"sigmoid neuron; leave out {', '.join(given)}")
    else:
        given = [f"--{key}" for key in ("epochs", "plot") if o[key] is not None]
        if given:
            raise InvalidValueError(f"{' and '.join(given)} go with --train or|and|nand|xor")


# ---- registration -------------------------------------------------------------------------
def register(app: typer.Typer) -> None:
    """Add ``train`` and ``explain`` to ``app``."""

    @command(app, "train")
    def train(
        data: str = typer.Option("moons", "--data", help=_DATA_HELP),
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

    @command(app, "explain")
    def explain(
        x: str | None = typer.Option(None, "--x", help="inputs, e.g. 1,0.5"),
        w: str | None = typer.Option(None, "--w", help="weights, e.g. 0.4,-0.6"),
        b: float | None = typer.Option(None, "--b", help="bias (default 0.1)"),
        y: str | None = typer.Option(None, "--y", help="target (default 1)"),
        lr: float | None = typer.Option(None, "--lr",
                                        help="learning rate η (default 0.5; 4 with --train)"),
        network: str | None = typer.Option(None, "--network",
                                           help="walk a small network instead, e.g. 2-2-1"),
        seed: int = typer.Option(0, "--seed",
                                 help="seed of the --network or --train weights"),
        activation: str | None = typer.Option(None, "--activation",
                                              help="hidden activation of --network "
                                                   "(default sigmoid)"),
        train: str | None = typer.Option(None, "--train",
                                         help="train the neuron on a truth table instead: "
                                              "or, and, nand or xor"),
        epochs: int | None = typer.Option(None, "--epochs",
                                          help="epochs of --train (default 1000)"),
        plot: str | None = typer.Option(None, "--plot",
                                        help="with --train: write the training curve "
                                             "(.png/.svg/.pdf)"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
    ) -> None:
        """Backpropagation by the chain rule with numbers: one sigmoid neuron ŷ = σ(wᵀx + b)
        with C = ½(ŷ − y)² (or --network 2-2-1, layer by layer), checked against the engine
        and a central difference; --train or|and|nand|xor prints the neuron's training
        curve and whether it learned."""
        _explain_mode(dict(locals()))
        if train is not None:
            trained, doc = run_train_neuron(train, 1000 if epochs is None else epochs,
                                            4.0 if lr is None else lr, seed,
                                            None if plot is None else Path(plot))
            if json_out:
                print_json(doc)
            else:
                for line in _neuron_training_lines(trained, doc):
                    typer.echo(line)
            return
        walk = run_explain(x, w, b, y, 0.5 if lr is None else lr, network, seed,
                           activation or "sigmoid")
        if json_out:
            print_json(walk.to_dict())
        else:
            for line in walk.lines():
                typer.echo(line)
        if not walk.agree:
            fail("the engine's or the numeric gradient disagrees with the chain rule", code=1)
