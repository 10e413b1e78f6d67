"""Reading the parametrised layers at a recorded step: ‖∂C/∂W‖, ‖∂C/∂b‖, ‖W‖ and ‖ΔW‖.

Every norm is taken as a squared norm ‖t‖² = t·t, one BLAS dot product per tensor (it reads
the tensor once, two to three times faster on the CPU than ATen's norm kernel), left on the
device; the square roots are taken on the host after the step's one transfer. Half-precision
tensors are widened to float32 first. A float32 t·t that overflows (entries ≳ 1e19) gives
inf, and the gradient's norm is then recomputed exactly after the transfer.
"""

from __future__ import annotations

from typing import Any

from ._layers import ParamLayer
from ._records import Reading
from ._update import BUFFER, SNAPSHOT, ZERO, UpdateRules


def _stored(tensor: Any) -> Any:
    """The values a sparse tensor (``nn.Embedding(sparse=True)``'s gradient) stores — the
    same norm, and the entries the non-finite count looks at; a dense tensor itself."""
    return tensor.coalesce().values() if tensor.is_sparse else tensor


class ParamReader:
    """The parameter side of a :class:`~.watcher.Watcher`.

    ``read`` takes the gradient and weight norms (after backward, before the step);
    ``before_step``/``after_step`` bracket the optimizer step and give ‖ΔW‖ by the rule of
    :mod:`._update` — W is copied (into buffers allocated once) only for the layers whose
    update is not known exactly from the optimizer.
    """

    def __init__(self, torch: Any, layers: list[ParamLayer], optimizer: Any) -> None:
        self.torch, self.layers = torch, layers
        self.rules = UpdateRules(torch, optimizer, layers) if optimizer is not None else None
        self.plan: list[tuple[str, float]] | None = None
        self._copies: dict[int, Any] = {}  # W before the step, for the "snapshot" layers
        self._snapshot: list[int] = []

    def read(self, scale: Any = None) -> Reading:
        """‖∂C/∂W‖², ‖∂C/∂b‖² and ‖W‖² as 0-d device tensors; ``scale`` is the AMP loss
        scale the gradients carry (their norms are divided by it on the host)."""
        reading = Reading(scale=scale)
        keys, squares, grads = reading.keys, reading.squares, reading.grads
        for j, layer in enumerate(self.layers):
            for name, param in (("W", layer.weight), ("b", layer.bias)):
                grad = None if param is None else param.grad
                if grad is None:
                    continue
                grad = _stored(grad)
                keys.append((j, name))
                grads.append(grad)
                squares.append(self.square(grad))
        for layer in self.layers:
            squares.append(self.square(layer.weight.detach()))
        return reading

    def square(self, tensor: Any) -> Any:
        """‖t‖² = t·t, a 0-d tensor on t's device."""
        torch = self.torch
        tensor = _stored(tensor)  # a sparse momentum buffer too
        if tensor.requires_grad:
            tensor = tensor.detach()
        flat = tensor.reshape(-1)
        if flat.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()
        return torch.dot(flat, flat)

    # ---- the optimizer step -----------------------------------------------------------------
    def before_step(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Choose how each layer's ‖ΔW‖ is known; copy W where it is not known exactly."""
        if self.rules is None:
            return
        self.plan = plan = self.rules.plan(args, kwargs)
        self._snapshot = [j for j, (rule, _) in enumerate(plan) if rule == SNAPSHOT]
        if self._snapshot:
            self._copy([self.layers[j].weight.detach() for j in self._snapshot])

    def _copy(self, weights: list[Any]) -> None:
        """W before the update, into buffers allocated once (one copy of those weights)."""
        copies = self._copies
        targets = [copies.get(j) for j in self._snapshot]
        if all(t is not None and t.shape == w.shape and t.dtype == w.dtype
               and t.device == w.device for t, w in zip(targets, weights, strict=True)):
            self.torch._foreach_copy_(targets, weights)
            return
        for j, weight in zip(self._snapshot, weights, strict=True):
            copies[j] = weight.clone()

    def after_step(self) -> list[Any]:
        """‖b‖² or ‖W_old − W_new‖² (0-d tensors) of the "buffer"/"snapshot" layers, in layer
        order; a "buffer" layer whose weight had no gradient was skipped: rule "zero"."""
        plan = self.plan
        changes: list[Any] = []
        if plan is None or self.rules is None:
            return changes
        if self._snapshot:
            old = [self._copies[j] for j in self._snapshot]
            new = [self.layers[j].weight.detach() for j in self._snapshot]
            self.torch._foreach_sub_(old, new)  # W_old − W_new = −ΔW
        state = self.rules.optimizer.state
        for j, (rule, _lr) in enumerate(plan):
            if rule == SNAPSHOT:
                changes.append(self.square(self._copies[j]))
            elif rule == BUFFER:
                weight = self.layers[j].weight
                buffer = state[weight].get("momentum_buffer") if weight.grad is not None \
                    else None
                if buffer is None:
                    plan[j] = (ZERO, 0.0)
                else:
                    changes.append(self.square(buffer))
        return changes
