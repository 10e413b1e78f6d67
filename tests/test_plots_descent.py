"""Descent figures: produced without a display, right number of axes, drawing the run's numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradsight.calculus.descent import compare, minimize
from gradsight.errors import InvalidValueError
from gradsight.present import plots
from gradsight.present.plots import descent as figures


@pytest.fixture(scope="module")
def article_run():
    return minimize("x^2 - 4*x + 6", 8, lr=0.1)


@pytest.fixture(scope="module")
def rosenbrock_run():
    return minimize("(1 - x)^2 + 100*(y - x^2)^2", [-1.5, 2], optimizer="momentum", lr=1e-3,
                    max_iter=3000)


def test_path_1d_draws_the_iterates_on_the_curve(article_run, tmp_path):
    fig = figures.plot_path_1d(article_run)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    curve = ax.lines[0]
    grid, values = curve.get_data()
    np.testing.assert_allclose(values, grid**2 - 4 * grid + 6, rtol=1e-12)
    points = ax.lines[1]
    np.testing.assert_allclose(points.get_xdata(), article_run.xs()[:, 0])
    np.testing.assert_allclose(points.get_ydata(), article_run.fs())
    # a tangent at each of the first 5 iterates: the segment's slope is dy/dx = 2x − 4 there
    tangents = [line for line in ax.lines[2:] if len(line.get_xdata()) == 2]
    assert len(tangents) == 5
    for line, it in zip(tangents, article_run.iterations, strict=False):
        (x0, x1), (y0, y1) = line.get_xdata(), line.get_ydata()
        assert (y1 - y0) / (x1 - x0) == pytest.approx(2 * it.x[0] - 4)
    assert len(ax.texts) == 15          # step arrows
    path = plots.save_figure(fig, tmp_path / "path.png")
    assert path.exists() and path.stat().st_size > 1000


def test_contour_2d_has_the_path_and_a_colour_bar(rosenbrock_run, tmp_path):
    fig = figures.plot_contour_2d(rosenbrock_run)
    assert len(fig.axes) == 2           # the map and its colour bar
    ax = fig.axes[0]
    path = ax.lines[0]
    np.testing.assert_allclose(path.get_xdata(), rosenbrock_run.xs()[:, 0])
    np.testing.assert_allclose(path.get_ydata(), rosenbrock_run.xs()[:, 1])
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    assert plots.save_figure(fig, tmp_path / "contour.svg").exists()


def test_plot_trajectory_dispatches(article_run, rosenbrock_run):
    assert len(figures.plot_trajectory(article_run).axes) == 1
    assert len(figures.plot_trajectory(rosenbrock_run).axes) == 2
    with pytest.raises(InvalidValueError, match="2 variable"):
        figures.plot_contour_2d(article_run)
    with pytest.raises(InvalidValueError, match="1 variable"):
        figures.plot_path_1d(rosenbrock_run)


def test_comparison_plot(tmp_path):
    c = compare("x^2", 8, lrs=[0.01, 0.1, 0.9, 1.1])
    fig = figures.plot_comparison(c)
    assert len(fig.axes) == 2
    left, right = fig.axes
    assert len(left.lines) == 4 and len(right.lines) == 4
    for line, run in zip(right.lines, c.runs, strict=True):
        np.testing.assert_allclose(line.get_ydata(), run.fs())
    assert left.get_yscale() == "symlog"       # the diverging run spans 1e6
    assert "diverged" in left.get_legend().get_texts()[3].get_text()
    assert plots.save_figure(fig, tmp_path / "compare.pdf").exists()


def test_comparison_plot_two_variables():
    c = compare("x^2 + 3*y^2", [1, 1], optimizers=["sgd", "adam"], lr=0.1, max_iter=50)
    fig = figures.plot_comparison(c.runs)
    assert len(fig.axes[0].lines) == 4        # x solid and y dashed for each run


def test_loss_plot_gap_and_grad(article_run, rosenbrock_run):
    fig = figures.plot_loss(article_run, f_min=2.0)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_yscale() == "log"
    gap = ax.lines[0].get_ydata()
    # f − 2 = (x − 2)² = 36·0.64^k, up to the rounding of f ≈ 2 (ulp 4.4e-16)
    np.testing.assert_allclose(gap, 36 * 0.64 ** np.arange(len(gap)), rtol=1e-9, atol=1e-15)
    grad_fig = figures.plot_loss([article_run, rosenbrock_run], quantity="grad")
    np.testing.assert_allclose(grad_fig.axes[0].lines[1].get_ydata(),
                               rosenbrock_run.grad_norms())
    with pytest.raises(InvalidValueError, match="quantity"):
        figures.plot_loss(article_run, quantity="loss")


def test_loss_plot_leaves_out_zero_gaps(article_run):
    ys = figures.plot_loss(article_run).axes[0].lines[0].get_ydata()   # f_min = last f
    assert math.isnan(ys[-1]) and np.all(ys[:-1] > 0)


def test_diverged_run_plots_without_error(tmp_path):
    t = minimize("x^2", 8, lr=1.1)
    plots.save_figure(figures.plot_path_1d(t), tmp_path / "diverged.png")
    plots.save_figure(figures.plot_loss(t, quantity="grad"), tmp_path / "diverged_loss.png")


def test_callable_run_is_plotted_point_by_point():
    t = minimize(lambda x: math.sin(x) + x * x / 4, 3.0, lr=0.3)
    fig = figures.plot_path_1d(t)
    grid, values = fig.axes[0].lines[0].get_data()
    np.testing.assert_allclose(values, np.sin(grid) + grid**2 / 4, rtol=1e-12)


def test_animation_gif(article_run, rosenbrock_run, tmp_path):
    from PIL import Image

    gif = figures.animate(article_run, tmp_path / "article.gif", max_frames=5)
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 5
    gif2 = figures.animate(rosenbrock_run, tmp_path / "rosen.gif", max_frames=3)
    assert gif2.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["article.gif", "rosen.gif"]  # no temp


def test_animation_needs_gif_path(article_run, tmp_path):
    with pytest.raises(InvalidValueError, match=".gif"):
        figures.animate(article_run, tmp_path / "article.png")
    assert not list(tmp_path.iterdir())


def test_lazy_export():
    assert plots.plot_contour_2d is figures.plot_contour_2d
    assert set(figures.__all__) >= {"plot_path_1d", "plot_contour_2d", "plot_comparison",
                                    "plot_loss", "animate"}


def test_every_figure_is_made_without_a_display_or_pyplot(tmp_path):
    """In a fresh process with no DISPLAY and an interactive backend asked for, all five
    figures are made and saved, and pyplot (which would need a display) is never imported."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gradsight.calculus.descent import minimize, compare\n"
        "from gradsight.present.plots import descent as F, save_figure\n"
        "a = minimize('x^2 - 4*x + 6', 8, lr=0.1)\n"
        "b = minimize('x^2 + 3*y^2', [1, 1], lr=0.1)\n"
        "c = compare('x^2', 8, lrs=[0.1, 1.1])\n"
        "figs = [F.plot_path_1d(a), F.plot_contour_2d(b), F.plot_comparison(c), F.plot_loss(c)]\n"
        "for i, f in enumerate(figs): save_figure(f, f'f{i}.png')\n"
        "F.animate(b, 'b.gif', max_frames=3)\n"
        "print([len(f.axes) for f in figs], 'matplotlib.pyplot' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["MPLBACKEND"] = "TkAgg"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[1, 2, 2, 1] False"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.gif", "f0.png", "f1.png",
                                                          "f2.png", "f3.png"]
