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


class Transfer:
    """Tensors to bring to the host together: ``add`` returns where a tensor's values will
    be in the list that :meth:`run` returns (row-major, in the order added).

    With ``all_reduce`` under torch.distributed the values are summed over ranks first and
    the ones not added as ``summed`` (counts are) divided by the number of ranks.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[Any, bool]] = []
        self._size = 0

    def add(self, tensor: Any, summed: bool = False) -> int:
        at = self._size
        flat = tensor.reshape(-1)
        self._parts.append((flat, summed))
        self._size += flat.numel()
        return at

    def add_scalars(self, tensors: list[Any], summed: bool = False) -> int:
        """Several 0-d tensors (stacked into one when they share a device and dtype)."""
        at = self._size
        if not tensors:
            return at
        first = tensors[0]
        if all(t.device == first.device and t.dtype == first.dtype for t in tensors):
            self.add(require_torch().stack(tensors), summed)
        else:
            for tensor in tensors:
                self.add(tensor, summed)
        return at

    def run(self, all_reduce: bool = False) -> tuple[list[float], int]:
        """(the values, the number of ranks they were reduced over)."""
        torch = require_torch()
        world = _world_size() if all_reduce else 1
        if not self._parts:
            return [], world
        by_device: dict[Any, list[int]] = {}
        for i, (flat, _) in enumerate(self._parts):
            by_device.setdefault(flat.device, []).append(i)
        if len(by_device) == 1 and world == 1:  # the usual case: one device, one process
            joined = torch.cat([flat for flat, _ in self._parts])
            return (joined.tolist() if joined.device.type == "cpu"
                    else joined.cpu().tolist()), world
        values: list[float] = [math.nan] * self._size
        starts, start = [], 0
        for flat, _ in self._parts:
            starts.append(start)
            start += flat.numel()
        for indices in by_device.values():
            joined = torch.cat([self._parts[i][0] for i in indices])  # promotes dtypes
            if world > 1:
                import torch.distributed as dist

                dist.all_reduce(joined)
            host = joined.tolist() if joined.device.type == "cpu" else joined.cpu().tolist()
            position = 0
            for i in indices:  # the one host transfer of this device, spread back
                flat, summed = self._parts[i]
                size = flat.numel()
                chunk = host[position:position + size]
                if world > 1 and not summed:
                    chunk = [v / world for v in chunk]
                values[starts[i]:starts[i] + size] = chunk
                position += size
        return values, world


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


class Scratch:
    """One work buffer per device and dtype, reused by every activation layer's reductions.

    Temporaries as large as an activation would otherwise be allocated and freed several
    times per layer and step — on the CPU each a fresh mapping whose pages fault in. The
    buffer grows to the largest activation watched (up to ``limit`` elements; larger ones
    use ordinary temporaries).
    """

    def __init__(self, limit: int = 1 << 24) -> None:
        self.limit = limit
        self._buffers: dict[tuple[Any, Any], Any] = {}

    def like(self, a: Any) -> Any:
        n = a.numel()
        if n > self.limit:
            return require_torch().empty_like(a, memory_format=require_torch().contiguous_format)
        key = (a.device, a.dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < n:
            buffer = self._buffers[key] = require_torch().empty(n, device=a.device,
                                                                dtype=a.dtype)
        return buffer[:n].view(a.shape)


def reduce_activation(layer: ActivationLayer, output: Any, scratch: Scratch) -> ActivationCall:
    """Reduce an activation's output a = f(z) right away, before an in-place op changes it.

    Written with sums and a dot product (cheap, vectorised kernels), each temporary in the
    one work buffer: mean = Σa/n and variance = Σ(a − mean)²/n (two passes, no
    cancellation); a non-finite value makes a − a NaN, counted as 1.
    """
    torch = require_torch()
    a = output.detach()
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()  # reduce low-precision outputs in float32
    n = a.numel()
    work = scratch.like(a)
    total = a.sum()
    centred = torch.sub(a, total, alpha=1.0 / max(n, 1), out=work).view(-1)  # a − mean
    spread = torch.dot(centred, centred)  # Σ(a − mean)²: two passes, no cancellation
    nonfinite = torch.sub(a, a, out=work).nan_to_num_(nan=1.0).sum()  # NaN iff a not finite
    parts = [total, spread, nonfinite]
    if layer.saturated is not None:
        parts.append(layer.saturated(a, work))
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
