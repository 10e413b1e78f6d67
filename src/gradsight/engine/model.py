"""Sequential models and the ``mlp("64-30-30-10")`` shortcut.

Forward propagation runs the layers in order, a⁰ = X, aˡ = layerˡ(aˡ⁻¹); backpropagation runs
them in reverse, each turning ∂C/∂(its output) into ∂C/∂(its input) by the chain rule and
filling its parameter gradients on the way. Nothing else happens here: the mathematics
lives in :mod:`gradsight.engine.layers` and :mod:`gradsight.engine.losses`.

>>> model = mlp("2-3-1", activation="tanh", output_activation="sigmoid", seed=0)
>>> [layer.name for layer in model.layers]
['dense0', 'tanh0', 'dense1', 'sigmoid0']
>>> model.predict(np.zeros((4, 2))).shape
(4, 1)
"""

from __future__ import annotations

import copy
import html
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from ..errors import DataError, InvalidValueError, ShapeError
from .layers import Activation, Dense, Layer, as_dtype

__all__ = ["Sequential", "mlp", "parse_sizes"]

Array = NDArray[np.floating]
SPEC_FORMAT = "gradsight.Sequential"
SPEC_VERSION = 1


class Sequential:
    """Layers applied one after the other.

    ``forward(X)`` caches what ``backward`` needs; ``backward(∂C/∂output)`` fills every
    Dense layer's ``grad_W``/``grad_b`` and returns ∂C/∂X. ``parameters()`` and
    ``gradients()`` list the arrays in the same order (W, b of dense0, W, b of dense1, ...),
    which is the order an optimizer keeps its state in.
    """

    def __init__(self, layers: Iterable[Layer]) -> None:
        self.layers: list[Layer] = list(layers)
        if not self.layers or not all(isinstance(layer, Layer) for layer in self.layers):
            raise InvalidValueError("Sequential needs a non-empty list of gradsight.nn layers")
        self._dense = dense = [layer for layer in self.layers if isinstance(layer, Dense)]
        if not dense:
            raise InvalidValueError("Sequential needs at least one Dense layer")
        for before, after in zip(dense, dense[1:], strict=False):
            if before.n_out != after.n_in:
                raise ShapeError(
                    f"layer sizes do not chain: a Dense layer with {before.n_out} outputs is "
                    f"followed by one with {after.n_in} inputs"
                )
        if len({layer.dtype for layer in dense}) > 1:
            raise InvalidValueError("all Dense layers of a model must have the same dtype")
        counters: dict[str, int] = {}
        for layer in self.layers:
            if isinstance(layer, Dense):
                base = "dense"
            elif isinstance(layer, Activation):
                base = layer.activation.base_name
            else:
                base = layer.name.rstrip("0123456789")
            layer.name = f"{base}{counters.get(base, 0)}"
            counters[base] = counters.get(base, 0) + 1
        self.metadata: dict[str, Any] = {}  # free-form; saved and loaded with the model

    # -- structure ----------------------------------------------------------------------
    @property
    def dense_layers(self) -> list[Dense]:
        """The Dense layers, in forward order (``layers`` is fixed once the model is built)."""
        return list(self._dense)

    @property
    def dtype(self) -> np.dtype:
        """float64 (default) or float32."""
        return self._dense[0].dtype

    @property
    def n_inputs(self) -> int:
        """Number of input features."""
        return self.dense_layers[0].n_in

    @property
    def n_outputs(self) -> int:
        """Number of outputs K."""
        return self.dense_layers[-1].n_out

    @property
    def sizes(self) -> list[int]:
        """Layer widths, input first: ``[784, 256, 10]``."""
        return [self.n_inputs, *(layer.n_out for layer in self.dense_layers)]

    @property
    def n_parameters(self) -> int:
        """Total number of weights and biases."""
        return sum(p.size for p in self.parameters())

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able description from which :meth:`from_spec` rebuilds the architecture."""
        return {
            "format": SPEC_FORMAT, "version": SPEC_VERSION, "dtype": self.dtype.name,
            "layers": [layer.spec() for layer in self.layers],
        }

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], weights: Sequence[ArrayLike] | None = None
    ) -> Sequential:
        """Rebuild a model from :attr:`spec`; ``weights`` (W, b per Dense layer) if given,
        else zeros — no initialiser runs (so no randomness and no warnings)."""
        if spec.get("format") != SPEC_FORMAT or spec.get("version") != SPEC_VERSION:
            raise DataError(
                f"not a gradsight model spec (format {spec.get('format')!r}, version "
                f"{spec.get('version')!r}; expected {SPEC_FORMAT!r} version {SPEC_VERSION})"
            )
        dtype = as_dtype(spec.get("dtype", "float64"))
        weights = list(weights) if weights is not None else None
        layers: list[Layer] = []
        for entry in spec.get("layers", []):
            if entry.get("type") == "dense":
                shape = (int(entry["n_in"]), int(entry["n_out"]))
                if weights is not None:
                    if len(weights) < 2:
                        raise DataError("the model file has fewer weight arrays than layers")
                    W, b = np.asarray(weights.pop(0)), np.asarray(weights.pop(0))
                    if W.shape != shape or b.shape != shape[1:]:
                        raise DataError(
                            f"weights of shape {W.shape} and {b.shape} do not fit a Dense "
                            f"layer {shape[0]}→{shape[1]}"
                        )
                else:
                    W, b = np.zeros(shape), np.zeros(shape[1])
                layers.append(Dense.from_weights(
                    W.astype(dtype), b.astype(dtype), entry.get("init", "xavier_uniform"),
                    entry.get("bias_init", "zeros"),
                ))
            elif entry.get("type") == "activation":
                layers.append(Activation(entry["activation"]))
            else:
                raise DataError(f"unknown layer type {entry.get('type')!r} in the model spec")
        if weights:
            raise DataError(f"the model file has {len(weights)} weight arrays too many")
        return cls(layers)

    # -- computation -----------------------------------------------------------------------
    def check_input(self, X: ArrayLike, name: str = "X") -> Array:
        """``X`` as a (N, n_inputs) array of the model's dtype, or a clear error."""
        array = np.asarray(X)
        if array.dtype.kind not in "biuf":
            raise DataError(f"{name} must be numeric, got an array of dtype {array.dtype}")
        if array.ndim != 2 or array.shape[1] != self.n_inputs:
            raise ShapeError(
                f"{name} has shape {array.shape}; the model expects (N, {self.n_inputs}) — "
                "one sample per row"
            )
        return np.asarray(array, dtype=self.dtype)

    def forward(self, X: ArrayLike) -> Array:
        """Forward propagation: a⁰ = X, aˡ = layerˡ(aˡ⁻¹); the output of the last layer.
        Each layer caches what its backward pass needs."""
        a = self.check_input(X)
        for layer in self.layers:
            a = layer.forward(a)
        return a

    def backward(self, dY: ArrayLike) -> Array:
        """Backpropagation: from ∂C/∂output, each layer in reverse order turns ∂C/∂(its
        output) into ∂C/∂(its input) by the chain rule — an activation multiplies by f′(z),
        a Dense layer fills ∂C/∂W = aᵀδ, ∂C/∂b = Σ δ and passes on δ·Wᵀ. Returns ∂C/∂X."""
        grad = np.asarray(dY, dtype=self.dtype)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def predict(self, X: ArrayLike) -> Array:
        """The model's output for ``X`` (raw: logits when the loss takes logits)."""
        return self.forward(X)

    __call__ = predict

    def parameters(self) -> list[Array]:
        """[W, b] of each Dense layer, in forward order (the arrays themselves)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self) -> list[Array]:
        """[∂C/∂W, ∂C/∂b] of each Dense layer, same order as :meth:`parameters`."""
        return [g for layer in self.layers for g in layer.gradients()]

    def get_weights(self) -> list[Array]:
        """Copies of the parameters."""
        return [p.copy() for p in self.parameters()]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Copy ``weights`` (as from :meth:`get_weights`) into the parameters, in place."""
        params = self.parameters()
        if len(weights) != len(params):
            raise ShapeError(f"expected {len(params)} weight arrays, got {len(weights)}")
        for p, w in zip(params, weights, strict=True):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ShapeError(f"weight array of shape {w.shape} does not fit {p.shape}")
            np.copyto(p, w, casting="same_kind")

    def copy(self, dtype: DTypeLike | None = None) -> Sequential:
        """An independent copy (optionally converted to ``dtype``), same layers and names."""
        clone = copy.deepcopy(self)  # deepcopy keeps custom layer classes
        clone.forget()
        if dtype is not None:
            target = as_dtype(dtype)
            for layer in clone.dense_layers:
                layer.dtype = target
                layer.W, layer.b = layer.W.astype(target), layer.b.astype(target)
                layer.grad_W, layer.grad_b = np.zeros_like(layer.W), np.zeros_like(layer.b)
        return clone

    def forget(self) -> None:
        """Drop what the last forward and backward passes cached in every layer."""
        for layer in self.layers:
            layer.forget()

    clear_buffers = forget  # the name it had when the layers kept work buffers

    # -- display ---------------------------------------------------------------------------
    def _rows(self) -> list[tuple[str, str, str, int]]:
        rows, width = [], self.n_inputs
        for layer in self.layers:
            if isinstance(layer, Dense):
                kind, width = f"Dense {layer.n_in}→{layer.n_out} ({layer.init})", layer.n_out
            elif isinstance(layer, Activation):
                kind = f"{layer.activation.name} (activation)"
            else:
                kind = type(layer).__name__
            count = sum(p.size for p in layer.parameters())
            rows.append((layer.name, kind, f"(N, {width})", count))
        return rows

    def summary(self) -> str:
        """A text table: layer name, kind, output shape, number of parameters."""
        lines = [f"{'layer':<14}{'kind':<34}{'output':<12}parameters"]
        for name, kind, shape, count in self._rows():
            lines.append(f"{name:<14}{kind:<34}{shape:<12}{count}")
        lines.append(f"total parameters: {self.n_parameters} ({self.dtype.name})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{html.escape(k)}</td><td>{html.escape(s)}</td>"
            f"<td style='text-align:right'>{c}</td></tr>"
            for n, k, s, c in self._rows()
        )
        return (
            "<table><thead><tr><th>layer</th><th>kind</th><th>output</th><th>parameters</th>"
            f"</tr></thead><tbody>{cells}</tbody><tfoot><tr><td colspan='4'>total parameters: "
            f"{self.n_parameters} ({self.dtype.name})</td></tr></tfoot></table>"
        )

    def __repr__(self) -> str:
        parts = [layer.name for layer in self.layers]
        sizes = "-".join(str(s) for s in self.sizes)
        return f"Sequential({sizes}: {', '.join(parts)}; {self.dtype.name})"


