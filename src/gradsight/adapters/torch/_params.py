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
from ._reduce import sharded_square
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
        # W before the step, for the "snapshot" layers: (layer, part) → copy
        self._copies: dict[tuple[int, int], Any] = {}
        self._snapshot: list[int] = []

    def read(self, scale: Any = None) -> Reading:
        """‖∂C/∂W‖², ‖∂C/∂b‖² and ‖W‖² as 0-d device tensors; ``scale`` is the AMP loss
        scale the gradients carry (their norms are divided by it on the host). A record of
        several parts (an LSTM layer's weight_ih and weight_hh, a block of in_proj_weight)
        gets the squares of its parts summed: the norm over all of them."""
        reading = Reading(scale=scale)
        keys, squares, grads = reading.keys, reading.squares, reading.grads
        for j, layer in enumerate(self.layers):
            for name, parts in (("W", layer.weights), ("b", layer.biases)):
                blocks = [part.of(_stored(part.param.grad)) for part in parts
                          if part.param.grad is not None]
                if not blocks:
                    continue
                keys.append((j, name))
                grads.append(blocks)
                squares.append(self.squares(blocks))
        for layer in self.layers:
            if layer.weights:
                squares.append(self.squares([part.of(part.param.detach())
                                             for part in layer.weights]))
        return reading

    def squares(self, tensors: list[Any]) -> Any:
        """Σ‖t‖² over the tensors, a 0-d tensor on their device."""
        total = self.square(tensors[0])
        for tensor in tensors[1:]:
            total = total + self.square(tensor)
        return total

    def square(self, tensor: Any) -> Any:
        """‖t‖² = t·t, a 0-d tensor on t's device."""
        torch = self.torch
        sharded = sharded_square(tensor, self.square)  # FSDP2: this rank's shard
        if sharded is not None:
            return sharded
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
            self._copy(self._blocks(self._snapshot))

    def _blocks(self, positions: list[int]) -> list[Any]:
        """The W blocks (parts) of the layers at ``positions``, in order."""
        return [part.of(part.param.detach()) for j in positions
                for part in self.layers[j].weights]

    def _copy(self, weights: list[Any]) -> None:
        """W before the update, into buffers allocated once (one copy of those weights)."""
        copies = self._copies
        keys = [(j, i) for j in self._snapshot for i in range(len(self.layers[j].weights))]
        targets = [copies.get(key) for key in keys]
        if all(t is not None and t.shape == w.shape and t.dtype == w.dtype
               and t.device == w.device for t, w in zip(targets, weights, strict=True)):
            self.torch._foreach_copy_(targets, weights)
            return
        for key, weight in zip(keys, weights, strict=True):
            copies[key] = weight.clone()

    def after_step(self) -> list[Any]:
        """‖b‖² or ‖W_old − W_new‖² (0-d tensors) of the "buffer"/"snapshot" layers, in layer
        order; a "buffer" layer whose weights had no gradient was skipped: rule "zero"."""
        plan = self.plan
        changes: list[Any] = []
        if plan is None or self.rules is None:
            return changes
        copies = self._copies
        if self._snapshot:
            old = [copies[(j, i)] for j in self._snapshot
                   for i in range(len(self.layers[j].weights))]
            self.torch._foreach_sub_(old, self._blocks(self._snapshot))  # W_old − W_new
        state = self.rules.optimizer.state
        for j, (rule, _lr) in enumerate(plan):
            parts = self.layers[j].weights
            if rule == SNAPSHOT:
                changes.append(self.squares([copies[(j, i)] for i in range(len(parts))]))
            elif rule == BUFFER:
                buffers = [part.of(_stored(buffer)) for part in parts
                           if part.param.grad is not None
                           and (buffer := state[part.param].get("momentum_buffer"))
                           is not None]
                if not buffers:
                    plan[j] = (ZERO, 0.0)
                else:
                    changes.append(self.squares(buffers))
        return changes
