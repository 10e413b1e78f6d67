"""``watch(model)``: the engine's LayerStats from a PyTorch training loop, through hooks.

Two lines added to a user's loop (the loop itself is unchanged)::

    with gradsight.watch(model, optimizer=optimizer) as watcher:
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
    findings = gradsight.diagnose(watcher.history)

**When a step is recorded.** Steps are numbered from 0 as below; every ``every``-th step is
recorded (step % every == 0).

* ``optimizer`` given (no scaler): at ``optimizer.step()``. Its step pre-hook reads the
  gradients ∂C/∂W, ∂C/∂b — final by then: after backward, gradient accumulation, clipping and
  DDP's all-reduce — and ‖W‖ before the update; its post-hook measures ‖ΔW‖ and records.
* ``scaler`` given (AMP): at ``scaler.step(optimizer)``, which the watcher wraps while active.
  Gradients are read just before it and divided by the loss scale (unless ``unscale_`` was
  already called), so the norms are unscaled; the step is recorded after it — also when the
  scaler skips the optimizer step because of inf/NaN gradients: those steps keep their
  non-finite counts, get ``update_ratio`` 0.0 and are listed in ``watcher.skipped_steps``.
* neither: at the end of each backward pass (``loss.backward()``): the first parameter
  whose gradient is accumulated (a post-accumulate-grad hook) asks autograd to call the
  watcher once the whole pass is done, when every gradient and ‖W‖ are read. Without an
  optimizer there is no ``update_ratio``, and each backward pass is a step (pass the
  optimizer when accumulating gradients over several backward passes, or under DDP, whose
  averaged gradients are final only at the optimizer step).

Activation statistics come from forward hooks on the activation modules, computed on the
output at once (so ``nn.ReLU(inplace=True)`` and later in-place ops cannot change them) and
only for forwards with gradients enabled (evaluation under ``torch.no_grad()`` is ignored).
They belong to the step whose forwards ran since the previous step; an activation module
called several times in a step (one ``nn.ReLU`` reused after every layer, or gradient
accumulation) gives one record pooling all its calls — give each layer its own module to
see them apart. No module full-backward hook is used. All reductions stay on the tensors'
device and reach the host in one transfer per recorded step (the LayerStats are built from
those numbers when ``history`` is read).
Nothing non-finite is hidden: NaN/inf values are counted in ``nonfinite``, norms stay NaN/inf.

Update ratios: with ``torch.optim.SGD`` without momentum ‖ΔW‖ = η‖∂C/∂W‖, with momentum
(not Nesterov) ‖ΔW‖ = η‖b‖ of its momentum buffer — exact identities of its update rule
(see :mod:`._update`); for other optimizers W is copied before the step and ‖W_new − W_old‖
measured after it. Memory: that copy of the watched weights (other optimizers only) and one
work buffer of about four times the largest watched activation.
"""

from __future__ import annotations

from typing import Any

