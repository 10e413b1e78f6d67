"""Device-side reductions and the single host transfer per recorded step.

Every statistic is first computed as a small tensor on the device of the data it
summarises. :class:`Transfer` collects them, concatenates them per device and moves each
device's values to the host with one ``.cpu().tolist()`` — one synchronisation per
recorded step, never one ``.item()`` per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._layers import ActivationLayer
from ._torch import require_torch


class Slot:
    """Where the host values of added tensors land after :meth:`Transfer.run`."""

    __slots__ = ("summed", "values")

    def __init__(self, size: int, summed: bool) -> None:
        self.summed = summed
        self.values: list[float] = [math.nan] * size

    @property
    def value(self) -> float:
        return self.values[0]


class Transfer:
    """Tensors to bring to the host together (optionally all-reduced across ranks first).

    A ``summed`` tensor (a count) is summed over ranks; any other value is averaged.
    """

    def __init__(self) -> None:
        self._items: dict[Any, list[tuple[Any, Slot, int]]] = {}  # device → (flat, slot, at)

    def add(self, tensor: Any, summed: bool = False) -> Slot:
        """A tensor of any shape; its values in ``slot.values`` (row-major)."""
        slot = Slot(tensor.numel(), summed)
        self._items.setdefault(tensor.device, []).append((tensor.reshape(-1), slot, 0))
        return slot

    def add_scalars(self, tensors: list[Any], summed: bool = False) -> Slot:
        """Several 0-d tensors; stacked into one when they share a device and dtype."""
        torch = require_torch()
        slot = Slot(len(tensors), summed)
        if not tensors:
            return slot
        first = tensors[0]
        if all(t.device == first.device and t.dtype == first.dtype for t in tensors):
            self._items.setdefault(first.device, []).append((torch.stack(tensors), slot, 0))
        else:
            for at, tensor in enumerate(tensors):
                self._items.setdefault(tensor.device, []).append((tensor.reshape(1), slot, at))
        return slot

    def run(self, all_reduce: bool = False) -> int:
        """Fill every slot; returns the number of ranks the values were reduced over."""
        torch = require_torch()
        world = _world_size() if all_reduce else 1
        for device, items in self._items.items():
            wide = torch.float32 if device.type == "mps" else torch.float64
            joined = torch.cat([flat for flat, _, _ in items]).to(wide)  # promotes dtypes
            if world > 1:
                import torch.distributed as dist

                dist.all_reduce(joined)  # sum over ranks, divided below where averaged
            values = joined.cpu().tolist()  # the one host transfer of this device
            start = 0
            for flat, slot, at in items:
                size = flat.numel()
                chunk = values[start:start + size]
                start += size
                if not slot.summed and world > 1:
                    chunk = [v / world for v in chunk]
                slot.values[at:at + size] = chunk
        return world


def _world_size() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


@dataclass
class ActivationCall:
    """Reductions of one call of an activation module on a batch (tensors on device)."""

    numel: int
    sums: Any  # [Σa, Σ(a − mean)², non-finite count, saturated count (if it saturates)]
    peak: Any | None  # per-unit max of a over the batch (ReLU family), for dead units


def reduce_activation(layer: ActivationLayer, output: Any) -> ActivationCall:
    """Reduce an activation's output a = f(z) right away, before an in-place op changes it.

    Written with sums and a norm (cheap, vectorised kernels): mean = Σa/n and
    variance = Σ(a − mean)²/n (two passes, no cancellation); a non-finite value makes
    a − a NaN, counted as 1.
    """
    torch = require_torch()
    a = output.detach()
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()  # reduce low-precision outputs in float32
    n = a.numel()
    total = a.sum()
    centred = torch.sub(a, total, alpha=1.0 / max(n, 1))
    # ATen's norm, not a BLAS dot: BLAS threads stall on a busy machine for small vectors
    spread = torch.linalg.vector_norm(centred).square()
    parts = [total, spread, torch.sub(a, a).nan_to_num_(nan=1.0).sum()]
    if layer.saturated is not None:
        parts.append(layer.saturated(a))
    peak = _unit_peak(a, layer.unit_dim) if layer.dead_rule else None
    return ActivationCall(n, torch.stack(parts), peak)


def _unit_peak(a: Any, unit_dim: int) -> Any:
    """max over the batch (and spatial positions) of each unit; a unit is dead iff peak ≤ 0."""
    if a.dim() <= 1:
        return a.reshape(-1)
    unit = unit_dim % a.dim()
    dims = tuple(d for d in range(a.dim()) if d != unit)
    return a.amax(dim=dims)


def combine_moments(parts: list[tuple[int, float, float]]) -> tuple[float, float]:
    """(mean, std) of the union of batches given (n, Σa, Σ(a − mean)²) of each.

    Batches are merged with the pairwise update of Chan et al.: M2 = Σ M2ᵢ + Σ nᵢ(meanᵢ − mean)².

    >>> combine_moments([(2, 2.0, 0.0), (2, 6.0, 0.0)])
    (2.0, 1.0)
    """
    total = sum(n for n, _, _ in parts)
    if total == 0:
        return math.nan, math.nan
    mean = sum(s for _, s, _ in parts) / total
    m2 = sum(m2 for _, _, m2 in parts)
    if len(parts) > 1:
        m2 += sum(n * (s / n - mean) ** 2 for n, s, _ in parts if n)
    return mean, math.sqrt(max(m2 / total, 0.0))  # max(nan, 0.0) is nan: kept visible
