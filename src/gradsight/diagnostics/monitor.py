"""Monitor: record per-layer gradient-flow statistics while ``fit`` trains a network.

:class:`Monitor` is a :class:`gradsight.train.Callback`. Every ``every`` optimizer steps it
reads what the forward and backward passes already hold — each Dense layer's ∂C/∂W, ∂C/∂b
and W, each activation layer's cached output a and the f′ its backward pass used — and
appends one :class:`~gradsight.diagnostics.LayerStats` per layer to ``monitor.history``. It
never runs an extra forward or backward pass, and it keeps the cost low:

* ‖∂C/∂W‖ and ‖∂C/∂b‖ are taken from ``ctx.grad_sq_norms``, the g·g that ``fit``'s NaN guard
  computes anyway (the Monitor asks for them with ``needs_grad_norms``); without them (a
  callback that may change gradients, or a hand-made context) each is one BLAS dot √(g·g);
* ‖W‖ is one BLAS dot; fractions are ``count_nonzero`` of one comparison — of f′ itself for
  the saturated fraction, as the backward pass left it;
* the update ‖ΔW‖ costs nothing with plain SGD (ΔW = −η ∂C/∂W exactly, so ‖ΔW‖ = η‖∂C/∂W‖);
  otherwise W is copied into a buffer allocated once before the optimizer step and
  subtracted after it.

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
from ..optim import SGD
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
# The callers hold np.errstate(over="ignore", invalid="ignore") once per hook: a float32 dot
# product of huge values overflows (and is then recomputed in float64), NaN propagates.
def _norm_and_nonfinite(array: np.ndarray) -> tuple[float, int]:
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


class _Work:
    """Work arrays of one activation layer, reused from step to step: a − m and ones."""

    def __init__(self, size: int, dtype: np.dtype) -> None:
        self.shifted = np.empty(size, dtype)
        self.ones = np.ones(size, dtype)

    def fits(self, a: np.ndarray) -> bool:
        return self.ones.size == a.size and self.ones.dtype == a.dtype


def _mean_std(a: np.ndarray, work: _Work) -> tuple[float, float]:
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


def _activation_fields(layer: Any, work: _Work | None = None) -> dict[str, Any]:
    """act_mean, act_std, saturated/dead fractions and non-finite count of an activation."""
    a, act = layer.output, layer.activation
    if work is None or not work.fits(a):
        work = _Work(a.size, a.dtype)
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
    return _norm_and_nonfinite(array)


#: g·g of ∂C/∂W and of ∂C/∂b, and W·W, when the training loop already measured them
Known = tuple[float | None, float | None, float | None]


def _param_fields(layer: Any, copy: np.ndarray | None = None,
                  known: Known | None = None) -> dict[str, Any]:
    """‖∂C/∂W‖, ‖∂C/∂b‖, ‖W‖ and the count of non-finite gradient entries.

    ``known`` holds squares the training loop measured already (``ctx.*_sq_norms``). With
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


def _is_param(layer: Any) -> bool:
    return hasattr(layer, "W") and hasattr(layer, "grad_W")


def _is_activation(layer: Any) -> bool:
    return hasattr(layer, "activation") and hasattr(layer, "output")


def _record(layer: Any, index: int, step: int, epoch: int | None,
            work: dict[int, _Work] | None = None, copy: np.ndarray | None = None,
            known: Known | None = None) -> LayerStats | None:
    name = getattr(layer, "name", f"layer{index}")
    if _is_param(layer) and layer.grad_W is not None:
        return LayerStats(name, index, step, epoch, "param",
                          **_param_fields(layer, copy, known))
    if _is_activation(layer) and layer.output is not None:
        arrays = None
        if work is not None:
            arrays = work.get(index)
            if arrays is None or not arrays.fits(layer.output):
                arrays = work[index] = _Work(layer.output.size, layer.output.dtype)
        return LayerStats(name, index, step, epoch, "activation",
                          **_activation_fields(layer, arrays))
    return None