def parse_sizes(spec: str | Sequence[int]) -> list[int]:
    """``"64-30-10"`` (or ``[64, 30, 10]``) → ``[64, 30, 10]``; at least two positive sizes.

    >>> parse_sizes("784-256-10")
    [784, 256, 10]
    """
    parts = spec.replace(",", "-").split("-") if isinstance(spec, str) else list(spec)
    sizes = []
    for part in parts:
        try:
            size = int(str(part).strip())
        except ValueError:
            size = 0
        if size < 1 or str(part).strip() != str(size):
            raise InvalidValueError(
                f"layer size {str(part).strip()!r} in {spec!r} is not a positive integer; "
                "write sizes like '64-30-10'"
            )
        sizes.append(size)
    if len(sizes) < 2:
        raise InvalidValueError(f"an mlp spec needs at least two sizes (in-out), got {spec!r}")
    return sizes


def mlp(
    spec: str | Sequence[int],
    activation: str = "sigmoid",
    output_activation: str | None = None,
    init: str = "xavier_uniform",
    bias_init: str = "zeros",
    dtype: DTypeLike = "float64",
    seed: int | np.random.Generator | None = None,
) -> Sequential:
    """A multilayer perceptron from a size spec: ``mlp("64-30-30-10")``.

    Hidden layers use ``activation``; the output layer uses ``output_activation`` (None: the
    raw z, as the logits ``cross_entropy`` and ``bce_with_logits`` expect). The layers draw
    their weights in order from one generator seeded with ``seed``.

    >>> mlp("2-1", output_activation="sigmoid", seed=0)
    Sequential(2-1: dense0, sigmoid0; float64)
    """
    sizes = parse_sizes(spec)
    for name in (activation, output_activation):
        if name is not None:
            Activation(name)  # an unknown name fails here, even if no layer would use it
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    layers: list[Layer] = []
    for index, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(Dense(n_in, n_out, init, bias_init, rng, dtype))
        last = index == len(sizes) - 2
        name = output_activation if last else activation
        if name is not None:
            layers.append(Activation(name))
    return Sequential(layers)
