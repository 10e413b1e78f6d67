"""Monitor: record per-layer gradient-flow statistics while ``fit`` trains a network.

:class:`Monitor` is a :class:`gradsight.train.Callback`. Every ``every`` optimizer steps it
reads what the forward and backward passes already hold — each Dense layer's ∂C/∂W, ∂C/∂b
and W, each activation layer's cached output a — and appends one
:class:`~gradsight.diagnostics.LayerStats` per layer to ``monitor.history``. It never runs an
extra forward or backward pass, and it keeps the cost low: norms are one BLAS dot product
‖g‖ = √(g·g), fractions are ``count_nonzero`` of a comparison, and the update ‖ΔW‖ is measured
in a buffer allocated once (W is copied before the optimizer step and subtracted after it).

Histories export to a list of dicts (``pandas.DataFrame(history_records(h))``), JSON and CSV,
and :class:`LayerHistory` pivots one into per-layer series (layer → steps, values) for plots
and verdicts.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from ..errors import InvalidValueError
from ..train import Callback
from ._history import (
    LayerHistory,
    history_from_csv,
    history_from_json,
    history_records,
    history_to_csv,
    history_to_json,
    require_history,
)
from .stats import LayerStats

__all__ = [
    "Monitor", "LayerHistory", "history_records", "history_to_json", "history_from_json",
    "history_to_csv", "history_from_csv", "layer_stats_of", "saturation_bounds",
    "require_history",
]

#: a unit "saturates" where its local derivative f′(z) is below this share of max f′
SATURATION = 0.01


# ---- cheap array statistics ----------------------------------------------------------------
def _norm_and_nonfinite(array: np.ndarray) -> tuple[float, int]:
    """‖array‖ (Frobenius) and the number of NaN/±inf entries, cheaply.

    The norm is one BLAS dot product. Only when it is not finite are the entries counted,
    and if none is non-finite (float32 squares overflowed) the norm is recomputed in float64.
    """
    flat = array.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        squared = float(np.dot(flat, flat))
    if math.isfinite(squared):
        return math.sqrt(squared), 0
    bad = int(flat.size - np.count_nonzero(np.isfinite(flat)))
    if bad:
        return math.nan, bad
    return float(np.linalg.norm(flat.astype(np.float64))), 0


def saturation_bounds(activation: Any, saturation: float = SATURATION) -> tuple[float, float]:
    """Output interval (lo, hi) outside which a sigmoid/tanh unit counts as saturated.

    f′ < saturation·max f′ ⇔ a < lo or a > hi. Sigmoid: a(1−a) < t·¼ ⇔ a outside
    ½(1 ∓ √(1−t)); tanh: 1−a² < t ⇔ |a| > √(1−t).

    >>> from gradsight import activations
    >>> [round(v, 6) for v in saturation_bounds(activations.get("sigmoid"))]
    [0.002506, 0.997494]
    """
    base = activation.base_name
    if base == "sigmoid":
        half = 0.5 * math.sqrt(1.0 - saturation)
        return 0.5 - half, 0.5 + half
    if base == "tanh":
        edge = math.sqrt(1.0 - saturation)
        return -edge, edge
    raise InvalidValueError(f"saturation bounds exist for sigmoid and tanh, not {base!r}")


def _mean_std(a: np.ndarray, scratch: np.ndarray | None = None) -> tuple[float, float]:
    """Mean and standard deviation of a, in two cheap passes (no float64 copy of a).

    Var(a) = mean((a − m)²) − mean(a − m)² with m the (pairwise-summed) mean: shifting by m
    first keeps the float32 dot product free of the cancellation of E[a²] − E[a]².
    """
    flat = a.reshape(-1)
    n = max(flat.size, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(flat.sum()) / n
        if not math.isfinite(mean):
            return mean, math.nan
        if scratch is None or scratch.shape != flat.shape or scratch.dtype != flat.dtype:
            scratch = np.empty_like(flat)
        np.subtract(flat, flat.dtype.type(mean), out=scratch)
        shift = float(scratch.sum()) / n
        variance = float(np.dot(scratch, scratch)) / n - shift * shift
    if not math.isfinite(variance):  # float32 squares overflowed: ask float64
        return mean, float(np.std(flat, dtype=np.float64))
    return mean + shift, math.sqrt(max(variance, 0.0))


def _activation_fields(layer: Any, scratch: np.ndarray | None = None) -> dict[str, Any]:
    """act_mean, act_std, saturated/dead fractions and non-finite count of an activation."""
    a = layer.output
    act = layer.activation
    mean, std = _mean_std(a, scratch)
    result: dict[str, Any] = {"activation": act.name, "act_mean": mean, "act_std": std,
                              "nonfinite": 0}
    if not math.isfinite(mean):
        result["nonfinite"] = int(a.size - np.count_nonzero(np.isfinite(a)))
        if result["nonfinite"] == 0:  # the float32 sum overflowed on finite values
            result["act_mean"] = float(np.mean(a, dtype=np.float64))
            result["act_std"] = float(np.std(a, dtype=np.float64))
        else:
            return result
    if act.saturating:
        result["saturated_fraction"] = _saturated_fraction(layer) / max(a.size, 1)
    if act.relu_family:
        # z ≤ 0 ⇔ a ≤ 0 for relu, leaky relu and elu; a unit is dead on the batch when no
        # sample switches it on
        alive = np.count_nonzero(np.any(a > 0, axis=0))
        units = a.shape[-1] if a.ndim else 1
        result["dead_fraction"] = (units - alive) / max(units, 1)
    return result


def _saturated_fraction(layer: Any) -> int:
    """Count of values with f′ below 1% of its maximum, from a (sigmoid/tanh) or z."""
    act, a = layer.activation, layer.output
    if act.has_output_derivative:
        lo, hi = saturation_bounds(act)
        return int(np.count_nonzero(a < lo)) + int(np.count_nonzero(a > hi))
    z = getattr(layer, "inputs", None)  # pragma: no cover - every saturating act has one
    limit = SATURATION * act.max_derivative[0]
    return int(np.count_nonzero(act.derivative(z) < limit))


def _param_fields(layer: Any) -> dict[str, Any]:
    """‖∂C/∂W‖, ‖∂C/∂b‖, ‖W‖ and the count of non-finite gradient entries."""
    grad_w, bad_w = _norm_and_nonfinite(layer.grad_W)
    grad_b, bad_b = (None, 0)
    if getattr(layer, "grad_b", None) is not None:
        grad_b, bad_b = _norm_and_nonfinite(layer.grad_b)
    weight, _ = _norm_and_nonfinite(layer.W)
    return {"grad_W_norm": grad_w, "grad_b_norm": grad_b, "weight_norm": weight,
            "nonfinite": bad_w + bad_b}


def _is_param(layer: Any) -> bool:
    return hasattr(layer, "W") and hasattr(layer, "grad_W")


def _is_activation(layer: Any) -> bool:
    return hasattr(layer, "activation") and hasattr(layer, "output")


def layer_stats_of(model: Any, step: int = 0, epoch: int | None = None,
                   scratch: dict[int, np.ndarray] | None = None) -> list[LayerStats]:
    """One LayerStats per layer of an engine model, from its cached forward/backward values.

    Call it after ``model.forward(X)`` and ``model.backward(dC/dŷ)``; ``update_ratio`` stays
    None (there was no optimizer step). Layers that are neither Dense nor an activation are
    skipped. ``scratch`` (layer index → work array) lets a caller reuse buffers across steps.
    """
    records = []
    for index, layer in enumerate(model.layers):
        name = getattr(layer, "name", f"layer{index}")
        if _is_param(layer) and layer.grad_W is not None:
            fields = _param_fields(layer)
            records.append(LayerStats(name, index, step, epoch, "param", **fields))
        elif _is_activation(layer) and layer.output is not None:
            buffer = None
            if scratch is not None:
                buffer = scratch.get(index)
                if buffer is None or buffer.size != layer.output.size \
                        or buffer.dtype != layer.output.dtype:
                    buffer = scratch[index] = np.empty(layer.output.size, layer.output.dtype)
            fields = _activation_fields(layer, buffer)
            records.append(LayerStats(name, index, step, epoch, "activation", **fields))
    return records


# ---- the callback ---------------------------------------------------------------------------
class Monitor(Callback):
    """A ``fit`` callback that records per-layer :class:`LayerStats` every ``every`` steps.

    After the backward pass of a recorded step it stores, per Dense layer, ‖∂C/∂W‖, ‖∂C/∂b‖
    (Nielsen's speed of learning) and ‖W‖ and copies W into a preallocated buffer; after the
    optimizer step it measures update_ratio = ‖W_new − W_old‖/‖W_old‖. Per activation layer it
    stores the mean and spread of a, the saturated fraction (sigmoid/tanh: f′ < 1% of max)
    and the dead fraction (ReLU family: units with z ≤ 0 on every sample of the batch).
    ``losses`` holds (step, batch loss) for the recorded steps.

    >>> Monitor(every=10).every
    10
    """

    def __init__(self, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise InvalidValueError(f"every must be an integer ≥ 1, got {every!r}")
        self.every = int(every)
        self.history: list[LayerStats] = []
        self.losses: list[tuple[int, float]] = []
        self._buffers: dict[int, np.ndarray] = {}
        self._scratch: dict[int, np.ndarray] = {}
        self._pending: list[tuple[LayerStats, Any, np.ndarray]] = []

    def on_train_begin(self, ctx: Any) -> None:
        self._buffers = {i: np.empty_like(layer.W) for i, layer in enumerate(ctx.model.layers)
                         if _is_param(layer)}
        self._pending = []

    def on_after_backward(self, ctx: Any) -> None:
        if ctx.step % self.every:
            return
        records = layer_stats_of(ctx.model, int(ctx.step), _int_or_none(ctx.epoch),
                                 self._scratch)
        self._pending = []
        layers = ctx.model.layers
        for record in records:
            buffer = self._buffers.get(record.index)
            if buffer is not None and buffer.shape == layers[record.index].W.shape:
                np.copyto(buffer, layers[record.index].W)
                self._pending.append((record, layers[record.index], buffer))
        self.history.extend(records)
        loss = getattr(ctx, "batch_loss", None)
        if loss is not None:
            self.losses.append((int(ctx.step), float(loss)))

    def on_batch_end(self, ctx: Any) -> None:
        for record, layer, buffer in self._pending:
            np.subtract(layer.W, buffer, out=buffer)  # buffer now holds ΔW
            change, _ = _norm_and_nonfinite(buffer)
            weight = record.weight_norm
            if weight is not None and weight > 0 and math.isfinite(weight):
                record.update_ratio = change / weight
            elif change == 0:
                record.update_ratio = 0.0
            else:
                record.update_ratio = math.inf if math.isfinite(change) else math.nan
        self._pending = []

    def layer_history(self) -> LayerHistory:
        """The recorded history pivoted per layer."""
        return LayerHistory(self.history)

    def __len__(self) -> int:
        return len(self.history)

    def __repr__(self) -> str:
        steps = len({r.step for r in self.history})
        return f"Monitor(every={self.every}, {len(self.history)} records over {steps} steps)"

    def _repr_html_(self) -> str:
        if not self.history:
            return f"<p>{html.escape(repr(self))}</p>"
        return LayerHistory(self.history)._repr_html_()


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
