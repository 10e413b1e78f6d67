"""``torch_runner``: let ``gradsight.doctor`` rank fixes for a user's own nn.Module factory.

The doctor calls ``runner(config) -> RunOutcome`` once for the set-up and once per candidate
fix. This runner calls the user's factory ``build(activation, init) -> nn.Module`` with the
candidate's activation and initialiser, trains the module for the same budget (epochs,
batch size, optimizer, learning rate, seed) under :func:`watch`, and measures the held-out
loss and accuracy, the last/first hidden-layer gradient ratio and the findings of
``diagnose`` — the same RunOutcome as the engine's runner, so the ranking is the same code.

A factory may also take any of ``bias_init``, ``hidden``, ``n_inputs``, ``n_outputs`` and
``seed`` by name; it receives those it names. Everything else (the loss, the optimizer, the
schedule) is the runner's, from the config.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ...diagnostics.findings import Findings
from ...diagnostics.numpy_runner import EngineRunner
from ...diagnostics.runner import RunOutcome
from ...diagnostics.speed import speed_ratio
from ...diagnostics.verdict import diagnose
from ...engine.data import Dataset
from ...engine.losses import resolve_loss
from ...errors import GradsightError, InvalidValueError, UnknownNameError
from ._loop import loss_name, make_optimizer, model_place, split_batch, to_model
from ._torch import require_torch
from .watcher import Watcher

LOSSES = ("quadratic", "cross_entropy", "bce_with_logits")
_FACTORY_EXTRAS = ("bias_init", "hidden", "n_inputs", "n_outputs", "seed")


def named_loss(name: str) -> Callable[[Any, Any], Any]:
    """The engine's costs in torch: quadratic C = 1/(2N)Σ‖ŷ−y‖² (class labels one-hot when
    there are several outputs), cross-entropy on logits, binary cross-entropy on a logit."""
    torch = require_torch()
    functional = torch.nn.functional

    def quadratic(output: Any, target: Any) -> Any:
        if output.dim() == 2 and output.shape[1] > 1 and not target.is_floating_point():
            target = functional.one_hot(target.long(), output.shape[1])
        target = target.to(output.dtype).reshape(output.shape)
        return 0.5 * ((output - target) ** 2).sum() / output.shape[0]

    def cross_entropy(output: Any, target: Any) -> Any:
        return functional.cross_entropy(output, target.long())

    def bce_with_logits(output: Any, target: Any) -> Any:
        return functional.binary_cross_entropy_with_logits(
            output.reshape(-1), target.to(output.dtype).reshape(-1))

    table = {"quadratic": quadratic, "cross_entropy": cross_entropy,
             "bce_with_logits": bce_with_logits}
    if name not in table:
        raise UnknownNameError("loss", name, LOSSES)
    chosen = table[name]
    chosen.gradsight_name = name  # type: ignore[attr-defined]
    return chosen


def build_model(factory: Callable[..., Any], config: dict[str, Any],
                extras: dict[str, Any]) -> Any:
    """Call the user's factory with the config's activation and init (and what it names)."""
    torch = require_torch()
    try:
        names = set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        names = set()
    given = {key: value for key, value in {**config, **extras}.items()
             if key in _FACTORY_EXTRAS and key in names}
    model = factory(config["activation"], config["init"], **given)
    if not isinstance(model, torch.nn.Module):
        raise GradsightError(f"the model factory returned {type(model).__name__}, not a "
                             "torch.nn.Module")
    return model


class TorchRunner:
    """``runner(config) -> RunOutcome`` for :func:`gradsight.diagnostics.fixes`."""

    def __init__(self, factory: Callable[..., Any], data: Any, loss_fn: Any = None, *,
                 val_data: Any = None, target: str | None = None, test_size: float = 0.2,
                 dtype: str = "float32", device: str | None = None,
                 watch_every: int = 1) -> None:
        torch = require_torch()
        if not callable(factory):
            raise GradsightError(f"factory must be a callable build(activation, init) -> "
                                 f"nn.Module, got {type(factory).__name__}")
        if dtype not in ("float32", "float64"):
            raise InvalidValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.factory, self.loss_fn, self.watch_every = factory, loss_fn, watch_every
        self.dtype = getattr(torch, dtype)
        self.device = torch.device(device or "cpu")
        self.loader: Any = None
        self.val_loader: Any = None
        if _is_loader(data):
            self.loader, self.val_loader = data, val_data if val_data is not None else data
            self.classification = _integer_targets(data)
            self.n_classes = None
            self.data: Any = None
        else:
            self.data = EngineRunner(data, target=target, test_size=test_size)
            self.classification = self.data.classification
            self.n_classes = self.data.dataset.n_classes

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]:
        """``loss="auto"`` resolved for the data; a given ``loss_fn`` fixes the loss."""
        if self.loss_fn is not None:
            return {**config, "loss": loss_name(self.loss_fn) or "custom"}
        if self.data is not None:
            return self.data.resolve(config)
        name = str(config["loss"]).strip().lower()
        if name == "auto":
            name = "cross_entropy" if self.classification else "quadratic"
        if name not in LOSSES:
            raise UnknownNameError("loss", config["loss"], [*LOSSES, "auto"])
        return {**config, "loss": name}

    def _loss(self, config: dict[str, Any]) -> Callable[[Any, Any], Any]:
        return self.loss_fn if self.loss_fn is not None else named_loss(config["loss"])

    def __call__(self, config: dict[str, Any]) -> RunOutcome:
        torch = require_torch()
        config = self.resolve(config)
        n_outputs = None
        if self.data is not None:
            X_train, X_test, y_train, y_test = self.data.split(int(config["seed"]))
            if config["loss"] in LOSSES:
                n_outputs = resolve_loss(config["loss"], self.n_classes)[1]
            train: Any = _batches_of(X_train, y_train, int(config["batch_size"]), self.dtype)
            probe: Any = _tensors(X_train[:1000], y_train[:1000], self.dtype)
            n_inputs: int | None = X_train.shape[1]
        else:
            train, probe = (lambda generator: self.loader), split_batch(next(iter(self.loader)))
            n_inputs, n_outputs = loader_sizes(self.loader, probe, config["loss"],
                                               self.classification)
        torch.manual_seed(int(config["seed"]))
        model = build_model(self.factory, config, {"n_inputs": n_inputs, "n_outputs": n_outputs})
        model = model.to(device=self.device, dtype=self.dtype)
        loss_fn = self._loss(config)
        optimizer = make_optimizer(config["optimizer"], model.parameters(), float(config["lr"]))
        history, records = self._train(model, loss_fn, optimizer, config, train)
        if self.data is not None:
            loss, accuracy = self._held_out(model, loss_fn, config, X_test, y_test)
        else:
            loss, accuracy = self._held_out_loader(model, loss_fn)
        ratio = gradient_ratio(model, loss_fn, *probe)
        name = config["loss"] if config["loss"] in LOSSES else None
        findings = diagnose(records, train_history=history, loss=name) if records \
            else Findings()  # no training step (epochs=0): nothing to judge
        stopped = next((e["stopped"] for e in history if e.get("stopped")), None)
        return RunOutcome(loss, accuracy, ratio, findings, history, records,
                          {"stopped": stopped, "model": type(model).__name__})

    def _train(self, model: Any, loss_fn: Any, optimizer: Any, config: dict[str, Any],
               batches: Callable[[Any], Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        """Train for config["epochs"] epochs under watch; epoch dicts and LayerStats."""
        torch = require_torch()
        generator = torch.Generator().manual_seed(int(config["seed"]))
        device, dtype = model_place(model)
        history: list[dict[str, Any]] = []
        model.train()
        with Watcher(model, every=self.watch_every, optimizer=optimizer) as watcher:
            for epoch in range(int(config["epochs"])):
                watcher.epoch = epoch
                total, count = 0.0, 0
                for batch in batches(generator):
                    x, t = split_batch(batch)
                    x, t = to_model(x, device, dtype), to_model(t, device, dtype)
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x), t)
                    loss.backward()
                    optimizer.step()
                    total, count = total + float(loss.detach()) * len(x), count + len(x)
                entry: dict[str, Any] = {"epoch": epoch, "loss": total / max(count, 1),
                                         "accuracy": None}
                history.append(entry)
                if not math.isfinite(entry["loss"]):
                    entry["stopped"] = f"non-finite loss in epoch {epoch}"
                    break
        return history, watcher.history

    def _held_out(self, model: Any, loss_fn: Any, config: dict[str, Any], X: np.ndarray,
                  y: np.ndarray) -> tuple[float, float | None]:
        """Held-out cost (in config["eval_loss"], as the engine's runner) and accuracy."""
        output = predict(model, X)
        if self.loss_fn is None:  # the engine's losses and conversions, on the outputs
            shim = type("Predictor", (), {"predict": staticmethod(lambda _: output)})()
            return self.data.held_out(shim, config, X, y)
        torch = require_torch()
        out, target = torch.from_numpy(output), _tensors(X, y, torch.float64)[1]
        loss = float(loss_fn(out.to(self.dtype), target))
        accuracy = None
        if self.classification:
            predicted = out.argmax(dim=1) if out.shape[1] > 1 else (out[:, 0] > 0).long()
            accuracy = float((predicted == target.long()).double().mean())
        return loss, accuracy


    def _held_out_loader(self, model: Any, loss_fn: Any) -> tuple[float, float | None]:
        """Mean loss (weighted by batch size) and accuracy over the validation loader."""
        torch = require_torch()
        device, dtype = model_place(model)
        total, right, count = 0.0, 0.0, 0
        model.eval()
        try:
            with torch.no_grad():
                for batch in self.val_loader:
                    x, t = split_batch(batch)
                    x, t = to_model(x, device, dtype), to_model(t, device, dtype)
                    out = model(x)
                    total += float(loss_fn(out, t)) * len(x)
                    count += len(x)
                    if self.classification:
                        flat = out.reshape(len(x), -1)
                        predicted = flat.argmax(dim=1) if flat.shape[1] > 1 \
                            else (flat[:, 0] > 0).long()
                        right += float((predicted == t.long()).sum())
        finally:
            model.train()
        if count == 0:
            raise GradsightError("the validation loader yielded no batch")
        return total / count, (right / count if self.classification else None)


def loader_sizes(loader: Any, batch: tuple[Any, Any], loss: str,
                 classification: bool) -> tuple[int, int]:
    """(n_inputs, n_outputs) for the factory, read from a loader's first batch.

    n_inputs : the features of one sample (x of shape (B, F) gives F; an image
        (B, C, H, W) gives C·H·W). n_outputs : for class labels, K = the largest label + 1
        — over the whole data set when the loader holds a TensorDataset, else over the
        first batch — then as the loss reads them (cross_entropy K logits, bce_with_logits
        one, quadratic K); for a numeric target, its columns.
    """
    torch = require_torch()
    inputs, target = (torch.as_tensor(t) for t in batch)
    n_inputs = int(inputs[0].numel()) if inputs.dim() > 1 else 1
    if not classification:
        return n_inputs, int(target[0].numel()) if target.dim() > 1 else 1
    tensors = getattr(getattr(loader, "dataset", None), "tensors", None)
    labels = torch.as_tensor(tensors[1]) if isinstance(tensors, tuple) and len(tensors) > 1 \
        else target
    n_classes = max(2, int(labels.max()) + 1) if labels.numel() else 2
    if loss in LOSSES:
        return n_inputs, resolve_loss(loss, n_classes)[1]
    return n_inputs, n_classes


def _is_loader(data: Any) -> bool:
    """A loader of batches, rather than a data-set name, Dataset or (X, y) pair."""
    if isinstance(data, (str, tuple, list, np.ndarray, Dataset)):
        return False
    return hasattr(data, "__iter__")


def _integer_targets(loader: Any) -> bool:
    torch = require_torch()
    _, target = split_batch(next(iter(loader)))
    target = torch.as_tensor(target)
    return not target.is_floating_point() and not target.is_complex()


def _batches_of(X: np.ndarray, y: np.ndarray, size: int, dtype: Any) -> Callable[[Any], Any]:
    """Batches of (X, y) in an order shuffled by the generator, one epoch per call."""
    torch = require_torch()
    inputs, targets = _tensors(X, y, dtype)

    def epoch(generator: Any) -> Any:
        order = torch.randperm(inputs.shape[0], generator=generator)
        for start in range(0, inputs.shape[0], size):
            rows = order[start:start + size]
            yield inputs[rows], targets[rows]

    return epoch


def _tensors(X: np.ndarray, y: np.ndarray, dtype: Any) -> tuple[Any, Any]:
    torch = require_torch()
    inputs = torch.as_tensor(np.asarray(X, dtype=np.float64)).to(dtype)
    y = np.asarray(y)
    targets = torch.as_tensor(y.astype(np.int64) if y.dtype.kind in "iub" else y)
    if targets.is_floating_point():
        targets = targets.to(dtype)
    return inputs, targets


def predict(model: Any, X: np.ndarray) -> np.ndarray:
    """The model's output on X (eval mode, no gradients) as a float64 array."""
    torch = require_torch()
    device, dtype = model_place(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(to_model(torch.as_tensor(np.asarray(X)), device, dtype))
    finally:
        model.train(was_training)
    array = output.detach().to("cpu", torch.float64).numpy()
    return array.reshape(array.shape[0], -1)


def gradient_ratio(model: Any, loss_fn: Any, X: np.ndarray, y: np.ndarray) -> float | None:
    """‖∂C/∂b‖ of the last hidden layer / of the first (∂C/∂W where there is no bias), from
    one forward and backward pass on (X, y); None with fewer than two hidden layers. At zero
    and for non-finite speeds it follows :func:`~gradsight.diagnostics.speed.speed_ratio`."""
    _, dtype = model_place(model)
    inputs, targets = _tensors(X, y, dtype)
    device, _ = model_place(model)
    with Watcher(model) as watcher:
        model.zero_grad(set_to_none=True)
        loss_fn(model(inputs.to(device)), targets.to(device)).backward()
    model.zero_grad(set_to_none=True)
    params = sorted((r for r in watcher.history if r.kind == "param"), key=lambda r: r.index)
    hidden = params[:-1]
    if len(hidden) < 2:
        return None
    first, last = hidden[0], hidden[-1]
    low = first.grad_b_norm if first.grad_b_norm is not None else first.grad_W_norm
    high = last.grad_b_norm if last.grad_b_norm is not None else last.grad_W_norm
    if low is None or high is None:
        return math.nan
    return speed_ratio(low, high)


def torch_runner(factory: Callable[..., Any], data: Any, loss_fn: Any = None, *,
                 val_data: Any = None, target: str | None = None, test_size: float = 0.2,
                 dtype: str = "float32", device: str | None = None,
                 watch_every: int = 1) -> TorchRunner:
    """A doctor runner for a torch model factory ``build(activation, init) -> nn.Module``.

    data : what ``gradsight.doctor`` takes — a data-set name or CSV path, a Dataset or an
        (X, y) pair; it is split (by the run's seed, ``test_size`` held out) and
        standardised as the engine's runner does, so every candidate sees the same samples.
        Or a DataLoader of (inputs, targets): one pass per epoch (its own batch size and
        order), held-out figures on ``val_data`` (a loader; the training loader if None);
        a factory that asks for ``n_inputs``/``n_outputs`` gets them from its first batch
        (:func:`loader_sizes`).
    loss_fn : a torch loss ``loss_fn(output, target)``; None uses the config's loss
        ("quadratic", "cross_entropy", "bce_with_logits"; "auto" by the data), so the doctor
        can also try the cross-entropy cost. A given loss_fn fixes the loss.

    Example::

        def build(activation, init):
            act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}[activation]
            return nn.Sequential(nn.Linear(2, 16), act(), nn.Linear(16, 2))

        doctor({"data": "moons", "activation": "sigmoid"}, runner=torch_runner(build, "moons"))
    """
    return TorchRunner(factory, data, loss_fn, val_data=val_data, target=target,
                       test_size=test_size, dtype=dtype, device=device, watch_every=watch_every)


def load_factory(spec: str) -> Callable[..., Any]:
    """The factory named ``"module:function"``, imported from the current directory.

    This runs the user's own module — the point of ``gradsight doctor --factory``.
    """
    text = str(spec).strip()
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text):
        raise InvalidValueError(f"--factory must be MODULE:FUNCTION (e.g. mymodels:build), "
                                f"got {spec!r}")
    module_name, function_name = text.split(":")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise GradsightError(f"cannot import {module_name!r} from {here}: {error}") from None
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise GradsightError(f"{module_name} has no function {function_name!r}")
    return factory


def runner_from_spec(spec: str, data: Any, *, target: str | None = None,
                     test_size: float = 0.2) -> TorchRunner:
    """A :class:`TorchRunner` for ``gradsight doctor --factory MODULE:FUNCTION``."""
    require_torch()
    return torch_runner(load_factory(spec), data, target=target, test_size=test_size)
