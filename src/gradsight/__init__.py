"""gradsight — derive, check, see and fix how gradients flow through a neural network.

The public names below are imported on first use (PEP 562), so ``import gradsight`` and the
``gradsight --help`` command stay fast even though the toolkit uses SymPy, matplotlib and,
optionally, PyTorch.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_loader
from types import ModuleType
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

# The wings (see the README's Architecture section) and the shared modules beneath them.
_SUBMODULES = {
    "errors", "io", "activations", "optim", "calculus", "engine", "diagnostics", "adapters",
    "lab", "present", "play", "integrations", "cli",
}

# The short names users import: each is another name of a module in its wing
# (``gradsight.nn`` is the engine, ``gradsight.plots`` is ``gradsight.present.plots``, ...).
# Their submodules follow: ``gradsight.nn.layers`` is ``gradsight.engine.layers``.
ALIASES = {
    "gradsight.nn": "gradsight.engine",
    "gradsight.train": "gradsight.engine.train",
    "gradsight.data": "gradsight.engine.data",
    "gradsight.serialize": "gradsight.engine.serialize",
    "gradsight.gradient_check": "gradsight.engine.gradcheck",
    "gradsight.expr": "gradsight.calculus.expr",
    "gradsight.numdiff": "gradsight.calculus.numeric",
    "gradsight.descent": "gradsight.calculus.descent",
    "gradsight.experiments": "gradsight.lab",
    "gradsight.torch_adapter": "gradsight.adapters.torch",
    "gradsight.plots": "gradsight.present.plots",
    "gradsight.report": "gradsight.present.report",
    "gradsight.explain": "gradsight.present.explain",
    "gradsight.tour": "gradsight.present.tour",
}

# public name → module that defines it
_LAZY = {
    "parse_expression": "calculus.expr",
    "derive": "calculus.symbolic",
    "numeric_derivative": "calculus.numeric",
    "step_study": "calculus.numeric",
    "minimize": "calculus.descent",
    "compare": "calculus.descent",
    "Trajectory": "calculus.descent",
    "mlp": "engine.model",
    "Sequential": "engine.model",
    "Dense": "engine.layers",
    "fit": "engine.train",
    "History": "engine.callbacks",
    "Callback": "engine.callbacks",
    "gradcheck": "engine.gradcheck",
    "save": "engine.serialize",
    "load": "engine.serialize",
    "LayerStats": "diagnostics.stats",
    "Monitor": "diagnostics.monitor",
    "diagnose": "diagnostics.verdict",
    "classify_neurons": "adapters",
    "doctor": "diagnostics.fixes",
    "load_history": "diagnostics.history",
    "watch": "adapters.torch",
    "diagnose_torch": "adapters.torch",
    "classify_neurons_torch": "adapters.torch",
    "torch_runner": "adapters.torch",
    "run_tour": "present.tour",
}

_ALIAS_NAMES = {old.rsplit(".", 1)[1] for old in ALIASES if old.count(".") == 1}

__all__ = [
    "DataError", "ExpressionError", "GradsightError", "InvalidValueError", "ShapeError",
    "TrainingError", "UnknownNameError", "__version__", *sorted(_SUBMODULES),
    *sorted(_ALIAS_NAMES), *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES or name in _ALIAS_NAMES:
        return import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def _target(fullname: str) -> str | None:
    """The module that ``fullname`` is another name of, or None."""
    for old, new in ALIASES.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old):]
    return None


class _AliasLoader(Loader):
    """Loads an alias as the module it names: both names then refer to one module object."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.module: ModuleType | None = None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        self.module = import_module(self.target)
        self.own_spec = self.module.__spec__
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.own_spec  # the import system gave it the alias's spec


class _AliasFinder(MetaPathFinder):
    """Finds the short names of :data:`ALIASES` (``import gradsight.nn.layers``)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        module = _target(fullname) if fullname.startswith("gradsight.") else None
        return None if module is None else spec_from_loader(fullname, _AliasLoader(module))


if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
