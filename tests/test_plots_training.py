"""Training figures: curves carry the history's numbers; boundaries the model's classes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradsight.engine import Activation, Dense, Sequential, mlp
from gradsight.errors import InvalidValueError, ShapeError
from gradsight.present.plots import save_figure
from gradsight.present.plots.training import (
    plot_decision_boundary,
    plot_history,
    plot_training,
    predict_classes,
)

ROWS = [
    {"epoch": 0, "loss": 0.9, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.4},
    {"epoch": 1, "loss": 0.5, "accuracy": 0.75, "val_loss": 0.6, "val_accuracy": 0.7},
    {"epoch": 2, "loss": 0.2, "accuracy": 0.9, "val_loss": 0.3, "val_accuracy": 0.85},
]


def _linear_model(output_activation=None, k=1, shift=0.0):
    """A 2-k model whose class is known analytically: z = x1 − x2 − shift (for k = 2:
    (x2 − x1, x1 − x2 − shift)), so class 1 ⇔ x1 − x2 > shift."""
    W = np.array([[1.0], [-1.0]]) if k == 1 else np.array([[-1.0, 1.0], [1.0, -1.0]])
    b = np.array([-shift]) if k == 1 else np.array([0.0, -shift])
    layers = [Dense.from_weights(W, b)]
    if output_activation:
        layers.append(Activation(output_activation))
    return Sequential(layers)


def _lines(ax):
    return {line.get_label(): line.get_ydata().tolist() for line in ax.get_lines()}


def test_history_curves_carry_the_numbers():
    fig = plot_history(ROWS)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert _lines(loss_ax) == {"train loss": [0.9, 0.5, 0.2], "validation loss": [1.0, 0.6, 0.3]}
    assert _lines(acc_ax)["validation accuracy"] == [0.4, 0.7, 0.85]
    assert loss_ax.get_lines()[0].get_xdata().tolist() == [1, 2, 3]


def test_history_regression_has_one_panel_and_log_scale_for_wide_range():
    rows = [{"epoch": i, "loss": 10.0 ** -i, "accuracy": None, "val_loss": None,
             "val_accuracy": None} for i in range(5)]
    fig = plot_history({"epochs": rows, "stopped": "non-finite loss at epoch 4"})
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"
    assert "stopped: non-finite loss" in fig.axes[0].get_title()
    assert list(_lines(fig.axes[0])) == ["train loss"]


def test_history_accepts_cli_json_and_rejects_garbage():
    fig = plot_history({"config": {}, "history": ROWS, "final": {}, "stopped": None})
    assert len(fig.axes) == 2
    with pytest.raises(InvalidValueError):
        plot_history([])
    with pytest.raises(InvalidValueError):
        plot_history(42)


def test_history_without_epochs_plots_only_with_a_stop_reason():
    figure = plot_history({"history": [], "stopped": "interrupted"})
    assert "interrupted" in figure.axes[0].texts[0].get_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no artists with labels" or overflow warnings
        huge = mlp("2-3-2", seed=0)
        huge.dense_layers[0].W[...] = 1e300
        plot_training({"history": [], "stopped": "x"}, huge, np.eye(2), [0, 1])
    with pytest.raises(InvalidValueError, match="no epochs"):
        plot_history([])


@pytest.mark.parametrize(("output_activation", "k"), [(None, 1), ("sigmoid", 1), (None, 2)])
def test_predict_classes_matches_analytic_rule(output_activation, k):
    X = np.random.default_rng(0).normal(size=(200, 2))
    expected = (X[:, 0] > X[:, 1]).astype(int)  # x1 − x2 > 0 ⇔ class 1 in every variant
    labels = predict_classes(_linear_model(output_activation, k), X)
    np.testing.assert_array_equal(labels, expected)


def test_decision_boundary_regions_follow_the_model():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(60, 2))
    y = (X[:, 0] - X[:, 1] > 0.5).astype(int)
    fig = plot_decision_boundary(_linear_model("sigmoid", shift=0.5), X, y, resolution=50)
    ax = fig.axes[0]
    assert "accuracy 100.0%" in ax.get_title()
    points = ax.collections[-1]
    np.testing.assert_allclose(points.get_offsets(), X)
    np.testing.assert_array_equal(np.asarray(points.get_array()), y)
    # the filled class-1 region is the half plane x1 − x2 > 0.5 clipped to the plotted box
    contour = next(c for c in ax.collections if hasattr(c, "levels"))
    np.testing.assert_allclose(contour.levels, [-0.5, 0.5, 1.5])
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    gx, gy = np.meshgrid(np.linspace(x0, x1, 400), np.linspace(y0, y1, 400))
    expected = np.mean(gx - gy > 0.5) * (x1 - x0) * (y1 - y0)
    area = sum(_polygon_area(p) for p in contour.get_paths()[1].to_polygons())
    assert area == pytest.approx(expected, rel=0.03)


def _polygon_area(vertices):
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_plot_training_panels_and_errors(tmp_path):
    fig = plot_training(ROWS, _linear_model(), np.eye(2), np.array([1, 0]))
    assert len(fig.axes) == 3
    assert len(plot_training(ROWS).axes) == 2
    path = save_figure(fig, tmp_path / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ShapeError, match="2-D inputs"):
        plot_decision_boundary(_linear_model(), np.zeros((3, 3)), [0, 1, 0])
    with pytest.raises(ShapeError):
        plot_decision_boundary(_linear_model(), np.zeros((3, 2)), [0, 1])
