"""The forward and backward passes of a model into buffers, as the fast step runs them.

The same rules as :mod:`gradsight.engine.layers`, computed with as few allocations and passes
over memory as NumPy allows. Each Dense or Activation layer of the model gets an *op* that
owns its work buffers (one set per batch size) and fills the layer's attributes that a
callback may read (``inputs``, ``output``, ``delta``, ``local_derivative``, ``grad_W``,
``grad_b``), so that what a Monitor sees does not depend on the path. Any other layer class
(a user's own, or a subclass of Dense or Activation) runs its own ``forward``/``backward``.

* Dense forward, as ``torch.addmm``: z ← b (each row), then z ← X·W + z in one BLAS product
  (β = 1), which adds b while the product's threads write z.
* An activation after a Dense layer works in place on z (nobody reads z again).
* sigmoid, tanh and relu have in-place kernels: f(z) into the output, and f′ read off the
  output into a scratch buffer. float32 sigmoid uses σ(z) = ½(1 + tanh(z/2)), computed in
  place: it cannot overflow and is a quarter faster than 1/(1 + e^(−z)); its error is
  absolute, within 1.2e-7 (the float32 spacing near 1) of the exact σ — immaterial for
  training, whose updates use a(1−a) ≤ ¼ to the same absolute precision. float64 uses the
  exact, overflow-free formula of :func:`gradsight.activations.sigmoid`.
* ∂C/∂b = 1ᵀ·δ sums the batch through BLAS, faster than ``np.sum(δ, axis=0)``.
* The first layer with parameters skips ∂C/∂X: the inputs are data.
* ``backward(..., gradients=False)`` stops at each Dense layer's δ: the fused update
  (:mod:`.update`) applies ``W ← W − η·aᵀδ`` as the product itself, and
  :meth:`FastPasses.fill_gradients` writes ∂C/∂W, ∂C/∂b later from the same a and δ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ... import activations
from ..layers import Activation, Dense, Layer
from . import blas

__all__ = ["FastPasses"]

Array = np.ndarray
Kernel = tuple[Callable[[Array, Array], None], Callable[[Array, Array], None]]
_MAX_BUFFER_SHAPES = 16


def _sigmoid_forward(z: Array, out: Array) -> None:
    if z.dtype == np.float32:
        np.multiply(z, 0.5, out=out)  # σ(z) = ½(1 + tanh(z/2)): four passes, no overflow
        np.tanh(out, out=out)
        out += 1.0
        out *= 0.5
    else:
        out[...] = activations.sigmoid(z)


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


#: in-place (forward, f′ from the output) kernels by activation name
KERNELS: dict[str, Kernel] = {
    "sigmoid": (_sigmoid_forward, _sigmoid_derivative),
    "tanh": (_tanh_forward, _tanh_derivative),
    "relu": (_relu_forward, _relu_derivative),
}


class _Buffers:
    """Work arrays by (tag, shape), made on first use; at most 16 shapes are kept."""

    def __init__(self) -> None:
        self.arrays: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def get(self, tag: str, shape: tuple[int, ...], dtype: np.dtype,
            fill: float | None = None) -> np.ndarray:
        key = (tag, shape)
        array = self.arrays.get(key)
        if array is None or array.dtype != dtype:
            if len(self.arrays) >= _MAX_BUFFER_SHAPES:
                self.arrays.clear()
            array = self.arrays[key] = np.empty(shape, dtype=dtype)
            if fill is not None:
                array.fill(fill)
        return array


class _DenseOp:
    """A Dense layer's passes into buffers (addmm forward, 1ᵀδ bias gradient)."""

    def __init__(self, layer: Dense, input_grad: bool) -> None:
        self.layer, self.input_grad = layer, input_grad
        self.buffers = _Buffers()
        self.addmm: Any = None  # the BLAS kernel of the last z ← X·W + z

    def forward(self, X: Array) -> Array:
        layer = self.layer
        layer.inputs = X
        Z = self.buffers.get("z", (X.shape[0], layer.n_out), layer.W.dtype)
        self.addmm = blas.reuse_product(self.addmm, Z, X, layer.W, transpose_left=False)
        if self.addmm is None:
            np.matmul(X, layer.W, out=Z)
            Z += layer.b
        else:
            np.copyto(Z, layer.b)
            self.addmm(1.0)
        return Z

    def backward(self, dZ: Array, gradients: bool) -> Array | None:
        layer = self.layer
        layer.delta = dZ
        if gradients:
            self.fill_gradients()
        if not self.input_grad:
            return None
        X = layer.inputs
        assert X is not None
        dX = self.buffers.get("dx", (X.shape[0], layer.n_in), layer.W.dtype)
        np.matmul(dZ, layer.W.T, out=dX)
        return dX

    def fill_gradients(self) -> None:
        """∂C/∂W = Xᵀδ and ∂C/∂b = 1ᵀδ from the X and δ of the last passes."""
        layer = self.layer
        X, delta = layer.inputs, layer.delta
        assert X is not None and delta is not None
        if layer.grad_W.shape != layer.W.shape or layer.grad_W.dtype != layer.W.dtype:
            layer.grad_W, layer.grad_b = np.zeros_like(layer.W), np.zeros_like(layer.b)
        np.matmul(X.T, delta, out=layer.grad_W)  # transposed view: BLAS reads it, no copy
        np.matmul(self.ones(X.shape[0]), delta, out=layer.grad_b)

    def ones(self, n: int) -> Array:
        """A vector of n ones (1ᵀ·δ is ∂C/∂b); do not write to it."""
        return self.buffers.get("ones", (n,), self.layer.W.dtype, fill=1.0)


