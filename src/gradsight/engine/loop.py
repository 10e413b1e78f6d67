"""The loop of one :func:`gradsight.fit` call: epochs of shuffled batches, one step each.

What a step does is the step object's business — :class:`gradsight.engine.step.PlainStep`
or the fast step that ``fit`` may choose instead; the loop hands it each batch, keeps the
epoch's cost and accuracy, and stops when a step reports a non-finite value or a callback
asks to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .callbacks import Callback, History, TrainContext
from .losses import Loss
from .model import Sequential

__all__ = ["Run"]


class Run:
    """State of one ``fit`` call; ``step`` is built by ``make_step(history)``."""

    def __init__(self, model: Sequential, loss: Loss, optimizer: Any, data: tuple,
                 batch_size: int, shuffle: bool, seed: int | None, callbacks: Sequence[Callback],
                 epochs: int, make_step: Any) -> None:
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.X, self.target, self.labels = data[:3]
        self.n = self.X.shape[0]
        self.batch_size, self.shuffle = min(batch_size, self.n), shuffle
        self.rng = np.random.default_rng(seed)
        self.callbacks = list(callbacks)
        self.params = model.parameters()
        self.history = History(loss.name)
        self.ctx = TrainContext(
            model, optimizer, loss, self.history, epochs, -(-self.n // self.batch_size)
        )
        self.step = make_step(self.history)
        self._buffers: dict[tuple[str, int], np.ndarray] = {}

    def _batch_buffer(self, source: np.ndarray, size: int, tag: str) -> np.ndarray:
        key = (tag, size)
        if key not in self._buffers:
            self._buffers[key] = np.empty((size, *source.shape[1:]), dtype=source.dtype)
        return self._buffers[key]

    def batches(self) -> Any:
        """Yield (batch index, X_b, y_b, labels_b) over one epoch (rows gathered into
        buffers when shuffled)."""
        order = self.rng.permutation(self.n) if self.shuffle else None
        for index, start in enumerate(range(0, self.n, self.batch_size)):
            stop = min(start + self.batch_size, self.n)
            if order is None:
                rows: Any = slice(start, stop)
                X_b, y_b = self.X[rows], self.target[rows]
            else:
                rows = order[start:stop]
                size = stop - start
                X_b = np.take(self.X, rows, axis=0, out=self._batch_buffer(self.X, size, "X"))
                y_b = np.take(
                    self.target, rows, axis=0, out=self._batch_buffer(self.target, size, "y")
                )
            yield index, X_b, y_b, (None if self.labels is None else self.labels[rows])

    def epoch(self, epoch: int, progress: Any) -> bool:
        """Run one epoch; False when training must stop."""
        ctx, step, total, correct = self.ctx, self.step, 0.0, 0
        ctx.epoch = epoch
        for index, X_b, y_b, labels_b in self.batches():
            ctx.batch_index = index
            problem = step.run(ctx, X_b, y_b, labels_b)
            if problem is not None:
                self.history.stopped = (
                    f"non-finite {problem[0]} at epoch {epoch}, step {ctx.step} (batch {index}): "
                    f"{problem[1]}. Training stopped; the model keeps the last finite weights "
                    "(from before this step)."
                )
                return False
            total += ctx.batch_loss * X_b.shape[0]
            if labels_b is not None:
                correct += step.correct
            ctx.step += 1
            if progress is not None:
                progress.advance()
            if ctx.stop_training:
                self.history.stopped = ctx.stop_reason or "stopped by a callback"
                return False
        accuracy = None if self.labels is None else correct / self.n
        self.history.epochs.append({
            "epoch": epoch, "loss": total / self.n, "accuracy": accuracy,
            "val_loss": None, "val_accuracy": None,
        })
        return True
