"""Neuron states of a torch model over a data loader (the engine's ``classify_neurons``).

For every hidden activation module (one that a parametrised layer follows in forward order)
a forward pre-hook reads z, its input, and accumulates per-unit counts over the batches:
samples where f′(z) ≥ saturation·max f′ ("active", the unit can learn), where z > 0, the sums
of f′(z) and z, and — once the batch's predictions are known — the right answers among the
samples where the unit is saturated. Only those per-unit counts are kept, never a samples ×
units map, so memory stays bounded by one batch whatever the size of the data.

f′(z) comes from autograd on the module itself (so any elementwise activation works, and the
kinks follow PyTorch: relu′(0) = 0); max f′ from gradsight's activation registry, or from a
fine grid on [−20, 20] for activations it does not know. For a conv output (N, C, ...) a unit
is a channel and every position of every sample counts as one of its samples.

Sequence models: an output (B, T, V) — a score per token and class, as a language model
gives — with targets (B, T) of class labels (or (B, T, V) one-hot) is read token by token:
each of the B·T tokens is a sample whose prediction is the argmax over V, and a unit's
saturated positions are matched with the tokens at those positions (its activation must
then have T positions per sample). Tokens labelled < 0 (padding, ``ignore_index``) count
as not right. Any other output of three or more dimensions is refused with a one-line error
rather than read through one column.

At the end the counts become :class:`~gradsight.diagnostics.neurons.UnitCounts` and the
states come from :func:`~gradsight.diagnostics.neurons.layer_states`, the same labelling as
the engine's. Importing this module registers :func:`classify_neurons_torch` as the backend
of :func:`gradsight.diagnostics.classify_neurons` for any ``torch.nn.Module``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ... import activations
from ...diagnostics.neurons import (
    NeuronStates,
    StateRules,
    UnitCounts,
    class_labels,
    layer_states,
    register_backend,
)
from ...errors import GradsightError, ShapeError, require_positive_int
from ._layers import ActivationLayer, find_layers
from ._loop import model_place, split_batch, to_model
from ._torch import require_torch, unwrap


class _Tally:
    """Per-unit counts of one activation layer (device tensors, float64 where possible)."""

    def __init__(self, layer: ActivationLayer, peak: float) -> None:
        self.layer, self.peak = layer, peak
        self.sums: Any = None  # rows: active, positive, Σf′, Σz
        self.saturated_right: Any = None
        self.active: Any = None  # this batch: (samples, positions, units) flags, f′ not small
        self.positions = 0  # samples (× positions) seen

    def add(self, z: Any, saturation: float) -> None:
        torch = require_torch()
        derivative = _derivative(self.layer.module, z)
        wide = torch.float32 if z.device.type == "mps" else torch.float64
        z, derivative = z.to(wide), derivative.to(wide)
        active = (derivative >= saturation * self.peak).to(wide)
        unit = self.layer.unit_dim % z.dim() if z.dim() > 1 else 0
        move = (lambda t: t.movedim(unit, -1).reshape(z.shape[0], -1, z.shape[unit])) \
            if z.dim() > 1 else (lambda t: t.reshape(1, -1, t.numel()))
        per_sample = [move(t).sum(dim=1) for t in (active, (z > 0).to(wide), derivative, z)]
        batch = torch.stack([part.sum(dim=0) for part in per_sample])
        self.sums = batch if self.sums is None else self.sums + batch
        self.active = move(active).bool()  # kept for the right answers of this batch only
        self.positions += self.active.shape[0] * self.active.shape[1]

    def counts(self, labelled: bool) -> UnitCounts:
        """The per-unit counts on the host (float64), for the engine's labelling."""
        sums = self.sums.cpu().double().numpy()
        right = self.saturated_right.cpu().double().numpy() \
            if labelled and self.saturated_right is not None else None
        return UnitCounts(self.positions, sums[0], sums[1], sums[2], sums[3], right)

    def add_right(self, right: Any) -> None:
        """Add the right answers among the saturated samples: ``right`` holds one 0/1 per
        sample of the batch, or one per token (B·T) when the targets are per token."""
        if self.active is None:
            return
        active, self.active = self.active, None
        samples, positions, units = active.shape
        wide = self.sums.dtype
        right = right.to(device=active.device, dtype=wide)
        if right.shape[0] == samples:  # per sample: its saturated positions count
            inactive = positions - active.sum(dim=1).to(wide)
        elif right.shape[0] == samples * positions:  # per token: its own position
            inactive = (~active).reshape(samples * positions, units).to(wide)
        else:
            raise ShapeError(
                f"layer {self.layer.name!r} has {positions} positions per sample, but the "
                f"targets give {right.shape[0] // max(samples, 1)} per sample: the tokens' "
                "targets cannot be matched with its units")
        part = right @ inactive
        self.saturated_right = part if self.saturated_right is None else \
            self.saturated_right + part


