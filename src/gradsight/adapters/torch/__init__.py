"""PyTorch adapter: the same diagnostics for a ``torch.nn.Module`` as for the NumPy engine.

* :func:`watch` turns a user's own training loop into :class:`~gradsight.diagnostics.
  LayerStats` through hooks (two lines added to the loop; see :mod:`.watcher` for when a
  step is recorded, AMP and DistributedDataParallel); :func:`is_main_process` tells which
  rank should write reports.
* :func:`diagnose_torch` trains a throwaway copy for a few steps and returns the findings.
* :func:`classify_neurons_torch` labels every hidden unit over a data loader.
* :func:`torch_runner` lets :func:`gradsight.diagnostics.fixes.doctor` rank fixes for a
  model factory ``build(activation, init) -> nn.Module`` (``gradsight doctor --factory``).

PyTorch is imported lazily: ``import gradsight`` works without it, and calling these
functions without it raises :class:`~gradsight.errors.GradsightError` with the install hint
``pip install 'gradsight[torch]'``.

Importing this package registers :func:`classify_neurons_torch` with
:func:`gradsight.diagnostics.classify_neurons` (see :mod:`gradsight.diagnostics.neurons`), so
that function also takes a ``torch.nn.Module`` once the adapter is loaded.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._torch import INSTALL_HINT, is_main_process, require_torch
from .neurons import classify_neurons_torch
from .watcher import Watcher, watch

_LAZY = {
    "diagnose_torch": "quick",
    "TorchDiagnosis": "quick",
    "torch_runner": "runner",
}

__all__ = ["INSTALL_HINT", "Watcher", "classify_neurons_torch", "is_main_process",
           "require_torch", "watch", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
