"""Figures a learner meets first, checked on their matplotlib objects: the learning rate is
η, runs that coincide stay distinguishable, tangents leave the curve inside the plot, long
titles fit the figure (measured by the renderer), axes say what they show, every activation
has a panel of its own, and ``gradsight.plots`` lists its lazy functions for completion."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from gradsight import activations
from gradsight.calculus.descent import compare, minimize
from gradsight.present.plots import calculus as cplots
from gradsight.present.plots import descent as dplots

LONG = ("(1 - x)^2 + 100*(y - x^2)^2 + 0.001*sin(x)*cos(y)*exp(-x^2) + 3*tanh(x*y)"
        " + 0.5*sqrt(1 + x^2 + y^2)")


@pytest.fixture(scope="module")
def rates():
    """The tour's comparison: the parabola from x = 8 with four learning rates."""
    return compare("x^2 - 4*x + 6", 8, lrs=[0.01, 0.1, 0.9, 1.1], max_iter=1000)


@pytest.fixture(scope="module")
def parabola():
    return minimize("x^2 - 4*x + 6", 8, lr=0.1)


def _drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()
    return fig


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


# ---- the learning rate is η ----------------------------------------------------------------
def test_descent_figures_name_the_learning_rate_eta(parabola, rates) -> None:
    two = minimize("x^2 + 3*y^2", [1, 1], lr=0.1, max_iter=50)
    figures = [dplots.plot_path_1d(parabola), dplots.plot_contour_2d(two),
               dplots.plot_comparison(rates), dplots.plot_loss(rates)]
    for fig in figures:
        texts = _texts(_drawn(fig))
        assert not [t for t in texts if re.search(r"\blr\b|ν", t)], texts
        assert any("η = 0.1" in t for t in texts), texts


# ---- coinciding runs stay visible -----------------------------------------------------------
@pytest.mark.parametrize("panel", ["loss", "comparison"])
def test_runs_that_fall_alike_are_drawn_apart(rates, panel) -> None:
    fig = (dplots.plot_loss(rates) if panel == "loss" else dplots.plot_comparison(rates))
    ax = fig.axes[0] if panel == "loss" else fig.axes[1]
    lines = {line.get_label(): line for line in ax.get_lines()}
    slow = next(line for label, line in lines.items() if "η = 0.1 " in label)
    fast = next(line for label, line in lines.items() if "η = 0.9 " in label)
    # the two curves coincide (|1 − 2η| = 0.8 for both), so the style must tell them apart
    np.testing.assert_allclose(slow.get_ydata()[:20], fast.get_ydata()[:20], rtol=1e-6)
    assert slow.get_linestyle() != fast.get_linestyle()
    assert slow.get_marker() != fast.get_marker()
    # the one beneath is drawn wider, so it shows around the one on top
    below, above = sorted((slow, fast), key=Line2D.get_zorder)
    assert below.get_zorder() < above.get_zorder()
    assert below.get_linewidth() > above.get_linewidth()


# ---- tangents are visible ---------------------------------------------------------------------
def test_tangents_leave_the_curve_inside_the_axes(parabola) -> None:
    fig = _drawn(dplots.plot_path_1d(parabola))
    ax = fig.axes[0]
    curve = ax.lines[0]
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    tangents = [line for line in ax.lines[2:] if len(line.get_xdata()) == 2]
    assert len(tangents) >= 3
    for line in tangents:
        xs, ys = (np.asarray(v, dtype=float) for v in line.get_data())
        assert line.get_visible() and (line.get_alpha() or 1.0) >= 0.8
        assert line.get_zorder() > curve.get_zorder()
        assert np.all((x_low <= xs) & (xs <= x_high) & (y_low <= ys) & (ys <= y_high))
        # the curve is y = x² − 4x + 6: how far the tangent's ends are from it, as a share of
        # the plot's height — a tangent hugging the curve is not seen
        gap = np.abs(xs**2 - 4 * xs + 6 - ys) / (y_high - y_low)
        assert gap.max() >= 0.03, gap
        # and it is the tangent: slope dy/dx = 2x − 4 at the iterate it touches
        slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
        touch = [it for it in parabola.iterations if it.grad[0] == pytest.approx(slope)]
        assert touch, slope


