"""From the device tensors of one step to :class:`LayerStats` records (after the transfer)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics.stats import LayerStats
from ._layers import ActivationLayer, ParamLayer
from ._reduce import ActivationCall, Slot, Transfer, combine_moments


@dataclass
class Reading:
    """One step's parameter statistics as device tensors, in the order of ``keys``.

    keys : (layer, "W"|"b") of each gradient norm in ``grad_norms``.
    weight_norms : ‖W‖ before the update, one per watched layer.
    grads : the gradient tensors per layer, for an exact non-finite count when a norm is
        not finite (read again only then).
    finite : per layer, (numel, number of finite entries) of each gradient, when the counts
        were taken in the post-accumulate-grad hooks (the gradients may be gone later).
    """

    keys: list[tuple[str, str]] = field(default_factory=list)
    grad_norms: list[Any] = field(default_factory=list)
    weight_norms: list[Any] = field(default_factory=list)
    grads: dict[str, list[Any]] = field(default_factory=dict)
    finite: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)


class ActivationSlots:
    """The host values of one activation layer's calls in a step."""

    def __init__(self, layer: ActivationLayer, calls: list[ActivationCall],
                 transfer: Transfer) -> None:
        self.layer, self.numels = layer, [call.numel for call in calls]
        self.sums = [transfer.add(call.sums, summed=True) for call in calls]
        self.dead: Slot | None = None
        self.units = 0
        peaks = [call.peak for call in calls if call.peak is not None]
        if peaks and all(p.shape == peaks[0].shape for p in peaks):
            peak = peaks[0]
            for other in peaks[1:]:  # dead = inactive on every call of the step
                peak = peak.maximum(other)
            self.units = peak.numel()
            self.dead = transfer.add((peak <= 0).sum(), summed=True)

    def record(self, base: dict[str, Any], world: int) -> LayerStats:
        """Values summed over ``world`` ranks: the variance is pooled within ranks."""
        total = world * sum(self.numels)
        parts = [(world * n, slot.values[0], slot.values[1])
                 for n, slot in zip(self.numels, self.sums, strict=True)]
        mean, std = combine_moments(parts)
        nonfinite = int(round(sum(slot.values[2] for slot in self.sums)))
        fields: dict[str, Any] = {"act_mean": mean, "act_std": std, "nonfinite": nonfinite}
        if not math.isfinite(mean):  # as the engine: no fractions of a broken layer
            fields["act_std"] = math.nan
        else:
            if self.layer.saturated is not None:
                saturated = sum(slot.values[3] for slot in self.sums)
                fields["saturated_fraction"] = saturated / max(total, 1)
            if self.dead is not None:
                fields["dead_fraction"] = self.dead.value / max(world * self.units, 1)
        return LayerStats(**base, kind="activation", activation=self.layer.activation,
                          **fields)


class ParamSlots:
    """The host values of every parametrised layer in a step."""

    def __init__(self, layers: list[ParamLayer], reading: Reading, delta: Any,
                 transfer: Transfer) -> None:
        self.layers, self.reading = layers, reading
        self.grads = transfer.add_scalars(reading.grad_norms)
        self.weights = transfer.add_scalars(reading.weight_norms)
        self.skipped = isinstance(delta, str)  # "skipped": the optimizer did not run
        self.delta = transfer.add_scalars(delta) if isinstance(delta, list) else None
        self.finite_keys: list[tuple[str, int]] = []
        counts = []
        for name, entries in reading.finite.items():
            for numel, finite in entries:
                self.finite_keys.append((name, numel))
                counts.append(finite)
        self.finite = transfer.add_scalars(counts, summed=True)

    def records(self, base_of: Any) -> list[LayerStats]:
        norms = dict(zip(self.reading.keys, self.grads.values, strict=True))
        bad: dict[str, float] = {}
        for (name, numel), finite in zip(self.finite_keys, self.finite.values, strict=True):
            bad[name] = bad.get(name, 0.0) + numel - finite
        result = []
        for i, layer in enumerate(self.layers):
            grad_w, grad_b = norms.get((layer.name, "W")), norms.get((layer.name, "b"))
            weight = self.weights.values[i]
            nonfinite = (int(round(bad.get(layer.name, 0.0))) if self.reading.finite
                         else self._count(layer.name, grad_w, grad_b))
            result.append(LayerStats(
                **base_of(layer.name), kind="param", grad_W_norm=grad_w, grad_b_norm=grad_b,
                weight_norm=weight, update_ratio=self._ratio(i, weight), nonfinite=nonfinite))
        return result

    def _ratio(self, i: int, weight: float) -> float | None:
        """‖ΔW‖/‖W‖ as the engine's Monitor computes it (0 for a step the scaler skipped)."""
        if self.skipped:
            return 0.0
        if self.delta is None:
            return None
        change = self.delta.values[i]
        if weight > 0 and math.isfinite(weight):
            return change / weight
        if change == 0:
            return 0.0
        return math.inf if math.isfinite(change) else math.nan

    def _count(self, name: str, grad_w: float | None, grad_b: float | None) -> int:
        if all(g is None or math.isfinite(g) for g in (grad_w, grad_b)):
            return 0  # a norm is finite only when every entry is
        # Rare path (a non-finite norm): count exactly, one more transfer for this layer.
        from ._torch import require_torch

        torch = require_torch()
        return sum(int((~torch.isfinite(g)).sum()) for g in self.reading.grads.get(name, []))
