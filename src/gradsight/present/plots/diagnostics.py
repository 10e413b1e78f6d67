"""Figures of gradient flow: per-layer norms, heatmaps, saturation, neuron maps, the
vanishing-gradient lab. Pure functions: data in (lists of LayerStats, experiment results),
``matplotlib.figure.Figure`` out; nothing is shown or saved here.

Nothing is clipped or dropped: a non-finite or zero norm cannot sit on a log axis, so it is
drawn as a marker at the edge of the plot and counted in the legend — a NaN gradient is a
finding, not a gap in a line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ...activations import get as get_activation
from ...diagnostics.history import history_records
from ...errors import GradsightError, InvalidValueError

__all__ = [
    "plot_layer_norms", "plot_norm_heatmap", "plot_saturation", "plot_neuron_map",
    "plot_activation_distributions", "plot_vanish", "plot_sweep", "plot_sigmoid_bound",
    "plot_activation_trajectory", "plot_speeds_over_training",
]


def _series(history: Any, field: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """layer name → (steps, values) of the records where ``field`` is not None; ``history`` is
    a Monitor, a list of LayerStats or of their dicts."""
    records = history_records(history)
    if not records:
        raise InvalidValueError("history is empty: record some steps first (Monitor)")
    data: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        value = record[field]
        if value is not None:
            steps, values = data.setdefault(record["layer"], ([], []))
            steps.append(record["step"])
            values.append(float(value))
    if not data:
        raise InvalidValueError(f"history has no {field!r} values")
    return {k: (np.asarray(s), np.asarray(v, dtype=float)) for k, (s, v) in data.items()}


def plot_layer_norms(history: Any, field: str = "grad_W_norm") -> Figure:
    """‖∂C/∂W‖ (or another norm ``field``) of every layer over the training steps, log axis.

    Non-finite values are drawn as red ✕ at the top edge, zeros as ▼ at the bottom edge.
    """
    series = _series(history, field)
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    bad_x, zero_x = [], []
    for name, (steps, values) in series.items():
        finite = np.isfinite(values) & (values > 0)
        ax.plot(steps[finite], values[finite], marker="." if finite.sum() < 40 else None,
                label=name)
        bad_x += list(steps[~np.isfinite(values)])
        zero_x += list(steps[np.isfinite(values) & (values <= 0)])
    ax.set_yscale("log")
    edge = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    if bad_x:
        ax.scatter(bad_x, [0.97] * len(bad_x), transform=edge, marker="x", color="red",
                   zorder=5, label=f"non-finite ({len(bad_x)})", clip_on=False)
    if zero_x:
        ax.scatter(zero_x, [0.03] * len(zero_x), transform=edge, marker="v", color="black",
                   zorder=5, label=f"zero ({len(zero_x)})", clip_on=False)
    ax.set_xlabel("step")
    ax.set_ylabel(field.replace("grad_W_norm", "‖∂C/∂W‖").replace("grad_b_norm", "‖∂C/∂b‖"))
    ax.set_title("gradient norm per layer")
    ax.legend(fontsize=8, ncol=2)
    return fig


def plot_norm_heatmap(history: Any, field: str = "grad_W_norm") -> Figure:
    """A layer × step map of log10 of the norm; non-finite or zero cells in magenta."""
    series = _series(history, field)
    steps = np.unique(np.concatenate([s for s, _ in series.values()]))
    column = {int(s): i for i, s in enumerate(steps)}
    grid = np.full((len(series), len(steps)), np.nan)
    bad = 0
    for row, (layer_steps, values) in enumerate(series.values()):
        usable = np.isfinite(values) & (values > 0)
        bad += int((~usable).sum())
        logs = np.where(usable, np.log10(np.where(usable, values, 1.0)), np.inf)
        grid[row, [column[int(s)] for s in layer_steps]] = logs
    image = np.ma.masked_where(~np.isfinite(grid), grid)
    cmap = colormaps["viridis"].with_extremes(bad="white")
    fig = Figure(figsize=(7.5, 0.5 * len(series) + 2), layout="constrained")
    ax = fig.subplots()
    mesh = ax.imshow(image, aspect="auto", interpolation="nearest", cmap=cmap,
                     extent=(steps[0] - 0.5, steps[-1] + 0.5, len(series) - 0.5, -0.5))
    bad_rows, bad_cols = np.nonzero(np.isinf(grid))
    if bad:  # +inf marks cells whose value was non-finite or zero (never left blank)
        ax.scatter(steps[bad_cols], bad_rows, marker="s", color="magenta", s=12,
                   label=f"non-finite or zero ({bad})")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_yticks(range(len(series)), list(series))
    ax.set_xlabel("step")
    fig.colorbar(mesh, ax=ax, label=f"log10 {field}")
    ax.set_title("gradient norm, layer × step")
    return fig


def plot_saturation(history: Any) -> Figure:
    """Saturated fraction (solid) and dead fraction (dashed) of each activation layer."""
    fig = Figure(figsize=(7.5, 4), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for field, style in (("saturated_fraction", "-"), ("dead_fraction", "--")):
        try:
            series = _series(history, field)
        except InvalidValueError:
            continue
        for name, (steps, values) in series.items():
            ax.plot(steps, values, style, label=f"{name} {field.split('_')[0]}")
            nan = ~np.isfinite(values)
            if nan.any():
                ax.scatter(steps[nan], np.full(nan.sum(), 1.0), marker="x", color="red")
            drawn += 1
    if not drawn:
        raise InvalidValueError("history has no saturated_fraction or dead_fraction values")
    ax.set_ylim(-0.02, 1.02)  # fractions live in [0, 1]: this bound clips nothing
    ax.set_xlabel("step")
    ax.set_ylabel("fraction")
    ax.set_title("saturated (|f′| < 1% of max) and dead (never active) units")
    ax.legend(fontsize=8)
    return fig


def _max_derivative(name: str) -> float | None:
    """The activation's largest f′ if the layer name is ``<activation><number>``."""
    try:
        value = get_activation(re.sub(r"\d+$", "", name)).max_derivative[0]
    except GradsightError:
        return None
    return value if math.isfinite(value) else None