# ---- titles fit the figure ---------------------------------------------------------------------
def _assert_titles_fit(fig: Figure) -> None:
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    width = fig.bbox.width
    titles = [ax.title for ax in fig.axes if ax.title.get_text()]
    assert titles
    for title in titles:
        box = title.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width, (title.get_text(), box, width)


def test_long_expressions_do_not_clip_the_titles() -> None:
    one = minimize(LONG.replace("y", "x"), 0.5, lr=1e-4, max_iter=5)
    two = minimize(LONG, [-1.5, 2], lr=1e-4, max_iter=5)
    many = compare(LONG, [-1.5, 2], lrs=[1e-4, 2e-4], max_iter=5)
    for fig in (dplots.plot_path_1d(one), dplots.plot_contour_2d(two),
                dplots.plot_comparison(many), dplots.plot_loss(many)):
        _assert_titles_fit(fig)
    title = dplots.plot_loss(many).axes[0].get_title()
    assert title.replace("\n", "").replace(" ", "") == LONG.replace(" ", "")  # wrapped, whole


def test_an_absurdly_long_title_is_cut_with_an_ellipsis() -> None:
    expression = " + ".join(f"{k}*x^2" for k in range(1, 57))  # near the parser's 500 limit
    assert 450 < len(expression) <= 500
    fig = dplots.plot_path_1d(minimize(expression, 1.0, lr=1e-5, max_iter=3))
    _assert_titles_fit(fig)
    assert fig.axes[0].get_title().endswith("…")


# ---- the y axis says what it shows ----------------------------------------------------------
def test_the_gap_axis_is_labelled_by_what_it_draws() -> None:
    rosenbrock = compare("(1-x)**2 + 100*(y-x**2)**2", [-1.5, 2], optimizers=["adam"],
                         lr=0.02, max_iter=5000)
    fig = dplots.plot_loss(rosenbrock)
    ax = fig.axes[0]
    label = ax.get_ylabel()
    assert label.startswith("f − f_min") and "=" not in label and "gap" in label
    f_min = min(float(np.nanmin(run.fs())) for run in rosenbrock.runs)
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == f"f_min = {f_min:.6g}"
    assert dplots.plot_loss(rosenbrock, quantity="grad").axes[0].get_ylabel().startswith("‖∇f‖")


# ---- one activation per panel -------------------------------------------------------------------
def test_every_activation_has_a_panel_of_its_own() -> None:
    fig = cplots.plot_activations(z_range=(-6.0, 6.0))
    names = activations.names()
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == len(names)
    for ax, name in zip(panels, names, strict=True):
        act = activations.get(name)
        assert ax.get_title().startswith(f"{name}:")
        curves = [line for line in ax.lines if len(line.get_xdata()) > 2]
        assert len(curves) == 2, [line.get_label() for line in curves]
        value, derivative = curves
        z = np.asarray(value.get_xdata(), dtype=float)
        np.testing.assert_allclose(value.get_ydata(), act(z), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(derivative.get_ydata(), act.derivative(z), rtol=1e-12,
                                   atol=1e-15)
    # relu and linear agree for z > 0: on separate axes neither hides the other
    relu, linear = (panels[names.index(n)] for n in ("relu", "linear"))
    assert relu is not linear
    chosen = cplots.plot_activations(["sigmoid", "relu"])
    assert len([ax for ax in chosen.axes if ax.lines]) == 2


# ---- tab completion ---------------------------------------------------------------------------
def test_dir_of_the_plots_package_lists_its_lazy_functions() -> None:
    import gradsight
    from gradsight.present import plots

    listed = dir(plots)
    for sub in ("calculus", "descent", "training", "diagnostics"):
        module = __import__(f"gradsight.present.plots.{sub}", fromlist=["__all__"])
        assert set(module.__all__) <= set(listed), sub
    assert "save_figure" in listed and listed == sorted(listed)
    assert "plot_loss" in dir(gradsight.plots)
    assert all(callable(getattr(plots, name)) for name in listed if name.startswith("plot_"))
