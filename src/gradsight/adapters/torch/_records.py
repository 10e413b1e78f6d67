"""From the device tensors of one step to :class:`LayerStats` records (after the transfer)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...diagnostics.stats import LayerStats
from ._layers import ActivationLayer, ParamLayer
from ._reduce import ActivationCall, Transfer, alive_units, combine_moments
from ._torch import require_torch
from ._update import BUFFER, GRAD, ZERO


@dataclass
class Reading:
    """One step's parameter statistics as device tensors.

    keys : (layer position, "W"|"b") of each gradient in ``grads``.
    squares : 0-d tensors ‖g‖² of the ``grads``, then ‖W‖² (before the update) of every
        watched layer, in layer order.
    grads : the gradient tensors of each key (a list: the parts of the record), for an exact
        non-finite count when a norm is not finite (read again only then, right after the
        transfer).
    scale : the loss scale the gradients are multiplied by (AMP), or None.
    """

    keys: list[tuple[int, str]] = field(default_factory=list)
    squares: list[Any] = field(default_factory=list)
    grads: list[Any] = field(default_factory=list)
    scale: Any = None


class ActivationSlots:
    """Where one activation layer's values of a step are in the transfer.

    Each call's values are Σa, ‖a − mean‖ (its square under ``all_reduce``, summed over the
    ranks) and the counts of :class:`~._reduce.ActivationReducer`.
    """

    __slots__ = ("layer", "numels", "starts", "alive", "units", "squared")

    def __init__(self, layer: ActivationLayer, calls: list[ActivationCall],
                 transfer: Transfer, squared: bool) -> None:
        self.layer, self.numels, self.squared = layer, [call.numel for call in calls], squared
        self.starts = []
        for call in calls:
            self.starts.append(transfer.add(call.parts[0], summed=True))
            for part in call.parts[1:]:
                transfer.add(part, summed=True)
        self.alive: int | None = None
        self.units = 0
        peaks = [call.peak for call in calls if call.peak is not None]
        if peaks and all(p.shape == peaks[0].shape for p in peaks):
            self.units = peaks[0].numel()
            self.alive = transfer.add(alive_units(layer, peaks), summed=True)

    def record(self, base: dict[str, Any], v: list[float], world: int) -> LayerStats:
        """Values summed over ``world`` ranks: mean and spread are those of the whole global
        batch; a unit counts as dead on a rank where it is never active, so across ranks
        ``dead_fraction`` is the mean of the ranks' dead fractions."""
        moments, finite, saturated = [], 0.0, 0.0
        for numel, at in zip(self.numels, self.starts, strict=True):
            # squared: Σa² summed over the ranks, so Σ(a − mean)² = Σa² − (Σa)²/N
            spread = (v[at + 1] - v[at] ** 2 / (world * numel) if self.squared
                      else v[at + 1] ** 2)
            moments.append((world * numel, v[at], spread))
            if self.layer.saturation is not None:  # #(a > hi) + #finite − #(a ≥ lo)
                finite += v[at + 4]
                saturated += v[at + 2] + v[at + 4] - v[at + 3]
            else:
                finite += v[at + 2]
        n = world * sum(self.numels)
        mean, std = combine_moments(moments)
        fields: dict[str, Any] = {"act_mean": mean, "act_std": std,
                                  "nonfinite": int(round(n - finite))}
        if not math.isfinite(mean):  # as the engine: no fractions of a broken layer
            fields["act_std"] = math.nan
        else:
            if self.layer.saturation is not None:
                fields["saturated_fraction"] = saturated / max(n, 1)
            if self.alive is not None:
                units = world * self.units
                fields["dead_fraction"] = (units - v[self.alive]) / max(units, 1)
        return LayerStats(**base, kind="activation", activation=self.layer.activation,
                          **fields)


