"""Lazy access to PyTorch: gradsight works without it; only the adapter's functions need it."""

from __future__ import annotations

import sys
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
    """The user's module inside its wrappers: DistributedDataParallel / DataParallel
    (``model.module``), FSDP1's FullyShardedDataParallel (``model.module``) and
    ``torch.compile``'s OptimizedModule (``model._orig_mod``), in any nesting — so layer names
    are the module paths of the user's model, without ``module.`` or ``_orig_mod.``."""
    torch = require_torch()
    if not isinstance(model, torch.nn.Module):
        raise GradsightError(
            f"expected a torch.nn.Module, got {type(model).__name__}"
        )
    wrappers = _wrappers(torch)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif _is_optimized(model):
            model = model._orig_mod
        else:
            return model


def _wrappers(torch: ModuleType) -> Any:
    found: list[Any] = [torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel]
    fsdp = sys.modules.get("torch.distributed.fsdp")  # loaded if the model uses it
    if fsdp is not None and hasattr(fsdp, "FullyShardedDataParallel"):
        found.append(fsdp.FullyShardedDataParallel)
    return tuple(found)


def _is_optimized(model: Any) -> bool:
    """``torch.compile(model)``'s wrapper (dynamo is loaded once something was compiled)."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    optimized = getattr(eval_frame, "OptimizedModule", None)
    return optimized is not None and isinstance(model, optimized)


def is_optimized(model: Any) -> bool:
    """True when ``model`` is ``torch.compile(module)``'s wrapper, at any depth of wrappers:
    dynamo then traces the whole module call, its own hooks included, as one frame."""
    torch = require_torch()
    wrappers = _wrappers(torch)
    while isinstance(model, wrappers):
        model = model.module
    return _is_optimized(model)


def is_compiled(model: Any) -> bool:
    """True when ``model`` is ``torch.compile``'s wrapper (at any depth of wrappers), or when
    it or one of its submodules was compiled in place (``module.compile()``). Forward hooks
    of a compiled model are traced into its graph once: the watcher keeps them installed."""
    torch = require_torch()
    wrappers = _wrappers(torch)
    while True:
        if _is_optimized(model):
            return True
        if isinstance(model, wrappers):
            model = model.module
        else:
            break
    return any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules())


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
