"""CLI command ``gradsight explain`` (see gradsight.cli).

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
    MKDIR_HELP,
    check_output_folder,
    check_plot_option,
    command,
    fail,
    parse_floats,
    print_json,
    wrote,
)

#: the largest float64, for the overflow messages
_FLOAT_MAX = 1.7976931348623157e308


def run_explain(x: str | None, w: str | None, b: float | None, y: str | None, lr: float,
                network: str | None, seed: int, activation: str) -> Any:
    """The walkthrough object for ``gradsight explain``'s options."""
    from ..present import explain  # late: NumPy and the engine, not needed for --help

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
        check_neuron_numbers(kwargs)
        return _finite_walk(lambda: explain.explain_neuron(**kwargs), "")
    if w is not None or b is not None:
        raise InvalidValueError("--w and --b set the single neuron; with --network the "
                                "weights are drawn from --seed")
    return _finite_walk(lambda: explain.explain_network(
        network, x=xs, y=ys, seed=seed, activation=activation, output_activation="sigmoid",
        lr=lr), network)


def _overflow(what: str, value: str, fix: str) -> InvalidValueError:
    return InvalidValueError(f"{what} = {value} overflows: beyond the largest float "
                             f"({_FLOAT_MAX:.4g}); {fix}")


def check_neuron_numbers(given: dict[str, Any]) -> None:
    """Refuse numbers whose walkthrough would overflow float64 — z = w·x + b, the cost
    C = ½(ŷ − y)² and the update w − η ∂C/∂w — before the walkthrough is computed: a one-line
    error naming the value, not NumPy's warnings and a walk through z = inf."""
    import numpy as np

    x = np.asarray(given.get("x", (1.0, 0.5)), dtype=float)
    w = np.asarray(given.get("w", (0.4, -0.6)), dtype=float)
    # NumPy floats: Python's float ** raises OverflowError where NumPy gives inf
    b, y, lr = (np.float64(given.get(key, default)) for key, default in
                (("b", 0.1), ("y", 1.0), ("lr", 0.5)))
    if not (np.isfinite(lr) and lr > 0):
        return  # the walkthrough's own message: lr must be a finite number > 0
    with np.errstate(all="ignore"):  # overflow is found here and reported, never warned
        products = w * x
        for i, (wi, xi, product) in enumerate(zip(w, x, products, strict=True), 1):
            if not np.isfinite(product):
                raise _overflow(f"w{i}·x{i}", f"{wi:g}·{xi:g}", "choose smaller --w or --x")
        z = np.sum(products) + b
        if not np.isfinite(z):
            raise _overflow("z = w·x + b", " + ".join([*(f"{p:g}" for p in products), f"{b:g}"]),
                            "choose smaller --w, --x or --b")
        y_hat = 1.0 / (1.0 + np.exp(-z))
        if not np.isfinite(0.5 * (y_hat - y) ** 2):
            raise _overflow("C = ½(ŷ − y)²", f"½({y_hat:g} − {y:g})²", "choose a smaller --y")
        delta = (y_hat - y) * y_hat * (1.0 - y_hat)  # ∂C/∂z = ∂C/∂b
        names = [*(f"w{i}" for i in range(1, x.size + 1)), "b"]
        for name, old, grad in zip(names, np.append(w, b), delta * np.append(x, 1.0),
                                   strict=True):
            if not np.isfinite(old - lr * grad):
                raise _overflow(f"the update {name} − η·∂C/∂{name}",
                                f"{old:g} − {lr:g}·{grad:g}", "choose a smaller --lr")


def _finite_walk(compute: Any, network: str | None) -> Any:
    """Run the walkthrough with NumPy's warnings off and refuse it if a number in it is not
    finite (an overflow the checks before it did not foresee): a one-line error naming the
    first such number, never a warning or a walk through inf."""
    import numpy as np

    with np.errstate(all="ignore"):
        walk = compute()
        document = walk.to_dict()
    place = _first_nonfinite(document)
    if place is not None:
        name, value = place
        fix = "choose smaller --x or --y" if network else "choose smaller numbers"
        raise InvalidValueError(f"{name} = {value} is not finite: the numbers overflow "
                                f"float64 (largest {_FLOAT_MAX:.4g}); {fix}")
    return walk


