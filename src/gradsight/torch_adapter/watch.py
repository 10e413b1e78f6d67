"""``watch(model)``: the engine's LayerStats from a PyTorch training loop, through hooks.

Two lines added to a user's loop (the loop itself is unchanged)::

    with gradsight.watch(model, optimizer=optimizer) as watcher:
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
    findings = gradsight.diagnose(watcher.history)

**When a step is recorded.** Step numbers count optimizer steps (0-based); every
``every``-th step is recorded (step % every == 0).

* ``optimizer`` given (no scaler): at ``optimizer.step()``. Its step pre-hook reads the
  gradients ∂C/∂W, ∂C/∂b — final by then: after backward, gradient accumulation, clipping and
  DDP's all-reduce — and ‖W‖ before the update; its post-hook measures ‖ΔW‖ and records.
* ``scaler`` given (AMP): at ``scaler.step(optimizer)``, which the watcher wraps while active.
  Gradients are read just before it and divided by the loss scale (unless ``unscale_`` was
  already called), so the norms are unscaled; the step is recorded after it — also when the
  scaler skips the optimizer step because of inf/NaN gradients: those steps keep their
  non-finite counts, get ``update_ratio`` 0.0 and are listed in ``watcher.skipped_steps``.
* neither: each parameter's gradient is read by a post-accumulate-grad hook as ``backward``
  finishes it (‖W‖ too, before any update); the step is recorded at the model's next forward
  call, or on exit. Without an optimizer there is no ``update_ratio``, and each backward is a
  step (pass the optimizer when accumulating gradients over several backwards).

Activation statistics come from forward hooks on the activation modules, computed on the
output at once (so ``nn.ReLU(inplace=True)`` and later in-place ops cannot change them) and
only for forwards with gradients enabled (evaluation under ``torch.no_grad()`` is ignored).
They belong to the step whose forwards ran since the previous recorded step. No module
full-backward hook is used. All reductions stay on the tensors' device and reach the host in
one transfer per recorded step. Nothing non-finite is hidden: counts go to ``nonfinite``.
"""

from __future__ import annotations

from typing import Any

from ..diagnostics.stats import LayerStats
from ..errors import GradsightError, InvalidValueError
from ._layers import ActivationLayer, find_layers
from ._records import ActivationSlots, ParamSlots, Reading
from ._reduce import ActivationCall, Transfer, reduce_activation
from ._torch import require_torch, unwrap


