"""The vanishing-gradient lab: measure how fast each hidden layer learns.

Backpropagation computes the error of layer l from the one above it,

    δ^l = σ′(z^l) ⊙ (W^(l+1))ᵀ δ^(l+1),      ∂C/∂b^l = δ^l,

so every layer further from the output multiplies δ by another σ′(z) ≤ 0.25 (the article on
the vanishing gradient).
Nielsen (Neural Networks and Deep Learning, chapter 5) calls ‖∂C/∂b^l‖ the *speed of
learning* of hidden layer l and measures it for the gradient averaged over 1,000 training
samples: in a sigmoid net each layer learns about 4–5× more slowly than the one above it.

* :func:`nielsen_speeds` — his protocol (sigmoid, weights N(0, 1/n_in), biases N(0, 1)),
  with his MNIST numbers beside ours; any activation or initialiser can be swapped in.
* :func:`sweep` — depth × activation × initialiser × seeds: the speeds at initialisation and
  after a short training, the last/first ratio, the final loss and accuracy.
* :func:`activation_trajectory` — Glorot & Bengio (2010): in a deep sigmoid net with
  U[−1/√n, 1/√n] weights the top hidden layer is driven towards 0 early in training.

Costs (``loss``). The lab's output layer is z^L = a^(L−1)·W^L + b^L and the cost is one of

    cross_entropy  Nielsen's network2 CrossEntropyCost: a = σ(z^L) per output unit,
                   C = −1/N Σₙ Σₖ [yₖ ln aₖ + (1−yₖ) ln(1−aₖ)],   δ^L = (σ(z^L) − y)/N
    softmax        softmax cross-entropy (the engine's ``cross_entropy``),
                   C = 1/N Σₙ [log Σₖ e^(zₖ) − z_y],              δ^L = (softmax(z^L) − y)/N
    quadratic      Nielsen's network.py: a = σ(z^L), C = 1/(2N) Σₙ ‖a − y‖²,
                   δ^L = (a − y) ⊙ σ′(z^L)/N

``cross_entropy`` is the default because it is the cost behind Nielsen's figures, and on
``digits`` it reproduces even their size, not just their shape (the other two give speeds
about 5× smaller with the same layer-to-layer ratios). C is the *mean* over the samples, so
one backward pass of C on the 1,000 samples gives exactly Nielsen's averaged gradient.
Nielsen also used L2 regularisation (λ = 5) while training; the lab does not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..activations import get as get_activation
from ..diagnostics.parallel import check_parallel, parallel_runs
from ..diagnostics.speed import speed_ratio
from ..engine.losses import Loss
from ..errors import GradsightError, InvalidValueError, require_positive, require_positive_int
from .common import (
    LOSSES,
    NielsenCrossEntropy,
    callback_with,
    check_hidden,
    class_data,
    html_table,
    lab_cost,
    lab_network,
    train_sgd,
)
from .glorot import ActivationTrajectory, activation_trajectory

__all__ = [
    "NIELSEN_SPEEDS", "LOSSES", "NielsenCrossEntropy", "VanishResult", "SweepResult",
    "ActivationTrajectory", "nielsen_speeds", "sweep", "activation_trajectory",
    "layer_speeds", "SweepNetwork",
]

#: Nielsen's speeds ‖∂C/∂b^l‖ at initialisation on MNIST, hidden layers first → last.
NIELSEN_SPEEDS: dict[int, tuple[float, ...]] = {
    2: (0.066, 0.309),
    3: (0.012, 0.060, 0.283),
    4: (0.0030, 0.017, 0.070, 0.285),
}

Progress = Callable[[int, int], None]


def layer_speeds(model: Any, X: np.ndarray, y: np.ndarray, loss: Loss) -> list[float]:
    """Nielsen's speed of learning ‖∂C/∂b^l‖ of every hidden layer l (first → last), for C
    the mean cost over the rows of X — i.e. the norm of the gradient averaged over them."""
    output = model.forward(X)
    model.backward(loss.gradient(output, y))
    return [float(np.linalg.norm(dense.grad_b)) for dense in model.dense_layers[:-1]]


def _ratio(speeds: Sequence[float]) -> float:
    """‖∂C/∂b‖ of the last hidden layer over the first (> 1: the gradient vanishes)."""
    return speed_ratio(speeds[0], speeds[-1])


@dataclass
class VanishResult:
    """Speeds per hidden layer at initialisation and after training (means over seeds).

    ``layers``: one dict per hidden layer — ``layer`` (1 = nearest the input),
    ``speed_at_init``, ``speed_trained`` (None without training), ``nielsen`` (his MNIST
    value or None) and ``factor_to_next`` = speed_l / speed_(l+1), the shrinkage per layer
    that σ′ ≤ 0.25 bounds (times what Wᵀ adds).
    """

    config: dict[str, Any]
    layers: list[dict[str, Any]]
    ratio_last_first: float
    nielsen_reference: list[float] | None
    ratio_last_first_trained: float | None = None
    per_seed: list[list[float]] = field(default_factory=list)
    speeds_by_epoch: list[list[float]] = field(default_factory=list)
    loss_at_init: float | None = None
    loss_trained: float | None = None
    accuracy_trained: float | None = None

    def to_dict(self) -> dict[str, Any]:
        ref = self.nielsen_reference
        return {
            "config": self.config, "layers": self.layers,
            "ratio_last_first": self.ratio_last_first,
            "ratio_last_first_trained": self.ratio_last_first_trained,
            "nielsen": ref, "nielsen_ratio_last_first": _ratio(ref) if ref else None,
            "per_seed_speeds_at_init": self.per_seed, "speeds_by_epoch": self.speeds_by_epoch,
            "loss_at_init": self.loss_at_init, "loss_trained": self.loss_trained,
            "accuracy_trained": self.accuracy_trained,
        }

    def _repr_html_(self) -> str:
        return html_table(self.layers, ["layer", "speed_at_init", "speed_trained", "nielsen"],
                           f"speed ‖∂C/∂b‖ per hidden layer — last/first = "
                           f"{self.ratio_last_first:.3g}")


def nielsen_speeds(data: Any = "digits", hidden: Sequence[int] = (30, 30, 30, 30),
                   activation: str = "sigmoid", init: str = "scaled_normal",
                   bias_init: str = "normal", loss: str = "cross_entropy", samples: int = 1000,
                   seed: int = 0, train_epochs: int = 0, lr: float = 0.1, batch_size: int = 10,
                   seeds: int = 1, progress: Progress | None = None) -> VanishResult:
    """Nielsen's chapter-5 measurement: ‖∂C/∂b^l‖ per hidden layer for the gradient averaged
    over the first ``samples`` training samples, at initialisation and after ``train_epochs``
    epochs of SGD (rate ``lr``, mini-batches of ``batch_size``) on those samples.

    ``seeds`` networks (seeds ``seed``, ``seed+1``, ...) are measured and the speeds averaged
    per layer; ``ratio_last_first`` is the ratio of those means. ``progress(done, total)``
    is called after each network. Nielsen's MNIST speeds are attached when the network is
    his (sigmoid, scaled_normal, normal biases, 2–4 layers of 30 units). A data set with
    fewer than ``samples`` rows is used whole (``config["samples"]`` says how many).
    """
    sizes, n_seeds = check_hidden(hidden), require_positive_int("seeds", seeds)
    require_positive_int("samples", samples), require_positive_int("batch_size", batch_size)
    require_positive_int("train_epochs", train_epochs, 0), require_positive("lr", lr)
    activation = get_activation(activation).name
    cost, output_activation = lab_cost(loss)
    X, y, n_classes, name = class_data(data)
    X, y = X[:samples], y[:samples]
    runs = []
    for k in range(n_seeds):
        model = lab_network(X.shape[1], sizes, n_classes, activation, init, bias_init,
                         output_activation, seed + k)
        runs.append(_one_network(model, X, y, cost, train_epochs, lr, batch_size, seed + k))
        if progress:
            progress(k + 1, n_seeds)
    config = {"data": name, "hidden": list(sizes), "activation": activation, "init": init,
              "bias_init": bias_init, "loss": loss, "samples": int(X.shape[0]),
              "seeds": n_seeds, "seed": seed, "train_epochs": train_epochs, "lr": lr,
              "batch_size": batch_size}
    return _vanish_result(config, runs)


def _one_network(model: Any, X: np.ndarray, y: np.ndarray, cost: Loss, epochs: int, lr: float,
                 batch_size: int, seed: int) -> dict[str, Any]:
    run: dict[str, Any] = {"init": layer_speeds(model, X, y, cost),
                           "loss_init": cost.value(model.forward(X), y), "epochs": []}
    run["epochs"].append(run["init"])
    if epochs:
        # Nielsen's "while training": the speeds on the same samples after every epoch
        speeds = callback_with(on_epoch_end=lambda ctx: run["epochs"].append(
            layer_speeds(ctx.model, X, y, cost)))
        train_sgd(model, X, y, cost, epochs, lr, batch_size, seed, [speeds])
        run["trained"] = layer_speeds(model, X, y, cost)
        output = model.forward(X)
        run["loss"], run["accuracy"] = cost.value(output, y), cost.accuracy(output, y)
    return run


def _vanish_result(config: dict[str, Any], runs: list[dict[str, Any]]) -> VanishResult:
    init = np.mean([r["init"] for r in runs], axis=0).tolist()
    trained = np.mean([r["trained"] for r in runs], axis=0).tolist() if "trained" in runs[0] \
        else None
    nielsens_net = (config["activation"], config["init"], config["bias_init"]) == (
        "sigmoid", "scaled_normal", "normal") and set(config["hidden"]) == {30}
    reference = NIELSEN_SPEEDS.get(len(init)) if nielsens_net else None
    layers = []
    for i, speed in enumerate(init):
        layers.append({
            "layer": i + 1, "speed_at_init": speed,
            "speed_trained": trained[i] if trained else None,
            "nielsen": reference[i] if reference else None,
            "factor_to_next": speed / init[i + 1] if i + 1 < len(init) else None,
        })
    return VanishResult(
        config, layers, _ratio(init), list(reference) if reference else None,
        _ratio(trained) if trained else None, [r["init"] for r in runs],
        np.mean([r["epochs"] for r in runs], axis=0).tolist(),
        float(np.mean([r["loss_init"] for r in runs])),
        float(np.mean([r["loss"] for r in runs])) if trained else None,
        float(np.mean([r["accuracy"] for r in runs])) if trained else None,
    )


@dataclass
class SweepResult:
    """Rows of a depth × activation × initialiser sweep (each row a mean over seeds)."""

    config: dict[str, Any]
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "rows": self.rows}

    def _repr_html_(self) -> str:
        columns = ["depth", "activation", "init", "ratio_last_first_init",
                   "ratio_last_first_trained", "loss", "accuracy"]
        return html_table(self.rows, columns, "vanishing-gradient sweep")


def sweep(depths: Sequence[int] = (2, 4, 6),
          activations: Sequence[str] = ("sigmoid", "tanh", "relu", "leaky_relu"),
          inits: Sequence[str] = ("scaled_normal", "xavier_uniform", "he_normal"),
          seeds: int = 3, train_epochs: int = 6, data: Any = "digits", width: int = 30,
          bias_init: str = "zeros", loss: str = "cross_entropy", samples: int = 1000,
          lr: float = 0.1, batch_size: int = 16, seed: int = 0,
          progress: Progress | None = None, jobs: int = 1,
          scheduler: str | None = None) -> SweepResult:
    """Every depth × activation × initialiser, ``seeds`` networks each: speeds ‖∂C/∂b^l‖ per
    hidden layer (``width`` units) at initialisation and after ``train_epochs`` epochs of SGD
    on the first ``samples`` samples, their last/first ratios, and the final loss and
    accuracy on those samples — all means over the seeds. A run whose training diverges
    (non-finite loss: the training loop stops it) counts in the row's ``diverged``.

    ``jobs`` local processes (−1: one per core) or the workers of the Dask ``scheduler``
    (``tcp://HOST:PORT``) train the networks side by side
    (:func:`~gradsight.diagnostics.parallel.parallel_runs`): each seeds its own weights and
    shuffling, and the rows are put together in the serial order, so the numbers are the
    serial ones. ``progress(done, total)`` is called after each network — in the order they
    finish when parallel. A network whose worker process keeps dying raises a GradsightError
    naming it (a row is a mean over its seeds and cannot leave one out)."""
    if not depths or not activations or not inits:
        raise InvalidValueError("sweep needs at least one depth, activation and initialiser")
    depth_list = [require_positive_int("depth", d) for d in depths]
    act_list = [get_activation(a).name for a in activations]
    n_seeds, width = require_positive_int("seeds", seeds), require_positive_int("width", width)
    require_positive_int("train_epochs", train_epochs, 0), require_positive("lr", lr)
    check_parallel(jobs, scheduler)  # bad values refused before any training
    lab_cost(loss)  # the name checked here; each network builds its own cost
    X, y, n_classes, name = class_data(data)
    X, y = X[:require_positive_int("samples", samples)], y[:samples]
    cells = [(depth, activation, init) for depth in depth_list for activation in act_list
             for init in inits]
    network = SweepNetwork(X, y, n_classes, width, bias_init, loss, train_epochs, lr,
                           batch_size)
    tasks = [(*cell, seed + k) for cell in cells for k in range(n_seeds)]
    finished = [0]

    def done(_: int) -> None:
        finished[0] += 1
        if progress:
            progress(finished[0], len(tasks))

    with parallel_runs(jobs, scheduler) as runs:
        outcomes = runs.map(network, tasks, finished=done)
    for task, outcome in zip(tasks, outcomes, strict=True):
        if outcome.failed is not None:
            raise GradsightError(f"the sweep's network depth={task[0]}, activation="
                                 f"{task[1]}, init={task[2]}, seed={task[3]} failed: "
                                 f"{outcome.failed}")
    rows = [_sweep_row(*cell, [o.value for o in outcomes[i * n_seeds:(i + 1) * n_seeds]])
            for i, cell in enumerate(cells)]
    config = {"data": name, "width": width, "bias_init": bias_init, "loss": loss,
              "samples": int(X.shape[0]), "seeds": n_seeds, "seed": seed,
              "train_epochs": train_epochs, "lr": lr, "batch_size": batch_size}
    return SweepResult(config, rows)


@dataclass
class SweepNetwork:
    """One network of the sweep, ``network((depth, activation, init, seed)) -> run``: built
    and trained from the seed it is given alone, so it can run in any process."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    width: int
    bias_init: str
    loss: str
    train_epochs: int
    lr: float
    batch_size: int

    def __call__(self, task: tuple[int, str, str, int]) -> dict[str, Any]:
        depth, activation, init, seed = task
        cost, output_activation = lab_cost(self.loss)
        model = lab_network(self.X.shape[1], (self.width,) * depth, self.n_classes, activation,
                            init, self.bias_init, output_activation, seed)
        return _sweep_run(model, self.X, self.y, cost, self.train_epochs, self.lr,
                          self.batch_size, seed)


def _sweep_run(model: Any, X: np.ndarray, y: np.ndarray, cost: Loss, epochs: int, lr: float,
               batch_size: int, seed: int) -> dict[str, Any]:
    run: dict[str, Any] = {"init": layer_speeds(model, X, y, cost), "diverged": False}
    if epochs:
        history = train_sgd(model, X, y, cost, epochs, lr, batch_size, seed)
        # the NaN guard stops the run and keeps the last finite weights
        run["diverged"] = bool(history.stopped and history.stopped.startswith("non-finite"))
    run["trained"] = layer_speeds(model, X, y, cost)
    output = model.forward(X)
    run["loss"], run["accuracy"] = cost.value(output, y), cost.accuracy(output, y)
    return run


def _sweep_row(depth: int, activation: str, init: str, runs: list[dict]) -> dict[str, Any]:
    speeds_init = np.mean([r["init"] for r in runs], axis=0).tolist()
    speeds_trained = np.mean([r["trained"] for r in runs], axis=0).tolist()
    return {
        "depth": depth, "activation": activation, "init": init, "seeds": len(runs),
        "speeds_init": speeds_init, "speeds_trained": speeds_trained,
        "ratio_last_first_init": _ratio(speeds_init),
        "ratio_last_first_trained": _ratio(speeds_trained),
        "loss": float(np.mean([r["loss"] for r in runs])),
        "accuracy": float(np.mean([r["accuracy"] for r in runs])),
        "diverged": sum(r["diverged"] for r in runs),
    }

