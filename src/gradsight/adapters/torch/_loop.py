"""A plain PyTorch training loop for the adapter's own runs (diagnose_torch, the doctor).

Users keep their own loop and add ``watch``; this loop only serves the helpers that train
a model themselves, so that they all read batches, move them and step the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...errors import (
    DataError,
    GradsightError,
    UnknownNameError,
    require_positive_int,
)
from ._torch import require_torch

#: optimizer names of gradsight.optim mapped to torch.optim constructors (lr given apart)
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "adagrad": ("Adagrad", {}),
    "rmsprop": ("RMSprop", {}),
    "adam": ("Adam", {}),
}


def make_optimizer(spec: Any, params: Iterable[Any], lr: float) -> Any:
    """A torch optimizer from a name ("sgd", "adam", ...), a class/factory taking the
    parameters, or an existing optimizer (rebuilt on ``params`` with its ``defaults``)."""
    torch = require_torch()
    params = list(params)
    if spec is None:
        spec = "sgd"
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key not in OPTIMIZERS:
            raise UnknownNameError("optimizer", spec, OPTIMIZERS)
        name, extra = OPTIMIZERS[key]
        return getattr(torch.optim, name)(params, lr=lr, **extra)
    if isinstance(spec, torch.optim.Optimizer):
        return type(spec)(params, **spec.defaults)
    if callable(spec):
        optimizer = spec(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise GradsightError(f"the optimizer factory returned {type(optimizer).__name__}, "
                                 "not a torch.optim.Optimizer")
        return optimizer
    raise GradsightError(f"optimizer must be a name, a torch.optim.Optimizer or a factory "
                         f"of one, got {type(spec).__name__}")


def split_batch(batch: Any) -> tuple[Any, Any]:
    """(inputs, targets) of a loader's batch: a pair (x, y) or a longer tuple/list."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise DataError(f"a batch must be a pair (inputs, targets), got {type(batch).__name__}"
                    + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))


def model_place(model: Any) -> tuple[Any, Any]:
    """(device, floating dtype) of the model's first parameter (CPU, float32 without one)."""
    torch = require_torch()
    for param in model.parameters():
        return param.device, (param.dtype if param.is_floating_point() else torch.float32)
    return torch.device("cpu"), torch.get_default_dtype()


def to_model(tensor: Any, device: Any, dtype: Any) -> Any:
    """A batch tensor on the model's device; floating inputs in the model's dtype."""
    torch = require_torch()
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(tensor)
    if tensor.is_floating_point() and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor.to(device)


def cycle(loader: Iterable[Any]) -> Iterator[Any]:
    """The loader's batches, again and again (a new pass when it is exhausted)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise DataError("the data loader yielded no batch")


def train_steps(model: Any, batches: Iterator[Any], loss_fn: Callable[[Any, Any], Any],
                optimizer: Any, steps: int) -> list[float]:
    """Run ``steps`` optimizer steps; the batch losses. Stops after a non-finite loss (that
    step is still taken and recorded, so its NaN/inf gradients are seen)."""
    device, dtype = model_place(model)
    losses: list[float] = []
    model.train()
    for _ in range(steps):
        x, y = split_batch(next(batches))
        x, y = to_model(x, device, dtype), to_model(y, device, dtype)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if not hasattr(loss, "backward") or loss.dim() != 0:
            raise GradsightError("loss_fn(output, target) must return a scalar tensor")
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            break
    return losses


def check_steps(steps: Any) -> int:
    return require_positive_int("steps", steps)


def loss_name(loss_fn: Any) -> str | None:
    """gradsight's name of a torch loss module/function, for the verdict rules."""
    torch = require_torch()
    nn, functional = torch.nn, torch.nn.functional
    table = [(nn.MSELoss, functional.mse_loss, "quadratic"),
             (nn.CrossEntropyLoss, functional.cross_entropy, "cross_entropy"),
             (nn.BCEWithLogitsLoss, functional.binary_cross_entropy_with_logits,
              "bce_with_logits")]
    for cls, function, name in table:
        if isinstance(loss_fn, cls) or loss_fn is function:
            return name
    return getattr(loss_fn, "gradsight_name", None)
