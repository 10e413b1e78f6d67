"""From the device tensors of one step to :class:`LayerStats` records (after the transfer)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics.stats import LayerStats
from ._layers import ActivationLayer, ParamLayer
from ._reduce import ActivationCall, Transfer, combine_moments


@dataclass
class Reading:
    """One step's parameter statistics as device tensors, in the order of ``keys``.

    keys : (layer, "W"|"b") of each gradient norm in ``grad_norms``.
    weight_norms : ‖W‖ before the update, one per watched layer.
    grads : the gradient tensors, in the order of ``keys``, for an exact non-finite count
        when a norm is not finite (read again only then, right after the transfer).
    """

    keys: list[tuple[str, str]] = field(default_factory=list)
    grad_norms: list[Any] = field(default_factory=list)
    weight_norms: list[Any] = field(default_factory=list)
    grads: list[Any] = field(default_factory=list)


class ActivationSlots:
    """Where one activation layer's values of a step are in the transfer."""

    __slots__ = ("layer", "numels", "sums", "dead", "units")

    def __init__(self, layer: ActivationLayer, calls: list[ActivationCall],
                 transfer: Transfer) -> None:
        self.layer, self.numels = layer, [call.numel for call in calls]
        self.sums = [transfer.add(call.sums, summed=True) for call in calls]
        self.dead: int | None = None
        self.units = 0
        peaks = [call.peak for call in calls if call.peak is not None]
        if peaks and all(p.shape == peaks[0].shape for p in peaks):
            peak = peaks[0]
            for other in peaks[1:]:  # dead = inactive on every call of the step
                peak = peak.maximum(other)
            self.units = peak.numel()
            self.dead = transfer.add((peak <= 0).sum(), summed=True)

    def record(self, base: dict[str, Any], v: list[float], world: int) -> LayerStats:
        """Values summed over ``world`` ranks: the variance is pooled within ranks.

        Each call's sums are [Σa, Σ(a − mean)², non-finite count, saturated count].
        """
        if len(self.sums) == 1:
            n, at = world * self.numels[0], self.sums[0]
            mean, std = combine_moments([(n, v[at], v[at + 1])])
            nonfinite, saturated = v[at + 2], (v[at + 3] if self.layer.saturated else 0.0)
        else:
            n = world * sum(self.numels)
            mean, std = combine_moments([(world * k, v[at], v[at + 1])
                                         for k, at in zip(self.numels, self.sums, strict=True)])
            nonfinite = sum(v[at + 2] for at in self.sums)
            saturated = sum(v[at + 3] for at in self.sums) if self.layer.saturated else 0.0
        fields: dict[str, Any] = {"act_mean": mean, "act_std": std,
                                  "nonfinite": int(round(nonfinite))}
        if not math.isfinite(mean):  # as the engine: no fractions of a broken layer
            fields["act_std"] = math.nan
        else:
            if self.layer.saturated is not None:
                fields["saturated_fraction"] = saturated / max(n, 1)
            if self.dead is not None:
                fields["dead_fraction"] = v[self.dead] / max(world * self.units, 1)
        return LayerStats(**base, kind="activation", activation=self.layer.activation,
                          **fields)


class ParamSlots:
    """Where the parametrised layers' values of a step are in the transfer."""

    def __init__(self, layers: list[ParamLayer], reading: Reading, delta: Any,
                 transfer: Transfer) -> None:
        self.layers, self.keys = layers, reading.keys
        self.reading: Reading | None = reading
        self.grads = transfer.add_scalars(reading.grad_norms)
        self.weights = transfer.add_scalars(reading.weight_norms)
        self.skipped = isinstance(delta, str)  # "skipped": the optimizer did not run
        self.delta = transfer.add_scalars(delta) if isinstance(delta, list) else None
        self.nonfinite: dict[str, int] = {}

    def count_nonfinite(self, v: list[float]) -> None:
        """Exact non-finite counts of the layers whose gradient norm is not finite.

        A norm is finite only when every entry is, so the count is 0 wherever it is finite;
        otherwise the entries are counted on the device — one more transfer, only for a
        step that has NaN/inf gradients — while the gradients still exist.
        """
        reading, self.reading = self.reading, None
        if reading is None:
            return
        bad = [(i, key) for i, key in enumerate(self.keys) if not math.isfinite(v[self.grads + i])]
        if not bad:
            return
        from ._torch import require_torch

        torch = require_torch()
        for i, (name, _role) in bad:
            grad = reading.grads[i]
            count = int((~torch.isfinite(grad)).sum())
            self.nonfinite[name] = self.nonfinite.get(name, 0) + count
            if count == 0:  # finite entries whose squares overflowed: the exact norm
                v[self.grads + i] = float(torch.linalg.vector_norm(grad, dtype=torch.float64))

    def records(self, base_of: Any, v: list[float]) -> list[LayerStats]:
        norms = {key: v[self.grads + i] for i, key in enumerate(self.keys)}
        result = []
        for i, layer in enumerate(self.layers):
            weight = v[self.weights + i]
            change = v[self.delta + i] if self.delta is not None else None
            result.append(LayerStats(
                **base_of(layer.name), kind="param", grad_W_norm=norms.get((layer.name, "W")),
                grad_b_norm=norms.get((layer.name, "b")), weight_norm=weight,
                update_ratio=self._ratio(change, weight),
                nonfinite=self.nonfinite.get(layer.name, 0)))
        return result

    def _ratio(self, change: float | None, weight: float) -> float | None:
        """‖ΔW‖/‖W‖ as the engine's Monitor computes it (0 for a step the scaler skipped)."""
        if self.skipped:
            return 0.0
        if change is None:
            return None
        if weight > 0 and math.isfinite(weight):
            return change / weight
        if change == 0:
            return 0.0
        return math.inf if math.isfinite(change) else math.nan