def _derivative(module: Any, z: Any) -> Any:
    """f′(z) elementwise by autograd through the module's own forward (hooks bypassed)."""
    torch = require_torch()
    with torch.enable_grad():
        leaf = z.detach().requires_grad_(True)
        out = module.forward(leaf * 1.0)  # a non-leaf copy, so in-place modules are fine
        (grad,) = torch.autograd.grad(out.sum(), leaf)
    return grad


def _max_derivative(layer: ActivationLayer) -> float:
    try:
        return float(activations.get(layer.activation).max_derivative[0])
    except GradsightError:
        torch = require_torch()
        grid = torch.linspace(-20.0, 20.0, 40001, dtype=torch.float64)
        probe = copy.deepcopy(layer.module).double()  # never change the user's module
        return float(_derivative(probe, grid).max())


def _batches(data: Any, y: Any, chunk_size: int) -> Iterator[tuple[Any, Any]]:
    """(x, y) chunks of a loader, or of the arrays X and y."""
    if y is None:
        for batch in data:
            yield split_batch(batch)
        return
    torch = require_torch()
    X = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    Y = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    if X.shape[0] != Y.shape[0]:
        raise ShapeError(f"y has {Y.shape[0]} rows, X has {X.shape[0]}")
    for start in range(0, X.shape[0], chunk_size):
        yield X[start:start + chunk_size], Y[start:start + chunk_size]


def _predicted(output: Any, last: ActivationLayer | None) -> Any:
    """Predicted classes: argmax of K outputs; one output is thresholded at the middle of
    its activation's range (½ after a sigmoid), else at 0 (a logit)."""
    if output.dim() == 2 and output.shape[1] > 1:
        return output.argmax(dim=1)
    column = output.reshape(output.shape[0], -1)[:, 0]
    threshold = 0.5 if last is not None and last.activation in ("sigmoid", "hardsigmoid") else 0.0
    return (column > threshold).long()


def classify_neurons_torch(model: Any, data: Iterable[Any], y: Any = None, *,
                           saturation: float = 0.01, near_all: float = 0.95,
                           learning_share: float = 0.05, right_share: float = 0.5,
                           chunk_size: int = 2048, max_batches: int | None = None
                           ) -> NeuronStates:
    """Label every hidden unit of a torch model as :func:`gradsight.diagnostics.
    classify_neurons` does — ``dead``, ``saturated-wrong``, ``saturated-right``,
    ``saturated``, ``learning`` or ``quiet`` — over a data loader.

    data : a loader of (inputs, targets) batches, or the inputs X (tensor/array) with the
        targets ``y`` (then cut into chunks of ``chunk_size`` rows).
    max_batches : stop after this many batches (None: the whole loader, once).
    The model runs in eval mode under ``torch.no_grad`` (its mode is restored after).
    Returns :class:`~gradsight.diagnostics.neurons.NeuronStates`.
    """
    torch = require_torch()
    rules = StateRules(saturation, near_all, learning_share, right_share)
    for name, value in (("chunk_size", chunk_size), ("max_batches", max_batches)):
        if value is not None:
            require_positive_int(name, value)
    inner = unwrap(model)
    params, acts = find_layers(inner, torch.nn)
    if not acts:
        raise GradsightError("the model has no activation module (nn.ReLU, nn.Sigmoid, ...): "
                             "there are no hidden units to classify")
    tallies = {layer.name: _Tally(layer, _max_derivative(layer)) for layer in acts}
    order: dict[str, int] = {}
    handles = []

    def pre_hook(layer: ActivationLayer) -> Any:
        def hook(module: Any, args: Any) -> None:
            order.setdefault(layer.name, len(order))
            if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
                tallies[layer.name].add(args[0].detach(), rules.saturation)
        return hook

    def order_hook(name: str) -> Any:
        def hook(module: Any, args: Any) -> None:
            order.setdefault(name, len(order))
        return hook

    for layer in acts:
        handles.append(layer.module.register_forward_pre_hook(pre_hook(layer)))
    for param_layer in params:
        handles.append(param_layer.module.register_forward_pre_hook(order_hook(param_layer.name)))
    was_training = inner.training
    device, dtype = model_place(inner)
    labelled = True
    try:
        inner.eval()
        with torch.no_grad():
            for count, (x, target) in enumerate(_batches(data, y, chunk_size)):
                if max_batches is not None and count >= max_batches:
                    break
                output = inner(to_model(x, device, dtype))
                labelled = _tally_right(output, target, tallies, order, acts, params) \
                    and labelled
    finally:
        for handle in handles:
            handle.remove()
        inner.train(was_training)
    return _states(tallies, order, params, labelled, rules)


