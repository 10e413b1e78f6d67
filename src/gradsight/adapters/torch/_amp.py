"""Mixed precision: what the watcher reads from a ``torch.amp.GradScaler``.

The scale and the per-optimizer "found inf" flags are read as device tensors (no host
synchronisation); ``get_scale()`` — one sync — is the public fallback should the scaler's
internals differ.
"""

from __future__ import annotations

from typing import Any


def loss_scale(scaler: Any, optimizer: Any) -> Any:
    """The scale the gradients are multiplied by now: a device tensor, None if unscaled."""
    try:
        from torch.amp.grad_scaler import OptState

        if scaler._per_optimizer_states[id(optimizer)]["stage"] is OptState.UNSCALED:
            return None  # the user called scaler.unscale_(optimizer) already
        scale = scaler._get_scale_async()
        if scale is not None:
            return scale
    except (AttributeError, ImportError, KeyError, TypeError):
        pass
    return float(scaler.get_scale())  # public fallback (one host sync)


def current_scale(scaler: Any) -> Any:
    """The scale the loss is multiplied by now (the gradients of a backward pass that just
    ended carry it): a device tensor, or a float from the public ``get_scale()``."""
    try:
        scale = scaler._get_scale_async()
        if scale is not None:
            return scale
    except AttributeError:
        pass
    return float(scaler.get_scale())


def found_inf(scaler: Any, optimizer: Any) -> Any:
    """Number of devices on which the scaler found inf/NaN gradients (a device tensor)."""
    try:
        found = scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"]
    except (AttributeError, KeyError, TypeError):
        return None
    values = list(found.values())
    if not values:
        return None
    total = values[0].float()
    for value in values[1:]:
        total = total + value.to(total.device).float()
    return total