class _ActivationOp:
    """An activation's passes: in-place kernels where there are some."""

    def __init__(self, layer: Activation, in_place: bool) -> None:
        self.layer, self.in_place = layer, in_place
        self.kernel = KERNELS.get(layer.activation.name)
        self.from_output = layer.activation.has_output_derivative
        self.buffers = _Buffers()

    def forward(self, z: Array) -> Array:
        layer = self.layer
        if self.kernel is not None:
            out = z if self.in_place else self.buffers.get("a", z.shape, z.dtype)
            self.kernel[0](z, out)
            layer.inputs = None  # f′ is read off the output (z may have been overwritten)
        else:
            out = np.asarray(layer.activation(z), dtype=z.dtype)
            layer.inputs = None if self.from_output else z
        layer.output, layer.local_derivative = out, None
        return out

    def backward(self, dA: Array, gradients: bool) -> Array:
        """δ = ∂C/∂a ⊙ f′, written over ``dA``."""
        layer = self.layer
        a = layer.output
        assert a is not None
        if self.kernel is not None:
            local = self.buffers.get("f'", a.shape, a.dtype)
            self.kernel[1](a, local)
        elif self.from_output:
            local = np.asarray(layer.activation.derivative_from_output(a), dtype=a.dtype)
        else:
            z: Any = layer.inputs  # kept by forward when f′ is not a function of a
            local = np.asarray(layer.activation.derivative(z), dtype=a.dtype)
        layer.local_derivative = local
        np.multiply(dA, local, out=dA)
        return dA


class _LayerOp:
    """Any other layer: its own forward and backward (a copy of ∂C/∂output goes in, since
    the buffers here may be overwritten)."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer

    def forward(self, X: Array) -> Array:
        return self.layer.forward(X)

    def backward(self, dY: Array, gradients: bool) -> Array:
        return self.layer.backward(dY)


class FastPasses:
    """The forward and backward passes of ``model`` into buffers (see the module doc).

    ``forward(X)`` returns a buffer overwritten by the next call with the same batch size.
    """

    def __init__(self, model: Any) -> None:
        first_param = next(i for i, layer in enumerate(model.layers) if layer.parameters())
        self.ops: list[Any] = []
        self.dense_ops: list[_DenseOp] = []
        for index, layer in enumerate(model.layers):
            if type(layer) is Dense:
                op: Any = _DenseOp(layer, input_grad=index != first_param)
                self.dense_ops.append(op)
            elif type(layer) is Activation:
                # after a Dense layer op, z is a buffer nobody reads again: overwrite it
                in_place = bool(self.ops) and isinstance(self.ops[-1], _DenseOp)
                op = _ActivationOp(layer, in_place)
            else:
                op = _LayerOp(layer)
            self.ops.append(op)
        self.first_param = first_param
        self.dense_by_layer = {id(op.layer): op for op in self.dense_ops}

    def forward(self, X: Array) -> Array:
        out = X
        for op in self.ops:
            out = op.forward(out)
        return out

    def backward(self, dY: Array, gradients: bool = True) -> None:
        """Backpropagation of ∂C/∂output (overwritten); ``gradients=False`` keeps only each
        Dense layer's δ."""
        grad: Any = dY
        for index in range(len(self.ops) - 1, self.first_param - 1, -1):
            grad = self.ops[index].backward(grad, gradients)

    def fill_gradients(self) -> None:
        """Write ∂C/∂W, ∂C/∂b of every Dense layer from its cached input and δ."""
        for op in self.dense_ops:
            op.fill_gradients()
