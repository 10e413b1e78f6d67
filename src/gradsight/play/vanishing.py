"""The vanishing view: Nielsen's speed of learning ‖∂C/∂b^l‖ of every hidden layer, at
initialisation and while a deep network trains, beside the σ′ ≤ 0.25 bound.

A :class:`VanishingSession` builds the vanishing-gradient lab's network
(:func:`gradsight.lab.common.lab_network`: ``depth`` hidden layers of ``width`` units on the
first ``samples`` rows of ``digits``, with the lab's cost) and measures the speeds exactly as
:func:`gradsight.lab.nielsen_speeds` does — :func:`gradsight.lab.vanishing.layer_speeds`, the
gradient of the mean cost over those samples — so at step 0 they are the lab's numbers for the
same seed. It then trains with plain SGD one mini-batch at a time, as ``fit`` does (the same
shuffled batches from ``seed``, the same step with its NaN guard), and measures again after
every burst of steps.

Backpropagation multiplies δ by σ′(z) ≤ 1/4 at each sigmoid layer on its way down,
δ^l = σ′(z^l) ⊙ (W^(l+1))ᵀ δ^(l+1); with nothing else changing (Wᵀ of norm 1), the speed of
hidden layer l would be at most 0.25^(L−l) times the last hidden layer's. ``bound`` holds those
values (``factors`` the powers 0.25^(L−l)), so the page can draw each bar beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.callbacks import History
from ..engine.loop import Run
from ..engine.step import PlainStep
from ..lab.common import class_data, lab_cost, lab_network
from ..lab.vanishing import layer_speeds
from ..optim import SGD
from .limits import Limits

__all__ = ["SIGMOID_BOUND", "VANISHING_DATA", "VanishingSession"]

SIGMOID_BOUND = 0.25  # the largest σ′(z), at z = 0
VANISHING_DATA = "digits"  # Nielsen's chapter-5 data, as the lab uses them


class VanishingSession:
    """One tab's deep network for the vanishing view. Not thread-safe (the server awaits
    each call before the next)."""

    def __init__(self, config: dict[str, Any], limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.config = dict(config)
        X, y, n_classes, _ = class_data(VANISHING_DATA)
        X, y = X[:config["samples"]], y[:config["samples"]]
        self.cost, output_activation = lab_cost(config["loss"])
        self.model = lab_network(X.shape[1], (config["width"],) * config["depth"], n_classes,
                                 config["activation"], config["init"], config["bias_init"],
                                 output_activation, config["seed"])
        self.config["samples"] = int(X.shape[0])
        self.X, self.y = X, y
        model, cost = self.model, self.cost
        checked = model.check_input(X, "vanishing X")
        target = cost.prepare_target(y, (checked.shape[0], model.n_outputs), model.dtype)
        self.optimizer = SGD(lr=config["lr"])

        def make_step(history: History) -> PlainStep:
            return PlainStep(model, cost, self.optimizer, [], history)

        self.run = Run(model, cost, self.optimizer, (checked, target, cost.labels(target), 0.0),
                       config["batch_size"], True, config["seed"], [], self.limits.max_steps,
                       make_step)
        self._batches: Any = None
        self.diverged: str | None = None

    @property
    def step_count(self) -> int:
        return int(self.run.ctx.step)

    def step(self) -> bool:
        """One mini-batch of SGD, as ``fit`` steps; False (nothing done) once it diverged."""
        if self.diverged is not None or self.step_count >= self.limits.max_steps:
            return False
        run, ctx = self.run, self.run.ctx
        if self._batches is None:
            self._batches = run.batches()
        index, X_b, y_b, labels_b = next(self._batches)
        ctx.batch_index = index
        with np.errstate(all="ignore"):
            problem = run.step.run(ctx, X_b, y_b, labels_b)
        if problem is not None:
            self.diverged = (f"diverged: non-finite {problem[0]} at step {ctx.step} with "
                             f"η = {self.config['lr']:g}: {problem[1]}. Try a smaller η.")
            return False
        ctx.step += 1
        if index == ctx.batches_per_epoch - 1:
            ctx.epoch += 1
            self._batches = None
        del run.history.batch_losses[:-10]  # a session may train for hours
        return True

    def speeds(self) -> list[float]:
        """‖∂C/∂b^l‖ of every hidden layer (first → last) for the mean cost over the samples:
        :func:`gradsight.lab.vanishing.layer_speeds`."""
        with np.errstate(all="ignore"):
            speeds = layer_speeds(self.model, self.X, self.y, self.cost)
        self.model.forget()
        return speeds

    def message(self) -> dict[str, Any]:
        """The ``vanishing`` message: the speeds now, the σ′ bound beside each, the cost."""
        speeds = self.speeds()
        depth = len(speeds)
        factors = [SIGMOID_BOUND ** (depth - 1 - l) for l in range(depth)]
        with np.errstate(all="ignore"):
            output = self.model.predict(self.X)
            cost = self.cost.value(output, self.y)
            accuracy = self.cost.accuracy(output, self.y)
        self.model.forget()
        return {
            "type": "vanishing", "config": dict(self.config), "data": VANISHING_DATA,
            "step": self.step_count, "epoch": int(self.run.ctx.epoch),
            "layers": [layer.name for layer in self.model.dense_layers[:-1]],
            "speeds": speeds, "factors": factors,
            "bound": [speeds[-1] * factor for factor in factors],
            "ratio_last_first": speeds[-1] / speeds[0] if speeds[0] > 0 else None,
            "loss": cost, "accuracy": accuracy, "diverged": self.diverged,
        }

    def advance(self, count: int) -> dict[str, Any]:
        """``count`` steps (fewer if it diverges), then the message."""
        for _ in range(count):
            if not self.step():
                break
        return self.message()
