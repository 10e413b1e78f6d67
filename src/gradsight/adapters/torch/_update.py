"""‖ΔW‖ of one optimizer step, for the update ratio ‖ΔW‖/‖W‖ — without copying W where
the optimizer's own state says exactly what the update is.

``torch.optim.SGD`` (lr η, momentum μ, dampening τ, weight decay λ; ``maximize`` only flips
the sign of g, not a norm) updates each weight W with gradient g as

* μ = 0, λ = 0:  W ← W − η·g, so ΔW = −η·g and **‖ΔW‖ = η‖g‖** — the gradient norm the
  watcher measures anyway: no tensor operation at all;
* μ ≠ 0, not Nesterov:  b ← μ·b + (1 − τ)(g + λW) (b ← g + λW at the first step), then
  W ← W − η·b, so after the step ΔW = −η·b and **‖ΔW‖ = η‖b‖**: one norm of the momentum
  buffer ``optimizer.state[W]["momentum_buffer"]``;
* a weight without a gradient (SGD skips it) or outside the optimizer: ΔW = 0.

Everything else — Adam, RMSprop, Nesterov, weight decay without momentum, ``step(closure)``
(the closure recomputes g inside the step), the fused kernel (which may skip the update on
inf/NaN gradients), a tensor learning rate, a subclass of SGD — is measured from a copy of W
taken before the step: ‖W_new − W_old‖.

The identities hold in exact arithmetic. In floating point the copy measures the stored
difference fl(W − η·g) − W, which differs from η·g by the rounding of W_new (at most half
an ulp of W per entry, large next to η·g when the update is tiny); the identity gives the
update the optimizer computed. The test suite checks that both agree (float64, relative
difference < 1e-6) for SGD with and without momentum, weight decay and dampening.
"""

from __future__ import annotations

from typing import Any

from ._layers import ParamLayer

# How ‖ΔW‖ of one layer is known at a step: the layer's rule and, for "grad"/"buffer", η.
GRAD, BUFFER, SNAPSHOT, ZERO = "grad", "buffer", "snapshot", "zero"


class UpdateRules:
    """Chooses per step and layer how ‖ΔW‖ is measured (see the module docstring)."""

    def __init__(self, torch: Any, optimizer: Any, layers: list[ParamLayer]) -> None:
        self.torch, self.optimizer, self.layers = torch, optimizer, layers
        self._exact = type(optimizer) is torch.optim.SGD
        self._groups = (-1, -1)
        # each layer's weights: their param group, None (outside the optimizer), or -1
        # (parts in different groups: measured from a copy)
        self._index: list[int | None] = []
        self._weightless = [not layer.weights for layer in layers]

    def plan(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, float]]:
        """(rule, η) per watched layer for the step about to run, from the arguments of the
        step pre-hook — (optimizer, closure?) — and each param group's current settings."""
        if not self._exact or (len(args) > 1 and args[1] is not None) or kwargs.get("closure"):
            return [(ZERO, 0.0) if none else (SNAPSHOT, 0.0) for none in self._weightless]
        groups = self.optimizer.param_groups
        size = sum(len(group["params"]) for group in groups)
        if (len(groups), size) != self._groups:  # groups changed since the last plan
            where = {id(p): i for i, group in enumerate(groups) for p in group["params"]}
            self._index = [_common({where.get(id(part.param)) for part in layer.weights})
                           for layer in self.layers]
            self._groups = (len(groups), size)
        rules = [_group_rule(group) for group in groups] + [(SNAPSHOT, 0.0)]  # [-1]: mixed
        return [(ZERO, 0.0) if i is None else rules[i] for i in self._index]


def _common(groups: set[int | None]) -> int | None:
    """The one param group of a record's weights; None when none is optimised (or it has no
    weights: a tied head's bias), -1 when its parts sit in different groups."""
    return next(iter(groups)) if len(groups) == 1 else (None if not groups else -1)


def _group_rule(group: dict[str, Any]) -> tuple[str, float]:
    lr, decay, momentum = group.get("lr"), group.get("weight_decay", 0), group.get("momentum", 0)
    if type(lr) not in (float, int) or group.get("fused") or group.get("nesterov") \
            or type(decay) not in (float, int) or type(momentum) not in (float, int):
        return SNAPSHOT, 0.0
    rate = float(lr)  # type: ignore[arg-type]  # an int or a float, checked above
    if momentum != 0:
        return BUFFER, rate
    return (GRAD, rate) if decay == 0 else (SNAPSHOT, 0.0)