from ...diagnostics.history import LayerHistory
from ...diagnostics.stats import LayerStats
from ...errors import GradsightError, require_positive_int
from ._amp import found_inf, loss_scale
from ._layers import ActivationLayer, find_layers
from ._params import ParamReader
from ._records import ActivationSlots, ParamSlots, Reading
from ._reduce import ActivationCall, ActivationReducer, Scratch, Transfer, stack_scalars
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
        self.every = require_positive_int("every", every)
        self.optimizer = _check_optimizer(torch, optimizer)
        self.scaler = _check_scaler(scaler)
        self.all_reduce = bool(all_reduce)
        self._history: list[LayerStats] = []
        self._raw: list[tuple[Any, ...]] = []  # transferred steps not yet made LayerStats
        self.skipped_steps: list[int] = []
        self.epoch: int | None = None
        self.step = 0
        self._params, self._acts = find_layers(self.model, torch.nn)
        if not self._params and not self._acts:
            raise GradsightError(
                f"{type(self.model).__name__} has no module gradsight can watch: no leaf "
                "module with a weight and no activation module (nn.ReLU, nn.Sigmoid, ...)"
            )
        self._order: dict[str, int] = {}
        self._handles: list[Any] = []
        self._order_handles: list[Any] = []
        self._act_handles: list[Any] = []
        self._act_hook_fns: list[Any] | None = None
        self._calls: list[tuple[ActivationLayer, ActivationCall]] = []
        self._reading: Reading | None = None
        self._scratch = Scratch()
        self._param_reader = ParamReader(torch, self._params, self.optimizer)
        self._delta: list[Any] | str | None = None
        self._stepped = False
        self._in_scaler_step = False
        self._backward_queued = False
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
        self._act_hooks(True)
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._before_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._after_step))
        if self.scaler is not None:
            self._patch_scaler()
        if self.optimizer is None and self.scaler is None:
            seen: set[int] = set()
            for param_layer in self._params:
                for param in (param_layer.weight, param_layer.bias):
                    if param is not None and param.requires_grad and id(param) not in seen:
                        seen.add(id(param))
                        self._handles.append(
                            param.register_post_accumulate_grad_hook(self._on_grad))

    def _act_hooks(self, on: bool) -> None:
        """Forward hooks on the activation modules only for steps that are recorded: the
        other steps' forwards run as if nothing were watched."""
        if on and not self._act_handles:
            if self._act_hook_fns is None:  # made once: each holds its reducer's constants
                self._act_hook_fns = [self._activation_hook(layer) for layer in self._acts]
            self._act_handles = [layer.module.register_forward_hook(hook)
                                 for layer, hook in zip(self._acts, self._act_hook_fns,
                                                        strict=True)]
        elif not on:
            for handle in self._act_handles:
                handle.remove()
            self._act_handles = []

    def _uninstall(self) -> None:
        for handle in self._handles + self._order_handles:
            handle.remove()
        self._handles, self._order_handles = [], []
        self._act_hooks(False)
        if self._scaler_saved is not None:
            had_own, previous = self._scaler_saved
            if had_own:
                self.scaler.step = previous
            else:
                self.scaler.__dict__.pop("step", None)
            self._scaler_saved = None

    def remove(self) -> None:
        """Remove every hook (forward, tensor and optimizer hooks; the scaler's wrapper).

        Activation statistics of forwards not followed by a recorded step are dropped.
        """
        if not self._active:
            return
        self._active = False
        self._uninstall()
        self._calls, self._reading, self._delta = [], None, None
        self._param_reader.plan = None

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return (f"Watcher({type(self.model).__name__}: {len(self._params)} param layers, "
                f"{len(self._acts)} activations, step={self.step}, "
                f"records={len(self.history)}, active={self._active})")

    def _repr_html_(self) -> str:
        if not self.history:
            return f"<p>{repr(self).replace('<', '&lt;')}</p>"
        return str(LayerHistory(self.history)._repr_html_())

    @property
    def history(self) -> list[LayerStats]:
        """The LayerStats recorded so far: one per layer per recorded step, forward order.

        The numbers reach the host at each recorded step; the records are built from them
        when ``history`` is read (the same list object grows).
        """
        for base, values, world, acts, params in self._raw:
            records = [slots.record(base(slots.layer.name), values, world) for slots in acts]
            records += params.records(base, values)
            records.sort(key=lambda r: r.index)
            self._history.extend(records)
        self._raw = []
        return self._history

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
        reduce = ActivationReducer(layer, self._scratch, squared=self.all_reduce)
        grad_enabled, tensor = torch.is_grad_enabled, torch.Tensor

        def hook(module: Any, args: Any, output: Any) -> None:
            if name not in order:
                order[name] = len(order)
            if self.step % self.every or not grad_enabled():
                return
            if isinstance(output, tensor) and output.is_floating_point():
                call = reduce(output)
                if call is not None:
                    self._calls.append((layer, call))

        return hook

    # ---- reading parameters ---------------------------------------------------------------
    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._stepped = True
        if not self._recording():
            return
        if not self._in_scaler_step:
            self._reading = self._param_reader.read()
        self._param_reader.before_step(args, kwargs)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._param_reader.plan is not None:
            self._delta = self._param_reader.after_step()
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
            self._reading = self._param_reader.read(loss_scale(self.scaler, optimizer))
        self._in_scaler_step, self._stepped = True, False
        try:
            result = original(optimizer, *args, **kwargs)
        finally:
            self._in_scaler_step = False
        if recording and self.optimizer is not None and not self._stepped:
            self._delta = "skipped"  # the watched optimizer did not run: ΔW = 0
        self._end_step(found_inf(self.scaler, optimizer) if recording else None)
        return result

    # ---- no optimizer: the end of each backward pass ------------------------------------
    def _on_grad(self, param: Any) -> None:
        """A parameter's gradient is accumulated: once per backward pass, ask autograd to
        call :meth:`_after_backward` when the whole pass is done (every gradient final)."""
        if not self._backward_queued:
            self._backward_queued = True
            from torch.autograd import Variable

            # queued from inside a callback, it runs after the callbacks queued during the
            # pass — DDP's, which writes the averaged gradients into .grad, among them
            engine = Variable._execution_engine
            engine.queue_callback(lambda: engine.queue_callback(self._after_backward))

    def _after_backward(self) -> None:
        self._backward_queued = False
        if self._active:
            if self._recording():
                self._reading = self._param_reader.read()
            self._end_step()

    # ---- recording ------------------------------------------------------------------------
    def _end_step(self, inf_flags: Any = None) -> None:
        try:
            if self._recording() and self._reading is not None:
                self._record(self._reading, inf_flags)
        finally:
            self._calls, self._reading, self._delta = [], None, None
            self._param_reader.plan = None
            self.step += 1
            if self.every > 1 and self._active:
                self._act_hooks(self._recording())

    def _record(self, reading: Reading, inf_flags: Any) -> None:
        transfer = Transfer()
        acts = self._activation_slots(transfer)
        plan: Any = self._param_reader.plan
        if self._delta == "skipped":
            plan = "skipped"
        stacked = stack_scalars(reading.squares) if reading.squares else None
        changes = stack_scalars(self._delta) if isinstance(self._delta, list) and self._delta \
            else None
        if self.all_reduce:  # average norms over the ranks, not squares
            stacked = stacked.sqrt_() if stacked is not None else None
            changes = changes.sqrt_() if changes is not None else None
        params = ParamSlots(self._params, reading, plan, changes, transfer, stacked,
                            rooted=self.all_reduce)
        inf_at = transfer.add(inf_flags, summed=True) if inf_flags is not None else None
        values, world = transfer.run(self.all_reduce)
        params.count_nonfinite(values)  # exact counts now, while the gradients exist
        if inf_at is not None and values[inf_at] > 0:
            self.skipped_steps.append(self.step)
        if self._order_handles:  # the forward order is known now
            for handle in self._order_handles:
                handle.remove()
            self._order_handles = []
            for layer in self._params:  # layers never called in a forward come last
                self._order.setdefault(layer.name, len(self._order))
        order, step, epoch = self._order, self.step, self.epoch

        def base(name: str) -> dict[str, Any]:
            return {"layer": name, "index": order[name], "step": step, "epoch": epoch}

        self._raw.append((base, values, world, acts, params))

    def _activation_slots(self, transfer: Transfer) -> list[ActivationSlots]:
        """The step's activation calls grouped per layer (a module called several times in
        a step pools its calls), in the order of their first call."""
        calls = self._calls
        if len({id(layer) for layer, _ in calls}) == len(calls):  # one call each
            return [ActivationSlots(layer, [call], transfer, self.all_reduce)
                    for layer, call in calls]
        grouped: dict[int, tuple[ActivationLayer, list[ActivationCall]]] = {}
        for layer, call in calls:
            grouped.setdefault(id(layer), (layer, []))[1].append(call)
        return [ActivationSlots(layer, group, transfer, self.all_reduce)
                for layer, group in grouped.values()]


# ---- helpers ----------------------------------------------------------------------------------

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
