"""Activations applied as functions (``F.relu(x)``, ``x.relu()``, the ``F.gelu`` inside
``nn.TransformerEncoderLayer``), read where they end up: as the input of the next layer.

A function is not a module, so no forward hook sees its output a = f(z). The layer that
consumes a does: a forward pre-hook on a Linear, Conv*, normalisation or Dropout layer gets
exactly a as its input. It is an activation's output when autograd says so: the input's
``grad_fn`` is that function's backward node (``ReluBackward0`` for ``F.relu``, ``x.relu()``
and ``relu_``; ``GeluBackward0``; ...), so the data, a normalisation's output or a residual
sum are never mistaken for one. Its statistics are then those of an activation module's
output (:class:`~._reduce.ActivationReducer`: mean, spread, saturated fraction, the dead
units of the ReLU family — a unit is dead when a ≤ 0, for ReLU exactly 0, on every sample),
and the record says ``source = "input of <layer>"`` and is named ``"<layer>:input"``.

Not counted twice: an output of a watched activation module (its node is remembered when the
module runs) is that module's record, and a node already read this step (one a fed to
several layers; an eval-mode Dropout passing it on) is read once, at its first consumer.
A Dropout in training between the activation and the layer is looked through by hooking the
Dropout itself: its input is still a. Only at recorded steps, and only when gradients are
enabled (no node otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._layers import ActivationLayer, activation_of
from ._reduce import ActivationCall, ActivationReducer, Scratch

#: backward nodes of functional activations → the module computing the same function
NODES = {"ReluBackward0": "ReLU", "GeluBackward0": "GELU", "SigmoidBackward0": "Sigmoid",
         "TanhBackward0": "Tanh", "SiluBackward0": "SiLU", "EluBackward0": "ELU",
         "LeakyReluBackward0": "LeakyReLU", "MishBackward0": "Mish",
         "HardswishBackward0": "Hardswish"}

#: the suffix of a functional activation's record, after the consuming layer's name
SUFFIX = ":input"


def consumers(model: Any, nn: Any) -> list[tuple[str, Any, int | None]]:
    """(name, module, unit dim) of the layers whose input is read: Linear (units last),
    Conv* (units on dim 1), normalisation and Dropout layers (by the input's shape: None)."""
    found: list[tuple[str, Any, int | None]] = []
    for name, module in model.named_modules():
        label = name or type(module).__name__.lower()
        if isinstance(module, (nn.Linear, nn.Bilinear)):
            found.append((label, module, -1))
        elif isinstance(module, nn.modules.conv._ConvNd):
            found.append((label, module, 1))
        elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
            found.append((label, module, 1))
        elif isinstance(module, nn.LayerNorm):
            found.append((label, module, -1))
        elif isinstance(module, nn.modules.dropout._DropoutNd):
            found.append((label, module, None))
    return found


class FunctionalActivations:
    """Statistics of functional activations from the inputs of the layers that consume them.

    ``activation_modules`` : the watched activation modules (their outputs are theirs).
    """

    def __init__(self, torch: Any, model: Any, activation_modules: list[Any],
                 order: dict[str, int], scratch: Scratch, squared: bool) -> None:
        self.torch, self.order, self.scratch, self.squared = torch, order, scratch, squared
        self.consumers = consumers(model, torch.nn)
        self.modules = activation_modules
        self.calls: list[tuple[ActivationLayer, ActivationCall]] = []
        self._seen: set[int] = set()
        self._nodes: list[Any] = []  # keeps the seen nodes alive: their ids stay unique
        self._layers: dict[tuple[str, str], tuple[ActivationLayer, ActivationReducer]] = {}
        self._handles: list[Any] = []
        self.recording: Callable[[], bool] = lambda: True  # as in :mod:`._sequence`

    def hooks(self, on: bool) -> None:
        if on and not self._handles:
            self._handles = [module.register_forward_hook(self._module_hook)
                             for module in self.modules]
            self._handles += [module.register_forward_pre_hook(self._pre_hook(name, dim))
                              for name, module, dim in self.consumers]
        elif not on:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def clear(self) -> None:
        self.calls, self._seen, self._nodes = [], set(), []

    def take(self) -> list[tuple[ActivationLayer, ActivationCall]]:
        calls = self.calls
        self.clear()
        return calls

    def _mark(self, node: Any) -> bool:
        """Remember ``node``; False when it was already seen this step."""
        if node is None or id(node) in self._seen:
            return False
        self._seen.add(id(node))
        self._nodes.append(node)
        return True

    def _module_hook(self, module: Any, args: Any, output: Any) -> None:
        if isinstance(output, self.torch.Tensor):
            self._mark(output.grad_fn)

    def _pre_hook(self, name: str, dim: int | None) -> Any:
        torch = self.torch

        def hook(module: Any, args: Any) -> None:
            if not args or not torch.is_grad_enabled() or not self.recording():
                return
            a = args[0]
            if not isinstance(a, torch.Tensor) or not a.is_floating_point():
                return
            node = a.grad_fn
            kind = NODES.get(type(node).__name__) if node is not None else None
            if kind is None or not self._mark(node):
                return
            layer, reduce = self._layer(name, kind, dim, a.dim())
            self.order.setdefault(layer.name, len(self.order))
            call = reduce(a)
            if call is not None:
                self.calls.append((layer, call))

        return hook

    def _layer(self, name: str, kind: str, dim: int | None,
               ndim: int) -> tuple[ActivationLayer, ActivationReducer]:
        found = self._layers.get((name, kind))
        if found is None:
            nn = self.torch.nn
            spec = activation_of(getattr(nn, kind)(), nn)
            assert spec is not None
            unit_dim = dim if dim is not None else (1 if ndim >= 4 else -1)
            layer = FunctionalLayer(name + SUFFIX, None, **spec, unit_dim=unit_dim,
                                    source=f"input of {name}")
            found = self._layers[(name, kind)] = (
                layer, ActivationReducer(layer, self.scratch, squared=self.squared))
        return found


class FunctionalLayer(ActivationLayer):
    """An activation read elsewhere than at an activation module's output (the input of a
    layer, the states of an nn.RNN); ``source`` says where."""

    def __init__(self, *args: Any, source: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
