"""Weight initialisers: where the first forward pass starts, and why it matters.

A weight matrix W has shape (n_in, n_out): z = x·W + b sums n_in terms. If each wᵢⱼ has
variance v and the inputs have unit variance, Var(z) = n_in·v. The schemes below choose v so
that z neither explodes nor — the story of the article on the vanishing gradient — sinks
into the flat tails of a sigmoid, where σ′(z) = σ(z)(1−σ(z)) ≈ 0 and the unit stops learning.

    name              distribution                         variance
    normal            N(0, 1)                              1              (the naive scheme)
    scaled_normal     N(0, 1/n_in)                         1/n_in
    glorot_standard   U[−1/√n_in, 1/√n_in]                 1/(3·n_in)     (Glorot & Bengio eq. 1)
    xavier_uniform    U[−a, a], a = √(6/(n_in+n_out))      2/(n_in+n_out) (Glorot & Bengio eq. 16)
    xavier_normal     N(0, 2/(n_in+n_out))                 2/(n_in+n_out)
    he_normal         N(0, 2/n_in)                         2/n_in         (He et al. 2015, ReLU)
    he_uniform        U[−a, a], a = √(6/n_in)              2/n_in
    lecun_normal      N(0, s²) truncated at ±2s,           1/n_in         (LeCun 1998; as Keras)
                      s = √(1/n_in)/0.87962566103423978
    zeros             0                                    0              (warns: symmetry)

Bias initialisers: ``zeros`` (0) and ``normal`` (N(0, 1), as in Nielsen's network.py).

Every initialiser draws in float64 from the generator it is given and then casts, so a
float32 and a float64 network built from the same seed hold the same (rounded) numbers.

>>> import numpy as np
>>> W = get("he_normal")(1000, 50, np.random.default_rng(0), "float64")
>>> W.shape, round(float(W.var() * 1000 / 2), 1)
((1000, 50), 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ..errors import UnknownNameError

__all__ = ["get", "get_bias", "names", "bias_names", "variance"]

WeightInit = Callable[[int, int, np.random.Generator, DTypeLike], NDArray[np.floating]]
BiasInit = Callable[[int, np.random.Generator, DTypeLike], NDArray[np.floating]]

# std of a standard normal truncated at ±2: rescaling by it keeps the variance at s² (Keras).
_TRUNCATED_STD = 0.87962566103423978


def _uniform(limit: float, shape: tuple[int, ...], rng: np.random.Generator) -> NDArray:
    return rng.uniform(-limit, limit, size=shape)


def normal(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ ~ N(0, 1): the naive scheme; Var(z) = n_in, so sigmoid units start saturated."""
    return rng.standard_normal((n_in, n_out)).astype(dtype)


def scaled_normal(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ ~ N(0, 1/n_in): Nielsen's improved initialisation (chapter 3); Var(z) ≈ 1."""
    return (rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)).astype(dtype)


def glorot_standard(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ ~ U[−1/√n_in, 1/√n_in], variance 1/(3·n_in) (Glorot & Bengio 2010, eq. 1)."""
    return _uniform(1.0 / math.sqrt(n_in), (n_in, n_out), rng).astype(dtype)


def xavier_uniform(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ ~ U[−a, a] with a = √(6/(n_in+n_out)), variance 2/(n_in+n_out) (eq. 16)."""
    return _uniform(math.sqrt(6.0 / (n_in + n_out)), (n_in, n_out), rng).astype(dtype)


def xavier_normal(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ ~ N(0, 2/(n_in+n_out)): the normal version of eq. 16."""
    std = math.sqrt(2.0 / (n_in + n_out))
    return (rng.standard_normal((n_in, n_out)) * std).astype(dtype)


def he_normal(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ ~ N(0, 2/n_in): keeps Var(z) steady through ReLU layers, which zero half of z."""
    return (rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)).astype(dtype)


def he_uniform(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ ~ U[−a, a] with a = √(6/n_in), variance 2/n_in."""
    return _uniform(math.sqrt(6.0 / n_in), (n_in, n_out), rng).astype(dtype)


def lecun_normal(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ ~ N(0, s²) truncated to ±2s with s = √(1/n_in)/0.8796…, so Var(w) = 1/n_in.

    Draws outside ±2 standard deviations are redrawn (as Keras' ``lecun_normal``).
    """
    sample = rng.standard_normal((n_in, n_out))
    outside = np.abs(sample) > 2.0
    while outside.any():
        sample[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(sample) > 2.0
    return (sample * (math.sqrt(1.0 / n_in) / _TRUNCATED_STD)).astype(dtype)


def zeros(n_in: int, n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """wᵢⱼ = 0. Warns: every unit of a layer then computes the same z, gets the same δ and
    the same update, so the units stay identical forever (the symmetry problem)."""
    warnings.warn(
        "init='zeros' makes every unit of a layer identical (same z, same δ, same update): "
        "the symmetry is never broken; use xavier_uniform or he_normal",
        UserWarning,
        stacklevel=2,
    )
    return np.zeros((n_in, n_out), dtype=dtype)


_WEIGHTS: dict[str, WeightInit] = {
    "normal": normal,
    "scaled_normal": scaled_normal,
    "glorot_standard": glorot_standard,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "zeros": zeros,
}


def bias_zeros(n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """bⱼ = 0 (the usual choice: the weights already break the symmetry)."""
    return np.zeros(n_out, dtype=dtype)


def bias_normal(n_out: int, rng: np.random.Generator, dtype: DTypeLike) -> NDArray:
    """bⱼ ~ N(0, 1), as Nielsen's network.py."""
    return rng.standard_normal(n_out).astype(dtype)


_BIASES: dict[str, BiasInit] = {"zeros": bias_zeros, "normal": bias_normal}


def names() -> list[str]:
    """The weight initialiser names."""
    return list(_WEIGHTS)


def bias_names() -> list[str]:
    """The bias initialiser names."""
    return list(_BIASES)


def get(name: str) -> WeightInit:
    """The weight initialiser called ``name``: ``fn(n_in, n_out, rng, dtype) -> W``."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _WEIGHTS:
        raise UnknownNameError("initialiser", name, _WEIGHTS)
    return _WEIGHTS[key]


def get_bias(name: str) -> BiasInit:
    """The bias initialiser called ``name``: ``fn(n_out, rng, dtype) -> b``."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _BIASES:
        raise UnknownNameError("bias initialiser", name, _BIASES)
    return _BIASES[key]


def variance(name: str, n_in: int, n_out: int) -> float:
    """The variance of one weight under initialiser ``name`` (the formula in the table above).

    >>> variance("xavier_uniform", 100, 300)
    0.005
    """
    get(name)  # unknown names raise
    return {
        "normal": 1.0,
        "scaled_normal": 1.0 / n_in,
        "glorot_standard": 1.0 / (3.0 * n_in),
        "xavier_uniform": 2.0 / (n_in + n_out),
        "xavier_normal": 2.0 / (n_in + n_out),
        "he_normal": 2.0 / n_in,
        "he_uniform": 2.0 / n_in,
        "lecun_normal": 1.0 / n_in,
        "zeros": 0.0,
    }[name.strip().lower()]
