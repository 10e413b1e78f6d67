"""Device-side reductions and the single host transfer per recorded step.

Every statistic is first computed as a small tensor on the device of the data it
summarises. :class:`Transfer` collects them, concatenates them per device and moves each
device's values to the host with one ``.cpu().tolist()`` — one synchronisation per
recorded step, never one ``.item()`` per layer.

A step of a small network lasts about a millisecond, and every tensor operation costs a few
microseconds of dispatch on top of its pass over the data, so the activation statistics
are written with as few operations (and passes) as exactness allows: see
:class:`ActivationReducer`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from ._layers import ActivationLayer
from ._torch import require_torch

#: 0/1 flags summed in float32 are exact integers up to 2**24 elements; beyond, float64.
EXACT_FLOAT32_COUNT = 1 << 24


def stack_scalars(tensors: list[Any]) -> Any:
    """0-d tensors as one 1-d tensor, on the first one's device. Where they are not all on
    one device with one dtype (a model spread over devices, layers in float64 and float32),
    each is first moved there in the common dtype: ``torch.stack`` refuses mixed devices.
    DTensors (FSDP2's sharded parameters) are summed over their shards: see
    :func:`_stack_sharded`."""
    torch = require_torch()
    dtensor = _dtensor_type()
    if dtensor is not None and any(isinstance(t, dtensor) for t in tensors):
        return _stack_sharded(torch, tensors, dtensor)
    first = tensors[0]
    if all(t.device == first.device and t.dtype == first.dtype for t in tensors):
        return torch.stack(tensors)
    dtype = first.dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return torch.stack([t.to(device=first.device, dtype=dtype) for t in tensors])


def _dtensor_type() -> Any:
    """``DTensor``, if a model uses it (its module is loaded), else None."""
    return getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)


def sharded_square(tensor: Any, square: Any) -> Any | None:
    """‖t‖² of a DTensor sharded over a 1-d device mesh (FSDP2's parameters, gradients and
    optimizer states) as a *partial* DTensor: ``square`` of this rank's local shard, to be
    summed over the ranks by :func:`stack_scalars` — no communication here, and shards of
    unequal size (7 rows over 2 ranks) need no reshaping of the whole. None for anything
    else (a plain tensor, a replicated DTensor, a 2-d mesh)."""
    dtensor = _dtensor_type()
    if dtensor is None or not isinstance(tensor, dtensor):
        return None
    mesh = tensor.device_mesh
    if mesh.ndim != 1 or not tensor.placements[0].is_shard():
        return None
    from torch.distributed.tensor import Partial  # late: only for a sharded model

    return dtensor.from_local(square(tensor.to_local()), mesh, [Partial()], run_check=False)


def _stack_sharded(torch: Any, tensors: list[Any], dtensor: Any) -> Any:
    """Squared norms of sharded parameters as whole values, with one all-reduce.

    t·t of a parameter (or gradient, or optimizer state) sharded over a 1-d device mesh —
    FSDP2's ``fully_shard`` — is a *partial* DTensor: each rank holds the sum of squares of
    its own shard, and ‖t‖² is their sum over the mesh. The local sums are stacked and summed
    over the mesh's process group in one all-reduce; a value every rank holds whole (a plain
    tensor, a replicated DTensor) enters the sum from the group's first rank only, so it comes
    out unchanged. Any other layout (a 2-d mesh: HSDP, tensor parallelism) is gathered whole
    with ``full_tensor()`` — correct, with one collective per tensor.
    """
    local, partial, group = [], [], None
    for tensor in tensors:
        if isinstance(tensor, dtensor):
            mesh = tensor.device_mesh
            if mesh.ndim == 1 and tensor.placements[0].is_partial():
                mesh_group = mesh.get_group()
                if group is None or mesh_group is group:
                    group = mesh_group
                    local.append(tensor.to_local())
                    partial.append(True)
                    continue
            tensor = tensor.full_tensor()
        local.append(tensor)
        partial.append(False)
    stacked = stack_scalars(local)
    if group is None:
        return stacked
    import torch.distributed as dist  # late: PyTorch is optional, imported on use

    if dist.get_rank(group) != 0 and not all(partial):
        stacked = torch.where(torch.tensor(partial, device=stacked.device), stacked, 0.0)
    dist.all_reduce(stacked, group=group)
    return stacked


class Transfer:
    """Tensors to bring to the host together: ``add`` returns where a tensor's values will
    be in the list that :meth:`run` returns (row-major, in the order added).

    With ``all_reduce`` under torch.distributed the values are summed over ranks first and
    the ones not added as ``summed`` (counts are) divided by the number of ranks.
    """

    __slots__ = ("_parts", "_summed", "_size")

    def __init__(self) -> None:
        self._parts: list[Any] = []
        self._summed: list[bool] = []
        self._size = 0

    def add(self, tensor: Any, summed: bool = False) -> int:
        dtensor = _dtensor_type()
        if dtensor is not None and isinstance(tensor, dtensor):
            tensor = tensor.full_tensor()  # a value of a sharded model, made whole
        at = self._size
        flat = tensor.reshape(-1) if tensor.dim() != 1 else tensor
        self._parts.append(flat)
        self._summed.append(summed)
        self._size += flat.shape[0]
        return at

    def joined(self) -> Any:
        """The values as one 1-d tensor on their common device (not brought over), for a
        copy that does not block (:mod:`._host`); None when they are on several devices."""
        parts = self._parts
        if not parts or any(p.device != parts[0].device for p in parts):
            return None
        return require_torch().cat(parts)

    def run(self, all_reduce: bool = False) -> tuple[list[float], int]:
        """(the values, the number of ranks they were reduced over)."""
        torch = require_torch()
        world = _world_size() if all_reduce else 1
        parts = self._parts
        if not parts:
            return [], world
        device = parts[0].device
        if world == 1 and all(p.device == device for p in parts):  # the usual case
            joined = torch.cat(parts)  # promotes dtypes (counts exact in float32/64)
            return (joined.tolist() if device.type == "cpu" else joined.cpu().tolist()), world
        by_device: dict[Any, list[int]] = {}
        for i, flat in enumerate(parts):
            by_device.setdefault(flat.device, []).append(i)
        values: list[float] = [math.nan] * self._size
        starts, start = [], 0
        for flat in parts:
            starts.append(start)
            start += flat.shape[0]
        for indices in by_device.values():
            joined = torch.cat([parts[i] for i in indices])
            if world > 1:
                import torch.distributed as dist  # late: PyTorch is optional, imported on use

                if not joined.is_floating_point():
                    joined = joined.double()
                dist.all_reduce(joined)
            host = joined.tolist() if joined.device.type == "cpu" else joined.cpu().tolist()
            position = 0
            for i in indices:  # the one host transfer of this device, spread back
                size = parts[i].shape[0]
                chunk = host[position:position + size]
                if world > 1 and not self._summed[i]:
                    chunk = [v / world for v in chunk]
                values[starts[i]:starts[i] + size] = chunk
                position += size
        return values, world


def _world_size() -> int:
    import torch.distributed as dist  # late: PyTorch is optional, imported on use

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


@dataclass
class ActivationCall:
    """Reductions of one call of an activation module on a batch (tensors on device).

    parts : 1-d tensors whose values are, in order, Σa, ‖a − mean‖ and the layer's counts
        (see :class:`ActivationReducer`). peak : per-unit max of a over the batch (ReLU
        family), for dead units.
    """

    numel: int
    parts: list[Any]
    peak: Any | None


class Scratch:
    """Work buffers per device and dtype, reused by every activation layer's reductions.

    Temporaries as large as an activation would otherwise be allocated and freed several
    times per layer and step — on the CPU each a fresh mapping whose pages fault in. A
    buffer grows to the largest activation watched (up to ``limit`` elements; larger ones
    use ordinary temporaries). ``flat`` hands out views, cached per size.
    """

    def __init__(self, limit: int = 1 << 26) -> None:
        self.limit = limit
        self._buffers: dict[tuple[Any, ...], Any] = {}
        self._views: dict[tuple[Any, ...], Any] = {}

    def flat(self, role: str, device: Any, dtype: Any, size: int) -> Any:
        """A 1-d tensor of ``size`` elements (``role`` keeps buffers used together apart)."""
        key = (role, device, dtype, size)
        view = self._views.get(key)
        if view is not None:
            return view
        torch = require_torch()
        if size > self.limit:
            return torch.empty(size, device=device, dtype=dtype)
        base_key = (role, device, dtype)
        buffer = self._buffers.get(base_key)
        if buffer is None or buffer.numel() < size:
            buffer = self._buffers[base_key] = torch.empty(size, device=device, dtype=dtype)
            self._views = {k: v for k, v in self._views.items() if k[:3] != base_key}
        view = self._views[key] = buffer[:size]
        return view


class ActivationReducer:
    """The statistics of one activation layer's output a = f(z), taken in its forward hook.

    They are computed at once, before an in-place op can change a, with few operations —
    each a pass over a:

    * Σa, then ‖a − mean‖ (mean = Σa/n): two passes, so the variance Σ(a − mean)²/n
      suffers no cancellation; the difference goes to a work buffer (``squared``: the
      norm is squared on the device, for sums over ranks);
    * the counts, as 0/1 comparisons written to one float buffer and summed per row:
      - a saturating activation (saturated where a < lo or a > hi) compares a with three
        thresholds at once, t = (hi, the largest value below lo, −inf) in a's dtype:
        c₀ = #(a > hi), c₁ = #(a ≥ lo), c₂ = #(a > −inf), so saturated = c₀ + c₂ − c₁ and,
        as its values are finite or NaN, non-finite = n − c₂ (hardtanh's rule "on a bound"
        uses the largest value below hi and lo itself);
      - otherwise c = #finite: a < inf for an output that is never −inf, else
        #(a − a == 0) (x − x is NaN exactly for NaN and ±inf);
    * ReLU family: the per-unit max of a over the batch (a unit is dead iff it is ≤ 0).

    Comparisons are exact in a's dtype: a > t ⇔ a > hi for the largest t ≤ hi, and so on.
    """

    def __init__(self, layer: ActivationLayer, scratch: Scratch, squared: bool = False) -> None:
        self.layer, self.scratch, self.squared = layer, scratch, squared
        self.torch = require_torch()
        self.counts = 3 if layer.saturation is not None else 1
        self._thresholds: dict[tuple[Any, Any], Any] = {}
        self._dims: dict[int, tuple[int, ...]] = {}

    def __call__(self, output: Any) -> ActivationCall | None:
        torch = self.torch
        a = output.detach()
        if a.dtype in (torch.float16, torch.bfloat16):
            a = a.float()  # reduce low-precision outputs in float32
        flat = a.reshape(-1)
        n = flat.shape[0]
        if n == 0:
            return None
        device, dtype, scratch = flat.device, flat.dtype, self.scratch
        total = torch.sum(flat, 0, keepdim=True)
        work = torch.sub(flat, total, alpha=1.0 / n, out=scratch.flat("work", device, dtype, n))
        spread = torch.linalg.vector_norm(work, 2, 0, True)
        # for sums over ranks: Σa² = Σ(a − mean)² + (Σa)²/n, so that the ranks' means,
        # not only their spreads, enter the pooled variance
        parts = [total, spread.square_().add_(total.square(), alpha=1.0 / n) if self.squared
                 else spread]
        flags = scratch.flat("flags", device, torch.float32 if n <= EXACT_FLOAT32_COUNT
                             else torch.float64, self.counts * n)
        if self.counts == 3:
            rows = flags.view(3, n)
            torch.gt(flat, self._thresholds_for(device, dtype), out=rows)
            parts.append(rows.sum(1))
        else:
            if self.layer.finite == "any":
                torch.sub(flat, flat, out=flags)  # 0, or NaN where a is NaN or ±inf
                torch.eq(flags, 0.0, out=flags)
            else:
                torch.lt(flat, math.inf, out=flags)
            parts.append(torch.sum(flags, 0, keepdim=True))
        peak = None
        if self.layer.dead_rule:
            # a copy, never a view of a: the caller's buffer may be overwritten (in-place
            # ops, or a compiled graph reusing its memory) before the step is recorded
            peak = flat.clone() if a.dim() <= 1 else torch.amax(a, self._unit_dims(a.dim()))
        return ActivationCall(n, parts, peak)

    def _unit_dims(self, ndim: int) -> tuple[int, ...]:
        dims = self._dims.get(ndim)
        if dims is None:
            unit = self.layer.unit_dim % ndim
            dims = self._dims[ndim] = tuple(d for d in range(ndim) if d != unit)
        return dims

    def _thresholds_for(self, device: Any, dtype: Any) -> Any:
        """(t₀, t₁, −inf) as a (3, 1) tensor: a > t₀ ⇔ saturated high, a > t₁ ⇔ not low."""
        key = (device, dtype)
        found = self._thresholds.get(key)
        if found is None:
            sat = self.layer.saturation
            assert sat is not None
            if sat.inclusive:  # a ≥ hi ⇔ a > (largest < hi); a > lo ⇔ a > (largest ≤ lo)
                high, low = _below(sat.hi, dtype), _at_most(sat.lo, dtype)
            else:  # a > hi ⇔ a > (largest ≤ hi); a ≥ lo ⇔ a > (largest < lo)
                high, low = _at_most(sat.hi, dtype), _below(sat.lo, dtype)
            found = self._thresholds[key] = self.torch.tensor(
                [[high], [low], [-math.inf]], dtype=dtype, device=device)
        return found


def _at_most(x: float, dtype: Any) -> float:
    """The largest value of ``dtype`` that is ≤ x."""
    torch = require_torch()
    t = torch.tensor(x, dtype=torch.float64).to(dtype)
    if float(t) > x:
        t = torch.nextafter(t, torch.tensor(-math.inf, dtype=dtype))
    return float(t)


def _below(x: float, dtype: Any) -> float:
    """The largest value of ``dtype`` that is < x."""
    torch = require_torch()
    t = torch.tensor(_at_most(x, dtype), dtype=dtype)
    if float(t) == x:
        t = torch.nextafter(t, torch.tensor(-math.inf, dtype=dtype))
    return float(t)


def alive_units(layer: ActivationLayer, peaks: list[Any]) -> Any:
    """#units whose peak over the step's calls is > 0 (a 1-element device tensor); the
    dead ones — a ≤ 0 on every sample of every call — are the others. A NaN peak counts as
    alive: a layer with NaN values reports no fractions."""
    torch = require_torch()
    peak = peaks[0]
    for other in peaks[1:]:
        peak = torch.maximum(peak, other)
    if not layer.nonnegative:
        peak = torch.clamp_min(peak, 0.0)  # ≤ 0 becomes 0: not counted
    return torch.count_nonzero(peak).reshape(1)


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
