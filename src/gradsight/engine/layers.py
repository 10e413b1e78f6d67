"""Layers: each keeps its forward rule and its backward rule side by side.

Notation of the seeds and of Nielsen's book, for a batch of N samples (one per row):

    Dense       forward   z = a_prev·W + b                  (N × n_in)·(n_in × n_out)
                backward  ∂C/∂W = a_prevᵀ·δ,  ∂C/∂b = Σ_rows δ,  ∂C/∂a_prev = δ·Wᵀ
    Activation  forward   a = f(z)
                backward  δ = ∂C/∂z = ∂C/∂a ⊙ f′(z)

where δ = ∂C/∂z is the error of the layer. For sigmoid and tanh f′ is read off the cached
output a — σ′ = a(1−a), tanh′ = 1 − a² — exactly the shortcut seed 000 explains: the forward
pass already computed σ(z), so the backward pass needs no exponential.

Speed. ``forward(X, reuse=True)`` and ``backward(dY, reuse=True)`` write into buffers the
layer owns (one set per batch shape) and let an activation work in place on the output of
the Dense layer before it; the returned arrays are then overwritten by the next call with
the same shape. The training loop uses this; the default ``reuse=False`` returns fresh
arrays. Both paths compute the same numbers. ``grad_W``/``grad_b`` are always written in
place (like PyTorch's ``.grad``): copy them to keep the values of one step. The first Dense
layer of a model can skip ∂C/∂X (``input_grad=False``): the inputs are data.

sigmoid, tanh and relu have in-place kernels (below). float32 sigmoid uses the identity
σ(z) = ½(1 + tanh(z/2)), computed in place: it cannot overflow and is a quarter faster than
1/(1 + e^(−z)). Its error is absolute, within 1.2e-7 (the float32 spacing near 1) of the
exact σ: relative error a few ulp for σ ≥ ½, and growing as σ falls below ~1e-4 (σ(−20) ≈
2e-9 comes out as 0) — immaterial for training, whose updates use a(1−a) ≤ ¼ to the same
absolute precision. float64 uses the exact, overflow-free formula of
:func:`gradsight.activations.sigmoid`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .. import activations as _activations
from ..errors import InvalidValueError, ShapeError, TrainingError
from . import init as _init
from .fast import blas as _blas

__all__ = ["Layer", "Dense", "Activation", "as_dtype"]

Array = NDArray[np.floating]
_MAX_BUFFER_SHAPES = 16


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

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
        self._named = False  # True once a name was given explicitly

    def forward(self, X: Array, reuse: bool = False) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dY: Array, reuse: bool = False) -> Array | None:  # pragma: no cover
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

    def clear_buffers(self) -> None:
        """Drop the cached work arrays (they are re-created on demand)."""
        self._buffers.clear()

    def _buffer(
        self, tag: str, shape: tuple[int, ...], dtype: np.dtype, fill: float | None = None
    ) -> np.ndarray:
        key = (tag, shape)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.dtype != dtype:
            if len(self._buffers) >= _MAX_BUFFER_SHAPES:
                self._buffers.clear()
            buffer = self._buffers[key] = np.empty(shape, dtype=dtype)
            if fill is not None:
                buffer.fill(fill)
        return buffer

    def _out(self, tag: str, shape: tuple[int, ...], dtype: np.dtype, reuse: bool) -> np.ndarray:
        return self._buffer(tag, shape, dtype) if reuse else np.empty(shape, dtype=dtype)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Dense(Layer):
    """Fully connected layer z = a_prev·W + b, with W of shape (n_in, n_out).

    ``init`` and ``bias_init`` name initialisers of :mod:`gradsight.nn.init`; ``seed`` is an
    int, a ``numpy.random.Generator`` or None (fresh entropy).

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
        super().__init__()
        self.n_in, self.n_out = _positive_int("n_in", n_in), _positive_int("n_out", n_out)
        self.dtype = as_dtype(dtype)
        weight_init, bias_fn = _init.get(init), _init.get_bias(bias_init)
        self.init, self.bias_init = init, bias_init
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.W: Array = weight_init(self.n_in, self.n_out, rng, self.dtype)
        self.b: Array = bias_fn(self.n_out, rng, self.dtype)
        self.grad_W: Array = np.zeros_like(self.W)
        self.grad_b: Array = np.zeros_like(self.b)
        self.inputs: Array | None = None
        self.delta: Array | None = None  # δ = ∂C/∂z of the last backward call (not a copy)
        self.input_grad = True  # whether backward computes ∂C/∂a_prev
        self.name = "dense"
        self._addmm_kernel: Any = None  # the BLAS kernel of the last Z ← X·W + Z

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
        Layer.__init__(layer)
        layer.n_in, layer.n_out = W_array.shape
        layer.dtype, layer.init, layer.bias_init = dtype, init, bias_init
        layer.W, layer.b = W_array.astype(dtype), b_array.astype(dtype)
        layer.grad_W, layer.grad_b = np.zeros_like(layer.W), np.zeros_like(layer.b)
        layer.inputs, layer.delta, layer.input_grad, layer.name = None, None, True, "dense"
        layer._addmm_kernel = None
        return layer

    def forward(self, X: Array, reuse: bool = False) -> Array:
        """z = X·W + b; caches X (needed for ∂C/∂W).

        With ``reuse``, as ``torch.addmm``: z ← b (each row), then z ← X·W + z in one BLAS
        product (β = 1), which adds b while the product's threads write z, instead of in a
        separate pass over z afterwards."""
        self.inputs = X
        Z = self._out("z", (X.shape[0], self.n_out), self.W.dtype, reuse)
        kernel = self._addmm(X, Z) if reuse else None
        if kernel is None:
            np.matmul(X, self.W, out=Z)
            Z += self.b
        else:
            np.copyto(Z, self.b)
            kernel(1.0)
        return Z

    def _addmm(self, X: Array, Z: Array) -> Any:
        """The kernel Z ← X·W + Z for these arrays (cached; a new view of the batch only
        moves its pointer), or None where NumPy must compute the product."""
        self._addmm_kernel = _blas.reuse_product(self._addmm_kernel, Z, X, self.W,
                                                 transpose_left=False)
        return self._addmm_kernel

    def backward(
        self, dZ: Array, reuse: bool = False, input_grad: bool | None = None,
        gradients: bool = True,
    ) -> Array | None:
        """From δ = ∂C/∂z: fill ∂C/∂W = Xᵀδ and ∂C/∂b = Σ_rows δ; return δ·Wᵀ.

        Returns None when ``input_grad`` (default: the attribute of the same name) is False:
        the first layer's inputs are data and need no gradient. ``gradients=False`` only
        keeps δ (``self.delta``): an optimizer can then apply the update as the product
        itself (:meth:`gradsight.optim.SGD.step_products`), and :meth:`fill_gradients`
        writes ∂C/∂W, ∂C/∂b later from the same X and δ.
        """
        X = self.inputs
        if X is None:
            raise TrainingError(f"{self.name}: backward called before forward")
        if dZ.shape != (X.shape[0], self.n_out):
            raise ShapeError(
                f"{self.name}: gradient of shape {dZ.shape} does not match output "
                f"({X.shape[0]}, {self.n_out})"
            )
        self.delta = dZ
        if gradients:
            self.fill_gradients()
        if not (self.input_grad if input_grad is None else input_grad):
            return None
        dX = self._out("dx", (X.shape[0], self.n_in), self.W.dtype, reuse)
        np.matmul(dZ, self.W.T, out=dX)
        return dX

    def clear_buffers(self) -> None:
        super().clear_buffers()
        self._addmm_kernel = None

    def fill_gradients(self) -> None:
        """∂C/∂W = Xᵀδ and ∂C/∂b = 1ᵀδ from the X and δ of the last forward/backward pass."""
        X, delta = self.inputs, self.delta
        if X is None or delta is None:
            raise TrainingError(f"{self.name}: gradients asked for before backward")
        if self.grad_W.shape != self.W.shape or self.grad_W.dtype != self.W.dtype:
            self.grad_W, self.grad_b = np.zeros_like(self.W), np.zeros_like(self.b)
        np.matmul(X.T, delta, out=self.grad_W)  # transposed view: BLAS reads it without a copy
        # 1ᵀ·δ sums the batch through BLAS, faster than np.sum(δ, axis=0)
        np.matmul(self.ones(X.shape[0]), delta, out=self.grad_b)

    def ones(self, n: int) -> Array:
        """A vector of n ones (a buffer: 1ᵀ·δ is ∂C/∂b); do not write to it."""
        return self._buffer("ones", (n,), self.W.dtype, fill=1.0)

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


