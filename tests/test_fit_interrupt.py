"""Ctrl-C at any moment of ``fit`` leaves a usable model and history.

A real Ctrl-C raises KeyboardInterrupt between two bytecodes of whatever Python code runs at
that moment. The test below does exactly that, deterministically: a trace function raises
KeyboardInterrupt on the k-th executed line of gradsight's own code, for k swept over a
whole (small) training run — inside the forward pass, the cost, backpropagation, the NaN
guard, the optimizer step, validation and the epoch bookkeeping.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest

import gradsight
from gradsight import fit, optim
from gradsight.engine import Sequential, mlp

PACKAGE = str(Path(gradsight.__file__).parent)
KEYS = {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}


def _fit_interrupted_at(k: int, optimizer: Any) -> tuple[Any, Sequential, bool]:
    """Train with Ctrl-C on the k-th line of gradsight code; (history or None, model, fired)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(24, 3)), rng.integers(0, 3, size=24)
    model = mlp("3-5-3", activation="tanh", seed=0)
    seen, fired = [0], [False]

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and not fired[0]:
            seen[0] += 1
            if seen[0] == k:
                fired[0] = True
                raise KeyboardInterrupt
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        if not fired[0] and frame.f_code.co_filename.startswith(PACKAGE):
            return local
        return None

    previous = sys.gettrace()  # e.g. a coverage tracer: put it back afterwards
    sys.settrace(calls)
    try:
        history = fit(model, X, y, loss="cross_entropy", optimizer=optimizer, epochs=2,
                      batch_size=8, validation=(X, y), progress=False)
    except KeyboardInterrupt:
        history = None  # Ctrl-C while fit checked its arguments, before training began
    finally:
        sys.settrace(previous)
    return history, model, fired[0]


@pytest.mark.parametrize("make_optimizer", [lambda: optim.SGD(lr=0.1),
                                            lambda: optim.Adam(lr=0.01)],
                         ids=["sgd", "adam"])
def test_ctrl_c_on_any_line_leaves_a_usable_model_and_history(make_optimizer: Any) -> None:
    X = np.random.default_rng(1).normal(size=(5, 3))
    interrupted = 0
    for k in range(1, 100_000, 23):
        history, model, fired = _fit_interrupted_at(k, make_optimizer())
        if not fired:  # k is past the end of the run
            break
        assert all(np.isfinite(p).all() for p in model.parameters()), k
        assert np.isfinite(model.predict(X)).all(), k
        if history is None:
            continue
        interrupted += 1
        assert history.stopped == "interrupted", (k, history.stopped)
        assert [row["epoch"] for row in history.epochs] == list(range(len(history.epochs)))
        assert all(set(row) == KEYS for row in history.epochs)
        assert len(history.batch_losses) == history.steps
        again = fit(model, X, np.arange(5) % 3, loss="cross_entropy",
                    optimizer=optim.SGD(lr=0.1), epochs=1, progress=False)
        assert again.stopped is None, k
    assert interrupted > 50  # the sweep really hit the training loop
