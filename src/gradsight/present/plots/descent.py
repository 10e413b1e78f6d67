"""Gradient-descent figures: the path on the curve (1-D) or on the contour map (2-D), several
runs side by side, the loss gap or gradient size on a log scale, and a GIF of the descent.

Pure functions: a :class:`gradsight.calculus.descent.Trajectory` (or :class:`Comparison`) in, a
matplotlib ``Figure`` out — nothing is computed here that a test has not checked in
:mod:`gradsight.calculus.descent`; the curve itself comes from the run's own function.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InvalidValueError
from ...io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ...calculus.descent import Comparison, Trajectory

__all__ = ["animate", "plot_comparison", "plot_contour_2d", "plot_loss", "plot_path_1d",
           "plot_trajectory"]


def _new_figure(width: float = 6.0, height: float = 4.2) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _title(traj: Trajectory) -> str:
    return f"{traj.expression}  ·  {traj.optimizer}, lr = {traj.lr:g}  ·  {traj.verdict}"


def _finite_rows(traj: Trajectory) -> np.ndarray:
    xs = traj.xs()
    return xs[np.all(np.isfinite(xs), axis=1)]


def _span(values: np.ndarray, margin: float = 0.15) -> tuple[float, float]:
    low, high = float(np.min(values)), float(np.max(values))
    pad = margin * (high - low) if high > low else max(1.0, abs(low)) * 0.5
    return low - pad, high + pad


def _evaluate(function: Callable[..., Any], *grids: np.ndarray) -> np.ndarray:
    """f on arrays: elementwise if the function allows it, else point by point."""
    with np.errstate(all="ignore"):
        try:
            values = np.asarray(function(*grids), dtype=float)
            if values.shape == grids[0].shape:
                return values
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            pass
        return np.vectorize(lambda *c: _safe_call(function, *c), otypes=[float])(*grids)


def _safe_call(function: Callable[..., Any], *coords: float) -> float:
    try:
        return float(function(*coords))
    except (ValueError, OverflowError, ZeroDivisionError):
        return math.nan


def _require(traj: Trajectory, dims: int) -> None:
    if len(traj.variables) != dims:
        raise InvalidValueError(f"this plot needs a run in {dims} variable(s), got "
                                f"{len(traj.variables)} ({', '.join(traj.variables)})")


def _curve(ax: Axes, traj: Trajectory) -> tuple[float, float]:
    """Draw y = f(x) over the span of the iterates; return that span."""
    low, high = _span(_finite_rows(traj)[:, 0])
    if traj.function is not None:
        grid = np.linspace(low, high, 400)
        ax.plot(grid, _evaluate(traj.function, grid), color="0.35", lw=1.5, label="f(x)")
    ax.set(xlabel=traj.variables[0], ylabel="f")
    return low, high


def _contours(fig: Figure, ax: Axes, traj: Trajectory, levels: int, resolution: int) -> None:
    """Filled contour map of f(x, y) over the span of the path, with a colour bar."""
    path = _finite_rows(traj)
    (x_low, x_high), (y_low, y_high) = _span(path[:, 0]), _span(path[:, 1])
    if traj.function is not None:
        gx, gy = np.meshgrid(np.linspace(x_low, x_high, resolution),
                             np.linspace(y_low, y_high, resolution))
        values = _evaluate(traj.function, gx, gy)
        finite = values[np.isfinite(values)]
        if finite.size and np.ptp(finite) > 0:
            # quantile levels, denser near the minimum, where the path ends
            marks = np.unique(np.quantile(finite, np.linspace(0, 1, levels) ** 2))
            from matplotlib.colors import BoundaryNorm

            norm = BoundaryNorm(marks, ncolors=256)     # colour by level, not by raw value
            filled = ax.contourf(gx, gy, values, levels=marks, cmap="viridis", norm=norm,
                                 alpha=0.85)
            ax.contour(gx, gy, values, levels=marks, colors="white", linewidths=0.3)
            fig.colorbar(filled, ax=ax, label="f")
    ax.set(xlabel=traj.variables[0], ylabel=traj.variables[1], xlim=(x_low, x_high),
           ylim=(y_low, y_high))


def plot_path_1d(traj: Trajectory, max_marks: int = 15) -> Figure:
    """The curve y = f(x), the iterates on it, the tangent (slope dy/dx) at each and the step
    x_new = x_old − η·dy/dx as an arrow — for the first ``max_marks`` iterates."""
    _require(traj, 1)
    fig = _new_figure()
    ax = fig.subplots()
    low, high = _curve(ax, traj)
    rows = [it for it in traj.iterations if math.isfinite(it.x[0]) and math.isfinite(it.f)]
    ax.plot([it.x[0] for it in rows], [it.f for it in rows], "o", color="tab:red", ms=4,
            zorder=3, label="iterates")
    half = 0.07 * (high - low)
    for it, nxt in zip(traj.iterations[:max_marks], traj.iterations[1:max_marks + 1],
                       strict=False):
        x, slope = it.x[0], it.grad[0]
        if not all(map(math.isfinite, (x, it.f, slope, nxt.x[0], nxt.f))):
            break
        ax.plot([x - half, x + half], [it.f - slope * half, it.f + slope * half],
                color="tab:blue", lw=1.2, ls="--", alpha=0.9)
        ax.annotate("", xy=(nxt.x[0], nxt.f), xytext=(x, it.f),
                    arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 1})
    ax.plot([], [], color="tab:blue", lw=1.2, ls="--", label="tangent (slope dy/dx)")
    ax.set_title(_title(traj), fontsize=9)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_contour_2d(traj: Trajectory, levels: int = 30, resolution: int = 160) -> Figure:
    """Contour map of f(x, y) with the path of iterates (start ○, end ★)."""
    _require(traj, 2)
    fig = _new_figure(6.0, 4.8)
    ax = fig.subplots()
    _contours(fig, ax, traj, levels, resolution)
    path = _finite_rows(traj)
    ax.plot(path[:, 0], path[:, 1], "-o", color="tab:red", ms=2.5, lw=1, label="path")
    ax.plot(path[0, 0], path[0, 1], "o", mfc="white", mec="black", ms=8, label="start")
    ax.plot(path[-1, 0], path[-1, 1], "*", color="gold", mec="black", ms=13, label="end")
    ax.set_title(_title(traj), fontsize=9)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_trajectory(traj: Trajectory) -> Figure:
    """:func:`plot_path_1d` or :func:`plot_contour_2d`, by the number of variables."""
    return plot_path_1d(traj) if len(traj.variables) == 1 else plot_contour_2d(traj)


def _runs(runs: Trajectory | Comparison | Sequence[Trajectory]) -> list[Trajectory]:
    if hasattr(runs, "iterations"):
        return [runs]  # type: ignore[list-item]
    items: list[Trajectory] = list(getattr(runs, "runs", runs))  # type: ignore[arg-type]
    if not items:
        raise InvalidValueError("no runs to plot")
    return items


def _label(traj: Trajectory) -> str:
    return f"{traj.optimizer} lr={traj.lr:g} ({traj.verdict})"


def _wide_range(ax: Axes, values: list[np.ndarray]) -> None:
    """Symmetric-log y axis when values span many orders (a diverging run)."""
    finite = np.abs(np.concatenate([v[np.isfinite(v)] for v in values] or [np.zeros(1)]))
    nonzero = finite[finite > 0]
    if nonzero.size and nonzero.max() > 1e3 * max(np.median(nonzero), 1e-300):
        ax.set_yscale("symlog", linthresh=max(float(np.median(nonzero)), 1e-12))


def plot_comparison(comparison: Comparison | Sequence[Trajectory]) -> Figure:
    """Several runs: the coordinates vs iteration (left; y dashed) and f vs iteration (right)."""
    runs = _runs(comparison)
    fig = _new_figure(10.0, 4.0)
    left, right = fig.subplots(1, 2)
    coords, values = [], []
    for index, traj in enumerate(runs):
        color = f"C{index % 10}"
        steps, xs, fs = np.array([it.step for it in traj.iterations]), traj.xs(), traj.fs()
        for j, style in zip(range(xs.shape[1]), ("-", "--"), strict=False):
            left.plot(steps, xs[:, j], style, color=color,
                      label=_label(traj) if j == 0 else None)
        right.plot(steps, fs, color=color, label=_label(traj))
        coords.append(xs.ravel())
        values.append(fs)
    names = " (solid), ".join(runs[0].variables) + (" (dashed)" if len(runs[0].variables) > 1
                                                     else "")
    left.set(xlabel="iteration", ylabel=names, title="iterates")
    right.set(xlabel="iteration", ylabel="f", title=runs[0].expression)
    _wide_range(left, coords)
    _wide_range(right, values)
    left.legend(fontsize=7, loc="best")
    return fig


def plot_loss(runs: Trajectory | Comparison | Sequence[Trajectory], quantity: str = "gap",
              f_min: float | None = None) -> Figure:
    """``f − f_min`` (quantity "gap"; f_min defaults to the lowest f seen) or ``‖∇f‖``
    (quantity "grad") against the iteration, on a log scale; zeros are left out."""
    if quantity not in ("gap", "grad"):
        raise InvalidValueError(f"quantity must be 'gap' or 'grad', got {quantity!r}")
    items = _runs(runs)
    if quantity == "gap" and f_min is None:
        finite = np.concatenate([t.fs()[np.isfinite(t.fs())] for t in items])
        f_min = float(finite.min()) if finite.size else 0.0
    fig = _new_figure()
    ax = fig.subplots()
    for index, traj in enumerate(items):
        series = traj.fs() - f_min if quantity == "gap" else traj.grad_norms()
        series = np.where(np.isfinite(series) & (series > 0), series, np.nan)
        ax.plot([it.step for it in traj.iterations], series, color=f"C{index % 10}",
                label=_label(traj))
    ax.set_yscale("log")
    ylabel = f"f − f_min (f_min = {f_min:.6g})" if quantity == "gap" else "‖∇f‖"
    ax.set(xlabel="iteration", ylabel=ylabel, title=items[0].expression)
    ax.legend(fontsize=8, loc="best")
    return fig


def animate(traj: Trajectory, path_gif: str | os.PathLike[str], fps: int = 6,
            max_frames: int = 60) -> Path:
    """Write a GIF of the descent (the path growing on the curve or contour map)."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    if Path(path_gif).suffix.lower() != ".gif":
        raise InvalidValueError(f"animation path must end in .gif, got {str(path_gif)!r}")
    if fps <= 0 or max_frames < 1:
        raise InvalidValueError(f"fps and max_frames must be positive, got {fps}, {max_frames}")
    xs = _finite_rows(traj)
    fs = traj.fs()[: len(xs)]
    frames = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), max_frames)).round())
    fig = _new_figure(6.0, 4.8 if xs.shape[1] == 2 else 4.2)
    ax = fig.subplots()
    one_d = xs.shape[1] == 1
    if one_d:
        _curve(ax, traj)
    else:
        _contours(fig, ax, traj, 30, 120)
    (trail,) = ax.plot([], [], "-o", color="tab:red", ms=3, lw=1)
    (head,) = ax.plot([], [], "o", color="gold", mec="black", ms=9)

    def draw(k: int) -> tuple[Any, ...]:
        a, b = (xs[: k + 1, 0], fs[: k + 1]) if one_d else (xs[: k + 1, 0], xs[: k + 1, 1])
        trail.set_data(a, b)
        head.set_data(a[-1:], b[-1:])
        ax.set_title(f"{_title(traj)}  ·  step {k}", fontsize=9)
        return trail, head

    movie = FuncAnimation(fig, draw, frames=[int(k) for k in frames], blit=False)
    with atomic_path(path_gif) as tmp:
        movie.save(tmp, writer=PillowWriter(fps=fps), dpi=80)
    return Path(path_gif)