# ---- in-place kernels for the common activations -------------------------------------------
# forward(z, out): out = f(z) (out may be z);  derivative(a, out): out = f′ read off the output
# a. The backward pass is then δ = ∂C/∂a ⊙ f′ (one more pass). Other activations use
# gradsight.activations directly.
Kernel = tuple[Callable[[Array, Array], None], Callable[[Array, Array], None]]


def _sigmoid_forward(z: Array, out: Array) -> None:
    if z.dtype == np.float32:
        # σ(z) = ½(1 + tanh(z/2)): four in-place passes, no exponential that could overflow,
        # and NumPy's tanh is cheaper than exp followed by a division
        np.multiply(z, 0.5, out=out)
        np.tanh(out, out=out)
        out += 1.0
        out *= 0.5
    else:
        out[...] = _activations.sigmoid(z)


def _sigmoid_derivative(a: Array, out: Array) -> None:
    np.subtract(1.0, a, out=out)  # σ′ = a(1−a)
    out *= a


def _tanh_forward(z: Array, out: Array) -> None:
    np.tanh(z, out=out)


def _tanh_derivative(a: Array, out: Array) -> None:
    np.multiply(a, a, out=out)  # tanh′ = 1 − a²
    np.subtract(1.0, out, out=out)


def _relu_forward(z: Array, out: Array) -> None:
    np.maximum(z, 0.0, out=out)


