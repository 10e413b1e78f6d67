"""TensorBoard for gradsight: every recorded step's readings as TensorBoard scalars.

::

    from gradsight.integrations.tensorboard import TensorBoardSink, history_to_tensorboard

    with TensorBoardSink("runs/exp1") as board:
        with gradsight.watch(model, optimizer=optimizer, sinks=[board]) as watcher:
            ...  # the training loop, unchanged
    history_to_tensorboard(saved_history, "runs/exp0")  # a history recorded earlier

Needs ``pip install 'gradsight[tensorboard]'`` (neither torch nor TensorFlow). The writer
lives with the other sinks in :mod:`gradsight.diagnostics.trackers`, where the NumPy engine's
``Monitor`` reaches it too; this module is where a practitioner looks for it.
"""

from __future__ import annotations

from ..diagnostics.trackers import (
    LOSS_CURVE_TAG,
    TensorBoardSink,
    history_to_tensorboard,
    tensorboard_tag,
)

__all__ = ["LOSS_CURVE_TAG", "TensorBoardSink", "history_to_tensorboard", "tensorboard_tag"]
