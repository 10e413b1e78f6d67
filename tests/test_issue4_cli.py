"""Issue 4 audit: ``gradsight train --plot`` draws what it says, also after a run that
stopped in its first epoch; the figure's curves carry the JSON history's numbers."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import gradsight
import gradsight.plots
from gradsight.cli import app
from gradsight.errors import InvalidValueError
from gradsight.plots.training import plot_history, plot_training

runner = CliRunner()


def _train_capturing_figure(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                            *args: Any) -> tuple[Any, dict[str, Any], Any]:
    """Run ``gradsight train ... --plot fig.png --json`` and keep the figure it saves."""
    saved: list[Any] = []
    real_save = gradsight.plots.save_figure

    def keep(fig: Any, path: Any, *rest: Any, **kw: Any) -> Any:
        saved.append(fig)
        return real_save(fig, path, *rest, **kw)

    monkeypatch.setattr(gradsight.plots, "save_figure", keep)
    plot = tmp_path / "fig.png"
    result = runner.invoke(app, ["train", *map(str, args), "--plot", str(plot), "--json",
                                 "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(saved) == 1
    return result, json.loads(result.stdout), saved[0]


def _lines(ax: Any) -> dict[str, list[float]]:
    return {line.get_label(): line.get_ydata().tolist() for line in ax.get_lines()}


def test_plot_of_2d_data_has_loss_curves_and_the_decision_boundary(monkeypatch, tmp_path):
    _, doc, fig = _train_capturing_figure(monkeypatch, tmp_path, "--data", "moons",
                                          "--epochs", 12)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["cost C per epoch", "accuracy per epoch"]
    assert titles[2].startswith("decision regions") and len(fig.axes) == 3
    curves = _lines(fig.axes[0])
    np.testing.assert_allclose(curves["train loss"], [row["loss"] for row in doc["history"]])
    np.testing.assert_allclose(curves["validation loss"],
                               [row["val_loss"] for row in doc["history"]])
    # the boundary panel: filled class regions plus the 160 training samples
    boundary = fig.axes[2]
    assert boundary.collections and boundary.collections[-1].get_offsets().shape == (160, 2)
    assert f"{doc['final']['train_accuracy']:.1%}" in titles[2]


def test_plot_of_64_d_data_has_no_decision_boundary(monkeypatch, tmp_path):
    _, doc, fig = _train_capturing_figure(monkeypatch, tmp_path, "--data", "digits",
                                          "--hidden", "16", "--epochs", 2)
    assert [ax.get_title() for ax in fig.axes] == ["cost C per epoch", "accuracy per epoch"]
    assert _lines(fig.axes[1])["train accuracy"] == [r["accuracy"] for r in doc["history"]]


def test_plot_after_divergence_in_the_first_epoch_still_written(monkeypatch, tmp_path):
    # every step diverges at once: no epoch completes, yet --plot and --save must work
    model_path = tmp_path / "m.npz"
    result, doc, fig = _train_capturing_figure(
        monkeypatch, tmp_path, "--optimizer", "sgd", "--lr", "1e300", "--epochs", 3,
        "--save", model_path)
    assert doc["history"] == [] and doc["stopped"].startswith("non-finite")
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr
    assert "no epoch completed" in fig.axes[0].texts[0].get_text()
    assert fig.axes[-1].get_title().startswith("decision regions")
    model = gradsight.load(model_path)
    assert all(np.isfinite(p).all() for p in model.parameters())


def test_history_without_epochs_plots_only_with_a_stop_reason():
    figure = plot_history({"history": [], "stopped": "interrupted"})
    assert "interrupted" in figure.axes[0].texts[0].get_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no artists with labels" or overflow warnings
        huge = gradsight.nn.mlp("2-3-2", seed=0)
        huge.dense_layers[0].W[...] = 1e300
        plot_training({"history": [], "stopped": "x"}, huge, np.eye(2), [0, 1])
    with pytest.raises(InvalidValueError, match="no epochs"):
        plot_history([])