class ParamSlots:
    """Where the parametrised layers' values of a step are in the transfer.

    plan : how each layer's ‖ΔW‖ is known (:mod:`._update`): (rule, η) per layer, None
        without an optimizer, "skipped" when the scaler skipped the step (ΔW = 0).
    changes : 0-d tensors ‖b‖² (momentum buffer) or ‖W_new − W_old‖² of the layers whose
        rule is "buffer" or "snapshot", in layer order.
    rooted : the values are norms (square roots taken on the device before an all-reduce),
        not squares.
    """

    def __init__(self, layers: list[ParamLayer], reading: Reading, plan: Any,
                 changes: Any, transfer: Transfer, stacked: Any, rooted: bool) -> None:
        self.layers, self.keys, self.plan, self.rooted = layers, reading.keys, plan, rooted
        self.reading: Reading | None = reading
        self.at = transfer.add(stacked) if stacked is not None else 0
        scale = reading.scale  # None, a float, or a device tensor brought over with the rest
        self.scale_at = transfer.add(scale.reshape(1)) if hasattr(scale, "reshape") else None
        self.scale = 1.0 if scale is None or self.scale_at is not None else float(scale)
        self.changes = transfer.add(changes) if changes is not None else None
        self.nonfinite: dict[int, int] = {}
        self.exact: dict[int, float] = {}

    def _norm(self, v: list[float], i: int) -> float:
        value = v[self.at + i]
        return value if self.rooted else math.sqrt(value)

    def count_nonfinite(self, v: list[float]) -> None:
        """Exact non-finite counts of the layers whose gradient norm is not finite.

        A norm is finite only when every entry is, so the count is 0 wherever it is finite;
        otherwise the entries are counted on the device — one more transfer, only for a
        step that has NaN/inf gradients — while the gradients still exist.
        """
        reading, self.reading = self.reading, None
        if reading is None:
            return
        bad = [i for i in range(len(self.keys)) if not math.isfinite(v[self.at + i])]
        if not bad:
            return
        torch = require_torch()
        for i in bad:
            blocks, (layer, _kind) = reading.grads[i], self.keys[i]
            count = sum(int((~torch.isfinite(grad)).sum()) for grad in blocks)
            self.nonfinite[layer] = self.nonfinite.get(layer, 0) + count
            if count == 0:  # finite entries whose squares overflowed: the exact norm
                self.exact[i] = math.sqrt(sum(
                    float(torch.linalg.vector_norm(grad, dtype=torch.float64)) ** 2
                    for grad in blocks))

    def records(self, base_of: Any, v: list[float]) -> list[LayerStats]:
        divisor = v[self.scale_at] if self.scale_at is not None else self.scale
        norms: dict[tuple[int, str], float] = {}
        for i, key in enumerate(self.keys):
            exact = self.exact.get(i)
            norms[key] = (exact if exact is not None else self._norm(v, i)) / divisor
        result, weights, changes = [], len(self.keys), self.changes
        for j, layer in enumerate(self.layers):
            if not layer.weights:  # a tied head's own bias: its weight is recorded elsewhere
                result.append(LayerStats(
                    **base_of(layer.name), kind="param", grad_b_norm=norms.get((j, "b")),
                    nonfinite=self.nonfinite.get(j, 0), role=layer.role))
                continue
            weight = self._norm(v, weights)
            weights += 1
            grad_w = norms.get((j, "W"))
            change: float | None = None
            if isinstance(self.plan, list):
                rule, lr = self.plan[j]
                if rule == GRAD:
                    change = lr * grad_w if grad_w is not None else 0.0
                elif rule == ZERO:
                    change = 0.0
                elif changes is not None:  # BUFFER: ΔW = −η·b; SNAPSHOT: W_new − W_old
                    change = (lr if rule == BUFFER else 1.0) * self._norm(v, changes - self.at)
                    changes += 1
            result.append(LayerStats(
                **base_of(layer.name), kind="param", grad_W_norm=grad_w,
                grad_b_norm=norms.get((j, "b")), weight_norm=weight,
                update_ratio=self._ratio(change, weight),
                nonfinite=self.nonfinite.get(j, 0), role=layer.role,
                bias_zero_by=layer.bias_zero_by))
        return result

    def _ratio(self, change: float | None, weight: float) -> float | None:
        """‖ΔW‖/‖W‖ as the engine's Monitor computes it (0 for a step the scaler skipped)."""
        if self.plan == "skipped":
            return 0.0
        if change is None:
            return None
        if weight > 0 and math.isfinite(weight):
            return change / weight
        if change == 0:
            return 0.0
        return math.inf if math.isfinite(change) else math.nan
