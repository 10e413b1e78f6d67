"""Activation functions, each with its derivative written beside it.

Every activation keeps its forward rule and its backward rule side by side (as micrograd
does), and — where the derivative is a function of the output alone — a third rule that
reads the derivative off the output ``a`` the forward pass already holds. That is why the
engine uses σ′ = σ(1−σ) rather than differentiating ``1/(1+e^(−z))`` again (the article on
the sigmoid's derivative explains it):

    sigmoid     σ(z) = 1/(1+e^(−z))          σ′ = σ(1−σ)          from output: a(1−a)
    tanh        tanh(z)                       1 − tanh²(z)         from output: 1 − a²
    relu        max(z, 0)                     [z > 0]              from output: [a > 0]
    leaky_relu  z if z > 0 else s·z           1 if z > 0 else s    from output: 1 if a > 0 else s
    elu         z if z > 0 else α(e^z − 1)    1 if z > 0 else αe^z from output: 1 if a > 0 else a+α
    softplus    log(1 + e^z)                  σ(z)                 from output: 1 − e^(−a)
    silu        z·σ(z)                        σ(z)(1 + z(1−σ(z)))  not a function of a (None)
    gelu        z·Φ(z)                        Φ(z) + z·φ(z)        not a function of a (None)
    linear      z                             1                    from output: 1

At a kink the derivative follows PyTorch: relu′(0) = 0, leaky_relu′(0) = s, elu′(0) = α.
``derivative_from_output`` returns ``None`` for silu and gelu, whose output does not
determine the input (they are not monotonic); ``has_output_derivative`` tells in advance.

>>> act = get("sigmoid")
>>> float(act(0.0)), float(act.derivative(0.0)), float(act.derivative_from_output(0.5))
(0.5, 0.25, 0.25)
>>> get("leaky_relu:0.2").name
'leaky_relu:0.2'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InvalidValueError, UnknownNameError

Array = NDArray[np.floating]
Rule = Callable[[Array], Array]

__all__ = ["ActivationFunction", "get", "names", "sigmoid", "ALL"]


def _as_float(z: ArrayLike) -> Array:
    """Keep float32/float64 as given; anything else becomes float64."""
    array = np.asarray(z)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    return array


# ---- sigmoid ------------------------------------------------------------------------------
# Written with e = exp(−|z|) ≤ 1 so no exponential overflows: for z ≥ 0, σ = 1/(1+e); for
# z < 0, σ = e/(1+e). σ(±1e4) is exactly 1 and 0 without a warning in float32 and float64.
def sigmoid(z: ArrayLike) -> Array:
    """σ(z) = 1/(1+e^(−z)), numerically stable.

    >>> float(sigmoid(-1e4)), float(sigmoid(1e4))
    (0.0, 1.0)
    """
    z = _as_float(z)
    e = np.exp(-np.abs(z))
    r = 1.0 / (1.0 + e)
    return np.where(z >= 0, r, e * r)


def _sigmoid_derivative(z: Array) -> Array:
    # σ′(z) = e/(1+e)² with e = exp(−|z|): symmetric and exact in both tails, where the
    # product σ(1−σ) would lose the tiny factor (1−σ) to round-off.
    e = np.exp(-np.abs(z))
    r = 1.0 / (1.0 + e)
    return e * r * r


def _sigmoid_from_output(a: Array) -> Array:
    return a * (1.0 - a)


# ---- tanh ---------------------------------------------------------------------------------
def _tanh_derivative(z: Array) -> Array:
    t = np.tanh(z)
    return 1.0 - t * t


def _tanh_from_output(a: Array) -> Array:
    return 1.0 - a * a


# ---- relu family --------------------------------------------------------------------------
def _relu(z: Array) -> Array:
    return np.maximum(z, 0.0)


def _relu_derivative(z: Array) -> Array:
    return (z > 0).astype(z.dtype)


def _leaky(slope: float) -> tuple[Rule, Rule, Rule]:
    def value(z: Array) -> Array:
        return np.where(z > 0, z, z * slope)

    def derivative(z: Array) -> Array:
        return np.where(z > 0, 1.0, slope).astype(z.dtype)

    return value, derivative, derivative  # sign(a) = sign(z) when slope > 0


def _elu(alpha: float) -> tuple[Rule, Rule, Rule]:
    def value(z: Array) -> Array:
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))

    def derivative(z: Array) -> Array:
        return np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0))).astype(z.dtype)

    def from_output(a: Array) -> Array:
        return np.where(a > 0, 1.0, a + alpha).astype(a.dtype)

    return value, derivative, from_output


# ---- smooth rectifiers ----------------------------------------------------------------------
def _softplus(z: Array) -> Array:
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _softplus_from_output(a: Array) -> Array:
    return -np.expm1(-a)  # σ(z) = 1 − e^(−softplus(z))


def _silu(z: Array) -> Array:
    return z * sigmoid(z)


def _silu_derivative(z: Array) -> Array:
    s = sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _erf(x: Array) -> Array:
    from scipy.special import erf  # scipy comes with scikit-learn

    return np.asarray(erf(x), dtype=x.dtype)


def _gelu(z: Array) -> Array:
    return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))


def _gelu_derivative(z: Array) -> Array:
    cdf = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return cdf + z * pdf


def _identity(z: Array) -> Array:
    return z


def _ones(z: Array) -> Array:
    return np.ones_like(z)


@dataclass(frozen=True)
class ActivationFunction:
    """An activation: value, derivative and (where it exists) derivative from the output.

    Attributes
    ----------
    name : the registry name, including a parameter if any (``"leaky_relu:0.2"``).
    output_range : (low, high) of a = f(z); ``±inf`` where unbounded.
    max_derivative : (value, where) — the largest f′(z) and the z where it is reached;
        ``where`` is ``inf`` when no single z is the place: f′ equals the maximum on all of
        z > 0 (relu, leaky_relu, elu with α ≤ 1), everywhere (linear), or only approaches it
        as z → ∞ (softplus). :attr:`max_derivative_where` says which, in words.
    saturating : True when f′(z) → 0 on *both* sides (sigmoid, tanh): such units stop
        learning when |z| is large — the cause of the vanishing gradient (the article on it).
    relu_family : True for units that are "off" for z ≤ 0 (relu, leaky_relu, elu); a unit
        off on every sample is what the diagnostics call *dead*.
    """

    name: str
    value_rule: Rule = field(repr=False)
    derivative_rule: Rule = field(repr=False)
    output_rule: Rule | None = field(repr=False)
    output_range: tuple[float, float]
    max_derivative: tuple[float, float]
    saturating: bool
    relu_family: bool = False
    formula: str = ""
    derivative_formula: str = ""

    def __call__(self, z: ArrayLike) -> Array:
        """a = f(z), elementwise; float32 stays float32."""
        return self.value_rule(_as_float(z))

    def derivative(self, z: ArrayLike) -> Array:
        """f′(z), elementwise."""
        return self.derivative_rule(_as_float(z))

    @property
    def max_derivative_where(self) -> str:
        """Where f′ reaches :attr:`max_derivative`, in words (``"at z = 0"``).

        >>> get("relu").max_derivative_where, get("softplus").max_derivative_where
        ('for every z > 0', 'as z → ∞ (never reached)')
        """
        where = self.max_derivative[1]
        if math.isfinite(where):
            return f"at z = {where:.6g}"
        if self.base_name == "linear":
            return "for every z"
        return "for every z > 0" if self.relu_family else "as z → ∞ (never reached)"

    @property
    def has_output_derivative(self) -> bool:
        """Whether f′ can be computed from the output a = f(z) alone."""
        return self.output_rule is not None

    def derivative_from_output(self, a: ArrayLike) -> Array | None:
        """f′ as a function of the output a = f(z) (sigmoid: a(1−a)); None where impossible."""
        if self.output_rule is None:
            return None
        return self.output_rule(_as_float(a))

    @property
    def base_name(self) -> str:
        """The name without its parameter (``"leaky_relu"`` for ``"leaky_relu:0.2"``)."""
        return self.name.split(":", 1)[0]


INF = math.inf


def _make_leaky(slope: float) -> ActivationFunction:
    if not (math.isfinite(slope) and 0 <= slope < 1):
        raise InvalidValueError(f"leaky_relu slope must be in [0, 1), got {slope!r}")
    value, derivative, from_output = _leaky(slope)
    name = "leaky_relu" if slope == 0.01 else f"leaky_relu:{slope:g}"
    return ActivationFunction(
        name, value, derivative, from_output, (-INF, INF), (1.0, INF), False, True,
        f"z if z > 0 else {slope:g}·z", f"1 if z > 0 else {slope:g}",
    )


def _coefficient(alpha: float) -> str:
    return "" if alpha == 1.0 else f"{alpha:g}·"


def _make_elu(alpha: float) -> ActivationFunction:
    if not (math.isfinite(alpha) and alpha > 0):
        raise InvalidValueError(f"elu alpha must be a finite number > 0, got {alpha!r}")
    value, derivative, from_output = _elu(alpha)
    name = "elu" if alpha == 1.0 else f"elu:{alpha:g}"
    peak = (1.0, INF) if alpha <= 1 else (alpha, 0.0)
    return ActivationFunction(
        name, value, derivative, from_output, (-alpha, INF), peak, False, True,
        f"z if z > 0 else {_coefficient(alpha)}(e^z − 1)",
        f"1 if z > 0 else {_coefficient(alpha)}e^z",
    )


# The maxima of silu′ and gelu′ are the roots of their second derivatives; the tests
# recompute them numerically.
_SILU_PEAK = (1.09983932012887, 2.39935728051547)
_GELU_PEAK = (1.12890414518515, 1.4142135623730951)

ALL: dict[str, ActivationFunction] = {
    act.name: act
    for act in (
        ActivationFunction(
            "sigmoid", sigmoid, _sigmoid_derivative, _sigmoid_from_output, (0.0, 1.0),
            (0.25, 0.0), True, False, "1/(1 + e^(−z))", "σ(z)(1 − σ(z))",
        ),
        ActivationFunction(
            "tanh", np.tanh, _tanh_derivative, _tanh_from_output, (-1.0, 1.0), (1.0, 0.0),
            True, False, "(e^z − e^(−z))/(e^z + e^(−z))", "1 − tanh²(z)",
        ),
        ActivationFunction(
            "relu", _relu, _relu_derivative, _relu_derivative, (0.0, INF), (1.0, INF),
            False, True, "max(z, 0)", "1 if z > 0 else 0",
        ),
        _make_leaky(0.01),
        _make_elu(1.0),
        ActivationFunction(
            "softplus", _softplus, sigmoid, _softplus_from_output, (0.0, INF), (1.0, INF),
            False, False, "log(1 + e^z)", "σ(z)",
        ),
        ActivationFunction(
            "silu", _silu, _silu_derivative, None, (-0.2784645427610738, INF), _SILU_PEAK,
            False, False, "z·σ(z)", "σ(z)(1 + z(1 − σ(z)))",
        ),
        ActivationFunction(
            "gelu", _gelu, _gelu_derivative, None, (-0.16997120747990366, INF), _GELU_PEAK,
            False, False, "z·Φ(z)", "Φ(z) + z·φ(z)",
        ),
        ActivationFunction(
            "linear", _identity, _ones, _ones, (-INF, INF), (1.0, INF), False, False,
            "z", "1",
        ),
    )
}

_PARAMETRISED: dict[str, Callable[[float], ActivationFunction]] = {
    "leaky_relu": _make_leaky,
    "elu": _make_elu,
}


def names() -> list[str]:
    """The known activation names (parametrised ones also accept ``name:value``)."""
    return list(ALL)


def get(name: str | ActivationFunction) -> ActivationFunction:
    """Look an activation up by name: ``"sigmoid"``, ``"leaky_relu"``, ``"leaky_relu:0.2"``.

    Unknown names raise :class:`~gradsight.errors.UnknownNameError` listing the known ones.

    >>> get("tanh").output_range
    (-1.0, 1.0)
    """
    if isinstance(name, ActivationFunction):
        return name
    if not isinstance(name, str):
        raise UnknownNameError("activation", name, names())
    key = name.strip().lower()
    if key in ALL:
        return ALL[key]
    base, _, parameter = key.partition(":")
    if base in _PARAMETRISED and parameter:
        try:
            number = float(parameter)
        except ValueError:
            raise InvalidValueError(
                f"{base} parameter must be a number, got {parameter!r} in {name!r}"
            ) from None
        return _PARAMETRISED[base](number)
    raise UnknownNameError("activation", name, [*names(), "leaky_relu:<slope>", "elu:<alpha>"])