def _first_nonfinite(value: Any, path: str = "") -> tuple[str, float] | None:
    """(where, value) of the first NaN or ±inf in a walkthrough's document, else None."""
    import math

    if isinstance(value, dict):
        for key, item in value.items():
            found = _first_nonfinite(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _first_nonfinite(item, f"{path}[{i}]")
            if found is not None:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return path, value
    return None


_TRUTH_INPUTS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))  # train_neuron's X


def run_train_neuron(table: str, epochs: int, lr: float, seed: int,
                     plot: Path | None, mkdir: bool = False) -> tuple[Any, dict[str, Any]]:
    """``explain --train``: the articles' neuron trained on a truth table, its JSON document,
    and the training curve written to ``plot``."""
    import numpy as np

    from ..present.explain import train_neuron  # late: NumPy, not needed for --help

    require_positive_int("--epochs", epochs)
    check_plot_option(plot)
    if plot is not None and plot.is_dir():
        raise InvalidValueError(f"{str(plot)!r} is a directory, not a file path")
    check_output_folder(plot, mkdir)
    with np.errstate(all="ignore"):  # a huge η: non-finite numbers are reported, not warned
        trained = train_neuron(table, epochs=epochs, lr=lr, seed=seed)
    doc = {**trained.to_dict(), "inputs": [list(x) for x in _TRUTH_INPUTS],
           "targets": trained.targets.tolist(), "epochs_run": len(trained.losses),
           "plot": None if plot is None else str(plot)}
    if plot is not None:
        from ..present.plots.training import plot_history  # late: matplotlib, not for --help

        rows = [{"epoch": i, "loss": loss, "accuracy": accuracy} for i, (loss, accuracy)
                in enumerate(zip(trained.losses, trained.accuracies, strict=True))]
        save_figure(plot_history(rows), plot)
    return trained, doc


def _explain_mode(o: dict[str, Any]) -> None:
    """Refuse options of the other mode: --train trains on a truth table's 4 inputs;
    --epochs and --plot only mean something with it."""
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
    """Add ``explain`` to ``app``."""

    @command(app, "explain")
    def explain(
        x: str | None = typer.Option(None, "--x", help="inputs, e.g. 1,0.5"),
        w: str | None = typer.Option(None, "--w", help="weights, e.g. 0.4,-0.6"),
        b: float | None = typer.Option(None, "--b", help="bias (default 0.1)"),
        y: str | None = typer.Option(None, "--y", help="target (default 1)"),
        lr: float | None = typer.Option(None, "--lr",
                                        help="the learning rate η (default 0.5; 4 with "
                                             "--train)"),
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
        mkdir: bool = typer.Option(False, "--mkdir", help=MKDIR_HELP),
    ) -> None:
        """Backpropagation by the chain rule with numbers: one sigmoid neuron ŷ = σ(wᵀx + b)
        with C = ½(ŷ − y)² (or --network 2-2-1, layer by layer), checked against the engine
        and a central difference; --train or|and|nand|xor prints the neuron's training
        curve and whether it learned."""
        _explain_mode(dict(locals()))
        if train is not None:
            trained, doc = run_train_neuron(train, 1000 if epochs is None else epochs,
                                            4.0 if lr is None else lr, seed,
                                            None if plot is None else Path(plot), mkdir)
            if json_out:
                print_json(doc)
            else:
                for line in trained.lines():  # the curve, the answers, the accuracy rule
                    typer.echo(line)
            if plot is not None:
                wrote(plot)
            return
        walk = run_explain(x, w, b, y, 0.5 if lr is None else lr, network, seed,
                           activation or "sigmoid")
        if json_out:  # the single neuron: exactly the keys; the network: + "check"
            print_json(walk.to_dict(check=False) if network is None else walk.to_dict())
        else:
            for line in walk.lines():
                typer.echo(line)
        if not walk.agree:
            fail("the engine's or the numeric gradient disagrees with the chain rule", code=1)
