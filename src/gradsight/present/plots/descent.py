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
    return f"{traj.expression}  ·  {traj.optimizer}, η = {traj.lr:g}  ·  {traj.verdict}"


def _text_width(text: str, fontsize: float) -> float:
    """The width of one line of ``text`` in points (the default font, no math)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _, _ = TextToPath().get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=False)
    return float(width)


def _wrap(text: str, width: float, fontsize: float) -> list[str]:
    """``text`` broken into lines no wider than ``width`` points: at spaces where it can,
    inside a long word (an expression written without spaces) where it must."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if _text_width(candidate, fontsize) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:  # start the word on a new line, cutting it if it is too long
            if line and _text_width(line + char, fontsize) > width:
                lines.append(line)
                line = ""
            line += char
    lines.append(line)
    return lines


def _set_title(ax: Axes, text: str, fontsize: float = 9.0, max_lines: int = 3) -> None:
    """Set a title that fits the figure: wrapped to the width the axes' centre leaves on
    both sides, in a smaller font if it needs more than ``max_lines`` lines, cut with "…"
    if even that is not enough (the whole expression is in the run's JSON)."""
    figure = ax.get_figure(root=True)
    assert figure is not None
    box = ax.get_position()
    centre = box.x0 + box.width / 2
    # 0.85: the layout engine moves the axes a little; measured widths differ by a few %
    width = 2 * min(centre, 1 - centre) * figure.get_figwidth() * 72 * 0.85
    size = fontsize
    lines = _wrap(text, width, size)
    if len(lines) > max_lines:
        size = max(6.0, fontsize - 2)
        lines = _wrap(text, width, size)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and _text_width(last + "…", size) > width:
            last = last[:-1]
        lines[-1] = last + "…"
    ax.set_title("\n".join(lines), fontsize=size)


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


def _limits(ax: Axes, traj: Trajectory, low: float, high: float) -> tuple[float, float]:
    """Fix the axes to the curve's span (so tangents cannot stretch it); return the y span."""
    values = [it.f for it in traj.iterations if math.isfinite(it.f)]
    for line in ax.lines[:1]:
        ys = np.asarray(line.get_ydata(), dtype=float)
        values.extend(ys[np.isfinite(ys)].tolist())
    y_low, y_high = _span(np.asarray(values or [0.0]), margin=0.06)
    ax.set_xlim(low, high)
    ax.set_ylim(y_low, y_high)
    return y_low, y_high


def _clip(x0: float, y0: float, x1: float, y1: float,
          box: tuple[float, float, float, float]) -> tuple[float, float, float, float] | None:
    """The part of the segment (x0, y0)–(x1, y1) inside ``box`` = (x_low, x_high, y_low,
    y_high) (Liang–Barsky), or None if none of it is."""
    t0, t1 = 0.0, 1.0
    dx, dy = x1 - x0, y1 - y0
    for p, q in ((-dx, x0 - box[0]), (dx, box[1] - x0), (-dy, y0 - box[2]), (dy, box[3] - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    if t0 >= t1:
        return None
    return x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy


def _tangent(traj: Trajectory, x: float, f: float, slope: float,
             box: tuple[float, float, float, float]) -> tuple[float, ...] | None:
    """The tangent at (x, f), long enough that its ends leave the curve by ≥ 4% of the
    plot's height (else 30% of its width: a straight f has its tangent on itself), clipped
    to the plot."""
    x_span, y_span = box[1] - box[0], box[3] - box[2]
    half = 0.3 * x_span
    if traj.function is not None:
        for share in (0.06, 0.09, 0.12, 0.16, 0.2, 0.25):
            h = share * x_span
            ends = np.array([x - h, x + h])
            gap = np.abs(_evaluate(traj.function, ends) - (f + slope * (ends - x)))
            if np.all(np.isfinite(gap)) and gap.min() >= 0.04 * y_span:
                half = h
                break
    return _clip(x - half, f - slope * half, x + half, f + slope * half, box)


def plot_path_1d(traj: Trajectory, max_marks: int = 15, tangents: int = 5) -> Figure:
    """The curve y = f(x), the iterates on it, the step x_new = x_old − η·dy/dx as an arrow
    for the first ``max_marks`` iterates and the tangent (slope dy/dx) at the first
    ``tangents`` of them — drawn long enough to leave the curve, above it, inside the plot."""
    _require(traj, 1)
    fig = _new_figure()
    ax = fig.subplots()
    low, high = _curve(ax, traj)
    y_low, y_high = _limits(ax, traj, low, high)
    box = (low, high, y_low, y_high)
    rows = [it for it in traj.iterations if math.isfinite(it.x[0]) and math.isfinite(it.f)]
    ax.plot([it.x[0] for it in rows], [it.f for it in rows], "o", color="tab:red", ms=4,
            zorder=4, label="iterates")
    for k, (it, nxt) in enumerate(zip(traj.iterations[:max_marks],
                                      traj.iterations[1:max_marks + 1], strict=False)):
        x, slope = it.x[0], it.grad[0]
        if not all(map(math.isfinite, (x, it.f, slope, nxt.x[0], nxt.f))):
            break
        segment = _tangent(traj, x, it.f, slope, box) if k < tangents else None
        if segment is not None:
            (line,) = ax.plot(segment[0::2], segment[1::2], color="tab:blue", lw=1.8,
                              ls="--", zorder=3)
            line.set_gid("tangent")
        ax.annotate("", xy=(nxt.x[0], nxt.f), xytext=(x, it.f),
                    arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 1})
    ax.plot([], [], color="tab:blue", lw=1.8, ls="--", label="tangent (slope dy/dx)")
    _set_title(ax, _title(traj))
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
    _set_title(ax, _title(traj))
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
    return f"{traj.optimizer} η = {traj.lr:g} ({traj.verdict})"


#: (line style, marker) per run: runs that fall alike (η = 0.1 and 0.9 on a parabola both
#: multiply x − 2 by 0.8 in size) must still be told apart, so each run differs in colour,
#: dash pattern and marker, and the earlier runs are drawn wider, beneath the later ones
_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"),
           ((0, (1, 3)), "P"))


