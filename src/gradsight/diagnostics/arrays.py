"""Per-layer statistics read off the arrays a forward and backward pass hold — the cheap
array work behind :class:`~gradsight.diagnostics.monitor.Monitor` (which re-exports
:func:`saturation_bounds`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidValueError

__all__ = [
    "SATURATION", "Known", "Work", "activation_fields", "norm_and_nonfinite", "param_fields",
    "saturation_bounds",
]

#: a unit "saturates" where its local derivative f′(z) is below this share of max f′
SATURATION = 0.01


# ---- cheap array statistics ----------------------------------------------------------------
# The callers hold np.errstate(over="ignore", invalid="ignore") once per hook: a float32 dot
# product of huge values overflows (and is then recomputed in float64), NaN propagates.
def norm_and_nonfinite(array: np.ndarray) -> tuple[float, int]:
    """‖array‖ (Frobenius) and the number of NaN/±inf entries, cheaply.

    The norm is one BLAS dot product. Only when it is not finite are the entries counted,
    and if none is non-finite (float32 squares overflowed) the norm is recomputed in float64.
    """
    flat = array.reshape(-1)
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


class Work:
    """Work arrays of one activation layer, reused from step to step: a − m and ones."""

    def __init__(self, size: int, dtype: np.dtype) -> None:
        self.shifted = np.empty(size, dtype)
        self.ones = np.ones(size, dtype)

    def fits(self, a: np.ndarray) -> bool:
        return self.ones.size == a.size and self.ones.dtype == a.dtype


def _mean_std(a: np.ndarray, work: Work) -> tuple[float, float]:
    """Mean and standard deviation of a from BLAS dot products (no float64 copy of a).

    One pass: m = a·1/n and Var(a) = a·a/n − m². When the variance is small next to E[a²]
    (a nearly constant layer, e.g. saturated) that difference cancels, so a second pass
    shifts by m first: Var(a) = mean((a − m)²) − mean(a − m)².
    """
    flat = a.reshape(-1)
    n = max(flat.size, 1)
    mean = float(np.dot(flat, work.ones)) / n
    if not math.isfinite(mean) or abs(mean) > 1e30:  # NaN/inf, or a − m could overflow
        return mean, math.nan
    squares = float(np.dot(flat, flat)) / n
    variance = squares - mean * mean
    if math.isfinite(squares) and variance >= 0.05 * squares:
        return mean, math.sqrt(variance)
    np.subtract(flat, flat.dtype.type(mean), out=work.shifted)
    shift = float(np.dot(work.shifted, work.ones)) / n
    variance = float(np.dot(work.shifted, work.shifted)) / n - shift * shift
    if not math.isfinite(variance):  # float32 squares overflowed: ask float64
        return mean, float(np.std(flat, dtype=np.float64))
    return mean + shift, math.sqrt(max(variance, 0.0))


def activation_fields(layer: Any, work: Work | None = None) -> dict[str, Any]:
    """act_mean, act_std, saturated/dead fractions and non-finite count of an activation."""
    a, act = layer.output, layer.activation
    if work is None or not work.fits(a):
        work = Work(a.size, a.dtype)
    mean, std = _mean_std(a, work)
    result: dict[str, Any] = {"activation": act.name, "act_mean": mean, "act_std": std,
                              "nonfinite": 0}
    if not math.isfinite(std):
        result["nonfinite"] = int(a.size - np.count_nonzero(np.isfinite(a)))
        if result["nonfinite"]:
            return result
        result["act_mean"] = float(np.mean(a, dtype=np.float64))  # finite but huge values
        result["act_std"] = float(np.std(a, dtype=np.float64))
    if act.saturating:
        result["saturated_fraction"] = _saturated_count(layer) / max(a.size, 1)
    if act.relu_family:
        # z ≤ 0 ⇔ a ≤ 0 for relu, leaky relu and elu: a unit is dead on the batch when no
        # sample switches it on
        units = a.shape[-1] if a.ndim else 1
        alive = np.count_nonzero(np.any(a > 0, axis=0)) if a.ndim else int(a > 0)
        result["dead_fraction"] = (units - alive) / max(units, 1)
    return result


def _saturated_count(layer: Any) -> int:
    """Number of values with f′ below 1% of its maximum: from f′ as the backward pass left it
    (``local_derivative``), else from a (sigmoid/tanh) or z."""
    act, a = layer.activation, layer.output
    local = getattr(layer, "local_derivative", None)
    if isinstance(local, np.ndarray) and local.shape == a.shape:
        limit = SATURATION * act.max_derivative[0]
        return int(np.count_nonzero(local < limit))
    if act.base_name in ("sigmoid", "tanh"):
        lo, hi = saturation_bounds(act)
        return int(np.count_nonzero(a < lo)) + int(np.count_nonzero(a > hi))
    limit = SATURATION * act.max_derivative[0]  # pragma: no cover - no other saturating act
    return int(np.count_nonzero(act.derivative(layer.inputs) < limit))


def _from_square(array: np.ndarray, square: float | None) -> tuple[float, int]:
    """‖array‖ and its non-finite count, from a known g·g when it is finite."""
    if square is not None and math.isfinite(square):
        return math.sqrt(square), 0  # finite g·g: every entry is finite
    return norm_and_nonfinite(array)


#: g·g of ∂C/∂W and of ∂C/∂b, and W·W, when the training loop already measured them
Known = tuple[float | None, float | None, float | None]


def param_fields(layer: Any, copy: np.ndarray | None = None,
                  known: Known | None = None) -> dict[str, Any]:
    """‖∂C/∂W‖, ‖∂C/∂b‖, ‖W‖ and the count of non-finite gradient entries.

    ``known`` holds squares the training loop measured already (``ctx.norms``). With
    ``copy`` (a buffer of W's shape) W is first copied there and ‖W‖ read off the copy,
    which is then still in cache.
    """
    square_gw, square_gb, square_w = known if known is not None else (None, None, None)
    grad_w, bad_w = _from_square(layer.grad_W, square_gw)
    grad_b, bad_b = (None, 0)
    if getattr(layer, "grad_b", None) is not None:
        grad_b, bad_b = _from_square(layer.grad_b, square_gb)
    if copy is not None:
        np.copyto(copy, layer.W)
    weight, _ = _from_square(layer.W if copy is None else copy, square_w)
    return {"grad_W_norm": grad_w, "grad_b_norm": grad_b, "weight_norm": weight,
            "nonfinite": bad_w + bad_b}
