"""PyTorch adapter: the same diagnostics for a ``torch.nn.Module`` as for the NumPy engine.

``watch`` turns a user's own training loop into :class:`~gradsight.diagnostics.LayerStats`
through hooks (two lines added to the loop); ``diagnose_torch`` runs a few steps itself and
returns the findings; ``classify_neurons_torch`` reports per-unit derivative states over a
data loader; ``torch_runner`` lets ``gradsight.doctor`` rank fixes for a model factory.

PyTorch is imported lazily: ``import gradsight`` works without it, and calling these
functions without it raises :class:`~gradsight.errors.GradsightError` with the install hint
``pip install 'gradsight[torch]'``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._torch import INSTALL_HINT, is_main_process, require_torch
from .watcher import Watcher, watch

_LAZY = {
    "diagnose_torch": "quick",
    "TorchDiagnosis": "quick",
    "classify_neurons_torch": "neurons",
    "torch_runner": "runner",
}

__all__ = ["INSTALL_HINT", "Watcher", "is_main_process", "require_torch", "watch", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
