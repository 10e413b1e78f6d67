"""The NumPy engine's Monitor records on the default schedule: every step for the first 50,
then every 50th (and every step with ``every=1``); each record carries the batch loss."""

from __future__ import annotations

import numpy as np
import pytest

from gradsight.diagnostics import Monitor, diagnose
from gradsight.engine import mlp
from gradsight.engine.train import fit


@pytest.mark.parametrize("fast", [True, False])
def test_monitor_default_schedule_records_the_documented_steps(fast):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(float).reshape(-1, 1)
    default, dense = Monitor(), Monitor(every=1)
    fit(mlp([3, 4, 1], activation="tanh", output_activation="sigmoid", seed=0), X, y,
        epochs=16, batch_size=6, callbacks=[default, dense], progress=False, fast=fast)
    # 10 batches per epoch × 16 epochs = steps 0..159
    assert sorted({r.step for r in default.history}) == [*range(50), 50, 100, 150]
    assert sorted({r.step for r in dense.history}) == list(range(160))
    losses = dict(dense.losses)
    assert all(r.loss == losses[r.step] for r in default.history)
    assert repr(Monitor()).startswith("Monitor(default schedule")


def test_diagnose_of_a_monitor_history_uses_the_losses_on_its_records():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(float).reshape(-1, 1)
    monitor = Monitor()
    fit(mlp([3, 4, 4, 1], activation="sigmoid", output_activation="sigmoid", seed=0), X, y,
        optimizer="sgd", epochs=10, batch_size=8, callbacks=[monitor], progress=False)
    assert "stalled-loss" in diagnose(monitor.history).codes  # a list: no train_history
    for record in monitor.history:
        record.loss = record.loss_window = None
    monitor.history.loss_curve = None  # the finer curve of every step's loss too
    assert "stalled-loss" not in diagnose(monitor.history).codes
