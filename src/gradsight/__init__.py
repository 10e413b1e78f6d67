"""gradsight — derive, check, see and fix how gradients flow through a neural network.

The public names below are imported on first use (PEP 562), so ``import gradsight`` and the
``gradsight --help`` command stay fast even though the toolkit uses SymPy, matplotlib and,
optionally, PyTorch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import (
    DataError,
    ExpressionError,
    GradsightError,
    InvalidValueError,
    ShapeError,
    TrainingError,
    UnknownNameError,
)

__version__ = "0.1.0"

_SUBMODULES = {
    "activations", "expr", "calculus", "optim", "descent", "nn", "train", "gradient_check",
    "data", "diagnostics", "experiments", "explain", "plots", "report", "serialize",
    "torch_adapter", "tour", "errors",
}

# public name → submodule that defines it
_LAZY = {
    "parse_expression": "expr",
    "derive": "calculus",
    "numeric_derivative": "calculus",
    "step_study": "calculus",
    "minimize": "descent",
    "compare": "descent",
    "Trajectory": "descent",
    "mlp": "nn",
    "Sequential": "nn",
    "Dense": "nn",
    "fit": "train",
    "History": "train",
    "Callback": "train",
    "gradcheck": "gradient_check",
    "save": "serialize",
    "load": "serialize",
    "LayerStats": "diagnostics",
    "Monitor": "diagnostics",
    "diagnose": "diagnostics",
    "classify_neurons": "diagnostics",
    "doctor": "diagnostics",
    "watch": "torch_adapter",
    "diagnose_torch": "torch_adapter",
    "classify_neurons_torch": "torch_adapter",
    "torch_runner": "torch_adapter",
    "run_tour": "tour",
}

__all__ = [
    "DataError", "ExpressionError", "GradsightError", "InvalidValueError", "ShapeError",
    "TrainingError", "UnknownNameError", "__version__", *sorted(_SUBMODULES), *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
