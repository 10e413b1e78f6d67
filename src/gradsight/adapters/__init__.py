"""Adapters: gradsight's diagnostics for models of other libraries (:mod:`.torch`).

Importing this package loads every adapter, and each registers the models it can read with
:func:`gradsight.diagnostics.neurons.register_backend`; :func:`classify_neurons` (the
function of :mod:`gradsight.diagnostics.neurons`, which ``gradsight.classify_neurons`` names)
then dispatches a ``torch.nn.Module`` to the PyTorch adapter. PyTorch itself is imported on
first use.
"""

from __future__ import annotations

from ..diagnostics.neurons import classify_neurons
from . import torch  # registers the PyTorch backend

__all__ = ["classify_neurons", "torch"]
