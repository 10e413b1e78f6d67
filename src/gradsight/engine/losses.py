"""Costs, each pairing its value C with its gradient ∂C/∂ŷ (Nielsen's ``fn`` and ``delta``).

For a batch of N samples, output ŷ (or logits z) of shape (N, K):

    quadratic        C = 1/(2N) Σₙ ‖ŷₙ − yₙ‖²                       ∂C/∂ŷ = (ŷ − y)/N
                     (the articles' cost; PyTorch's MSELoss would divide by N·K and drop the ½)
    bce_with_logits  C = 1/(N·K) Σ [max(z,0) − z·y + log(1 + e^(−|z|))]
                                                                     ∂C/∂z = (σ(z) − y)/(N·K)
                     (= PyTorch's BCEWithLogitsLoss: σ and the log fused, so no log(0))
    cross_entropy    C = 1/N Σₙ [log Σₖ e^(zₙₖ) − zₙ,yₙ]
                                                        ∂C/∂z = (softmax(z) − onehot(y))/N
                     (= PyTorch's CrossEntropyLoss on logits; log-softmax computed after
                     subtracting the row maximum, so e^z never overflows)

Target shapes (``prepare_target`` checks them and says what is wrong):

* quadratic, bce_with_logits: y of shape (N, K) as is; or 1-D y of length N, taken as a
  column when K = 1 and as integer class labels (one-hot encoded) when K > 1. bce targets
  must lie in [0, 1].
* cross_entropy: integer labels of shape (N,) (or (N, 1)) in 0..K−1; K ≥ 2.

Accuracy (``accuracy``) is defined when the targets are classes: cross_entropy compares
argmax z with the label; one-output models predict class 1 when ŷ > 0.5 (quadratic, output
read as a probability) or z > 0 (bce_with_logits, i.e. σ(z) > 0.5); multi-output models with
one-hot targets compare argmaxes. Real-valued (regression) targets have no accuracy (None).

>>> import numpy as np
>>> C = loss("quadratic")
>>> round(C.value(np.array([[0.8], [0.2]]), np.array([1.0, 0.0])), 12)  # (0.04+0.04)/(2·2)
0.02
>>> np.round(C.gradient(np.array([[0.8], [0.2]]), np.array([1.0, 0.0])), 12).ravel().tolist()
[-0.1, 0.1]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from ..activations import sigmoid
from ..errors import DataError, InvalidValueError, ShapeError, UnknownNameError

__all__ = ["Loss", "Quadratic", "BCEWithLogits", "CrossEntropy", "loss", "names",
           "resolve_loss"]

Array = NDArray[np.floating]


def _numeric(name: str, value: ArrayLike) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name} must be numeric, got an array of dtype {array.dtype}")
    return array


def _require_finite_array(name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        position = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise DataError(
            f"{name}{list(position)} is {array[position].item()}: values must be finite"
        )


def _integer_labels(name: str, y: np.ndarray, n_classes: int) -> NDArray[np.intp]:
    """y as integer labels in 0..n_classes−1, or a DataError naming the first bad one."""
    _require_finite_array(name, y)
    labels = y.astype(np.intp)
    bad = np.flatnonzero((labels != y) | (labels < 0) | (labels >= n_classes))
    if bad.size:
        raise DataError(
            f"label {y[bad[0]].item()!r} at {name}[{bad[0]}] is not a class: labels must be "
            f"integers in 0..{n_classes - 1} for a model with {n_classes} outputs"
        )
    return labels


def _check_output(output: ArrayLike) -> np.ndarray:
    array = _numeric("output", output)
    if array.ndim != 2:
        raise ShapeError(f"output must be 2-D (N samples, K outputs), got shape {array.shape}")
    return array if array.dtype.kind == "f" else array.astype(np.float64)


class Loss:
    """A cost: ``value(output, target) -> C`` and ``gradient(output, target) -> ∂C/∂output``.

    A subclass writes its formulas in :meth:`cost` (C) and :meth:`cost_and_gradient` (C and
    ∂C/∂output), on an output and a target already checked and prepared
    (:meth:`prepare_target`); the other methods check their arguments and call them.
    """

    name = "loss"

    # -- public, checked API -------------------------------------------------------------
    def value(self, output: ArrayLike, target: ArrayLike) -> float:
        """C for the batch (a Python float)."""
        out = _check_output(output)
        return self.cost(out, self.prepare_target(target, out.shape, out.dtype))

    def gradient(self, output: ArrayLike, target: ArrayLike) -> Array:
        """∂C/∂output, same shape and dtype as ``output``."""
        out = _check_output(output)
        target = self.prepare_target(target, out.shape, out.dtype)
        return self.cost_and_gradient(out, target)[1]

    def value_and_gradient(self, output: ArrayLike, target: ArrayLike) -> tuple[float, Array]:
        """(C, ∂C/∂output) in one pass."""
        out = _check_output(output)
        return self.cost_and_gradient(out, self.prepare_target(target, out.shape, out.dtype))

    def accuracy(self, output: ArrayLike, target: ArrayLike) -> float | None:
        """Fraction of samples classified right, or None for regression targets."""
        out = _check_output(output)
        labels = self.labels(self.prepare_target(target, out.shape, out.dtype))
        if labels is None:
            return None
        return float(np.mean(self.predicted_labels(out) == labels))

    # -- pieces the training loop calls once per run / per batch ---------------------------
    def prepare_target(
        self, target: ArrayLike, output_shape: tuple[int, ...], dtype: DTypeLike
    ) -> np.ndarray:
        """Check ``target`` against the output shape (N, K); return it in the form the loss
        uses (float (N, K) array, or int labels for cross_entropy)."""
        n, k = output_shape
        y = _numeric("target", target)
        if y.ndim == 0 or y.shape[0] != n:
            raise ShapeError(f"target has shape {y.shape} but the output has {n} rows")
        if y.ndim == 2 and y.shape[1] == k:
            _require_finite_array("target", y)
            return np.asarray(y, dtype=dtype)
        if y.ndim == 1 and k == 1:
            _require_finite_array("target", y)
            return np.asarray(y, dtype=dtype).reshape(n, 1)
        if y.ndim == 1:
            labels = _integer_labels("target", y, k)
            onehot = np.zeros((n, k), dtype=dtype)
            onehot[np.arange(n), labels] = 1
            return onehot
        raise ShapeError(
            f"{self.name} target of shape {y.shape} does not fit an output of shape {(n, k)}: "
            f"give ({n}, {k}) values or {n} class labels"
        )

    def labels(self, target: np.ndarray) -> NDArray[np.intp] | None:
        """Class labels of a prepared target, or None when the targets are not classes."""
        if not np.isin(target, (0, 1)).all():
            return None
        if target.shape[1] == 1:
            return target[:, 0].astype(np.intp)
        if (target.sum(axis=1) == 1).all():
            return np.argmax(target, axis=1)
        return None

    def predicted_labels(self, output: np.ndarray) -> NDArray[np.intp]:
        """The class each output row predicts (argmax, or a threshold for one output)."""
        if output.shape[1] == 1:
            return (output[:, 0] > self.threshold).astype(np.intp)
        return np.argmax(output, axis=1)

    #: a one-output model predicts class 1 above this output
    threshold = 0.5

    # -- the formulas (subclasses) ---------------------------------------------------------
    def cost(self, output: Array, target: np.ndarray) -> float:
        """C of a checked output and a prepared target."""
        return self.cost_and_gradient(output, target)[0]

    def cost_and_gradient(self, output: Array, target: np.ndarray,
                          out: Array | None = None) -> tuple[float, Array]:
        """(C, ∂C/∂output) of a checked output and a prepared target; the gradient is
        written into ``out`` when given (an array of the output's shape and dtype)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def __repr__(self) -> str:
        return f"loss({self.name!r})"


class Quadratic(Loss):
    """C = 1/(2N) Σₙ ‖ŷₙ − yₙ‖², the cost of the articles; ∂C/∂ŷ = (ŷ − y)/N."""

    name = "quadratic"

    def cost(self, output: Array, target: np.ndarray) -> float:
        diff = output - target
        return float(np.vdot(diff, diff)) / (2 * output.shape[0])

    def cost_and_gradient(self, output: Array, target: np.ndarray,
                          out: Array | None = None) -> tuple[float, Array]:
        diff = np.subtract(output, target, out=out)              # ŷ − y
        value = float(np.vdot(diff, diff)) / (2 * output.shape[0])
        diff *= 1.0 / output.shape[0]                               # ∂C/∂ŷ = (ŷ − y)/N
        return value, diff


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits z, mean over all N·K entries; ∂C/∂z = (σ(z) − y)/(N·K)."""

    name = "bce_with_logits"
    threshold = 0.0  # σ(z) > 0.5  ⇔  z > 0

    def prepare_target(
        self, target: ArrayLike, output_shape: tuple[int, ...], dtype: DTypeLike
    ) -> np.ndarray:
        prepared = super().prepare_target(target, output_shape, dtype)
        if ((prepared < 0) | (prepared > 1)).any():
            bad = tuple(int(i) for i in np.argwhere((prepared < 0) | (prepared > 1))[0])
            raise DataError(
                f"bce_with_logits target {prepared[bad].item()!r} at row {bad[0]} is not in [0, 1]"
            )
        return prepared

    def cost(self, output: Array, target: np.ndarray) -> float:
        # max(z,0) − z·y + log(1 + e^(−|z|)) = −[y log σ(z) + (1−y) log(1−σ(z))], never log(0)
        terms = np.maximum(output, 0) - output * target + np.log1p(np.exp(-np.abs(output)))
        return float(np.mean(terms))

    def cost_and_gradient(self, output: Array, target: np.ndarray,
                          out: Array | None = None) -> tuple[float, Array]:
        gradient = np.subtract(sigmoid(output), target, out=out)   # σ(z) − y
        gradient *= 1.0 / output.size                               # ... /(N·K)
        return self.cost(output, target), gradient


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits z with integer labels (PyTorch's CrossEntropyLoss).

    C = 1/N Σₙ [log Σₖ e^(zₙₖ) − zₙ,yₙ];  ∂C/∂z = (softmax(z) − onehot(y))/N.
    Subtracting each row's maximum first leaves C unchanged and keeps e^z ≤ 1.
    """

    name = "cross_entropy"

    def prepare_target(
        self, target: ArrayLike, output_shape: tuple[int, ...], dtype: DTypeLike
    ) -> np.ndarray:
        n, k = output_shape
        if k < 2:
            raise InvalidValueError(
                "cross_entropy needs a model with ≥ 2 outputs (one logit per class); "
                "for one output use bce_with_logits"
            )
        y = _numeric("target", target)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != n:
            raise ShapeError(
                f"cross_entropy target must be {n} integer labels (shape ({n},)), got shape "
                f"{y.shape}"
            )
        return _integer_labels("target", y, k)

    def labels(self, target: np.ndarray) -> NDArray[np.intp] | None:
        return target

    def predicted_labels(self, output: np.ndarray) -> NDArray[np.intp]:
        return np.argmax(output, axis=1)

    def cost_and_gradient(self, output: Array, target: np.ndarray,
                          out: Array | None = None) -> tuple[float, Array]:
        n = output.shape[0]
        rows = np.arange(n)
        shifted = np.subtract(output, output.max(axis=1, keepdims=True), out=out)  # z − max z
        log_sum = np.log(np.exp(shifted).sum(axis=1))           # log Σₖ e^(z − max z)
        value = float(np.mean(log_sum - shifted[rows, target]))  # mean of log Σ e^z − z_y
        softmax = np.exp(shifted, out=shifted)
        softmax /= softmax.sum(axis=1, keepdims=True)
        softmax[rows, target] -= 1.0                             # softmax(z) − onehot(y)
        softmax *= 1.0 / n
        return value, softmax


_LOSSES: dict[str, type[Loss]] = {
    "quadratic": Quadratic,
    "bce_with_logits": BCEWithLogits,
    "cross_entropy": CrossEntropy,
}


def names() -> list[str]:
    """The loss names."""
    return list(_LOSSES)


def loss(name: str | Loss) -> Loss:
    """The loss called ``name`` (``"quadratic"``, ``"bce_with_logits"``, ``"cross_entropy"``).

    A :class:`Loss` instance is returned as is.
    """
    if isinstance(name, Loss):
        return name
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _LOSSES:
        raise UnknownNameError("loss", name, _LOSSES)
    return _LOSSES[key]()


def resolve_loss(name: str, n_classes: int | None,
                 option: str | None = None) -> tuple[str, int, str | None]:
    """(loss name, number of outputs, output activation) of an MLP trained with the loss
    ``name`` on ``n_classes`` = K classes, or on a numeric target when it is None.

    The convention of ``gradsight train`` and the doctor: ``cross_entropy`` reads K logits
    and ``bce_with_logits`` one logit (2 classes), both from a linear output layer; the
    quadratic cost on classes has one sigmoid output per class (one-hot targets), on a number
    one linear output. ``"auto"`` is cross_entropy for classes, quadratic for a number.

    A mismatch is a one-line error whose hint names the loss to use, as ``option`` would
    set it when given (``"--loss"``: "use --loss quadratic").

    >>> resolve_loss("auto", 3), resolve_loss("quadratic", 2), resolve_loss("quadratic", None)
    (('cross_entropy', 3, None), ('quadratic', 2, 'sigmoid'), ('quadratic', 1, None))
    """

    def use(loss: str) -> str:
        return f"use {option} {loss}" if option else f"use the {loss} loss"

    key = str(name).strip().lower()
    if key == "auto":
        key = "cross_entropy" if n_classes is not None else "quadratic"
    if key not in _LOSSES:
        raise UnknownNameError("loss", name, [*_LOSSES, "auto"])
    if n_classes is None:
        if key != "quadratic":
            raise InvalidValueError(f"loss {key} needs class labels but the target is a "
                                    f"continuous number; {use('quadratic')}")
        return key, 1, None
    if key == "cross_entropy":
        if n_classes < 2:
            raise InvalidValueError("cross_entropy needs at least 2 classes in the data")
        return key, n_classes, None
    if key == "bce_with_logits":
        if n_classes != 2:
            raise InvalidValueError(f"bce_with_logits needs exactly 2 classes, the data has "
                                    f"{n_classes}; {use('cross_entropy')}")
        return key, 1, None
    return key, n_classes, "sigmoid"
