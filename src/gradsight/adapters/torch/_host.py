"""A recorded step's numbers to the host without waiting for the GPU.

On the CPU the watcher reads a recorded step's values at once (``Transfer.run``: one
``tolist()``). On a CUDA device that read would wait for every queued kernel — a
synchronisation per recorded step. Instead the values (already one tensor) are copied into
pinned host memory with ``non_blocking=True``, a CUDA event is recorded after the copy, and
the host list is read only when it is needed: at the next recorded step or when ``history``
is read, by which time the copy has long finished and ``event.synchronize()`` returns at
once. Nothing calls ``torch.cuda.synchronize()`` or ``.item()``.

What needs the gradients themselves (the exact count of NaN/inf entries when a norm is not
finite) cannot wait: on this path every gradient's count is taken on the device at the
recorded step (:func:`nonfinite_counts`) and travels with the rest. (A float32 norm whose
square overflows on finite entries, ≳ 1e19, stays inf on this path: the CPU path recomputes
it in float64 while the gradient exists.)

:class:`HostCopier` is the one place that knows about CUDA; the watcher only asks it
``wanted(device)`` and ``start(values)``, so the deferred path is tested on the CPU with a
copier that defers the same way (tests/test_torch_setups.py). It has not been run on a GPU:
this project's machines have none.
"""

from __future__ import annotations

from typing import Any

from ._torch import require_torch


class PinnedCopy:
    """One step's values on their way to pinned host memory (CUDA, non-blocking)."""

    __slots__ = ("host", "event")

    def __init__(self, values: Any) -> None:
        torch = require_torch()
        self.host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        self.host.copy_(values, non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record(torch.cuda.current_stream(values.device))

    def values(self) -> list[float]:
        """The values as a list; waits only for this copy (long done when it is called)."""
        self.event.synchronize()
        return list(self.host.tolist())


class HostCopier:
    """Chooses the deferred path: CUDA tensors get a :class:`PinnedCopy`, others none."""

    def wanted(self, device: Any) -> bool:
        return getattr(device, "type", None) == "cuda"

    def start(self, values: Any) -> PinnedCopy:
        return PinnedCopy(values)


def nonfinite_counts(grads: list[Any]) -> Any:
    """The number of NaN/±inf entries of each gradient (a tensor, or the list of a
    record's parts: summed), as one 1-d tensor on the first gradient's device (float64:
    exact below 2⁵³; no host synchronisation)."""
    torch = require_torch()
    entries = [g if isinstance(g, (list, tuple)) else [g] for g in grads]
    device = entries[0][0].device
    counts = []
    for blocks in entries:
        count = torch.count_nonzero(~torch.isfinite(blocks[0])).to(device, torch.float64)
        for block in blocks[1:]:
            count = count + torch.count_nonzero(~torch.isfinite(block)).to(device,
                                                                            torch.float64)
        counts.append(count)
    return torch.stack(counts)