def _run_style(index: int, count: int, points: int) -> dict[str, Any]:
    """Matplotlib keywords that keep run ``index`` of ``count`` visible beside the others."""
    dashes, marker = _STYLES[index % len(_STYLES)]
    every = max(1, points // 8)
    return {"color": f"C{index % 10}", "linestyle": dashes, "marker": marker,
            "markevery": (index * every // max(count, 1), every), "markersize": 5,
            "linewidth": 1.4 + 1.6 * (count - 1 - index) / max(count - 1, 1),
            "zorder": 2 + index}


def _wide_range(ax: Axes, values: list[np.ndarray]) -> None:
    """Symmetric-log y axis when values span many orders (a diverging run)."""
    finite = np.abs(np.concatenate([v[np.isfinite(v)] for v in values] or [np.zeros(1)]))
    nonzero = finite[finite > 0]
    if nonzero.size and nonzero.max() > 1e3 * max(np.median(nonzero), 1e-300):
        ax.set_yscale("symlog", linthresh=max(float(np.median(nonzero)), 1e-12))


def plot_comparison(comparison: Comparison | Sequence[Trajectory]) -> Figure:
    """Several runs: the coordinates vs iteration (left; y dashed) and f vs iteration (right).

    Each run has its own colour, dash pattern and marker, so runs that coincide stay
    visible (see :func:`_run_style`)."""
    runs = _runs(comparison)
    fig = _new_figure(10.0, 4.0)
    left, right = fig.subplots(1, 2)
    coords, values = [], []
    for index, traj in enumerate(runs):
        steps, xs, fs = np.array([it.step for it in traj.iterations]), traj.xs(), traj.fs()
        style = _run_style(index, len(runs), len(steps))
        for j in range(min(xs.shape[1], 2)):
            thin = {"linewidth": 0.5 * style["linewidth"], "alpha": 0.7} if j else {}
            left.plot(steps, xs[:, j], **{**style, **thin},
                      label=_label(traj) if j == 0 else None)
        right.plot(steps, fs, **style, label=_label(traj))
        coords.append(xs.ravel())
        values.append(fs)
    variables = runs[0].variables
    names = (variables[0] if len(variables) == 1
             else f"{variables[0]} (thick), {variables[1]} (thin)")
    left.set(xlabel="iteration", ylabel=names)
    left.set_title("iterates", fontsize=9)
    right.set(xlabel="iteration", ylabel="f")
    _set_title(right, runs[0].expression)
    _wide_range(left, coords)
    _wide_range(right, values)
    left.legend(fontsize=7, loc="best")
    return fig


def plot_loss(runs: Trajectory | Comparison | Sequence[Trajectory], quantity: str = "gap",
              f_min: float | None = None) -> Figure:
    """``f − f_min`` (quantity "gap"; f_min defaults to the lowest f seen) or ``‖∇f‖``
    (quantity "grad") against the iteration, on a log scale; zeros are left out.

    Each run has its own colour, dash pattern and marker, so runs that fall alike stay
    visible (see :func:`_run_style`); the y axis says what is drawn, the legend's title
    the value of f_min."""
    if quantity not in ("gap", "grad"):
        raise InvalidValueError(f"quantity must be 'gap' or 'grad', got {quantity!r}")
    items = _runs(runs)
    lowest = f_min is None
    if quantity == "gap" and f_min is None:
        finite = np.concatenate([t.fs()[np.isfinite(t.fs())] for t in items])
        f_min = float(finite.min()) if finite.size else 0.0
    fig = _new_figure()
    ax = fig.subplots()
    for index, traj in enumerate(items):
        series = traj.fs() - f_min if quantity == "gap" else traj.grad_norms()
        series = np.where(np.isfinite(series) & (series > 0), series, np.nan)
        ax.plot([it.step for it in traj.iterations], series, label=_label(traj),
                **_run_style(index, len(items), len(series)))
    ax.set_yscale("log")
    note = None
    if quantity == "gap":
        ylabel = "f − f_min (gap to the lowest f seen)" if lowest else "f − f_min"
        note = f"f_min = {f_min:.6g}"
    else:
        ylabel = "‖∇f‖ (size of the gradient)"
    ax.set(xlabel="iteration", ylabel=ylabel)
    _set_title(ax, items[0].expression)
    ax.legend(fontsize=8, loc="best", title=note, title_fontsize=8)
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
        _set_title(ax, f"{_title(traj)}  ·  step {k}")
        return trail, head

    movie = FuncAnimation(fig, draw, frames=[int(k) for k in frames], blit=False)
    with atomic_path(path_gif) as tmp:
        movie.save(tmp, writer=PillowWriter(fps=fps), dpi=80)
    return Path(path_gif)