def _relu_derivative(a: Array, out: Array) -> None:
    np.greater(a, 0.0, out=out)  # relu′ = [z > 0] = [a > 0]  (0 at the kink, as PyTorch)


_KERNELS: dict[str, Kernel] = {
    "sigmoid": (_sigmoid_forward, _sigmoid_derivative),
    "tanh": (_tanh_forward, _tanh_derivative),
    "relu": (_relu_forward, _relu_derivative),
}


class Activation(Layer):
    """Elementwise a = f(z) for an activation of :mod:`gradsight.activations`.

    ``Activation("sigmoid")``; ``.activation`` is the :class:`ActivationFunction`,
    ``.output`` the cached a, ``.inputs`` the cached z (None when f′ is read off a),
    ``.local_derivative`` the f′ the last backward pass used — None after a forward pass
    until backward runs (a buffer when ``reuse``: copy it to keep it).

    >>> layer = Activation("sigmoid")
    >>> a = layer.forward(np.zeros((1, 2)))
    >>> a.tolist(), layer.backward(np.ones((1, 2))).tolist()
    ([[0.5, 0.5]], [[0.25, 0.25]])
    """

    def __init__(self, name: str | _activations.ActivationFunction) -> None:
        super().__init__()
        self.activation = _activations.get(name)
        self.name = self.activation.base_name
        self.inputs: Array | None = None
        self.output: Array | None = None
        self.local_derivative: Array | None = None  # f′ of the current forward pass
        self.in_place = False  # set by Sequential when z is a buffer nobody else needs
        self._kernel = _KERNELS.get(self.activation.name)
        self._from_output = self.activation.has_output_derivative

    def forward(self, z: Array, reuse: bool = False) -> Array:
        """a = f(z); caches a (and z when f′ cannot be read off a)."""
        if self._kernel is not None:
            out = z if (reuse and self.in_place) else self._out("a", z.shape, z.dtype, reuse)
            self._kernel[0](z, out)
            self.inputs = None
        else:
            out = np.asarray(self.activation(z), dtype=z.dtype)
            self.inputs = None if self._from_output else z
        self.output, self.local_derivative = out, None
        return out

    def backward(self, dA: Array, reuse: bool = False) -> Array:
        """δ = ∂C/∂z = ∂C/∂a ⊙ f′, with f′ from the cached output where possible.

        With ``reuse=True`` the result is written over ``dA``.
        """
        a = self.output
        if a is None:
            raise TrainingError(f"{self.name}: backward called before forward")
        if dA.shape != a.shape:
            raise ShapeError(f"{self.name}: gradient of shape {dA.shape} != output {a.shape}")
        if self._kernel is not None:
            out = dA if reuse else np.empty_like(a)
            scratch = self._out("scratch", a.shape, a.dtype, reuse)
            self._kernel[1](a, scratch)  # f′ into scratch (kept: local_derivative)
            np.multiply(dA, scratch, out=out)  # δ = ∂C/∂a ⊙ f′
            self.local_derivative = scratch
            return out
        if self._from_output:
            local: Any = self.activation.derivative_from_output(a)
        else:
            local = self.activation.derivative(self.inputs)  # type: ignore[arg-type]
        self.local_derivative = np.asarray(local)
        if reuse:
            dA *= local
            return dA
        return np.asarray(dA * local, dtype=a.dtype)

    def spec(self) -> dict[str, Any]:
        return {"type": "activation", "activation": self.activation.name}

    def __repr__(self) -> str:
        return f"Activation({self.activation.name!r}, name={self.name!r})"