def layer_stats_of(model: Any, step: int = 0, epoch: int | None = None) -> list[LayerStats]:
    """One LayerStats per layer of an engine model, from its cached forward/backward values.

    Call it after ``model.forward(X)`` and ``model.backward(dC/dŷ)``; ``update_ratio`` stays
    None (there was no optimizer step). Layers that are neither Dense nor an activation are
    skipped.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        records = [_record(layer, i, step, epoch) for i, layer in enumerate(model.layers)]
    return [record for record in records if record is not None]


# ---- the callback ---------------------------------------------------------------------------
class Monitor(Callback):
    """A ``fit`` callback that records per-layer :class:`LayerStats` every ``every`` steps.

    After the backward pass of a recorded step it stores, per Dense layer, ‖∂C/∂W‖, ‖∂C/∂b‖
    (Nielsen's speed of learning) and ‖W‖ and copies W into a preallocated buffer; after the
    optimizer step it measures update_ratio = ‖W_new − W_old‖/‖W_old‖. (With plain SGD —
    no momentum, no weight decay — the update is exactly −η ∂C/∂W, so ‖ΔW‖ = η‖∂C/∂W‖ and
    no copy is made.) Per activation layer it
    stores the mean and spread of a, the saturated fraction (sigmoid/tanh: f′ < 1% of max)
    and the dead fraction (ReLU family: units with z ≤ 0 on every sample of the batch).
    ``losses`` holds (step, batch loss) for the recorded steps.

    It only reads (``read_only``): ``fit`` then hands it the gradient norms its NaN guard
    computed (``ctx.grad_sq_norms``) on the steps it records.

    >>> Monitor(every=10).every
    10
    """

    read_only = True  # it changes neither weights nor gradients

    def __init__(self, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise InvalidValueError(f"every must be an integer ≥ 1, got {every!r}")
        self.every = int(every)
        self.history: list[LayerStats] = []
        self.losses: list[tuple[int, float]] = []
        self._work: dict[int, _Work] = {}
        self._pending: list[tuple[LayerStats, Any, np.ndarray | None, float | None,
                                  int | None]] = []
        self._model: Any = None
        self._shared = _Positions()
        self._plan: list[tuple[int, Any, bool, np.ndarray | None]] = []

    def wants_norms(self, step: int) -> bool:
        """True on the steps it records: it then reads ``ctx.*_sq_norms``."""
        return step % self.every == 0

    def on_train_begin(self, ctx: Any) -> None:
        self._pending = []
        self._prepare(ctx.model)

    def _prepare(self, model: Any) -> None:
        """The per-layer plan (layer index, layer, is a param layer, W buffer), made once."""
        self._model, self._shared, self._plan = model, _Positions(model), []
        for index, layer in enumerate(model.layers):
            if _is_param(layer):
                self._plan.append((index, layer, True, np.empty_like(layer.W)))
            elif _is_activation(layer):
                self._plan.append((index, layer, False, None))

    def on_after_backward(self, ctx: Any) -> None:
        if ctx.step % self.every:
            return
        if ctx.model is not self._model:
            self._prepare(ctx.model)
        step, epoch = int(ctx.step), _int_or_none(ctx.epoch)
        lr = _plain_sgd_lr(getattr(ctx, "optimizer", None))
        shared, history = self._shared, self.history
        grads = shared.fits(getattr(ctx, "grad_sq_norms", None))
        weights = shared.fits(getattr(ctx, "weight_sq_norms", None))
        # with shared norms the loop also measures ‖ΔW‖ (update_sq_norms): no copy of W
        copy = lr is None and grads is None
        pending: list[Any] = []
        with np.errstate(over="ignore", invalid="ignore"):
            for index, layer, param, buffer in self._plan:
                name = getattr(layer, "name", f"layer{index}")
                if param and layer.grad_W is not None:
                    position = shared.of(index, layer)
                    known = None if position is None else shared.known(position, grads,
                                                                       weights)
                    if not copy or buffer is None or buffer.shape != layer.W.shape:
                        buffer = None
                    record = LayerStats(name, index, step, epoch, "param",
                                        **_param_fields(layer, buffer, known))
                    pending.append((record, layer, buffer, lr,
                                    None if position is None else position[0]))
                elif not param and layer.output is not None:
                    record = LayerStats(name, index, step, epoch, "activation",
                                        **_activation_fields(layer, self._work_for(index,
                                                                                   layer)))
                else:
                    continue
                history.append(record)
        self._pending = pending
        loss = getattr(ctx, "batch_loss", None)
        if loss is not None:
            self.losses.append((step, float(loss)))

    def _work_for(self, index: int, layer: Any) -> _Work:
        work = self._work.get(index)
        if work is None or not work.fits(layer.output):
            work = self._work[index] = _Work(layer.output.size, layer.output.dtype)
        return work

    def on_batch_end(self, ctx: Any) -> None:
        updates = self._shared.fits(getattr(ctx, "update_sq_norms", None))
        with np.errstate(over="ignore", invalid="ignore"):
            for record, layer, buffer, lr, position in self._pending:
                if updates is not None and position is not None:  # measured by the loop
                    change = math.sqrt(updates[position])
                elif buffer is not None:
                    np.subtract(layer.W, buffer, out=buffer)  # buffer now holds ΔW
                    change, _ = _norm_and_nonfinite(buffer)
                elif lr is not None:  # plain SGD: ΔW = −η ∂C/∂W exactly
                    change = lr * float(record.grad_W_norm or 0.0)
                else:
                    continue
                record.update_ratio = _ratio(change, record.weight_norm)
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


class _Positions:
    """Where each param layer's W, ∂C/∂W and ∂C/∂b sit in model.parameters()/gradients(),
    to read the loop's ``ctx.*_sq_norms``; the arrays are kept to check that they still
    are the model's."""

    def __init__(self, model: Any = None) -> None:
        params = getattr(model, "parameters", None)
        grads = getattr(model, "gradients", None)
        self.params = list(params()) if callable(params) else []
        self.grads = list(grads()) if callable(grads) else []
        where = {id(g): k for k, g in enumerate(self.grads)}
        self.positions: dict[int, tuple[int, int | None]] = {}
        if len(self.params) != len(self.grads):
            return
        for index, layer in enumerate(getattr(model, "layers", ())):
            if _is_param(layer) and id(layer.grad_W) in where:
                grad_b = getattr(layer, "grad_b", None)
                self.positions[index] = (where[id(layer.grad_W)],
                                         None if grad_b is None else where.get(id(grad_b)))

    def of(self, index: int, layer: Any) -> tuple[int, int | None] | None:
        """(position of W, of b or None) of layer ``index`` if its arrays are still there."""
        position = self.positions.get(index)
        if position is None:
            return None
        w, b = position
        grad_b = getattr(layer, "grad_b", None)
        if self.grads[w] is not layer.grad_W or self.params[w] is not layer.W:
            return None
        if grad_b is not None and (b is None or self.grads[b] is not grad_b):
            return None
        return position

    def fits(self, squares: Any) -> Any:
        """``squares`` if it is a list aligned with the parameters, else None."""
        return squares if squares is not None and len(squares) == len(self.grads) else None

    def known(self, position: tuple[int, int | None], grads: Any, weights: Any) -> Known:
        w, b = position
        grads, weights = self.fits(grads), self.fits(weights)
        return (None if grads is None else grads[w],
                None if grads is None or b is None else grads[b],
                None if weights is None else weights[w])


def _plain_sgd_lr(optimizer: Any) -> float | None:
    """η of a plain SGD optimizer (no momentum, no weight decay), else None.

    Its update is exactly ΔW = −η ∂C/∂W, so ‖ΔW‖ = η‖∂C/∂W‖ needs no copy of W.
    """
    if type(optimizer) is SGD and optimizer.plain:
        return float(optimizer.lr)
    return None


def _ratio(change: float, weight: float | None) -> float:
    """‖ΔW‖/‖W‖, with 0/0 = 0 and x/0 = inf."""
    if weight is not None and weight > 0 and math.isfinite(weight):
        return change / weight
    if change == 0:
        return 0.0
    return math.inf if math.isfinite(change) else math.nan


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