class Watcher:
    """Hooks on a torch model that append :class:`LayerStats` to ``.history``.

    Use as a context manager or call :meth:`remove` (in a ``finally``) when done: every hook
    is removed, even when the training loop raises. ``watcher.epoch`` may be set by the loop;
    it is copied into the records. See the module docstring for when a step is recorded.
    """

    def __init__(self, model: Any, every: int = 1, optimizer: Any = None, scaler: Any = None,
                 all_reduce: bool = False) -> None:
        torch = require_torch()
        self._torch = torch
        self.model = unwrap(model)
        self.every = _positive_int("every", every)
        self.optimizer = _check_optimizer(torch, optimizer)
        self.scaler = _check_scaler(scaler)
        self.all_reduce = bool(all_reduce)
        self.history: list[LayerStats] = []
        self.skipped_steps: list[int] = []
        self.epoch: int | None = None
        self.step = 0
        self._params, self._acts = find_layers(self.model, torch.nn)
        if not self._params and not self._acts:
            raise GradsightError(
                f"{type(self.model).__name__} has no module gradsight can watch: no leaf "
                "module with a weight and no activation module (nn.ReLU, nn.Sigmoid, ...)"
            )
        self._act_by_name = {layer.name: layer for layer in self._acts}
        self._order: dict[str, int] = {}
        self._handles: list[Any] = []
        self._order_handles: list[Any] = []
        self._pending: dict[str, list[ActivationCall]] = {}
        self._reading: Reading | None = None
        self._snapshot: list[Any] | None = None
        self._buffers: list[Any] | None = None
        self._delta: list[Any] | str | None = None
        self._stepped = False
        self._in_scaler_step = False
        self._backward_seen = False
        self._accumulated: dict[int, tuple[Any, int, Any, Any]] = {}
        self._scaler_saved: tuple[bool, Any] | None = None
        self._active = True
        try:
            self._install()
        except BaseException:
            self._uninstall()
            raise

    # ---- installing and removing hooks ------------------------------------------------
    def _install(self) -> None:
        for param_layer in self._params:
            hook = self._order_hook(param_layer.name)
            self._order_handles.append(param_layer.module.register_forward_hook(hook))
        for act_layer in self._acts:
            hook = self._activation_hook(act_layer)
            self._handles.append(act_layer.module.register_forward_hook(hook))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._before_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._after_step))
        if self.scaler is not None:
            self._patch_scaler()
        if self.optimizer is None and self.scaler is None:
            self._handles.append(self.model.register_forward_pre_hook(self._on_forward))
            self._param_roles: dict[int, Any] = {}
            for param_layer in self._params:
                for param in (param_layer.weight, param_layer.bias):
                    if param is not None and param.requires_grad:
                        if id(param) not in self._param_roles:
                            self._handles.append(
                                param.register_post_accumulate_grad_hook(self._on_grad))
                        self._param_roles[id(param)] = param

    def _uninstall(self) -> None:
        for handle in self._handles + self._order_handles:
            handle.remove()
        self._handles, self._order_handles = [], []
        if self._scaler_saved is not None:
            had_own, previous = self._scaler_saved
            if had_own:
                self.scaler.step = previous
            else:
                self.scaler.__dict__.pop("step", None)
            self._scaler_saved = None

    def remove(self) -> None:
        """Record a step still pending (no-optimizer mode), then remove every hook."""
        if not self._active:
            return
        self._active = False
        try:
            if self._backward_seen:
                self._backward_seen = False
                self._end_step()
        finally:
            self._uninstall()
            self._pending, self._reading, self._snapshot = {}, None, None

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return (f"Watcher({type(self.model).__name__}: {len(self._params)} param layers, "
                f"{len(self._acts)} activations, step={self.step}, "
                f"records={len(self.history)}, active={self._active})")

    # ---- forward hooks --------------------------------------------------------------------
    def _recording(self) -> bool:
        return self.step % self.every == 0

    def _order_hook(self, name: str) -> Any:
        order = self._order

        def hook(module: Any, args: Any, output: Any) -> None:
            if name not in order:
                order[name] = len(order)

        return hook

    def _activation_hook(self, layer: ActivationLayer) -> Any:
        torch, order, name = self._torch, self._order, layer.name

        def hook(module: Any, args: Any, output: Any) -> None:
            if name not in order:
                order[name] = len(order)
            if self.step % self.every or not torch.is_grad_enabled():
                return
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                self._pending.setdefault(name, []).append(reduce_activation(layer, output))

        return hook

    # ---- reading parameters ---------------------------------------------------------------
    def _read_params(self, scale: Any = None) -> Reading:
        """‖∂C/∂W‖, ‖∂C/∂b‖ (divided by the loss scale if given) and ‖W‖, on device."""
        torch = self._torch
        reading = Reading()
        for layer in self._params:
            for role, param in (("W", layer.weight), ("b", layer.bias)):
                if param is not None and param.grad is not None:
                    grad = _dense(param.grad)
                    reading.keys.append((layer.name, role))
                    reading.grad_norms.append(grad)
                    reading.grads.setdefault(layer.name, []).append(grad)
        reading.grad_norms = _norms(torch, reading.grad_norms)
        if scale is not None and reading.grad_norms:  # a power of 2: the division is exact
            reading.grad_norms = list(torch._foreach_div(reading.grad_norms, scale))
        reading.weight_norms = _norms(torch, [layer.weight.detach() for layer in self._params])
        return reading

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._stepped = True
        if not self._recording():
            return
        if not self._in_scaler_step:
            self._reading = self._read_params()
        self._snapshot = self._copy_weights()

    def _copy_weights(self) -> list[Any]:
        """W before the update, into buffers allocated once (one copy of the weights)."""
        weights = [layer.weight.detach() for layer in self._params]
        buffers = self._buffers
        if buffers is not None:
            try:
                self._torch._foreach_copy_(buffers, weights)
                return buffers
            except RuntimeError:  # a weight was replaced by one of another shape or device
                pass
        self._buffers = [w.clone() for w in weights]
        return self._buffers

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._snapshot is not None:
            current = [layer.weight.detach() for layer in self._params]
            self._torch._foreach_sub_(self._snapshot, current)  # W_old − W_new = −ΔW
            self._delta = _norms(self._torch, self._snapshot)
            self._snapshot = None
        if not self._in_scaler_step:
            self._end_step()

    # ---- AMP: wrapping scaler.step --------------------------------------------------------
    def _patch_scaler(self) -> None:
        scaler = self.scaler
        had_own = "step" in scaler.__dict__
        original = scaler.step
        self._scaler_saved = (had_own, scaler.__dict__.get("step"))

        def step(optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            return self._scaler_step(original, optimizer, *args, **kwargs)

        scaler.step = step

    def _scaler_step(self, original: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        recording = self._recording()
        if recording:
            self._reading = self._read_params(scale=_loss_scale(self.scaler, optimizer))
        self._in_scaler_step, self._stepped = True, False
        try:
            result = original(optimizer, *args, **kwargs)
        finally:
            self._in_scaler_step = False
        if recording and not self._stepped:
            self._delta = "skipped"  # the optimizer did not run: ΔW = 0
        self._end_step(_found_inf(self.scaler, optimizer) if recording else None)
        return result

    # ---- no optimizer: post-accumulate-grad hooks -----------------------------------------
    def _on_grad(self, param: Any) -> None:
        self._backward_seen = True
        if not self._recording():
            return
        torch = self._torch
        grad = _dense(param.grad)
        grad_norm, weight_norm = _norms(torch, [grad, param.detach()])
        finite = torch.sub(grad, grad).nan_to_num_(nan=1.0).sum()  # non-finite entries
        self._accumulated[id(param)] = (grad_norm, grad.numel(), finite, weight_norm)

    def _on_forward(self, module: Any, args: Any) -> None:
        if self._backward_seen:
            self._backward_seen = False
            self._end_step()

    def _reading_from_hooks(self) -> Reading:
        """The norms the post-accumulate-grad hooks took (‖W‖ read now where none did)."""
        reading = Reading()
        weight_norms: dict[str, Any] = {}
        for layer in self._params:
            for role, param in (("W", layer.weight), ("b", layer.bias)):
                entry = self._accumulated.get(id(param)) if param is not None else None
                if entry is not None:
                    grad_norm, numel, bad, weight_norm = entry
                    reading.keys.append((layer.name, role))
                    reading.grad_norms.append(grad_norm)
                    reading.finite.setdefault(layer.name, []).append((numel, numel - bad))
                    if role == "W":
                        weight_norms[layer.name] = weight_norm
        missing = [layer for layer in self._params if layer.name not in weight_norms]
        norms = _norms(self._torch, [layer.weight.detach() for layer in missing])
        weight_norms.update({layer.name: n for layer, n in zip(missing, norms, strict=True)})
        reading.weight_norms = [weight_norms[layer.name] for layer in self._params]
        for layer in self._params:  # layers without gradients: none non-finite
            reading.finite.setdefault(layer.name, [])
        return reading

    # ---- recording ------------------------------------------------------------------------
    def _end_step(self, found_inf: Any = None) -> None:
        try:
            if self._recording():
                reading = self._reading
                if reading is None:
                    reading = self._reading_from_hooks()
                self._record(reading, found_inf)
        finally:
            self._pending, self._reading, self._delta = {}, None, None
            self._accumulated = {}
            self.step += 1

    def _record(self, reading: Reading, found_inf: Any) -> None:
        transfer = Transfer()
        acts = {name: ActivationSlots(self._act_by_name[name], calls, transfer)
                for name, calls in self._pending.items()}
        params = ParamSlots(self._params, reading, self._delta, transfer)
        inf_slot = transfer.add(found_inf, summed=True) if found_inf is not None else None
        world = transfer.run(self.all_reduce)
        if inf_slot is not None and inf_slot.value > 0:
            self.skipped_steps.append(self.step)
        if self._order_handles:  # the forward order is known now
            for handle in self._order_handles:
                handle.remove()
            self._order_handles = []
            for layer in self._params:  # layers never called in a forward come last
                self._order.setdefault(layer.name, len(self._order))
        records = [slots.record(self._base(name), world) for name, slots in acts.items()]
        records += params.records(self._base)
        records.sort(key=lambda r: r.index)
        self.history.extend(records)

    def _base(self, name: str) -> dict[str, Any]:
        return {"layer": name, "index": self._order[name], "step": self.step,
                "epoch": self.epoch}


# ---- helpers ----------------------------------------------------------------------------------
def _dense(grad: Any) -> Any:
    return grad.coalesce().values() if grad.is_sparse else grad


def _norms(torch: Any, tensors: list[Any]) -> list[Any]:
    """Frobenius norms, one fused kernel launch per device and dtype."""
    return list(torch._foreach_norm(tensors)) if tensors else []


def _loss_scale(scaler: Any, optimizer: Any) -> Any:
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


def _found_inf(scaler: Any, optimizer: Any) -> Any:
    """Number of devices on which the scaler found inf/NaN gradients (a device tensor)."""
    try:
        found = scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"]
    except (AttributeError, KeyError, TypeError):
        return None
    values = list(found.values())
    if not values:
        return None
    total = values[0].to(values[0].device).float()
    for value in values[1:]:
        total = total + value.to(total.device).float()
    return total


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    return value


def _check_optimizer(torch: Any, optimizer: Any) -> Any:
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise GradsightError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    return optimizer


def _check_scaler(scaler: Any) -> Any:
    if scaler is None:
        return None
    if not all(hasattr(scaler, attr) for attr in ("step", "scale", "get_scale")):
        raise GradsightError(
            f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}"
        )
    enabled = getattr(scaler, "is_enabled", lambda: True)()
    return scaler if enabled else None


def watch(model: Any, every: int = 1, optimizer: Any = None, scaler: Any = None,
          all_reduce: bool = False) -> Watcher:
    """Watch a ``torch.nn.Module``'s training: one :class:`LayerStats` per layer per step.

    model : the module (a DistributedDataParallel / DataParallel wrapper is unwrapped;
        layer names are module paths of ``model.module``). Parametrised layers are leaf
        modules with a ``weight`` (Linear, Conv*, ...); activations are nn.Sigmoid, Tanh,
        ReLU, LeakyReLU, ELU, GELU, SiLU, ... modules.
    every : record every ``every``-th optimizer step.
    optimizer : the ``torch.optim`` optimizer; gives update ratios ‖ΔW‖/‖W‖ and the step
        boundary. Recommended.
    scaler : the ``torch.amp.GradScaler`` of mixed-precision training: norms are unscaled
        and steps the scaler skips are flagged.
    all_reduce : under ``torch.distributed``, average the recorded values over ranks
        (non-finite counts are summed) with one all-reduce per step; every rank records.

    Returns a :class:`Watcher` (a context manager; ``.history``, ``.remove()``).
    """
    return Watcher(model, every=every, optimizer=optimizer, scaler=scaler,
                   all_reduce=all_reduce)
