"""Figures that only the tour needs (pure: numbers in, ``Figure`` out; nothing computed here).

The library's own figures live in :mod:`gradsight.present.plots`; these combine several runs on one
picture the way the tour tells the story.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plot_article_curve(x: np.ndarray, sigma: np.ndarray, estimate: np.ndarray,
                       exact: np.ndarray, h: float) -> Figure:
    """The figure of the article on the derivative in training — σ and its forward-difference
    "derivative" with step ``h`` — beside the exact σ′, and the absolute error of the
    estimate (log axis)."""
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(x, sigma, color="tab:blue", label="sigmoid")
    left.plot(x, estimate, color="tab:red", linewidth=0.8, label=f"forward difference, h={h:g}")
    left.plot(x, exact, color="black", linestyle="--", linewidth=1, label="exact σ′ = σ(1−σ)")
    left.set_xlabel("x")
    left.legend(loc="upper left", fontsize=8)
    left.set_title("the article's plot, redone", fontsize=10)
    error = np.abs(estimate - exact)
    right.semilogy(x, np.maximum(error, 1e-17), ".", color="tab:red", markersize=2)
    right.set_xlabel("x")
    right.set_ylabel("|estimate − σ′(x)|")
    right.set_title(f"error of the forward difference with h = {h:g}", fontsize=10)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig


_DASHES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))


def plot_curves(panels: Sequence[tuple[str, Mapping[str, Sequence[float]]]], title: str,
                log_first: bool = False) -> Figure:
    """Side-by-side panels (y label, {run label: values per epoch}), e.g. the training loss
    and the held-out accuracy of several runs."""
    fig = Figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for position, (ax, (ylabel, curves)) in enumerate(zip(axes, panels, strict=True)):
        count = len(curves)
        for index, (label, values) in enumerate(curves.items()):
            epochs = np.arange(1, len(values) + 1)
            # runs that coincide (two nets stuck at chance) stay visible: each has its own
            # dash pattern, and the earlier ones are drawn wider, beneath the later ones
            ax.plot(epochs, np.asarray(values, dtype=float),
                    linestyle=_DASHES[index % len(_DASHES)], color=f"C{index % 10}",
                    label=label, zorder=2 + index,
                    linewidth=1.3 + 1.7 * (count - 1 - index) / max(count - 1, 1))
        if log_first and position == 0:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_layer_speeds(speeds: Mapping[str, Sequence[float]], title: str,
                      reference: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """Per-hidden-layer gradient norms (log axis), one line per run; dashed lines for
    published reference values (labelled as such)."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    depth = 0
    for index, (label, values) in enumerate(speeds.items()):
        layers = np.arange(1, len(values) + 1)
        depth = max(depth, len(values))
        ax.semilogy(layers, np.asarray(values, dtype=float), "o-", color=f"C{index % 10}",
                    label=label)
    for index, (label, values) in enumerate((reference or {}).items()):
        layers = np.arange(1, len(values) + 1)
        ax.semilogy(layers, np.asarray(values, dtype=float), "s--", color="grey",
                    alpha=0.5 + 0.5 * index / max(1, len(reference or {})), label=label)
    ax.set_xticks(np.arange(1, depth + 1))
    ax.set_xlabel("hidden layer (1 = nearest the input)")
    ax.set_ylabel("‖∂C/∂b‖ (speed of learning)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


STATE_COLORS = {"dead": "black", "saturated-wrong": "tab:red", "saturated-right": "tab:orange",
                "saturated": "tab:brown", "learning": "tab:green", "quiet": "tab:gray"}


def plot_state_counts(counts: Mapping[str, Mapping[str, int]], title: str) -> Figure:
    """Stacked horizontal bars: how many hidden units of each run are in each state."""
    fig = Figure(figsize=(8.0, 0.55 * len(counts) + 1.6), layout="constrained")
    ax = fig.subplots()
    labels = list(counts)
    left = np.zeros(len(labels))
    for state, color in STATE_COLORS.items():
        values = np.array([counts[label].get(state, 0) for label in labels], dtype=float)
        if values.any():
            ax.barh(labels, values, left=left, color=color, label=state)
            left += values
    ax.invert_yaxis()
    ax.set_xlabel("hidden units")
    ax.set_title(title, fontsize=10)
    shown = len(ax.get_legend_handles_labels()[1])
    fig.legend(fontsize=8, ncol=max(shown, 1), loc="outside lower center", frameon=False)
    return fig


def plot_doctor(changes: Sequence[str], losses: Sequence[float], best: str,
                baseline: str = "no change") -> Figure:
    """Held-out loss of the original set-up and of every candidate fix; the baseline in grey,
    the best fix in green, each bar labelled with its value."""
    fig = Figure(figsize=(8.0, 0.45 * len(changes) + 1.4), layout="constrained")
    ax = fig.subplots()
    colors = ["tab:gray" if c == baseline else "tab:green" if c == best else "tab:blue"
              for c in changes]
    values = np.asarray(losses, dtype=float)
    bars = ax.barh(list(changes), np.where(np.isfinite(values), values, np.nan), color=colors)
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], padding=3, fontsize=8)
    ax.margins(x=0.12)
    ax.invert_yaxis()
    ax.set_xlabel("held-out loss (same cost, data, random seed and epochs for every run)")
    ax.set_title("doctor: the original set-up (grey) and the fixes it tried", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return fig
