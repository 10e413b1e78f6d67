"""Lazy access to PyTorch: gradsight works without it; only the adapter's functions need it."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ...errors import GradsightError

INSTALL_HINT = "pip install 'gradsight[torch]' (or torch==2.13.0)"


def require_torch() -> ModuleType:
    """Import and return :mod:`torch`, or raise :class:`GradsightError` saying how to install it."""
    try:
        import torch  # late: PyTorch is optional and heavy; gradsight imports without it
    except ImportError:
        raise GradsightError(
            f"the PyTorch adapter needs PyTorch, which is not installed: {INSTALL_HINT}"
        ) from None
    return torch


def unwrap(model: Any) -> Any:
    """The user's module inside DistributedDataParallel / DataParallel (``model.module``)."""
    torch = require_torch()
    if not isinstance(model, torch.nn.Module):
        raise GradsightError(
            f"expected a torch.nn.Module, got {type(model).__name__}"
        )
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def is_main_process() -> bool:
    """True on rank 0 of an initialised ``torch.distributed`` group, and without one.

    Every rank records its own history; let only the main process write reports::

        if gradsight.torch_adapter.is_main_process():
            history_to_json(watcher.history, "grads.json")
    """
    try:
        import torch.distributed as dist  # late: PyTorch is optional (no torch: one process)
    except ImportError:
        return True
    if not (dist.is_available() and dist.is_initialized()):
        return True
    return dist.get_rank() == 0
