"""What the training loop hands to its callbacks and returns: :class:`TrainContext` (with
the step's :class:`StepNorms`), :class:`Callback` and :class:`History`."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .losses import Loss
from .model import Sequential

__all__ = ["Callback", "History", "StepNorms", "TrainContext", "has_hooks", "has_step_hooks"]


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

    #: epochs shown at each end of the notebook table (the rest are summarised in one row)
    HTML_ENDS = 5

    def _repr_html_(self) -> str:
        """The first and last ``HTML_ENDS`` epochs, one row saying how many are left out
        between them, and a summary line (a 1,000-epoch run is not 1,000 rows)."""
        keys = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]

        def cell(value: Any) -> str:
            if value is None:
                return "–"
            return f"{value:.4g}" if isinstance(value, float) else str(value)

        def row(entry: dict[str, Any]) -> str:
            return "<tr>" + "".join(f"<td>{cell(entry.get(k))}</td>" for k in keys) + "</tr>"

        ends, epochs = self.HTML_ENDS, self.epochs
        if len(epochs) <= 2 * ends + 1:
            rows = "".join(row(e) for e in epochs)
        else:
            hidden = len(epochs) - 2 * ends
            rows = ("".join(row(e) for e in epochs[:ends])
                    + f"<tr><td colspan='{len(keys)}'>… {hidden} epochs …</td></tr>"
                    + "".join(row(e) for e in epochs[-ends:]))
        stopped = f"<p>stopped: {html.escape(self.stopped)}</p>" if self.stopped else ""
        head = "".join(f"<th>{k}</th>" for k in keys)
        summary = f"<p>{html.escape(repr(self))}</p>"
        return (f"{summary}<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
                f"</table>{stopped}")

    def __repr__(self) -> str:
        last = self.final
        summary = f", final loss {last['loss']:.4g}" if last else ""
        return (
            f"History({len(self.epochs)} epochs, {self.steps} steps{summary}, "
            f"stopped={self.stopped!r})"
        )


def squared_norm(array: np.ndarray) -> float:
    """‖array‖² as one BLAS dot (inf or NaN if an entry is, or if the squares overflow)."""
    flat = array.reshape(-1)
    return float(np.dot(flat, flat))


class StepNorms:
    """The squared norms of one step, aligned with ``model.parameters()``, on request.

    In ``on_after_backward``: :meth:`gradients` (g·g of each ∂C/∂w) and :meth:`weights` (w·w
    of each parameter, before the update); in ``on_batch_end``: :meth:`updates` (Δw·Δw of the
    step's update). Each list is computed when first asked for in a step and then kept; the
    training loop hands over what it measured anyway (:meth:`share`), so that nobody
    computes a norm twice. A callback that will ask at a step says so in advance
    (:meth:`Callback.wants_norms`): the loop can then measure them where it costs least.
    """

    def __init__(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.params, self.grads = params, grads
        self.before: list[np.ndarray] | None = None  # the weights before the update, if kept
        self._gradients: list[float] | None = None
        self._weights: list[float] | None = None
        self._updates: list[float] | None = None

    def new_step(self) -> None:
        """Forget the last step's norms."""
        self._gradients = self._weights = self._updates = None
        self.before = None

    def share(self, gradients: list[float] | None = None, weights: list[float] | None = None,
              updates: list[float] | None = None) -> None:
        """Hand over squares the loop measured anyway (None: not measured)."""
        if gradients is not None:
            self._gradients = gradients
        if weights is not None:
            self._weights = weights
        if updates is not None:
            self._updates = updates

    def gradients(self) -> list[float]:
        """g·g of every gradient (NaN or inf where an entry is not finite)."""
        if self._gradients is None:
            self._gradients = [squared_norm(grad) for grad in self.grads]
        return self._gradients

    def weights(self) -> list[float]:
        """w·w of every parameter (ask before the update for the weights it started from)."""
        if self._weights is None:
            self._weights = [squared_norm(param) for param in self.params]
        return self._weights

    def updates(self) -> list[float] | None:
        """Δw·Δw of every parameter's update (after the update; None before it, or where
        the loop kept neither the update nor the weights it started from)."""
        if self._updates is None and self.before is not None:
            self._updates = [squared_norm(param - old)
                             for param, old in zip(self.params, self.before, strict=True)]
        return self._updates


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
    norms: StepNorms | None = None  # the step's squared norms, on request (None: no step yet)
    stop_training: bool = False  # set True to stop after this batch
    stop_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # free space for callbacks


class Callback:
    """Base class of training hooks; every method is a no-op by default.

    ``read_only = True`` declares that the callback changes neither weights nor gradients:
    the loop can then trust what it measured before the hooks ran (the NaN guard's norms)
    instead of measuring again after them, and share those measurements with the hooks
    through ``ctx.norms`` on the steps where :meth:`wants_norms` is true.
    """

    read_only: bool = False

    def wants_norms(self, step: int) -> bool:
        """Whether the hooks of ``step`` will ask ``ctx.norms`` for norms (a hint: the loop
        may then measure them where it costs least; asking without it works too)."""
        return False

    def looks_at(self, step: int) -> bool:
        """Whether the per-step hooks (:meth:`on_after_backward`, :meth:`on_batch_end`) do
        anything at ``step``. On steps at which no callback looks, ``fit``'s fast step skips
        those hooks and, with plain SGD, fuses the update into one product per array without
        storing the gradients (see :mod:`gradsight.engine.fast.step`). The default is True
        whenever the callback has
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
