"""What the training loop hands to its callbacks and returns: :class:`TrainContext`,
:class:`Callback` and :class:`History` (re-exported by :mod:`gradsight.train`)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .losses import Loss
from .model import Sequential

__all__ = ["Callback", "History", "TrainContext"]


class History:
    """What a training run did: per-epoch metrics, every batch's cost, why it stopped."""

    def __init__(self, loss: str = "") -> None:
        # one dict per epoch: {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
        self.epochs: list[dict[str, Any]] = []
        self.batch_losses: list[float] = []
        self.stopped: str | None = None
        self.loss_name = loss

    @property
    def steps(self) -> int:
        """Optimizer steps applied: one cost per applied step is kept, so the two cannot
        disagree (not even after a Ctrl-C between them)."""
        return len(self.batch_losses)

    def _column(self, key: str) -> list[Any]:
        return [entry[key] for entry in self.epochs]

    @property
    def loss(self) -> list[float]:
        """Training cost per epoch."""
        return self._column("loss")

    @property
    def val_loss(self) -> list[float | None]:
        return self._column("val_loss")

    @property
    def accuracy(self) -> list[float | None]:
        return self._column("accuracy")

    @property
    def val_accuracy(self) -> list[float | None]:
        return self._column("val_accuracy")

    @property
    def final(self) -> dict[str, Any] | None:
        """The last epoch's entry (None before the first epoch ends)."""
        return self.epochs[-1] if self.epochs else None

    def __len__(self) -> int:
        return len(self.epochs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": [dict(entry) for entry in self.epochs], "stopped": self.stopped,
            "steps": self.steps, "loss": self.loss_name, "batch_losses": list(self.batch_losses),
        }

    def _repr_html_(self) -> str:
        keys = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]

        def cell(value: Any) -> str:
            if value is None:
                return "–"
            return f"{value:.4g}" if isinstance(value, float) else str(value)

        rows = "".join(
            "<tr>" + "".join(f"<td>{cell(e[k])}</td>" for k in keys) + "</tr>" for e in self.epochs
        )
        stopped = f"<p>stopped: {html.escape(self.stopped)}</p>" if self.stopped else ""
        head = "".join(f"<th>{k}</th>" for k in keys)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{stopped}"

    def __repr__(self) -> str:
        last = self.final
        summary = f", final loss {last['loss']:.4g}" if last else ""
        return (
            f"History({len(self.epochs)} epochs, {self.steps} steps{summary}, "
            f"stopped={self.stopped!r})"
        )


@dataclass
class TrainContext:
    """What a callback sees. The arrays are the engine's own buffers: valid during the call
    (copy them to keep them). ``y_batch`` is the target as the loss uses it (float (N, K), or
    int labels for cross_entropy). A callback that changes weights must do so in place
    (``layer.W[...] = ...``): the loop holds on to the parameter arrays."""

    model: Sequential
    optimizer: Any
    loss: Loss
    history: History
    epochs: int = 0  # planned number of epochs
    batches_per_epoch: int = 0
    epoch: int = 0
    step: int = 0  # global optimizer step, 0-based
    batch_index: int = 0
    X_batch: np.ndarray | None = None
    y_batch: np.ndarray | None = None
    output: np.ndarray | None = None
    batch_loss: float = math.nan
    # Squared norms the loop measured anyway, aligned with model.parameters(), on the steps
    # a callback asks for them (Callback.wants_norms) when every callback is read_only;
    # None otherwise. grad_sq_norms: g·g of each gradient, as the NaN guard measured it;
    # weight_sq_norms: w·w of each parameter before the update (both set before
    # on_after_backward); update_sq_norms: Δw·Δw of the step's update (set before
    # on_batch_end; with plain SGD η²·g·g, since Δw = −η g).
    grad_sq_norms: list[float] | None = None
    weight_sq_norms: list[float] | None = None
    update_sq_norms: list[float] | None = None
    stop_training: bool = False  # set True to stop after this batch
    stop_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # free space for callbacks


class Callback:
    """Base class of training hooks; every method is a no-op by default.

    ``read_only = True`` declares that the callback changes neither weights nor gradients:
    the loop can then trust what it measured before the hooks ran (the NaN guard's norms)
    instead of measuring again after them, and share those measurements with the hooks
    (``ctx.grad_sq_norms``, ``ctx.weight_sq_norms``, ``ctx.update_sq_norms``) on the
    steps where :meth:`wants_norms` is true.
    """

    read_only: bool = False

    def wants_norms(self, step: int) -> bool:
        """Whether the hooks of ``step`` read the ``*_sq_norms`` fields of the context."""
        return False

    def looks_at(self, step: int) -> bool:
        """Whether the per-step hooks (:meth:`on_after_backward`, :meth:`on_batch_end`) do
        anything at ``step``. On steps at which no callback looks, ``fit`` skips those hooks
        and, with plain SGD, fuses the update into one product per array without storing the
        gradients (see :mod:`gradsight.train`). The default is True whenever the callback has
        either hook of its own; override it only to answer False for steps on which both of
        its hooks do nothing (as :class:`~gradsight.diagnostics.Monitor` does between the
        steps it records)."""
        return has_step_hooks(self)

    def on_train_begin(self, ctx: TrainContext) -> None:
        """Before the first batch."""

    def on_after_backward(self, ctx: TrainContext) -> None:
        """Gradients are final; the optimizer has not stepped yet."""

    def on_batch_end(self, ctx: TrainContext) -> None:
        """After the optimizer step of the batch."""

    def on_epoch_end(self, ctx: TrainContext) -> None:
        """After an epoch (history already holds its entry, with validation metrics)."""

    def on_train_end(self, ctx: TrainContext) -> None:
        """After the last step (also after a stop or Ctrl-C)."""


def has_hooks(callback: object, names: tuple[str, ...]) -> bool:
    """Whether ``callback`` has some of these hooks of its own (defined by its class or set
    on the instance, or not a :class:`Callback` at all)."""
    return any(getattr(getattr(callback, name, None), "__func__", None)
               is not getattr(Callback, name) for name in names)


def has_step_hooks(callback: object) -> bool:
    """Whether ``callback`` has per-step hooks of its own (on_after_backward, on_batch_end)."""
    return has_hooks(callback, ("on_after_backward", "on_batch_end"))
