"""Layers: each keeps its forward rule and its backward rule side by side.

Notation of the articles and of Nielsen's book, for a batch of N samples (one per row):

    Dense       forward   z = a_prev·W + b                  (N × n_in)·(n_in × n_out)
                backward  ∂C/∂W = a_prevᵀ·δ,  ∂C/∂b = Σ_rows δ,  ∂C/∂a_prev = δ·Wᵀ
    Activation  forward   a = f(z)
                backward  δ = ∂C/∂z = ∂C/∂a ⊙ f′(z)

where δ = ∂C/∂z is the error of the layer. For sigmoid and tanh f′ is read off the cached
output a — σ′ = a(1−a), tanh′ = 1 − a² — exactly the shortcut the article on the sigmoid's
derivative explains: the forward pass already computed σ(z), so the backward pass needs no
exponential.

Each layer caches what its backward pass needs (``inputs``, ``output``) and what a reader
may want to look at afterwards (``delta``, ``local_derivative``, ``grad_W``, ``grad_b``).
``grad_W``/``grad_b`` are written in place (like PyTorch's ``.grad``): copy them to keep the
values of one step. The training loop's fast path (:mod:`gradsight.engine.fast`) computes
the same passes into buffers of its own and fills the same attributes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .. import activations as _activations
from ..errors import InvalidValueError, ShapeError, TrainingError, require_positive_int
from . import init as _init

__all__ = ["Layer", "Dense", "Activation", "as_dtype"]

Array = NDArray[np.floating]


def as_dtype(dtype: DTypeLike) -> np.dtype:
    """``np.float32`` or ``np.float64`` from a name or dtype; anything else is an error."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InvalidValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


