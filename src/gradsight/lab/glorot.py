"""Glorot & Bengio (2010): follow each hidden layer's activations while a deep net trains.

In a deep sigmoid net with U[−1/√n, 1/√n] weights the top hidden layer is driven towards
a = 0 early in training. :mod:`gradsight.lab` re-exports :func:`activation_trajectory`
and :class:`ActivationTrajectory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..activations import get as get_activation
from ..errors import require_positive, require_positive_int
from .common import (
    callback_with,
    check_hidden,
    class_data,
    html_table,
    lab_cost,
    lab_network,
    train_sgd,
)

__all__ = ["ActivationTrajectory", "activation_trajectory"]


@dataclass
class ActivationTrajectory:
    """Mean and standard deviation of each hidden layer's activations a on a fixed probe
    set, recorded every few steps: ``mean[t][j]``, ``std[t][j]`` at ``steps[t]`` for
    ``layers[j]`` (first → top hidden layer)."""

    config: dict[str, Any]
    steps: list[int]
    layers: list[str]
    mean: list[list[float]]
    std: list[list[float]]

    def top_layer(self) -> dict[str, float]:
        """The top hidden layer's mean at the start, its lowest value, and at the end."""
        column = [row[-1] for row in self.mean]
        low = int(np.argmin(column))
        return {"start": column[0], "min": column[low], "min_step": self.steps[low],
                "end": column[-1]}

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "steps": self.steps, "layers": self.layers,
                "mean": self.mean, "std": self.std, "top_layer": self.top_layer()}

    def _repr_html_(self) -> str:
        rows = [{"step": s, **{n: f"{m:.3f} ± {d:.3f}" for n, m, d in zip(
            self.layers, mean, std, strict=True)}}
            for s, mean, std in zip(self.steps, self.mean, self.std, strict=True)]
        return html_table(rows[:: max(1, len(rows) // 10)], ["step", *self.layers],
                           "activation mean ± std per hidden layer")


def _hidden_activations(model: Any) -> list[int]:
    """Indices of the activation layers before the last Dense layer (the hidden ones)."""
    last_dense = max(i for i, layer in enumerate(model.layers) if hasattr(layer, "W"))
    return [i for i, layer in enumerate(model.layers[:last_dense])
            if hasattr(layer, "activation")]


def activation_trajectory(data: Any = "digits", hidden: Sequence[int] = (100,) * 4,
                          activation: str = "sigmoid", init: str = "glorot_standard",
                          bias_init: str = "zeros", loss: str = "softmax", epochs: int = 5,
                          lr: float = 0.1, batch_size: int = 10, probe: int = 300,
                          every: int = 20, seed: int = 0) -> ActivationTrajectory:
    """Glorot & Bengio's experiment: train a deep net (default: 4 sigmoid layers of 100 units,
    W ~ U[−1/√n_in, 1/√n_in], b = 0, softmax output) with SGD and record the mean and spread
    of each hidden layer's activations on the first ``probe`` samples every ``every`` steps.
    With sigmoid the top hidden layer is pushed towards a = 0 early on: the output layer
    first learns from its biases, and a top layer near 0 is what lets it ignore the
    still-useless hidden features."""
    sizes = check_hidden(hidden)
    require_positive_int("epochs", epochs), require_positive_int("every", every)
    require_positive("lr", lr)
    cost, output_activation = lab_cost(loss)
    X, y, n_classes, name = class_data(data)
    activation = get_activation(activation).name
    model = lab_network(X.shape[1], sizes, n_classes, activation, init, bias_init,
                     output_activation, seed)
    probe_X, hidden_idx = X[:require_positive_int("probe", probe)], _hidden_activations(model)
    steps: list[int] = []
    means: list[list[float]] = []
    stds: list[list[float]] = []

    def record(step: int, net: Any) -> None:
        a, outputs = probe_X, []
        for i, layer in enumerate(net.layers[: hidden_idx[-1] + 1]):
            a = layer.forward(a)
            if i in hidden_idx:
                outputs.append(np.array(a))
        steps.append(step)
        means.append([float(o.mean()) for o in outputs])
        stds.append([float(o.std()) for o in outputs])

    def after_batch(ctx: Any) -> None:
        if (ctx.step + 1) % every == 0:
            record(ctx.step + 1, ctx.model)

    probe_hooks = callback_with(on_train_begin=lambda ctx: record(0, ctx.model),
                         on_batch_end=after_batch)
    train_sgd(model, X, y, cost, epochs, lr, batch_size, seed, [probe_hooks])
    config = {"data": name, "hidden": list(sizes), "activation": activation, "init": init,
              "bias_init": bias_init, "loss": loss, "epochs": epochs, "lr": lr,
              "batch_size": batch_size, "probe": int(probe_X.shape[0]), "every": every,
              "seed": seed}
    names = [model.layers[i].name for i in hidden_idx]
    return ActivationTrajectory(config, steps, names, means, stds)