def _tally_right(output: Any, target: Any, tallies: dict[str, _Tally], order: dict[str, int],
                 acts: list[ActivationLayer], params: list[Any]) -> bool:
    """Add the batch's right answers to the saturated samples; False if y is not a class."""
    torch = require_torch()
    target_np = target.detach().cpu().numpy() if isinstance(target, torch.Tensor) \
        else np.asarray(target)
    output, target_np = _per_token(output, target_np)
    labels = class_labels(target_np, output.shape[0])
    if labels is None:
        for tally in tallies.values():
            tally.active = None
        return False
    last_param = max((order[p.name] for p in params if p.name in order), default=-1)
    after = [layer for layer in acts if order.get(layer.name, -1) > last_param]
    last = max(after, key=lambda layer: order[layer.name]) if after else None  # output act
    predicted = _predicted(output, last).cpu()
    labels_t = torch.as_tensor(labels)
    right = ((predicted == labels_t) & (labels_t >= 0)).to(torch.float64)
    for tally in tallies.values():
        tally.add_right(right)
    return True


def _per_token(output: Any, target: np.ndarray) -> tuple[Any, np.ndarray]:
    """(output, targets) with one row per sample: a (B, T, V) output with (B, T) labels or
    (B, T, V) one-hot targets becomes B·T token rows; other outputs of ≥ 3 dimensions are
    refused (their class scores cannot be told apart from positions)."""
    if output.dim() < 3:
        return output, target
    shape = tuple(output.shape)
    if target.shape == shape[:-1]:
        return output.reshape(-1, shape[-1]), target.reshape(-1)
    if target.shape == shape:
        return output.reshape(-1, shape[-1]), target.reshape(-1, shape[-1])
    raise ShapeError(
        f"the model's output has shape {shape} and the targets {target.shape}: for a "
        f"sequence output (B, T, V) give targets (B, T) of class labels (or (B, T, V) "
        "one-hot); other outputs with three or more dimensions are not read")


def _states(tallies: dict[str, _Tally], order: dict[str, int], params: list[Any],
            labelled: bool, rules: StateRules) -> NeuronStates:
    last_param = max((order[p.name] for p in params if p.name in order), default=-1)
    hidden = sorted((t for name, t in tallies.items()
                     if name in order and order[name] < last_param and t.sums is not None),
                    key=lambda t: order[t.layer.name])
    if not hidden:
        raise GradsightError("the model has no hidden layer (no activation module before its "
                             "last parametrised layer): there are no hidden units to classify")
    states = NeuronStates()
    for number, tally in enumerate(hidden):
        states += layer_states(tally.layer.name, number, tally.layer.activation,
                               tally.counts(labelled), relu_family=tally.layer.dead_rule,
                               rules=rules)
    return states


def is_torch_model(model: Any) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (without importing torch: a torch model can
    only exist once torch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


register_backend("torch", is_torch_model, classify_neurons_torch)
