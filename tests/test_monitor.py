"""Monitor: LayerStats equal values computed independently from the model's arrays."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from gradsight import nn, optim
from gradsight.diagnostics import LayerStats
from gradsight.diagnostics.monitor import (
    LayerHistory,
    Monitor,
    history_from_csv,
    history_from_json,
    history_records,
    history_to_csv,
    history_to_json,
    layer_stats_of,
)
from gradsight.errors import GradsightError, InvalidValueError


def _tiny(activation: str, seed: int = 0, dtype: str = "float64") -> tuple:
    model = nn.mlp("3-4-4-2", activation=activation, output_activation="sigmoid",
                   init="normal", bias_init="normal", seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(scale=6.0, size=(8, 3)).astype(dtype)
    y = rng.integers(0, 2, size=(8, 2)).astype(dtype)
    return model, X, y


def _one_step(model, X, y, loss="quadratic"):
    cost = nn.loss(loss)
    output = model.forward(X)
    model.backward(cost.gradient(output, y))
    return output


def _ctx(model, step=0, epoch=0, loss=0.5):
    return SimpleNamespace(model=model, step=step, epoch=epoch, batch_loss=loss)


def test_param_stats_equal_hand_computed_norms():
    model, X, y = _tiny("sigmoid")
    _one_step(model, X, y)
    records = {r.layer: r for r in layer_stats_of(model, step=3, epoch=1)}
    for layer in model.dense_layers:
        r = records[layer.name]
        assert r.kind == "param" and r.step == 3 and r.epoch == 1
        assert r.grad_W_norm == pytest.approx(math.sqrt(sum(g * g for g in layer.grad_W.flat)))
        assert r.grad_b_norm == pytest.approx(math.sqrt(sum(g * g for g in layer.grad_b.flat)))
        assert r.weight_norm == pytest.approx(math.sqrt(sum(w * w for w in layer.W.flat)))
        assert r.nonfinite == 0 and r.act_mean is None and r.saturated_fraction is None


def test_sigmoid_stats_equal_hand_computed_values():
    model, X, y = _tiny("sigmoid")
    _one_step(model, X, y)
    records = {r.layer: r for r in layer_stats_of(model)}
    # recompute a = σ(z) and σ′ = σ(1−σ) from the weights, independently of the caches
    a = X
    for layer in model.layers:
        if isinstance(layer, nn.Dense):
            z = a @ layer.W + layer.b
        else:
            a = 1.0 / (1.0 + np.exp(-z))
            r = records[layer.name]
            values = a.ravel().tolist()
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            saturated = sum(v * (1 - v) < 0.01 * 0.25 for v in values) / len(values)
            assert r.act_mean == pytest.approx(mean)
            assert r.act_std == pytest.approx(std)
            assert r.saturated_fraction == pytest.approx(saturated)
            assert r.dead_fraction is None and r.activation == "sigmoid"
    # the large N(0,1) weights and inputs of std 6 really saturate some units
    assert any(r.saturated_fraction for r in records.values() if r.kind == "activation")


def test_tanh_saturated_fraction_uses_one_percent_of_max():
    model, X, y = _tiny("tanh", seed=4)
    _one_step(model, X, y)
    hidden = [r for r in layer_stats_of(model) if r.activation == "tanh"]
    for r in hidden:
        a = model.layers[r.index].output
        expected = np.mean(1 - a**2 < 0.01)
        assert r.saturated_fraction == pytest.approx(expected)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu"])
def test_dead_fraction_counts_units_off_on_every_sample(name):
    model, X, y = _tiny(name, seed=2)
    first = model.dense_layers[0]
    first.b[:2] = -1e3  # two of four units can never switch on
    first.b[2:] = 1e3   # and two are always on
    _one_step(model, X, y)
    r = next(r for r in layer_stats_of(model) if r.layer == model.layers[1].name)
    z = X @ first.W + first.b
    assert r.dead_fraction == pytest.approx(np.mean(np.all(z <= 0, axis=0))) == 0.5
    assert r.saturated_fraction is None


@pytest.mark.parametrize("scale", [1.0, 1e-5])
def test_float32_mean_and_std_match_float64(scale):
    # scale 1e-5: a nearly constant (saturated) layer, where E[a²] − E[a]² would cancel
    model = nn.mlp("4-64-2", activation="sigmoid", dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    layer = model.layers[1]
    model.forward(rng.normal(size=(128, 4)).astype(np.float32))
    layer.output[...] = (0.999 + scale * rng.random(layer.output.shape)).astype(np.float32)
    model.dense_layers[0].grad_W[...] = 0
    r = next(r for r in layer_stats_of(model) if r.layer == "sigmoid0")
    exact = layer.output.astype(np.float64)
    assert r.act_mean == pytest.approx(exact.mean(), rel=1e-6)
    assert r.act_std == pytest.approx(exact.std(), rel=1e-3)


def test_update_ratio_and_weight_norm_before_update():
    model, X, y = _tiny("sigmoid")
    monitor = Monitor()
    monitor.on_train_begin(_ctx(model))
    _one_step(model, X, y)
    before = [layer.W.copy() for layer in model.dense_layers]
    monitor.on_after_backward(_ctx(model, step=0))
    optim.SGD(lr=0.5).step(model.parameters(), model.gradients())
    monitor.on_batch_end(_ctx(model, step=0))
    params = [r for r in monitor.history if r.kind == "param"]
    for r, old, layer in zip(params, before, model.dense_layers, strict=True):
        assert r.weight_norm == pytest.approx(np.linalg.norm(old))
        delta = np.linalg.norm(layer.W - old)
        assert delta > 0
        assert r.update_ratio == pytest.approx(delta / np.linalg.norm(old))
        # SGD: ΔW = −η ∂C/∂W
        assert r.update_ratio == pytest.approx(0.5 * r.grad_W_norm / r.weight_norm)
    assert monitor.losses == [(0, 0.5)]


class _Snapshots:
    """Copies of every W before and after each optimizer step (the independent oracle)."""

    def __init__(self):
        self.before, self.after = [], []

    def on_train_begin(self, ctx):
        pass

    def on_after_backward(self, ctx):
        self.before.append([layer.W.copy() for layer in ctx.model.dense_layers])

    def on_batch_end(self, ctx):
        self.after.append([layer.W.copy() for layer in ctx.model.dense_layers])

    def on_epoch_end(self, ctx):
        pass

    def on_train_end(self, ctx):
        pass


@pytest.mark.parametrize("optimizer", [optim.SGD(lr=0.3), optim.SGD(lr=0.3, momentum=0.9),
                                       optim.Adam(lr=0.01)])
def test_update_ratio_in_fit_equals_measured_weight_change(optimizer):
    from gradsight import train

    model, X, y = _tiny("tanh")
    monitor, snapshots = Monitor(), _Snapshots()
    train.fit(model, X, y, loss="quadratic", optimizer=optimizer, epochs=3, batch_size=4,
              callbacks=[monitor, snapshots], progress=False)
    params = [r for r in monitor.history if r.kind == "param"]
    assert len(params) == 3 * len(snapshots.before)
    for r in params:
        i = [layer.name for layer in model.dense_layers].index(r.layer)
        old, new = snapshots.before[r.step][i], snapshots.after[r.step][i]
        expected = np.linalg.norm(new - old) / np.linalg.norm(old)
        assert r.update_ratio == pytest.approx(expected, rel=1e-9)


def test_every_k_records_only_those_steps():
    model, X, y = _tiny("sigmoid")
    monitor = Monitor(every=3)
    monitor.on_train_begin(_ctx(model))
    for step in range(7):
        _one_step(model, X, y)
        monitor.on_after_backward(_ctx(model, step=step))
        monitor.on_batch_end(_ctx(model, step=step))
    assert sorted({r.step for r in monitor.history}) == [0, 3, 6]
    assert len(monitor.history) == 3 * len(model.layers)


def test_nonfinite_gradients_are_counted_not_dropped():
    model, X, y = _tiny("sigmoid")
    _one_step(model, X, y)
    model.dense_layers[1].grad_W[0, :2] = [np.nan, np.inf]
    model.dense_layers[1].grad_b[0] = -np.inf
    r = next(r for r in layer_stats_of(model) if r.layer == "dense1")
    assert r.nonfinite == 3 and math.isnan(r.grad_W_norm)


def test_float32_norm_overflow_falls_back_to_float64():
    model, X, y = _tiny("sigmoid", dtype="float32")
    _one_step(model, X, y)
    layer = model.dense_layers[0]
    layer.grad_W[...] = np.float32(1e30)  # squares overflow float32, the values are finite
    r = next(r for r in layer_stats_of(model) if r.layer == "dense0")
    assert r.nonfinite == 0
    assert r.grad_W_norm == pytest.approx(1e30 * math.sqrt(layer.grad_W.size))


def test_monitor_in_fit_records_every_step():
    from gradsight import train

    model, X, y = _tiny("relu")
    monitor = Monitor()
    history = train.fit(model, X, y, loss="quadratic", optimizer=optim.SGD(lr=0.1), epochs=3,
                        batch_size=3, callbacks=[monitor], progress=False)
    steps = sorted({r.step for r in monitor.history})
    assert steps == list(range(history.steps))
    assert all(r.update_ratio is not None for r in monitor.history if r.kind == "param")
    assert [s for s, _ in monitor.losses] == steps
    assert [loss for _, loss in monitor.losses] == pytest.approx(history.batch_losses)


def _sample_history() -> list[LayerStats]:
    model, X, y = _tiny("sigmoid")
    _one_step(model, X, y)
    history = layer_stats_of(model, step=0, epoch=0) + layer_stats_of(model, step=1, epoch=0)
    history[0].update_ratio = 1e-3
    history[1].act_mean = math.nan
    history[2].update_ratio = math.inf
    return history


def test_json_round_trip_keeps_none_and_nonfinite(tmp_path):
    history = _sample_history()
    path = tmp_path / "h.json"
    text = history_to_json(history, path)
    assert json.loads(path.read_text()) == json.loads(text)
    for loaded in (history_from_json(text), history_from_json(path)):
        assert len(loaded) == len(history)
        for a, b in zip(history, loaded, strict=True):
            for key, value in a.to_dict().items():
                other = getattr(b, key)
                if isinstance(value, float) and math.isnan(value):
                    assert math.isnan(other)
                else:
                    assert other == value, key


def test_csv_round_trip(tmp_path):
    history = _sample_history()
    path = tmp_path / "h.csv"
    history_to_csv(history, path)
    assert path.read_text().splitlines()[0].split(",") == LayerStats.field_names()
    loaded = history_from_csv(path)
    assert history_records(loaded)[0] == history_records(history)[0]
    assert loaded[2].update_ratio == math.inf and math.isnan(loaded[1].act_mean)
    assert loaded[5].grad_W_norm is None and loaded[5].activation == history[5].activation


def test_layer_history_pivots_series_and_matrix():
    history = _sample_history()
    pivot = LayerHistory(history)
    assert pivot.layers == [layer.name for layer in _tiny("sigmoid")[0].layers]
    steps, values = pivot.series("grad_b_norm", "dense1")
    assert steps.tolist() == [0, 1] and values[0] == history[2].grad_b_norm
    names, steps, matrix = pivot.matrix("grad_W_norm", kind="param")
    assert names == ["dense0", "dense1", "dense2"] and matrix.shape == (3, 2)
    assert "<table>" in pivot._repr_html_()
    with pytest.raises(InvalidValueError):
        pivot.series("no_such_field", "dense0")


def test_bad_inputs():
    with pytest.raises(InvalidValueError):
        Monitor(every=0)
    with pytest.raises(GradsightError):
        history_from_json("[{\"layer\": \"d\", \"index\": \"x\", \"step\": 0}]")
    with pytest.raises(GradsightError):
        history_from_json("not json at all {")