class Layer:
    """Base class: ``forward(X) -> output``, ``backward(∂C/∂output) -> ∂C/∂input``."""

    name: str = "layer"

    def forward(self, X: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dY: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def parameters(self) -> list[Array]:
        """The trainable arrays (updated in place by an optimizer)."""
        return []

    def gradients(self) -> list[Array]:
        """∂C/∂(each parameter), same order as :meth:`parameters`."""
        return []

    def spec(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """A JSON-able description from which the layer can be rebuilt."""
        raise NotImplementedError

    def forget(self) -> None:
        """Drop what the last forward and backward passes cached."""
        for cache in ("inputs", "output", "delta", "local_derivative"):
            if hasattr(self, cache):
                setattr(self, cache, None)


class Dense(Layer):
    """Fully connected layer z = a_prev·W + b, with W of shape (n_in, n_out).

    ``init`` and ``bias_init`` name initialisers of :mod:`gradsight.engine.init`; ``seed`` is
    an int, a ``numpy.random.Generator`` or None (fresh entropy).

    >>> layer = Dense(2, 1, seed=0)
    >>> layer.W.shape, layer.b.shape, layer.forward(np.ones((3, 2))).shape
    ((2, 1), (1,), (3, 1))
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        init: str = "xavier_uniform",
        bias_init: str = "zeros",
        seed: int | np.random.Generator | None = None,
        dtype: DTypeLike = "float64",
    ) -> None:
        self.n_in = require_positive_int("n_in", n_in)
        self.n_out = require_positive_int("n_out", n_out)
        self.dtype = as_dtype(dtype)
        weight_init, bias_fn = _init.get(init), _init.get_bias(bias_init)
        self.init, self.bias_init = init, bias_init
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.W: Array = weight_init(self.n_in, self.n_out, rng, self.dtype)
        self.b: Array = bias_fn(self.n_out, rng, self.dtype)
        self.grad_W: Array = np.zeros_like(self.W)
        self.grad_b: Array = np.zeros_like(self.b)
        self.inputs: Array | None = None  # a_prev of the last forward pass
        self.delta: Array | None = None  # δ = ∂C/∂z of the last backward pass
        self.name = "dense"

    @classmethod
    def from_weights(
        cls, W: ArrayLike, b: ArrayLike, init: str = "xavier_uniform", bias_init: str = "zeros"
    ) -> Dense:
        """A Dense layer holding copies of ``W`` (n_in × n_out) and ``b`` (n_out,)."""
        W_array, b_array = np.array(W), np.array(b)
        dtype = as_dtype(W_array.dtype if W_array.dtype.kind == "f" else np.float64)
        if W_array.ndim != 2 or b_array.shape != (W_array.shape[1],):
            raise ShapeError(
                f"W must be 2-D (n_in, n_out) and b of shape (n_out,), got W {W_array.shape} "
                f"and b {b_array.shape}"
            )
        layer = cls.__new__(cls)
        layer.n_in, layer.n_out = W_array.shape
        layer.dtype, layer.init, layer.bias_init = dtype, init, bias_init
        layer.W, layer.b = W_array.astype(dtype), b_array.astype(dtype)
        layer.grad_W, layer.grad_b = np.zeros_like(layer.W), np.zeros_like(layer.b)
        layer.inputs, layer.delta, layer.name = None, None, "dense"
        return layer

    def forward(self, X: Array) -> Array:
        """z = X·W + b; caches X (needed for ∂C/∂W)."""
        self.inputs = X
        return X @ self.W + self.b

    def backward(self, dZ: Array) -> Array:
        """From δ = ∂C/∂z: fill ∂C/∂W = Xᵀδ and ∂C/∂b = Σ_rows δ; return ∂C/∂X = δ·Wᵀ."""
        X = self.inputs
        if X is None:
            raise TrainingError(f"{self.name}: backward called before forward")
        if dZ.shape != (X.shape[0], self.n_out):
            raise ShapeError(
                f"{self.name}: gradient of shape {dZ.shape} does not match output "
                f"({X.shape[0]}, {self.n_out})"
            )
        self.delta = dZ
        if self.grad_W.shape != self.W.shape or self.grad_W.dtype != self.W.dtype:
            self.grad_W, self.grad_b = np.zeros_like(self.W), np.zeros_like(self.b)
        np.matmul(X.T, dZ, out=self.grad_W)       # ∂C/∂W = Xᵀδ
        np.sum(dZ, axis=0, out=self.grad_b)       # ∂C/∂b = Σ_rows δ
        return dZ @ self.W.T                      # ∂C/∂X = δ·Wᵀ

    def parameters(self) -> list[Array]:
        return [self.W, self.b]

    def gradients(self) -> list[Array]:
        return [self.grad_W, self.grad_b]

    def spec(self) -> dict[str, Any]:
        return {
            "type": "dense", "n_in": self.n_in, "n_out": self.n_out,
            "init": self.init, "bias_init": self.bias_init,
        }

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, name={self.name!r}, dtype={self.dtype.name})"


class Activation(Layer):
    """Elementwise a = f(z) for an activation of :mod:`gradsight.activations`.

    ``Activation("sigmoid")``; ``.activation`` is the :class:`ActivationFunction`,
    ``.output`` the cached a, ``.inputs`` the cached z, ``.local_derivative`` the f′ the last
    backward pass used (None after a forward pass until backward runs).

    >>> layer = Activation("sigmoid")
    >>> a = layer.forward(np.zeros((1, 2)))
    >>> a.tolist(), layer.backward(np.ones((1, 2))).tolist()
    ([[0.5, 0.5]], [[0.25, 0.25]])
    """

    def __init__(self, name: str | _activations.ActivationFunction) -> None:
        self.activation = _activations.get(name)
        self.name = self.activation.base_name
        self.inputs: Array | None = None
        self.output: Array | None = None
        self.local_derivative: Array | None = None  # f′ of the current forward pass

    def forward(self, z: Array) -> Array:
        """a = f(z); caches z and a."""
        self.inputs = z
        self.output = np.asarray(self.activation(z), dtype=z.dtype)
        self.local_derivative = None
        return self.output

    def backward(self, dA: Array) -> Array:
        """δ = ∂C/∂z = ∂C/∂a ⊙ f′, with f′ read off the cached output where it can be
        (σ′ = a(1−a), tanh′ = 1 − a², relu′ = [a > 0]), else computed from z."""
        a = self.output
        if a is None:
            raise TrainingError(f"{self.name}: backward called before forward")
        if dA.shape != a.shape:
            raise ShapeError(f"{self.name}: gradient of shape {dA.shape} != output {a.shape}")
        if self.activation.has_output_derivative:
            local: Any = self.activation.derivative_from_output(a)
        else:
            local = self.activation.derivative(self.inputs)  # type: ignore[arg-type]
        self.local_derivative = np.asarray(local, dtype=a.dtype)
        return np.asarray(dA * self.local_derivative, dtype=a.dtype)

    def spec(self) -> dict[str, Any]:
        return {"type": "activation", "activation": self.activation.name}

    def __repr__(self) -> str:
        return f"Activation({self.activation.name!r}, name={self.name!r})"
