"""Monitor records of a real ``fit`` step against a backpropagation written out by hand with
plain Python floats (no engine array is read), and the fields LayerStats documents."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from gradsight import LayerStats, Monitor, fit, optim
from gradsight.engine import Activation, Dense, Sequential

X = [[1.0, -2.0], [0.5, 3.0]]
Y = [1.0, 0.0]
W1 = [[0.3, -0.1], [0.2, 0.4]]
B1 = [0.1, 10.0]  # unit 1: z ≈ 9–11, σ′ ≈ 1e-4 < 1% of ¼ on both samples: saturated
W2 = [0.7, -0.5]
B2 = 0.05
LR = 0.5


def _sigma(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def _by_hand() -> dict[str, dict[str, float]]:
    """One step of the 2-2-1 sigmoid net on the quadratic cost C = 1/(2N) Σ (ŷ − y)²."""
    n = len(X)
    a1 = [[_sigma(sum(x[i] * W1[i][j] for i in range(2)) + B1[j]) for j in range(2)]
          for x in X]
    out = [_sigma(sum(a[j] * W2[j] for j in range(2)) + B2) for a in a1]
    delta2 = [(o - t) / n * o * (1 - o) for o, t in zip(out, Y, strict=True)]
    delta1 = [[d * W2[j] * a[j] * (1 - a[j]) for j in range(2)]
              for d, a in zip(delta2, a1, strict=True)]
    grad_w1 = [sum(X[k][i] * delta1[k][j] for k in range(n)) for i in range(2) for j in range(2)]
    grad_b1 = [sum(delta1[k][j] for k in range(n)) for j in range(2)]
    grad_w2 = [sum(a1[k][j] * delta2[k] for k in range(n)) for j in range(2)]
    w1_norm, w2_norm = _norm([w for row in W1 for w in row]), _norm(W2)
    hidden = [a for row in a1 for a in row]
    mean = sum(hidden) / len(hidden)
    return {
        "dense0": {"grad_W_norm": _norm(grad_w1), "grad_b_norm": _norm(grad_b1),
                   "weight_norm": w1_norm, "update_ratio": LR * _norm(grad_w1) / w1_norm},
        "dense1": {"grad_W_norm": _norm(grad_w2), "grad_b_norm": abs(sum(delta2)),
                   "weight_norm": w2_norm, "update_ratio": LR * _norm(grad_w2) / w2_norm},
        "sigmoid0": {"act_mean": mean,
                     "act_std": math.sqrt(sum((a - mean) ** 2 for a in hidden) / len(hidden)),
                     "saturated_fraction": sum(a * (1 - a) < 0.01 * 0.25 for a in hidden)
                     / len(hidden)},
        "sigmoid1": {"act_mean": sum(out) / n,
                     "act_std": math.sqrt(sum((o - sum(out) / n) ** 2 for o in out) / n),
                     "saturated_fraction": 0.0},
    }


def _tiny_net(activation: str = "sigmoid", bias: list[float] = B1) -> Sequential:
    return Sequential([
        Dense.from_weights(np.array(W1), np.array(bias)), Activation(activation),
        Dense.from_weights(np.array(W2).reshape(2, 1), np.array([B2])),
        Activation("sigmoid")])


def test_layer_stats_equal_a_backpropagation_by_hand() -> None:
    monitor = Monitor()
    fit(_tiny_net(), np.array(X), np.array(Y).reshape(2, 1), loss="quadratic",
        optimizer=optim.SGD(lr=LR), epochs=1, batch_size=2, shuffle=False,
        callbacks=[monitor], progress=False)
    records = {r.layer: r for r in monitor.history}
    assert list(records) == ["dense0", "sigmoid0", "dense1", "sigmoid1"]
    for name, expected in _by_hand().items():
        record = records[name]
        assert (record.step, record.epoch, record.nonfinite) == (0, 0, 0)
        for field, value in expected.items():
            assert getattr(record, field) == pytest.approx(value, rel=1e-10, abs=1e-15), \
                (name, field)
    assert records["sigmoid0"].saturated_fraction == 0.5  # unit 1 on both samples
    # fields that do not apply are None
    assert records["dense0"].act_mean is None and records["dense0"].dead_fraction is None
    assert records["sigmoid0"].grad_W_norm is None and records["sigmoid0"].dead_fraction is None
    assert records["sigmoid0"].index == 1 and records["sigmoid1"].index == 3


def test_dead_fraction_by_hand_for_a_relu_unit_with_a_huge_negative_bias() -> None:
    monitor = Monitor()
    fit(_tiny_net("relu", [0.1, -100.0]), np.array(X), np.array(Y).reshape(2, 1),
        loss="quadratic", optimizer=optim.SGD(lr=LR), epochs=1, batch_size=2,
        callbacks=[monitor], progress=False)
    relu = next(r for r in monitor.history if r.layer == "relu0")
    # unit 0: z = 0.3·1 + 0.2·(−2) + 0.1 = 0 (off) and 0.3·0.5 + 0.2·3 + 0.1 = 0.85 (on);
    # unit 1: z ≤ −100 on both samples — dead. One of two units.
    assert relu.dead_fraction == 0.5 and relu.saturated_fraction is None


def test_layer_stats_document_every_field() -> None:
    wanted = ["layer", "index", "step", "epoch", "grad_W_norm", "grad_b_norm", "weight_norm",
              "update_ratio", "act_mean", "act_std", "saturated_fraction", "dead_fraction",
              "nonfinite"]
    assert set(wanted) <= set(LayerStats.field_names())
    doc = LayerStats.__doc__ or ""
    for field in wanted:
        assert re.search(rf"\b{field}\b", doc), field
    assert "None" in doc and "1% of its" in doc and "every sample" in doc


def test_a_long_history_shows_a_summary_not_every_record():
    """In a notebook ``monitor.history`` was a 915 KB repr; ``History`` printed 1,000 rows."""
    import numpy as np

    from gradsight import fit, mlp
    from gradsight.diagnostics import Monitor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = (X[:, 0] > 0).astype(int)
    monitor = Monitor(every=1)
    history = fit(mlp([3, 4, 2], seed=0), X, y, epochs=40, batch_size=16,
                  callbacks=[monitor], progress=False)
    records = monitor.history
    steps = sorted({r.step for r in records})
    assert repr(records) == (f"RecordList({len(records)} records: 3 layers at {len(steps)} "
                             f"recorded steps, 0…{steps[-1]})")
    assert len(repr(records)) < 100 and len(records) == 3 * 160
    page = records._repr_html_()
    assert "RecordList(480 records" in page and page.count("<tr>") == 4  # head + 3 layers
    table = history._repr_html_()
    assert table.count("<tr>") == 1 + 5 + 1 + 5  # head, first 5, "… 30 epochs …", last 5
    assert "… 30 epochs …" in table and "History(40 epochs" in table
    short = fit(mlp([3, 4, 2], seed=0), X, y, epochs=3, batch_size=16, progress=False)
    assert short._repr_html_().count("<tr>") == 4


def test_the_monitor_keeps_every_steps_loss_in_spans_of_ten():
    """The engine's ``history.loss_curve``, against the batch losses ``fit`` reports."""
    import numpy as np

    from gradsight import fit, mlp
    from gradsight.diagnostics import Monitor

    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 3))
    y = (X[:, 1] > 0).astype(int)
    monitor = Monitor(every=25)
    history = fit(mlp([3, 4, 2], seed=0), X, y, epochs=15, batch_size=16,
                  callbacks=[monitor], progress=False)
    losses = list(history.batch_losses)  # 60 steps, one loss each
    assert len(losses) == 60
    expected = [(0, range(0, 1)), (10, range(1, 11)), (20, range(11, 21)), (25, range(21, 26)),
                (35, range(26, 36)), (45, range(36, 46)), (50, range(46, 51))]
    for (step, mean), (want_step, steps) in zip(monitor.history.loss_curve, expected,
                                                strict=True):
        assert step == want_step
        assert mean == pytest.approx(sum(losses[s] for s in steps) / len(steps), rel=1e-12)