def plot_neuron_map(derivative_map: Any) -> Figure:
    """Local derivatives f′(z) of each hidden unit (rows) on each sample (columns): the
    "learning ability" picture of the article on the derivative in training — a dark row is
    a unit that cannot learn from any of these samples (saturated or dead). Accepts an array
    (units × samples) or a mapping layer name → array (units × samples), as
    ``diagnostics.neurons.neuron_derivative_map`` returns."""
    if isinstance(derivative_map, Mapping):
        panels = [(str(k), np.asarray(v, dtype=float)) for k, v in derivative_map.items()]
    else:
        panels = [("units", np.asarray(derivative_map, dtype=float))]
    if not panels or any(p.ndim != 2 or p.size == 0 for _, p in panels):
        raise InvalidValueError("derivative_map must hold non-empty 2-D arrays")
    fig = Figure(figsize=(8, 2.2 * len(panels) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, squeeze=False)[:, 0])
    for ax, (name, values) in zip(axes, panels, strict=True):
        top = _max_derivative(name) or float(np.nanmax(np.abs(values))) or 1.0
        image = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="magma",
                          vmin=0.0, vmax=top)
        ax.set_ylabel(f"{name}\nunit")
        fig.colorbar(image, ax=ax, label="f′(z)")
    axes[-1].set_xlabel("sample")
    axes[0].set_title("local derivative f′(z) per unit and sample (dark = cannot learn)")
    return fig


