"""Gradient check: compare backpropagation with central differences, entry by entry.

For a weight w, the numeric derivative is the central difference

    n = (C(w + h) − C(w − h)) / (2h)        (error O(h²), against O(h) one-sided)

and the analytic one, a, is what ``model.backward`` computed. They are compared by the
relative error |a − n| / max(|a|, |n|) (cs231n's "gradient checks"), read in words:

    ≤ 1e-7   fine
    ≤ 1e-4   suspicious, unless the model has kinks (relu family): then usual
    ≤ 1e-2   likely wrong
    > 1e-2   wrong

The check runs in float64 on a copy of the model (a float32 model is converted), so what is
tested is the engine's mathematics, not float32 rounding. Two details keep it honest:

* the denominator is floored at τ = 10⁸·ε·S/h (ε = 2.2e-16), S = max(|C|, max|ŷ|): a
  difference as small as the central difference's own round-off ε·S/h then counts at most
  1e-8, and entries where both a and n are ~0 (a dead ReLU's weights) are not reported as
  100% wrong. S is not just |C|: a cost near 0 is computed from terms of the size of the
  outputs (C = logsumexp(z) − z_y cancels logits of size |z|), so its round-off is ε·|z|;
* an entry whose w ± h switches a relu-family unit on or off (the two evaluations straddle
  a kink, so their difference is not a derivative) is skipped and counted in ``kinks``;
* a large parameter is checked on ``max_entries`` entries drawn with ``seed`` (always
  including its largest analytic entry), since each entry costs two forward passes.

>>> import numpy as np
>>> from gradsight import nn
>>> model = nn.mlp("3-4-2", activation="tanh", seed=0)
>>> X, y = np.random.default_rng(0).normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
>>> result = gradcheck(model, X, y, "cross_entropy")
>>> result.band, result.passed
('fine', True)
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, require_positive, require_positive_int
from .losses import Loss
from .losses import loss as _get_loss
from .model import Sequential

__all__ = ["GradcheckResult", "ParameterCheck", "band", "gradcheck"]

_BANDS = (
    (1e-7, "fine"),
    (1e-4, "suspicious unless there are kinks (relu)"),
    (1e-2, "likely wrong"),
    (float("inf"), "wrong"),
)
_EXPLANATIONS = {
    "fine": "backpropagation agrees with the numeric derivative",
    "suspicious unless there are kinks (relu)": (
        "small disagreement: expected only where a finite difference straddles a kink"
    ),
    "likely wrong": "the analytic gradient probably has a bug",
    "wrong": "the analytic gradient does not match the numeric derivative",
}


def band(error: float) -> str:
    """The cs231n band of a relative error, in words.

    >>> band(3e-9), band(2e-3)
    ('fine', 'likely wrong')
    """
    if not error <= float("inf"):  # nan
        return "wrong"
    return next(words for limit, words in _BANDS if error <= limit)


@dataclass
class ParameterCheck:
    """The comparison for one parameter array (``"dense0.W"``)."""

    name: str
    shape: tuple[int, ...]
    checked: int  # entries compared
    total: int  # entries in the array
    max_relative_error: float
    worst_index: tuple[int, ...]
    analytic: float  # a at the worst entry
    numeric: float  # n at the worst entry
    kinks: int = 0  # entries skipped: w ± h put a relu-family unit on both sides of its kink

    @property
    def band(self) -> str:
        return band(self.max_relative_error)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape), "worst_index": list(self.worst_index),
                "band": self.band}


@dataclass
class GradcheckResult:
    """Per-parameter maximum relative errors and the verdict in words."""

    parameters: list[ParameterCheck]
    h: float
    loss: str
    has_kinks: bool
    cost: float
    notes: list[str] = field(default_factory=list)

    @property
    def max_relative_error(self) -> float:
        return max((p.max_relative_error for p in self.parameters), default=0.0)

    @property
    def band(self) -> str:
        return band(self.max_relative_error)

    @property
    def passed(self) -> bool:
        """Fine; or only "suspicious" in a model with kinks, where that is expected."""
        error = self.max_relative_error
        return error <= 1e-7 or (self.has_kinks and error <= 1e-4)

    @property
    def verdict(self) -> str:
        """One sentence: band, worst parameter, and what it means."""
        worst = max(self.parameters, key=lambda p: p.max_relative_error)
        kinks = " (the model has kinks: relu family)" if self.has_kinks else ""
        return (
            f"{self.band}{kinks}: max relative error {self.max_relative_error:.2e} in "
            f"{worst.name} — {_EXPLANATIONS[self.band]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "h": self.h, "loss": self.loss, "cost": self.cost, "has_kinks": self.has_kinks,
            "max_relative_error": self.max_relative_error, "band": self.band,
            "passed": self.passed, "verdict": self.verdict, "notes": list(self.notes),
            "parameters": [p.to_dict() for p in self.parameters],
        }

    def __str__(self) -> str:
        lines = [f"{'parameter':<12}{'checked':>12}  {'max rel. error':>14}  band"]
        for p in self.parameters:
            lines.append(
                f"{p.name:<12}{p.checked:>5}/{p.total:<6}  {p.max_relative_error:>14.2e}  {p.band}"
            )
        return "\n".join([*lines, self.verdict, *self.notes])

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{p.name}</td><td>{p.checked}/{p.total}</td>"
            f"<td>{p.max_relative_error:.2e}</td><td>{html.escape(p.band)}</td></tr>"
            for p in self.parameters
        )
        return (
            "<table><thead><tr><th>parameter</th><th>checked</th><th>max relative error</th>"
            f"<th>band</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<p>{html.escape(self.verdict)}</p>"
        )


def _entries(size: int, analytic: np.ndarray, max_entries: int, rng: np.random.Generator) -> Any:
    if size <= max_entries:
        return np.arange(size)
    chosen = rng.choice(size, max_entries - 1, replace=False)
    return np.unique(np.append(chosen, np.argmax(np.abs(analytic))))


def _has_kink(activation: Any) -> bool:
    """relu and leaky_relu have a corner at z = 0; so has elu unless α = 1 (then f′ is
    continuous)."""
    if activation is None or not activation.relu_family:
        return False
    return activation.base_name != "elu" or activation.name != "elu"


def _cost(model: Sequential, cost: Loss, X: np.ndarray, target: np.ndarray,
          kinky: list[Any]) -> tuple[float, list[np.ndarray]]:
    """C at the current weights, and which relu-family units are on (z > 0 ⇔ a > 0)."""
    output = model.forward(X)
    return cost.cost(output, target), [layer.output > 0 for layer in kinky]


def _check_parameter(
    model: Sequential, cost: Loss, data: tuple[np.ndarray, np.ndarray], name: str,
    param: np.ndarray, analytic: np.ndarray, entries: np.ndarray, h: float, floor: float,
    kinky: list[Any],
) -> ParameterCheck:
    flat, grad = param.reshape(-1), analytic.reshape(-1)  # views: edits reach the model
    worst, worst_error, worst_numeric, kinks = int(entries[0]), 0.0, float(grad[entries[0]]), 0
    for entry in entries:
        original = flat[entry]
        flat[entry] = original + h
        c_plus, on_plus = _cost(model, cost, *data, kinky)
        flat[entry] = original - h
        c_minus, on_minus = _cost(model, cost, *data, kinky)
        flat[entry] = original
        if any((p != m).any() for p, m in zip(on_plus, on_minus, strict=True)):
            kinks += 1  # a unit switched on/off between w−h and w+h: n is not a derivative
            continue
        numeric = (c_plus - c_minus) / (2 * h)
        a = float(grad[entry])
        error = abs(a - numeric) / max(abs(a), abs(numeric), floor)
        if not error <= worst_error:  # also takes a nan
            worst, worst_error, worst_numeric = int(entry), error, numeric
    return ParameterCheck(
        name, param.shape, len(entries), param.size, float(worst_error),
        tuple(int(i) for i in np.unravel_index(worst, param.shape)),
        float(grad[worst]), float(worst_numeric), kinks,
    )


def gradcheck(
    model: Sequential,
    X: ArrayLike,
    y: ArrayLike,
    loss: str | Loss = "quadratic",
    h: float = 1e-5,
    max_entries: int = 100,
    seed: int = 0,
) -> GradcheckResult:
    """Check ``model``'s backpropagated gradients on (X, y) against central differences.

    Returns a :class:`GradcheckResult` with, per parameter array, the maximum relative
    error over the checked entries. The model itself is not changed.
    """
    h = require_positive("h", h)
    max_entries = require_positive_int("max_entries", max_entries)
    cost = _get_loss(loss)
    work = model.copy(dtype="float64")
    X64 = work.check_input(X)
    if X64.shape[0] == 0 or not np.isfinite(X64).all():
        raise DataError("gradcheck needs a non-empty X with finite values")
    target = cost.prepare_target(y, (X64.shape[0], work.n_outputs), np.float64)
    output = work.forward(X64)
    value, dY = cost.cost_and_gradient(output, target)
    work.backward(dY)
    scale = max(abs(value), float(np.max(np.abs(output), initial=0.0)), 1e-300)
    floor = 1e8 * np.finfo(np.float64).eps * scale / h  # see the module docstring
    rng = np.random.default_rng(seed)
    kinky = [layer for layer in work.layers if _has_kink(getattr(layer, "activation", None))]
    checks = []
    for layer in work.dense_layers:
        for suffix, param, grad in (("W", layer.W, layer.grad_W), ("b", layer.b, layer.grad_b)):
            analytic = grad.copy()
            entries = _entries(param.size, analytic, max_entries, rng)
            checks.append(_check_parameter(
                work, cost, (X64, target), f"{layer.name}.{suffix}", param, analytic, entries,
                h, floor, kinky,
            ))
    has_kinks = bool(kinky)
    notes = []
    if model.dtype != np.float64:
        notes.append(f"checked on a float64 copy of the {model.dtype.name} model")
    skipped = sum(c.kinks for c in checks)
    if skipped:
        notes.append(
            f"{skipped} entries skipped: w ± h moved a relu-family unit across its kink, where "
            "the central difference is not a derivative"
        )
    if any(c.checked < c.total for c in checks):
        notes.append(f"large parameters checked on {max_entries} sampled entries (seed {seed})")
    return GradcheckResult(checks, h, cost.name, has_kinks, float(value), notes)

