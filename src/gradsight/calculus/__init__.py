"""The calculus wing: expressions, derivatives and gradient descent on a typed function.

* :mod:`.expr` parses typed text against a whitelist (:mod:`.vocabulary` holds the allowed
  names, :mod:`.printing` turns a parsed expression back into text or a NumPy function);
* :mod:`.symbolic` differentiates symbolically with the steps shown, :mod:`.formulas` holds the
  activations' formulas and the two routes to σ′ = σ(1−σ);
* :mod:`.numeric` estimates derivatives by finite differences and studies the step size;
* :mod:`.descent` minimises a function with an optimizer of :mod:`gradsight.optim`;
  :mod:`.descent_verdict`, beneath it, holds the points of the path (``Iterate``) and judges
  them (converged, oscillating, diverged, stalled).

The names of :mod:`.symbolic` (``derive``, ``numeric_derivative``, ``step_study``, ...) are
importable from here; they are loaded on first use, so importing a sibling module does not
pull in SymPy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_DERIVE_NAMES = (
    "METHODS", "Step", "Derivation", "StudyRow", "StepStudy", "derive", "numeric_derivative",
    "recommended_step", "step_study", "derivative_function", "gradient_function",
    "activation_expression", "activation_table",
)

__all__ = list(_DERIVE_NAMES)


def __getattr__(name: str) -> Any:
    if not name.startswith("_"):
        for module in (".symbolic", ".numeric"):
            found = import_module(module, __name__)
            if hasattr(found, name):
                return getattr(found, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
