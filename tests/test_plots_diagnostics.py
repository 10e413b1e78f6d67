"""Diagnostic figures: produced without a display, drawing exactly the numbers given, never
dropping a non-finite value."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from gradsight.diagnostics import LayerStats
from gradsight.engine import mlp
from gradsight.errors import InvalidValueError
from gradsight.present.plots import diagnostics as dplots
from gradsight.present.plots import save_figure


def _history() -> list[LayerStats]:
    """Two dense layers and a sigmoid over 4 steps; dense0 has a NaN at step 2 and a 0 at 3."""
    norms = {"dense0": [1e-3, 2e-3, math.nan, 0.0], "dense1": [0.5, 0.4, 0.3, 0.2]}
    records = []
    for step in range(4):
        for index, name in enumerate(["dense0", "dense1"]):
            records.append(LayerStats(name, index * 2, step, 0, "param",
                                      grad_W_norm=norms[name][step], grad_b_norm=0.1))
        records.append(LayerStats("sigmoid0", 1, step, 0, "activation", "sigmoid",
                                  act_mean=0.5, act_std=0.1,
                                  saturated_fraction=0.1 * step, dead_fraction=None))
    return records


def _png_ok(fig: Figure, tmp_path, name: str) -> None:
    path = save_figure(fig, tmp_path / f"{name}.png")
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"


def test_layer_norms_keep_every_value(tmp_path) -> None:
    fig = dplots.plot_layer_norms(_history())
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["dense1"].get_ydata()) == [0.5, 0.4, 0.3, 0.2]
    assert list(lines["dense0"].get_ydata()) == [1e-3, 2e-3]
    low, high = ax.get_ylim()
    assert low <= 1e-3 and high >= 0.5  # nothing clipped
    markers = {c.get_label(): c for c in ax.collections}
    assert "non-finite (1)" in markers and "zero (1)" in markers
    assert list(markers["non-finite (1)"].get_offsets()[:, 0]) == [2]
    _png_ok(fig, tmp_path, "norms")


def test_heatmap_cells_are_log10_of_the_norms_and_bad_cells_marked(tmp_path) -> None:
    fig = dplots.plot_norm_heatmap(_history())
    image = fig.axes[0].images[0].get_array()
    assert image[1].tolist() == pytest.approx(np.log10([0.5, 0.4, 0.3, 0.2]).tolist())
    assert image[0, 0] == pytest.approx(-3) and image.mask[0, 2] and image.mask[0, 3]
    bad = fig.axes[0].collections[0]
    assert bad.get_label() == "non-finite or zero (2)"
    assert sorted(bad.get_offsets()[:, 0].tolist()) == [2, 3]
    _png_ok(fig, tmp_path, "heatmap")


def test_saturation_draws_the_fractions() -> None:
    fig = dplots.plot_saturation(_history())
    (line,) = fig.axes[0].get_lines()
    assert line.get_ydata().tolist() == pytest.approx([0, 0.1, 0.2, 0.3])


def test_plots_accept_a_monitor_and_dicts_from_a_real_run() -> None:
    from gradsight import Monitor, fit
    from gradsight.optim import SGD

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    model = mlp("3-5-5-2", activation="relu", seed=0)
    monitor = Monitor()
    fit(model, X, y, loss="cross_entropy", optimizer=SGD(lr=0.1), epochs=2, batch_size=10,
        callbacks=[monitor], progress=False)
    fig = dplots.plot_layer_norms(monitor)
    dense0 = next(line for line in fig.axes[0].get_lines() if line.get_label() == "dense0")
    expected = [r.grad_W_norm for r in monitor.history if r.layer == "dense0"]
    assert dense0.get_ydata().tolist() == pytest.approx(expected)
    assert isinstance(dplots.plot_saturation([r.to_dict() for r in monitor.history]), Figure)


def test_empty_or_unusable_history_is_an_error() -> None:
    with pytest.raises(InvalidValueError, match="empty"):
        dplots.plot_layer_norms([])
    only_activations = [r for r in _history() if r.kind == "activation"]
    with pytest.raises(InvalidValueError, match="grad_W_norm"):
        dplots.plot_norm_heatmap(only_activations)


def test_neuron_map_shows_the_derivatives() -> None:
    from gradsight.diagnostics.neurons import neuron_derivative_map

    model = mlp("4-6-3", activation="sigmoid", seed=1)
    X = np.random.default_rng(1).normal(size=(25, 4))
    derivatives = neuron_derivative_map(model, X)
    fig = dplots.plot_neuron_map(derivatives)
    image = fig.axes[0].images[0]
    z = X @ model.dense_layers[0].W + model.dense_layers[0].b
    sigma = 1 / (1 + np.exp(-z))
    assert np.asarray(image.get_array()) == pytest.approx((sigma * (1 - sigma)).T)
    assert image.get_clim() == (0.0, 0.25)  # σ′ ≤ 0.25: the colour scale is the bound
    assert isinstance(dplots.plot_neuron_map(np.ones((3, 5))), Figure)
    with pytest.raises(InvalidValueError):
        dplots.plot_neuron_map(np.ones(3))


def test_activation_distributions_count_every_value_and_flag_nan() -> None:
    model = mlp("3-8-8-2", activation="tanh", seed=2)
    X = np.random.default_rng(2).normal(size=(30, 3))
    fig = dplots.plot_activation_distributions(model, X)
    assert len(fig.axes) == 2
    counts = sum(p.get_height() for p in fig.axes[0].patches)
    assert counts == 30 * 8
    model.dense_layers[1].W[0, 0] = np.nan
    fig = dplots.plot_activation_distributions(model, X)
    assert "non-finite" in fig.axes[1].get_title()
    assert "non-finite" not in fig.axes[0].get_title()


def _vanish_dict() -> dict:
    layers = [{"layer": i + 1, "speed_at_init": s, "speed_trained": t}
              for i, (s, t) in enumerate(zip([0.003, 0.012, 0.06, 0.3],
                                             [0.001, 0.004, 0.02, 0.1], strict=True))]
    return {"config": {"activation": "sigmoid"}, "layers": layers,
            "nielsen": [0.0030, 0.017, 0.070, 0.285]}


def test_vanish_plot_draws_ours_and_nielsens(tmp_path) -> None:
    fig = dplots.plot_vanish(_vanish_dict())
    lines = {line.get_label(): line.get_ydata().tolist() for line in fig.axes[0].get_lines()}
    assert lines["ours, at init"] == [0.003, 0.012, 0.06, 0.3]
    assert lines["ours, after training"] == [0.001, 0.004, 0.02, 0.1]
    assert lines["Nielsen (MNIST), at init"] == [0.0030, 0.017, 0.070, 0.285]
    assert fig.axes[0].get_yscale() == "log"
    _png_ok(fig, tmp_path, "vanish")


def test_sigmoid_bound_is_a_quarter_per_layer() -> None:
    fig = dplots.plot_sigmoid_bound(_vanish_dict())
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    assert lines["σ′ factor alone: 0.25^k"].tolist() == pytest.approx([1, 0.25, 0.0625,
                                                                      0.015625])
    assert lines["measured ‖δ^(L−k)‖ / ‖δ^L‖"].tolist() == pytest.approx(
        [1, 0.2, 0.04, 0.01])
    with pytest.raises(InvalidValueError):
        dplots.plot_sigmoid_bound([0.1])


def test_sweep_and_trajectory_plots_use_the_rows() -> None:
    rows = [{"depth": d, "activation": a, "init": "he_normal",
             "ratio_last_first_init": r, "accuracy": acc}
            for d, a, r, acc in [(2, "sigmoid", 4.0, 0.3), (4, "sigmoid", 90.0, 0.1),
                                 (2, "relu", 1.2, 0.9), (4, "relu", 1.4, 0.8)]]
    fig = dplots.plot_sweep({"rows": rows})
    assert fig.axes[0].get_lines()[0].get_ydata().tolist() == [4.0, 90.0]
    assert fig.axes[1].get_lines()[0].get_ydata().tolist() == [1.2, 1.4]
    with pytest.raises(InvalidValueError):
        dplots.plot_sweep({"rows": []})
    trajectory = {"steps": [0, 10, 20], "layers": ["s0", "s1"],
                  "mean": [[0.5, 0.5], [0.5, 0.4], [0.5, 0.3]],
                  "std": [[0.1, 0.1], [0.1, 0.1], [0.1, 0.05]]}
    fig = dplots.plot_activation_trajectory(trajectory)
    assert fig.axes[0].get_lines()[1].get_ydata().tolist() == [0.5, 0.4, 0.3]


def _vanish_with_speeds_by_epoch(activation: str = "sigmoid") -> dict:
    speeds = [0.003, 0.012, 0.06, 0.3]
    return {"config": {"activation": activation},
            "layers": [{"layer": i + 1, "speed_at_init": s, "speed_trained": None}
                       for i, s in enumerate(speeds)],
            "speeds_by_epoch": [speeds, [s / 10 for s in speeds], [s / 20 for s in speeds]]}


def test_sigmoid_speed_plot_draws_the_quarter_per_layer_bound() -> None:
    lines = {line.get_label(): line.get_ydata()
             for line in dplots.plot_vanish(_vanish_with_speeds_by_epoch()).axes[0].get_lines()}
    bound = lines["σ′ ≤ 0.25 per layer (from the last)"]
    assert list(bound) == pytest.approx([0.3 / 64, 0.3 / 16, 0.3 / 4, 0.3])
    relu = dplots.plot_vanish(_vanish_with_speeds_by_epoch("relu")).axes[0].get_lines()
    assert all("σ′" not in line.get_label() for line in relu)


def test_sweep_sigmoid_panel_draws_the_bound() -> None:
    rows = [{"depth": d, "activation": a, "init": "he_normal", "ratio_last_first_init": r,
             "accuracy": 0.5} for d, a, r in [(2, "sigmoid", 4.0), (4, "sigmoid", 90.0),
                                              (2, "relu", 1.2), (4, "relu", 1.4)]]
    fig = dplots.plot_sweep({"rows": rows})
    sigmoid = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert sigmoid["σ′ ≤ 0.25 alone: 4^(depth−1)"] == [4.0, 64.0]
    assert all("σ′" not in line.get_label() for line in fig.axes[1].get_lines())


def test_speeds_while_training_plot_draws_every_epoch_on_a_log_axis() -> None:
    fig = dplots.plot_speeds_over_training(_vanish_with_speeds_by_epoch())
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    first = next(line for line in ax.get_lines() if line.get_label() == "hidden layer 1")
    assert list(first.get_ydata()) == pytest.approx([0.003, 0.0003, 0.00015])
    with pytest.raises(InvalidValueError):
        dplots.plot_speeds_over_training({"speeds_by_epoch": [[0.1, 0.2]]})


def test_activation_distributions_of_a_deep_net_wrap_onto_rows() -> None:
    model = mlp("3-" + "-".join(["5"] * 6) + "-2", activation="tanh", seed=0)
    sample = np.random.default_rng(0).normal(size=(20, 3))
    fig = dplots.plot_activation_distributions(model, sample)
    assert len(fig.axes) == 6  # one panel per activation layer, none empty
    assert all(sum(p.get_height() for p in ax.patches) == 20 * 5 for ax in fig.axes)


def test_all_public_names_are_exported() -> None:
    import gradsight.present.plots as plots

    for name in dplots.__all__:
        assert getattr(plots, name) is getattr(dplots, name)
