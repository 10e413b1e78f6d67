"""The doctor's default runner: train gradsight's NumPy engine on one data set.

The data are loaded once, split (stratified, by the run's seed) and standardised with the
training statistics — as ``gradsight train`` does, with the same function
(:func:`gradsight.engine.preprocess.split_standardized`) — so every candidate sees the same
samples; data too small to split are also the test part. The model follows ``gradsight
train``'s conventions (:func:`gradsight.engine.losses.resolve_loss`): cross-entropy and
bce_with_logits read logits, the quadratic cost on classes has one sigmoid output per class
(one-hot targets), and a numeric target has one linear output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import optim
from ..activations import sigmoid
from ..engine import data as gdata
from ..engine import loss as get_loss
from ..engine import mlp
from ..engine.losses import resolve_loss
from ..engine.preprocess import split_standardized
from ..engine.train import fit_one_of_many as fit
from .monitor import Monitor
from .runner import RunOutcome
from .speed import speed_ratio
from .verdict import diagnose


def _as_dataset(dataset: Any, target: str | None) -> Any:
    if isinstance(dataset, gdata.Dataset):
        return dataset
    if isinstance(dataset, tuple) and len(dataset) == 2:
        X, y = np.asarray(dataset[0]), np.asarray(dataset[1])
        integer = y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(np.isfinite(y))
                                            and np.all(np.mod(y, 1) == 0) and y.min() >= 0)
        n_classes = int(y.max()) + 1 if integer and y.size else None
        return gdata.Dataset(X, y, "data", n_classes)
    return gdata.load(dataset, target=target)


def _probabilities(loss: str, output: np.ndarray) -> np.ndarray:
    """Class probabilities of a model's raw output under its training loss."""
    if loss == "cross_entropy":
        shifted = np.exp(output - output.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    if loss == "bce_with_logits":
        return sigmoid(output)
    return np.clip(output, 0.0, 1.0)


class EngineRunner:
    """``runner(config) -> RunOutcome`` for :func:`gradsight.diagnostics.fixes`."""

    def __init__(self, dataset: Any, *, target: str | None = None, test_size: float = 0.2,
                 monitor_every: int = 1, dtype: str = "float64") -> None:
        self.dataset = _as_dataset(dataset, target)
        self.classification = self.dataset.n_classes is not None
        self.test_size, self.monitor_every, self.dtype = test_size, monitor_every, dtype
        self._splits: dict[int, tuple[np.ndarray, ...]] = {}

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with ``loss="auto"`` resolved for the data and the loss name checked."""
        name, _, _ = resolve_loss(config["loss"], self.dataset.n_classes)
        return {**config, "loss": name}

    def split(self, seed: int) -> tuple[np.ndarray, ...]:
        """(X_train, X_test, y_train, y_test), standardised; the test part is the training
        part when the data are too small to split."""
        if seed not in self._splits:
            X_train, X_test, y_train, y_test, _, _ = split_standardized(
                self.dataset.X, self.dataset.y, self.test_size, seed,
                stratify=self.dataset.n_classes is not None)
            if X_test is None or y_test is None:  # too small to split: test on the training part
                X_test, y_test = X_train, y_train
            self._splits[seed] = (X_train, X_test, y_train, y_test)
        return self._splits[seed]

    def __call__(self, config: dict[str, Any]) -> RunOutcome:
        config = self.resolve(config)
        X_train, X_test, y_train, y_test = self.split(int(config["seed"]))
        _, n_out, output_activation = resolve_loss(config["loss"], self.dataset.n_classes)
        spec = [self.dataset.n_features, *config["hidden"], n_out]
        model = mlp(spec, activation=config["activation"],
                       output_activation=output_activation, init=config["init"],
                       bias_init=config["bias_init"], dtype=self.dtype, seed=config["seed"])
        monitor = Monitor(self.monitor_every)
        hyper = {"lr": config["lr"]}
        if config.get("momentum") is not None and optim.takes(config["optimizer"], "momentum"):
            hyper["momentum"] = config["momentum"]
        history = fit(model, X_train, y_train, loss=config["loss"],
                      optimizer=optim.get(config["optimizer"], **hyper),
                      epochs=config["epochs"], batch_size=config["batch_size"],
                      seed=config["seed"], callbacks=[monitor], progress=False)
        loss, accuracy = self.held_out(model, config, X_test, y_test)
        ratio = hidden_gradient_ratio(model, X_train[:1000], y_train[:1000], config["loss"])
        findings = diagnose(monitor, model, (X_train, y_train), history, loss=config["loss"])
        model.forget()  # the last passes' caches: 7 MB of a 100 kB model sent back by a worker
        return RunOutcome(loss, accuracy, ratio, findings, history, monitor.history,
                          {"stopped": history.stopped, "spec": "-".join(map(str, spec)),
                           # for doctor --report's hidden-unit figures (not serialised)
                           "trained_model": model, "training_data": (X_train, y_train)})

    def held_out(self, model: Any, config: dict[str, Any], X: np.ndarray, y: np.ndarray
                 ) -> tuple[float, float | None]:
        """(cost in ``config["eval_loss"]``, accuracy) of the model on the held-out part."""
        own = get_loss(config["loss"])
        output = model.predict(X)
        accuracy = own.accuracy(output, y)
        evaluation = config.get("eval_loss") or config["loss"]
        if evaluation == config["loss"]:
            return own.value(output, y), accuracy
        probabilities = _probabilities(config["loss"], output.astype(np.float64))
        _, n_eval, _ = resolve_loss(evaluation, self.dataset.n_classes)
        if probabilities.shape[1] == 1 and n_eval == 2:
            probabilities = np.hstack([1.0 - probabilities, probabilities])
        elif probabilities.shape[1] == 2 and n_eval == 1:
            probabilities = probabilities[:, 1:]
        clipped = np.clip(probabilities, 1e-12, 1.0 - 1e-12)
        if evaluation == "cross_entropy":
            return get_loss(evaluation).value(np.log(clipped), y), accuracy
        if evaluation == "bce_with_logits":
            return get_loss(evaluation).value(np.log(clipped) - np.log1p(-clipped), y), accuracy
        return get_loss(evaluation).value(probabilities, y), accuracy


def hidden_gradient_ratio(model: Any, X: np.ndarray, y: np.ndarray, loss: str) -> float | None:
    """‖∂C/∂b‖ of the last hidden layer / of the first, for the gradient of C over (X, y).

    Nielsen's "speed of learning" ratio (chapter 5), from one forward and backward pass over
    the samples given; None with fewer than two hidden layers. At zero and for non-finite
    speeds it follows :func:`~gradsight.diagnostics.speed.speed_ratio`.
    """
    dense = model.dense_layers
    if len(dense) < 3:
        return None
    cost = get_loss(loss)
    output = model.forward(X)
    model.backward(cost.gradient(output, y))
    first = float(np.linalg.norm(dense[0].grad_b))
    last = float(np.linalg.norm(dense[-2].grad_b))
    return speed_ratio(first, last)
