"""One browser tab's network: data, model, optimizer and the steps of ``fit``, one at a time.

A :class:`NetworkSession` trains exactly as :func:`gradsight.fit` does — the same split and
standardisation as ``gradsight train`` (:func:`~gradsight.engine.preprocess.split_standardized`),
the same model (:func:`~gradsight.engine.model.mlp` seeded with ``seed``), the same shuffled
batches (:meth:`gradsight.engine.loop.Run.batches`, whose generator is seeded with ``seed``)
and the same step (:class:`gradsight.engine.step.PlainStep`, the articles' recipe with the NaN
guard) — but hands control back after every step, so that the server can send a frame, change
η or pause between two steps. After N steps the weights are those of ``fit`` stopped after N
steps with the same seed, bit for bit (``tests/test_play_server.py`` holds it to that).

What a frame shows, and how often it is computed:

* every frame: the cost and accuracy on the whole training and test parts, the decision
  boundary on a 40 × 40 grid, the last step's ‖∂C/∂W‖ and ‖∂C/∂b‖ per layer (Nielsen's speed
  of learning) and the weights;
* every few frames: the state of every hidden unit (:func:`gradsight.classify_neurons` on the
  training part: learning, saturated-wrong, saturated-right, dead);
* about once a second: the findings of :func:`gradsight.diagnose` on the Monitor's records of
  the last :data:`FINDINGS_WINDOW` steps.

A step whose cost or gradient is not finite is not applied (the step's NaN guard); the session
then stops and its frame says why in ``diverged``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import optim
from ..diagnostics.history import RecordList
from ..diagnostics.monitor import Monitor
from ..diagnostics.neurons import classify_neurons, hidden_layers
from ..diagnostics.verdict import diagnose
from ..engine import data as gdata
from ..engine.callbacks import History
from ..engine.layers import Dense
from ..engine.loop import Run
from ..engine.losses import loss as get_loss
from ..engine.losses import resolve_loss
from ..engine.model import Sequential, mlp
from ..engine.preprocess import split_standardized
from ..engine.step import PlainStep
from ..engine.train import evaluate
from ..errors import GradsightError
from .inspect import unit_panel, weight_panel
from .limits import Limits

__all__ = ["BOUNDARY_POINTS", "FINDINGS_WINDOW", "NetworkSession", "SessionCounter",
           "TEST_SIZE", "make_split", "split_arrays"]

BOUNDARY_POINTS = 40  # the decision boundary's grid is 40 × 40
TEST_SIZE = 0.2  # the held-out share, as `gradsight train`'s default
FINDINGS_WINDOW = 200  # diagnose reads the Monitor's records of the last 200 steps
FINDINGS_SECONDS = 1.0  # ... about once a second while playing
UNITS_EVERY = 5  # unit states every 5th frame while playing
#: the generator options of each data set in the playground: two classes everywhere (the
#: boundary is one probability), XOR as noisy corners
DATA_OPTIONS: dict[str, dict[str, Any]] = {
    "xor": {"noise": 0.2}, "spirals": {"classes": 2}, "circles": {}, "moons": {}, "gauss": {},
}
WEIGHT_DECIMALS = 6  # weights in frames are rounded: the page draws them, tests read exact ones


@dataclass
class Split:
    """The standardised training and test parts of a data set, and the box the page draws."""

    X_train: np.ndarray
    X_test: np.ndarray | None
    y_train: np.ndarray
    y_test: np.ndarray | None
    bounds: tuple[tuple[float, float], tuple[float, float]] | None  # None: not 2 features


def make_split(dataset: str, n_samples: int, seed: int) -> Split:
    """The data set as ``gradsight train`` prepares it: generated (its own seed 0, as
    ``train`` loads it), split 80/20 stratified by ``seed``, standardised with the
    training part's statistics."""
    options = {"n": n_samples, **DATA_OPTIONS[dataset]}
    data = gdata.load(dataset, **options)
    return split_arrays(data.X, data.y, seed)


def split_arrays(X: np.ndarray, y: np.ndarray, seed: int) -> Split:
    """Class-labelled samples (a data set, an uploaded CSV) split and standardised as
    ``gradsight train`` does; the box to draw when there are two features (else None)."""
    X_train, X_test, y_train, y_test, _, _ = split_standardized(X, y, TEST_SIZE, seed)
    if X_train.shape[1] != 2:
        return Split(X_train, X_test, y_train, y_test, None)
    every = X_train if X_test is None else np.vstack([X_train, X_test])
    low, high = every.min(axis=0), every.max(axis=0)
    margin = np.maximum(0.1 * (high - low), 0.5)
    box = ((float(low[0] - margin[0]), float(high[0] + margin[0])),
           (float(low[1] - margin[1]), float(high[1] + margin[1])))
    return Split(X_train, X_test, y_train, y_test, box)