def plot_activation_distributions(model: Any, X: Any, bins: int = 40) -> Figure:
    """Histogram of the outputs a of each activation layer of an engine model on ``X``.
    NaN/inf outputs are counted in red in the panel title, never dropped silently."""
    outputs = []
    a = np.asarray(X, dtype=float)
    for layer in model.layers:
        a = layer.forward(a)
        if hasattr(layer, "activation"):
            outputs.append((layer.name, np.asarray(a, dtype=float).ravel()))
    if not outputs:
        raise InvalidValueError("the model has no activation layers to show")
    columns = min(len(outputs), 4)  # a deep net wraps onto several rows
    rows = -(-len(outputs) // columns)
    fig = Figure(figsize=(3.2 * columns, 2.8 * rows), layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False).ravel()
    for spare in grid[len(outputs):]:
        spare.remove()
    axes = grid[:len(outputs)]
    for ax, (name, values) in zip(axes, outputs, strict=True):
        finite = np.isfinite(values)
        ax.hist(values[finite], bins=bins, color="tab:blue")
        title = name if finite.all() else f"{name}\n{(~finite).sum()} non-finite values"
        ax.set_title(title, color="black" if finite.all() else "red", fontsize=9)
        ax.set_xlabel("a")
    for ax in grid[::columns]:
        ax.set_ylabel("count")
    return fig


def _as_dict(result: Any) -> Any:
    return result.to_dict() if hasattr(result, "to_dict") else result


def plot_vanish(result: Any) -> Figure:
    """Nielsen's speed of learning ‖∂C/∂b‖ per hidden layer: ours at initialisation (and after
    training, if measured) beside Nielsen's MNIST figures, log axis."""
    data = _as_dict(result)
    layers = data["layers"]
    x = [row["layer"] for row in layers]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(x, [row["speed_at_init"] for row in layers], "o-", label="ours, at init")
    if any(row.get("speed_trained") is not None for row in layers):
        ax.plot(x, [row.get("speed_trained") or np.nan for row in layers], "s-",
                label="ours, after training")
    if data.get("nielsen"):
        ax.plot(x, data["nielsen"], "k^--", label="Nielsen (MNIST), at init")
    cfg = data.get("config", {})
    last = layers[-1]["speed_at_init"]
    if cfg.get("activation") == "sigmoid" and len(x) > 1 and last and last > 0:
        # each layer back multiplies δ by σ′(z) ≤ 0.25 (times Wᵀ): the σ′ factor alone
        ax.plot(x, [last * 0.25 ** (x[-1] - layer) for layer in x], ":", color="gray",
                label="σ′ ≤ 0.25 per layer (from the last)")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xlabel("hidden layer (1 = nearest the input)")
    ax.set_ylabel("speed ‖∂C/∂b‖")
    ax.set_title(f"speed of learning per layer — {cfg.get('activation', '')}, "
                 f"{cfg.get('init', '')}, {cfg.get('data', '')}", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_sweep(sweep_result: Any) -> Figure:
    """The sweep: ratio ‖∂C/∂b‖ last/first hidden layer (top, log) and final accuracy
    (bottom) against depth, one panel per activation and one line per initialiser."""
    rows = _as_dict(sweep_result)["rows"]
    if not rows:
        raise InvalidValueError("the sweep has no rows")
    activations = list(dict.fromkeys(r["activation"] for r in rows))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    fig = Figure(figsize=(3.4 * len(activations), 6), layout="constrained")
    axes = fig.subplots(2, len(activations), squeeze=False, sharex=True, sharey="row")
    for col, activation in enumerate(activations):
        for init in inits:
            sel = sorted((r for r in rows if r["activation"] == activation
                          and r["init"] == init), key=lambda r: r["depth"])
            depths = [r["depth"] for r in sel]
            axes[0, col].plot(depths, [r["ratio_last_first_init"] for r in sel], "o-",
                              label=init)
            axes[1, col].plot(depths, [r["accuracy"] for r in sel], "o-", label=init)
        axes[0, col].axhline(1.0, color="gray", lw=0.8)
        if activation == "sigmoid":  # δ shrinks by σ′ ≤ 0.25 per layer: ratio ≈ 4^(depth−1)
            depths = sorted({r["depth"] for r in rows if r["activation"] == activation})
            axes[0, col].plot(depths, [4.0 ** (d - 1) for d in depths], "k:",
                              label="σ′ ≤ 0.25 alone: 4^(depth−1)")
            axes[0, col].legend(fontsize=7)
        axes[0, col].set_yscale("log")
        axes[0, col].set_title(activation)
        axes[1, col].set_xlabel("hidden layers")
        axes[1, col].set_xticks(sorted({r["depth"] for r in rows}))
    axes[0, 0].set_ylabel("speed last / first (init)")
    axes[1, 0].set_ylabel("final accuracy")
    axes[0, 0].legend(fontsize=7)
    return fig


def _speeds(layers: Any) -> list[float]:
    data = _as_dict(layers)
    if isinstance(data, Mapping):
        data = data["layers"]
    return [float(r["speed_at_init"]) if isinstance(r, Mapping) else float(r) for r in data]


def plot_sigmoid_bound(layers: Any, bound: float = 0.25) -> Figure:
    """Measured shrinkage of the speed k layers below the last hidden layer,
    ‖δ^(L−k)‖/‖δ^L‖, beside the σ′ factor alone, bound^k = 0.25^k.

    Going one layer back multiplies δ by Wᵀ and by σ′(z) ≤ 0.25, so the measured curve
    falls like 0.25^k times whatever the weights add. ``layers``: speeds first → last
    hidden layer, or a vanish result / its dict."""
    speeds = np.asarray(_speeds(layers))
    if speeds.size < 2 or not np.all(np.isfinite(speeds)) or np.any(speeds <= 0):
        raise InvalidValueError("plot_sigmoid_bound needs ≥ 2 finite positive speeds")
    k = np.arange(speeds.size)
    measured = speeds[::-1] / speeds[-1]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(k, measured, "o-", label="measured ‖δ^(L−k)‖ / ‖δ^L‖")
    ax.plot(k, bound ** k, "k--", label=f"σ′ factor alone: {bound:g}^k")
    ax.set_yscale("log")
    ax.set_xticks(k)
    ax.set_xlabel("k = layers below the last hidden layer")
    ax.set_ylabel("relative speed")
    ax.set_title("σ′ ≤ 0.25 per layer: the gradient shrinks geometrically", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_activation_trajectory(trajectory: Any) -> Figure:
    """Glorot & Bengio's figure: mean (line) and standard deviation (band) of each hidden
    layer's activations on a fixed probe set over training."""
    data = _as_dict(trajectory)
    steps = np.asarray(data["steps"])
    means = np.asarray(data["mean"], dtype=float)
    stds = np.asarray(data["std"], dtype=float)
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for j, name in enumerate(data["layers"]):
        line = ax.plot(steps, means[:, j], label=name)[0]
        ax.fill_between(steps, means[:, j] - stds[:, j], means[:, j] + stds[:, j],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("step")
    ax.set_ylabel("activation a (mean ± std)")
    ax.set_title("activations per hidden layer over training (Glorot & Bengio 2010)",
                 fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_speeds_over_training(result: Any) -> Figure:
    """Nielsen's second figure of chapter 5: the speed ‖∂C/∂b‖ of each hidden layer after
    every epoch of training (epoch 0 = initialisation), log axis — the early layers stay
    far slower throughout. ``result``: a vanish result (trained) or its dict."""
    data = _as_dict(result)
    speeds = np.asarray(data.get("speeds_by_epoch") or [], dtype=float)
    if speeds.ndim != 2 or speeds.shape[0] < 2:
        raise InvalidValueError("plot_speeds_over_training needs speeds after at least one "
                                "epoch of training (train_epochs ≥ 1)")
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    epochs = np.arange(speeds.shape[0])
    for layer in range(speeds.shape[1]):
        values = speeds[:, layer]
        usable = np.isfinite(values) & (values > 0)
        ax.plot(epochs[usable], values[usable], "o-" if len(epochs) <= 30 else "-",
                label=f"hidden layer {layer + 1}")
        if not usable.all():  # never dropped silently: marked at the bottom edge
            ax.scatter(epochs[~usable], [0.03] * int((~usable).sum()), marker="x",
                       color="red", transform=ax.get_xaxis_transform(), clip_on=False)
    ax.set_yscale("log")
    ax.set_xlabel("epoch (0 = initialisation)")
    ax.set_ylabel("speed ‖∂C/∂b‖")
    ax.set_title("speed of learning per layer while training", fontsize=10)
    ax.legend(fontsize=8)
    return fig
