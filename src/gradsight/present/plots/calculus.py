"""Figures of activations, their derivatives and the finite-difference step study.

Pure functions: data in, :class:`~matplotlib.figure.Figure` out (no pyplot state); save with
:func:`gradsight.plots.save_figure`. Every number drawn comes from a tested function
(:mod:`gradsight.activations`, :func:`gradsight.calculus.step_study`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from ... import activations
from ...errors import InvalidValueError, require_finite

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ...calculus.symbolic import StepStudy

__all__ = ["plot_activation", "plot_activations", "plot_step_study"]

ARTICLE_STEP = 1e-13  # the forward-difference step of the article on the derivative in training
_COLORS = {"forward": "tab:red", "backward": "tab:orange", "central": "tab:blue",
           "complex": "tab:green"}


def _grid(z_range: tuple[float, float], points: int = 1001) -> np.ndarray:
    low, high = (require_finite("z_range", value) for value in z_range)
    if not low < high:
        raise InvalidValueError(f"z_range must be (low, high) with low < high, got {z_range!r}")
    return np.linspace(low, high, points)


def _names(name_or_names: str | Sequence[str] | None) -> list[str]:
    if name_or_names is None:
        return activations.names()
    names = [name_or_names] if isinstance(name_or_names, str) else list(name_or_names)
    if not names:
        raise InvalidValueError("give at least one activation name")
    return [activations.get(name).name for name in names]  # unknown names fail here


def _mark_peak(ax: Axes, act: activations.ActivationFunction, z: np.ndarray, color: str) -> None:
    value, where = act.max_derivative
    if math.isfinite(where) and z[0] <= where <= z[-1]:
        ax.plot([where], [value], "o", color=color, zorder=3)
        ax.annotate(f"max {value:.4g} at z={where:.3g}", (where, value), xytext=(8, -2),
                    textcoords="offset points", va="top", fontsize=8, color=color)
    else:  # reached on all of z > 0 (relu family), everywhere (linear), or as z → ∞
        ax.axhline(value, color=color, linestyle=":", linewidth=1)
        ax.annotate(f"max {value:.4g} {act.max_derivative_where}", (z[-1], value),
                    xytext=(-6, 4), textcoords="offset points", ha="right", fontsize=8,
                    color=color)


def plot_activation(name_or_names: str | Sequence[str] = "sigmoid",
                    z_range: tuple[float, float] = (-10.0, 10.0)) -> Figure:
    """One row per activation: a = f(z) on the left, f′(z) on the right with its maximum
    marked — the figure of the article on the derivative in training (sigmoid and its
    derivative, peak 0.25 at z = 0)."""
    names, z = _names(name_or_names), _grid(z_range)
    fig = Figure(figsize=(9.0, 2.8 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 2, squeeze=False)
    for (ax_f, ax_d), name in zip(axes, names, strict=True):
        act = activations.get(name)
        ax_f.plot(z, act(z), color="tab:blue")
        ax_f.set_title(f"{name}: a = {act.formula}", fontsize=10)
        ax_d.plot(z, act.derivative(z), color="tab:red")
        ax_d.set_title(f"{name}′(z) = {act.derivative_formula}", fontsize=10)
        _mark_peak(ax_d, act, z, "tab:red")
        for ax, label in ((ax_f, "a"), (ax_d, "da/dz")):
            ax.set_xlabel("z")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    return fig


def plot_activations(names: Sequence[str] | None = None,
                     z_range: tuple[float, float] = (-6.0, 6.0), columns: int = 3) -> Figure:
    """Small multiples: one panel per activation with a = f(z) and f′(z), its maximum
    marked, and the line f′ = 0.25 for comparison.

    One activation per panel, so no curve hides another (relu lies on linear for z > 0, and
    leaky ReLU on both). The panels share their axes: side by side they tell the
    vanishing-gradient story — σ′ never exceeds 0.25, so a product of L sigmoid factors
    shrinks at least like 0.25^L, while tanh′ and the relu family reach 1."""
    chosen, z = _names(names), _grid(z_range)
    if not (isinstance(columns, int) and columns >= 1):
        raise InvalidValueError(f"columns must be a positive integer, got {columns!r}")
    cols = min(columns, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = Figure(figsize=(3.7 * cols, 2.7 * rows + 0.4), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    panels = list(grid.ravel())
    for ax, name in zip(panels, chosen, strict=False):
        act = activations.get(name)
        ax.axhline(0.25, color="grey", linestyle="--", linewidth=0.8)
        ax.plot(z, act(z), color="tab:blue", label="a = f(z)")
        ax.plot(z, act.derivative(z), color="tab:red", label="f′(z)")
        value, where = act.max_derivative
        if math.isfinite(where) and z[0] <= where <= z[-1]:
            ax.plot([where], [value], "o", color="tab:red", markersize=4)
        ax.set_title(f"{name}: max f′ = {value:.3g} {act.max_derivative_where}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_ylim(-1.5, 2.5)
    for ax in panels[len(chosen):]:
        ax.set_axis_off()
    for ax in grid[-1]:
        ax.set_xlabel("z")
    handles, labels = panels[0].get_legend_handles_labels()
    handles.append(panels[0].lines[0])
    labels.append("f′ = 0.25 (σ′ never exceeds it)")
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def plot_step_study(study: StepStudy) -> Figure:
    """|estimate − exact| against h on log–log axes, one line per method.

    Truncation error falls with h (slope 1 for forward/backward, 2 for central and
    complex-step) until round-off, ~ε/h, takes over for the differences that subtract; the
    dotted lines mark each recommended h and the band marks h = 1e-13, the step of the article
    on the derivative in training. An error of exactly 0 is drawn at 1e-17 (a log axis has
    no 0)."""
    floor = 1e-17
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.subplots()
    methods = [m for m in ("forward", "backward", "central", "complex") if study.method_rows(m)]
    for method in methods:
        rows = study.method_rows(method)
        hs = np.array([row.h for row in rows])
        errors = np.array([max(row.abs_error, floor) for row in rows])
        color = _COLORS[method]
        ax.loglog(hs, errors, "o-", color=color, label=method, markersize=4)
        recommended = study.recommended.get(method)
        if recommended is not None and hs.min() <= recommended <= hs.max():
            ax.axvline(recommended, color=color, linestyle=":", linewidth=1)
    ax.axvspan(ARTICLE_STEP / 2, ARTICLE_STEP * 2, color="gold", alpha=0.3,
               label="the article's h = 1e-13")
    article_rows = [r for r in study.method_rows("forward")
                    if math.isclose(r.h, ARTICLE_STEP)]
    if article_rows:
        error = max(article_rows[0].abs_error, floor)
        ax.plot([ARTICLE_STEP], [error], "*", color="black", markersize=12)
        ax.annotate(f"forward, h=1e-13: error {error:.1e}", (ARTICLE_STEP, error),
                    xytext=(8, 8), textcoords="offset points", fontsize=8)
    ax.set_xlabel("step h")
    ax.set_ylabel("absolute error")
    title = f"f′({study.x:g}) of {study.function}" if study.function else f"f′({study.x:g})"
    ax.set_title(f"{title}; exact {study.exact:.10g} (dotted: recommended h)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