def build_model(config: dict[str, Any], n_classes: int = 2,
                n_inputs: int = 2) -> tuple[Sequential, Any, Any]:
    """(model, loss, optimizer) as ``gradsight train`` builds them from a configuration."""
    loss_name, n_out, output_activation = resolve_loss(config["loss"], n_classes)
    spec = [n_inputs, *config["hidden"], n_out]
    model = mlp(spec, activation=config["activation"], output_activation=output_activation,
                init=config["init"], seed=config["seed"])
    return model, get_loss(loss_name), optim.get(config["optimizer"], lr=config["lr"])


class NetworkSession:
    """The network of one tab. Not thread-safe: one caller at a time (the server awaits
    each call before the next)."""

    def __init__(self, config: dict[str, Any], limits: Limits | None = None,
                 data: gdata.Dataset | None = None) -> None:
        self.limits = limits or Limits()
        self.config = dict(config)
        #: an uploaded CSV's data set (``configure`` with ``upload``), else None
        self.data = data
        self.split = (make_split(config["dataset"], config["n_samples"], config["seed"])
                      if data is None else split_arrays(data.X, data.y, config["seed"]))
        self.n_classes = 2 if data is None else int(data.n_classes or 2)
        self.reset()

    # ---- set-up --------------------------------------------------------------------------
    def reset(self) -> None:
        """Fresh weights from the seed, a fresh optimizer and batch order: step 0."""
        self.model, self.loss, self.optimizer = build_model(
            self.config, self.n_classes, int(self.split.X_train.shape[1]))
        self.monitor = Monitor(every=1)
        model, loss, optimizer, monitor = self.model, self.loss, self.optimizer, self.monitor
        X = model.check_input(self.split.X_train, "training X")
        target = loss.prepare_target(self.split.y_train, (X.shape[0], model.n_outputs),
                                     model.dtype)
        data = (X, target, loss.labels(target), 0.0)

        def make_step(history: History) -> PlainStep:
            return PlainStep(model, loss, optimizer, [monitor], history)

        self.run = Run(model, loss, optimizer, data, self.config["batch_size"], True,
                       self.config["seed"], [monitor], self.limits.max_steps, make_step)
        monitor.on_train_begin(self.run.ctx)
        self._batches: Any = None
        self._epoch_total, self._epoch_correct = 0.0, 0
        self.diverged: str | None = None
        self.stopped: str | None = None
        self.frames = 0
        self._units: list[dict[str, Any]] = []
        self._findings: list[dict[str, Any]] = []
        self._findings_at = -math.inf
        self.has_hidden = bool(self.config["hidden"])

    @property
    def step_count(self) -> int:
        """Optimizer steps applied so far."""
        return int(self.run.ctx.step)

    def set_lr(self, lr: float) -> None:
        """η for the next steps (the optimizer keeps its state: Adam's moments, momentum)."""
        self.optimizer.lr = lr
        self.config["lr"] = lr

    # ---- training ------------------------------------------------------------------------
    def step(self) -> bool:
        """One batch of ``fit``'s loop; False (and nothing done) when the session stopped."""
        if self.diverged is not None or self.stopped is not None:
            return False
        run, ctx = self.run, self.run.ctx
        if ctx.step >= self.limits.max_steps:
            self.stopped = f"the session reached the limit of {self.limits.max_steps} steps"
            return False
        if self._batches is None:  # a new epoch: the generator draws its shuffled order
            self._batches = run.batches()
            self._epoch_total, self._epoch_correct = 0.0, 0
        index, X_b, y_b, labels_b = next(self._batches)
        ctx.batch_index = index
        with np.errstate(all="ignore"):  # the NaN guard reports, NumPy need not warn
            problem = run.step.run(ctx, X_b, y_b, labels_b)
        if problem is not None:
            self.diverged = (
                f"diverged: non-finite {problem[0]} at step {ctx.step} (epoch {ctx.epoch}) with "
                f"η = {self.config['lr']:g}: {problem[1]}. Training stopped; the network keeps "
                "the last finite weights. Try a smaller η, or reset.")
            return False
        self._epoch_total += ctx.batch_loss * X_b.shape[0]
        if labels_b is not None:
            self._epoch_correct += run.step.correct
        ctx.step += 1
        if index == ctx.batches_per_epoch - 1:
            self._end_epoch()
        self._trim()
        return True

    def _end_epoch(self) -> None:
        """The epoch's entry, as ``fit`` keeps it (mean cost over its batches, before each
        batch's update), and a new epoch."""
        run, ctx = self.run, self.run.ctx
        accuracy = None if run.labels is None else self._epoch_correct / run.n
        run.history.epochs.append({"epoch": ctx.epoch, "loss": self._epoch_total / run.n,
                                   "accuracy": accuracy, "val_loss": None,
                                   "val_accuracy": None})
        ctx.epoch += 1
        self._batches = None

    def _trim(self) -> None:
        """Keep the recent past only: a session may play for hours."""
        per_step = max(1, len(self.monitor.history) // max(1, self.step_count))
        keep = FINDINGS_WINDOW * per_step
        if len(self.monitor.history) > 2 * keep:
            del self.monitor.history[:-keep]
            del self.monitor.losses[:-FINDINGS_WINDOW]
        losses = self.run.history.batch_losses
        if len(losses) > 2 * FINDINGS_WINDOW:
            del losses[:-FINDINGS_WINDOW]
        if len(self.run.history.epochs) > 1000:
            del self.run.history.epochs[:-500]

    def burst(self, steps: int, budget: float) -> int:
        """Up to ``steps`` steps, for at most about ``budget`` seconds; the steps made."""
        start, made = time.perf_counter(), 0
        while made < steps and self.step():
            made += 1
            if time.perf_counter() - start > budget:
                break
        return made

    # ---- what the page draws -------------------------------------------------------------
    def frame(self, units: bool = True, findings: bool = True) -> dict[str, Any]:
        """The ``frame`` message; ``units``/``findings``: recompute those (else the last)."""
        self.frames += 1
        split, model, loss = self.split, self.model, self.loss
        with np.errstate(all="ignore"):
            train_loss, train_accuracy = evaluate(model, split.X_train, split.y_train, loss)
            val_loss, val_accuracy = (None, None) if (
                split.X_test is None or split.y_test is None) else evaluate(
                model, split.X_test, split.y_test, loss)
            boundary = self.boundary()
            if units and self.has_hidden:
                self._units = self.unit_states()
            if findings and self.has_hidden:
                self._findings = self.findings()
        model.forget()  # the passes over the grid and the data cached large arrays
        batch_losses = self.run.history.batch_losses
        return {
            "type": "frame", "step": self.step_count, "epoch": int(self.run.ctx.epoch),
            "loss": train_loss, "accuracy": train_accuracy,
            "val_loss": val_loss, "val_accuracy": val_accuracy,
            "batch_loss": batch_losses[-1] if batch_losses else None,
            "lr": self.optimizer.lr, "boundary": boundary, "flow": self.flow(),
            "units": self._units, "weights": self.weights(), "findings": self._findings,
            "diverged": self.diverged, "stopped": self.stopped,
        }

    def boundary(self) -> dict[str, Any] | None:
        """P(class 1) on a 40 × 40 grid over the data, in row order (rows follow x₂): the
        softmax of the two logits (cross-entropy) or ½ + (ŷ₁ − ŷ₀)/2 for the two sigmoid
        outputs of the quadratic cost — above ½ exactly where the network predicts class 1.
        None when it cannot be drawn: not two features, or not two classes (an upload)."""
        if self.split.bounds is None or self.n_classes != 2:
            return None
        (x_low, x_high), (y_low, y_high) = self.split.bounds
        xs = np.linspace(x_low, x_high, BOUNDARY_POINTS)
        ys = np.linspace(y_low, y_high, BOUNDARY_POINTS)
        grid_x, grid_y = np.meshgrid(xs, ys)
        output = self.model.predict(np.column_stack([grid_x.ravel(), grid_y.ravel()]))
        if self.loss.name == "cross_entropy":
            p = 1.0 / (1.0 + np.exp(output[:, 0] - output[:, 1]))
        else:
            p = np.clip(0.5 + (output[:, 1] - output[:, 0]) / 2, 0.0, 1.0)
        return {"n": BOUNDARY_POINTS, "x": [x_low, x_high], "y": [y_low, y_high],
                "p": np.round(np.nan_to_num(p, nan=0.5), 4)}

    def flow(self) -> list[dict[str, Any]]:
        """‖∂C/∂W‖ and ‖∂C/∂b‖ of every Dense layer at the last step (0 before the first)."""
        return [{"layer": layer.name, "grad_W_norm": float(np.linalg.norm(layer.grad_W)),
                 "grad_b_norm": float(np.linalg.norm(layer.grad_b))}
                for layer in self.model.dense_layers]

    def weights(self) -> list[dict[str, Any]]:
        return [{"layer": layer.name, "W": np.round(layer.W, WEIGHT_DECIMALS),
                 "b": np.round(layer.b, WEIGHT_DECIMALS)} for layer in self.model.dense_layers]

    def unit_states(self) -> list[dict[str, Any]]:
        """Every hidden unit's state over the training part, judged with the training loss;
        ``layer`` is the Dense layer whose outputs the units are."""
        states = classify_neurons(self.model, self.split.X_train, self.split.y_train,
                                  loss=self.loss)
        dense = [layer.name for layer in self.model.layers if isinstance(layer, Dense)]
        by_layer: dict[int, dict[str, Any]] = {}
        for unit in states:
            entry = by_layer.setdefault(unit.hidden, {
                "layer": dense[unit.hidden], "activation_layer": unit.layer,
                "hidden": unit.hidden, "states": []})
            entry["states"].append(unit.state)
        return [by_layer[k] for k in sorted(by_layer)]

    def findings(self) -> list[dict[str, Any]]:
        """The diagnose findings of the last :data:`FINDINGS_WINDOW` steps ([] before the
        first step)."""
        records = self.monitor.history
        if not records or not hidden_layers(self.model):
            return []
        per_step = max(1, len(records) // max(1, min(self.step_count, len(records))))
        recent = RecordList(records[-FINDINGS_WINDOW * per_step:])
        recent.setup = records.setup
        losses = self.run.history.batch_losses[-FINDINGS_WINDOW:]
        try:
            found = diagnose(recent, self.model, (self.split.X_train, self.split.y_train),
                             losses or None, loss=self.loss.name)
        except GradsightError:
            return []
        return [{"code": f.code, "severity": f.severity, "title": f.title,
                 "layers": f.layers, "evidence": f.evidence} for f in found]

    def unit(self, layer: str, index: int) -> dict[str, Any]:
        """The ``unit`` message: one hidden unit's f′(z) over the training part, its
        histogram and state (:func:`gradsight.play.inspect.unit_panel`)."""
        with np.errstate(all="ignore"):
            return unit_panel(self.model, self.loss, self.split.X_train, self.split.y_train,
                              layer, index)

    def weight(self, layer: str, row: int, col: int, sample: int) -> dict[str, Any]:
        """The ``weight`` message: the chain rule of ∂C/∂W[row, col] for one training sample,
        checked against the engine (:func:`gradsight.play.inspect.weight_panel`)."""
        with np.errstate(all="ignore"):
            return weight_panel(self.model, self.loss, self.split.X_train, self.split.y_train,
                                layer, row, col, sample)

    def playing_frame(self) -> dict[str, Any]:
        """A frame while playing: units every :data:`UNITS_EVERY` frames, findings about once
        a second."""
        now = time.perf_counter()
        findings = now - self._findings_at >= FINDINGS_SECONDS
        if findings:
            self._findings_at = now
        return self.frame(units=self.frames % UNITS_EVERY == 0, findings=findings)

    def configured(self) -> dict[str, Any]:
        """The ``configured`` message: the resolved configuration, the points, the layers."""
        split = self.split

        def points(X: np.ndarray | None, y: np.ndarray | None) -> list[list[float]]:
            if X is None or y is None or split.bounds is None:
                return []
            return np.column_stack([X, y]).tolist()

        return {"type": "configured", "config": dict(self.config),
                "points": {"train": points(split.X_train, split.y_train),
                           "test": points(split.X_test, split.y_test)},
                "layers": [layer.name for layer in self.model.dense_layers],
                "sizes": self.model.sizes, "bounds": None if split.bounds is None else {
                    "x": list(split.bounds[0]), "y": list(split.bounds[1])},
                "data": None if self.data is None else self.data_info()}

    def data_info(self) -> dict[str, Any]:
        """An upload's data set in the ``configured`` message: what the page says of it."""
        data = self.data
        assert data is not None
        return {"name": data.name, "rows": data.n_samples, "features": data.n_features,
                "feature_names": list(data.feature_names), "target": data.target_name,
                "classes": [str(c) for c in data.classes or []],
                "drawable": self.split.bounds is not None and self.n_classes == 2}


class SessionCounter:
    """The open sessions, at most ``limit`` (each socket takes one and gives it back)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0

    def take(self) -> bool:
        """One more session, if the limit allows (called on the event loop only)."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open = max(0, self.open - 1)
