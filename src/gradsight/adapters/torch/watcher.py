"""``watch(model)``: the engine's LayerStats from a PyTorch training loop, through hooks.

Two lines added to a user's loop (the loop itself is unchanged)::

    with gradsight.watch(model, optimizer=optimizer) as watcher:
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
    findings = gradsight.diagnose(watcher.history)

**When a step is recorded.** Steps are numbered from 0 as below. By default on the schedule
of :mod:`gradsight.diagnostics.schedule` — every step for the first 50, then every 50th up to
step 5,000, then every 500th — so that watching a long run stays cheap; ``every=k`` records
steps 0, k, 2k, … (``every=1``: every step).

* ``optimizer`` given (no scaler): at ``optimizer.step()``. Its step pre-hook reads the
  gradients ∂C/∂W, ∂C/∂b — final by then: after backward, gradient accumulation, clipping and
  DDP's all-reduce — and ‖W‖ before the update; its post-hook measures ‖ΔW‖ and records.
* ``scaler`` given (AMP): at ``scaler.step(optimizer)``, which the watcher wraps while active.
  Gradients are read just before it and divided by the loss scale (unless ``unscale_`` was
  already called), so the norms are unscaled; the step is recorded after it — also when the
  scaler skips the optimizer step because of inf/NaN gradients: those steps keep their
  non-finite counts, get ``update_ratio`` 0.0 and ``skipped=True`` (``False`` on the steps
  the scaler ran) and are listed in ``watcher.skipped_steps``; ``diagnose`` leaves them out
  of every rule but the one on skipped steps. Skips on the steps not recorded are counted
  on the device and given by the next record in ``skipped_between``.
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

**Clipping.** At the end of each backward pass of a recorded step (the same "backward done"
callback as above) the total gradient norm of the whole model ‖∂C/∂θ‖ — what
``torch.nn.utils.clip_grad_norm_`` returns, unscaled under AMP — is taken on the device and
recorded as ``grad_norm_before_clip``: a spike that clipping removes from ∂C/∂W still shows.

**The loss.** ``loss_fn=`` (a loss module) gets a forward hook that keeps each training call's
output on the device; ``watcher.record_loss(loss)`` does the same for a loss computed by
hand. A recorded step's records carry the mean of its losses in ``loss`` (brought over with
the step's one transfer), so ``diagnose(watcher.history)`` runs the loss-curve rules.

**The set-up.** At the first loss (computed with gradients enabled) the watcher reads, once,
how the network ends and what it is trained with — the output activation (from the autograd
node that produced the loss's input), the loss's kind, the number of classes, whether the
loss got probabilities — and ``watcher.history.setup`` (also ``watcher.setup``) holds it
with the first step's loss and the optimizer's class (the keys of :class:`~gradsight.
diagnostics.run_setup.RunSetup`; see :mod:`._setup`). Later losses cost one flag check.

Update ratios: with ``torch.optim.SGD`` without momentum ‖ΔW‖ = η‖∂C/∂W‖, with momentum
(not Nesterov) ‖ΔW‖ = η‖b‖ of its momentum buffer — exact identities of its update rule
(see :mod:`._update`); for other optimizers W is copied before the step and ‖W_new − W_old‖
measured after it. Memory: that copy of the watched weights (other optimizers only) and one
work buffer of about four times the largest watched activation.
"""

from __future__ import annotations

import warnings
from typing import Any

from ...diagnostics.coverage import Coverage
from ...diagnostics.history import LayerHistory, RecordList
from ...diagnostics.schedule import RecordingSchedule, loss_span
from ...diagnostics.sinks import as_sinks, emit, flush_all
from ...errors import GradsightError, InvalidValueError
from ._amp import current_scale, found_inf, loss_scale
from ._attention import AttentionEntropy
from ._compiled import CompileSafeHook, ForwardBatch, guard_hooks, make_hook, release_all
from ._functional import FunctionalActivations
from ._host import HostCopier, nonfinite_counts
from ._layers import ActivationLayer, BiasRemovers, assign_output, coverage_of, find_layers
from ._params import ParamReader
from ._records import ActivationSlots, ParamSlots, Reading
from ._reduce import ActivationCall, ActivationReducer, Scratch, Transfer, stack_scalars
from ._sequence import TimeGradients
from ._setup import SetupProbe
from ._torch import is_compiled, is_optimized, require_torch, unwrap


class Watcher:
    """Hooks on a torch model that append :class:`LayerStats` to ``.history``.

    Use as a context manager or call :meth:`remove` (in a ``finally``) when done: every hook
    is removed, even when the training loop raises. ``watcher.epoch`` may be set by the loop;
    it is copied into the records. See the module docstring for when a step is recorded.
    """

    def __init__(self, model: Any, every: int | None = None, optimizer: Any = None,
                 scaler: Any = None, all_reduce: bool = False, loss_fn: Any = None,
                 sinks: Any = None, read_gradients: str = "at-step") -> None:
        torch = require_torch()
        self.sinks = as_sinks(sinks)
        if read_gradients not in ("at-step", "by-caller"):
            raise InvalidValueError(f"read_gradients must be 'at-step' or 'by-caller', got "
                                    f"{read_gradients!r}")
        # "by-caller": a trainer runs the forward and backward inside optimizer.step(closure)
        # (Lightning), so the step's pre-hook comes before the gradients exist; the trainer's
        # own hook calls read_gradients() once they are final
        self._by_caller = read_gradients == "by-caller"
        self._torch = torch
        self.model = unwrap(model)
        # a compiled graph keeps the hooks it was traced with: they stay installed
        self._compiled = is_compiled(model)
        self._batch: ForwardBatch | None = None  # compiled: one opaque call per forward
        self._compiled_whole = is_optimized(model)  # torch.compile(model), not in place
        self.schedule = RecordingSchedule(every)
        self.every = self.schedule.every  # None: the default schedule
        self._record_now = True  # step 0 is recorded on every schedule
        self.optimizer = _check_optimizer(torch, optimizer)
        self.scaler = _check_scaler(scaler)
        self.loss_fn = _check_loss_fn(torch, loss_fn)
        self._setup = SetupProbe(torch, self.optimizer, self.loss_fn)
        self._losses: list[Any] = []  # this step's losses, on the device
        # the losses of the steps not recorded since the last record: their sum on the
        # device (one addition per step) and their count — each record carries their mean
        self._window: Any = None
        self._window_count = 0
        # the loss curve between records: the window's running sum at the end of each span
        # of ``loss_span`` steps, on the device — (step, sum, count) — read at the next record
        self._marks: list[tuple[int, Any, int]] = []
        self._span_start: int | None = None
        self._grad_params = _trainable(self.model)
        self._grad_handles: list[Any] = []
        self._preclip: tuple[Any, Any] | None = None  # (total ‖∂C/∂θ‖, loss scale)
        self._step_fields: dict[int, dict[str, Any]] = {}  # step → skipped, loss, clip norm
        self._copier: Any = HostCopier()  # GPU: values copied without blocking (._host)
        self._pending: tuple[Any, list[float], Any] | None = None
        self._skips_between: Any = None  # skips of the steps not recorded (a device tensor)
        self.all_reduce = bool(all_reduce)
        self._history: RecordList = RecordList()
        self._history.loss_curve = []
        self._raw: list[tuple[Any, ...]] = []  # transferred steps not yet made LayerStats
        self.skipped_steps: list[int] = []
        self.epoch: int | None = None
        self.step = 0
        self._params, self._acts = find_layers(self.model, torch.nn)
        self._history.coverage = coverage_of(self.model, self._params, self._acts, torch.nn)
        if not self._params and not self._acts:
            raise GradsightError(
                f"{type(self.model).__name__} has no module gradsight can watch: no leaf "
                "module with a weight and no activation module (nn.ReLU, nn.Sigmoid, ...)"
            )
        self._order: dict[str, int] = {}
        self._bias_removers = BiasRemovers(torch.nn)  # read in the first step's forwards
        self._handles: list[Any] = []
        self._order_handles: list[Any] = []
        self._order_hooks: list[CompileSafeHook] = []
        self._act_handles: list[Any] = []
        self._act_hook_fns: list[Any] | None = None
        self._calls: list[tuple[ActivationLayer, ActivationCall]] = []
        self._reading: Reading | None = None
        self._scratch = Scratch()
        # recorded steps only: ‖∂C/∂x_t‖ of recurrent layers, attention entropy per head,
        # functional activations read as the input of the next layer
        self._time_grads = TimeGradients(torch, self.model, self._order, self._scratch,
                                         self.all_reduce)
        self._attention = AttentionEntropy(torch, self.model, self._order)
        self._functional = FunctionalActivations(
            torch, self.model, [layer.module for layer in self._acts], self._order,
            self._scratch, self.all_reduce)
        for probe in (self._time_grads, self._attention, self._functional):
            probe.recording = self._recording
        self._param_reader = ParamReader(torch, self._params, self.optimizer)
        self._delta: list[Any] | str | None = None
        self._stepped = False
        self._in_scaler_step = False
        self._backward_queued = False
        self._scaler_saved: tuple[bool, Any] | None = None
        self._active = True
        self._emitted = 0  # records already handed to the sinks
        if self._compiled:
            guard_hooks(True)  # a twin instance must not share the watched model's graph
        try:
            self._install()
        except BaseException:
            self._uninstall()
            raise

    # ---- installing and removing hooks ------------------------------------------------
    def _install(self) -> None:
        if self._compiled_whole:
            self._batch = ForwardBatch(self.model)
        for param_layer in self._params:
            hook = self._order_hook(param_layer.name, param_layer)
            self._order_handles.append(param_layer.module.register_forward_hook(hook))
            for alias, module in param_layer.aliases:  # where a tied weight acts again
                self._order_handles.append(
                    module.register_forward_hook(self._order_hook(alias)))
        self._act_hooks(True)
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._before_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._after_step))
        if self.scaler is not None:
            self._patch_scaler()
        if self.loss_fn is not None:
            self._handles.append(self.loss_fn.register_forward_hook(self._loss_hook))
        self._grad_hooks(True)

    def _grad_hooks(self, on: bool) -> None:
        """Post-accumulate-grad hooks on every trainable parameter: they find the end of each
        backward pass. Without an optimizer or scaler that is the step boundary (always on);
        otherwise they only serve the norm before clipping (on for recorded steps only)."""
        if on and not self._grad_handles:
            self._grad_handles = [param.register_post_accumulate_grad_hook(self._on_grad)
                                  for param in self._grad_params]
        elif not on:
            for handle in self._grad_handles:
                handle.remove()
            self._grad_handles = []

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
        for probe in (self._time_grads, self._attention, self._functional):
            # functional activations are found by their autograd nodes (grad_fn), which a
            # compiled graph does not have: reading them there is a graph break
            probe.hooks(on and not (self._compiled and probe is self._functional))

    def _uninstall(self) -> None:
        for handle in self._handles + self._order_handles:
            handle.remove()
        self._handles, self._order_handles = [], []
        self._act_hooks(False)
        release_all(self._order_hooks + (self._act_hook_fns or []))
        if self._batch is not None:
            self._batch.remove()
        self._grad_hooks(False)
        if self._scaler_saved is not None:
            had_own, previous = self._scaler_saved
            if had_own:
                self.scaler.step = previous
            else:
                self.scaler.__dict__.pop("step", None)
            self._scaler_saved = None
        if self._compiled:
            guard_hooks(False)

    def remove(self) -> None:
        """Remove every hook (forward, tensor and optimizer hooks; the scaler's wrapper).

        Activation statistics of forwards not followed by a recorded step are dropped.
        """
        if not self._active:
            return
        self._active = False
        self._drain()  # the last step copied without blocking (GPU): read now
        self._uninstall()
        if self.sinks:
            self._emit()
            flush_all(self.sinks)
        self._calls, self._reading, self._delta = [], None, None
        self._losses, self._preclip = [], None
        self._param_reader.plan = None
        for probe in (self._time_grads, self._attention, self._functional):
            probe.clear()

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
    def history(self) -> RecordList:
        """The LayerStats recorded so far: one per layer per recorded step, forward order.

        The numbers reach the host at each recorded step; the records are built from them
        when ``history`` is read (the same list object grows).
        """
        self._drain()
        start = len(self._history)
        for base, values, world, acts, params, extras in self._raw:
            records = [slots.record(base(slots.layer.name), values, world) for slots in acts]
            for slots, record in zip(acts, records, strict=True):
                record.source = getattr(slots.layer, "source", "module")
            records += [record for pending in extras
                        for record in pending.records(base(pending.key), values)]
            records += params.records(base, values)
            records.sort(key=lambda r: r.index)
            self._history.extend(records)
        self._raw = []
        for record in self._history[start:]:  # the step's own values: skipped, clip, loss
            for name, value in self._step_fields.get(record.step, {}).items():
                if name != "grad_norm_before_clip" or record.kind == "param":
                    setattr(record, name, value)
        setup = self._setup_dict()
        if setup != self._history.setup:  # the same dict object once nothing changes
            self._history.setup = setup
        return self._history

    @property
    def setup(self) -> dict[str, Any]:
        """The run's set-up seen at the first loss (``history.setup``): output activation,
        loss, classes, first loss, probabilities, optimizer (:class:`~gradsight.diagnostics.
        run_setup.RunSetup`)."""
        setup = self.history.setup
        assert setup is not None  # set by history
        return setup

    def _setup_dict(self) -> dict[str, Any]:
        first = self._step_fields.get(0, {}).get("loss")
        return self._setup.setup(None if first is None else float(first)).to_dict()

    @property
    def coverage(self) -> Coverage:
        """Which parameters are watched (fraction by element count), which are not and why,
        and the other names of tied weights (:class:`~gradsight.diagnostics.coverage.
        Coverage`); ``diagnose(watcher.history)`` reports it too."""
        coverage = self._history.coverage
        assert coverage is not None  # set in __init__
        return coverage

    @property
    def losses(self) -> list[tuple[int, float]]:
        """(step, loss) of the recorded steps whose loss was seen (``loss_fn`` or
        :meth:`record_loss`), as the engine's ``Monitor.losses``."""
        self.history  # noqa: B018 — brings the pending steps over
        return [(step, fields["loss"]) for step, fields in self._step_fields.items()
                if fields.get("loss") is not None]

    @property
    def time_gradients(self) -> list[tuple[int, str, list[float]]]:
        """(step, record name, [‖∂C/∂x_t‖ for t = 0 … T−1]) of every recurrent layer at every
        recorded step: the gradient that reaches each time step (see ``kind="sequence"``
        records for the first/last ratio)."""
        self.history  # noqa: B018 — brings the pending steps over
        return self._time_grads.profiles

    def record_loss(self, loss: Any, factor: float = 1.0, scaled: bool = False) -> Any:
        """Note the batch loss of the current step (a tensor stays on its device until the
        step's one transfer; a number is taken as it is) and return it unchanged, so that
        ``watcher.record_loss(loss).backward()`` reads as one line. Use it for a loss computed
        by hand, or pass ``loss_fn=`` to :func:`watch` — not both for the same loss.

        factor : the noted value is ``loss × factor`` — for a trainer that divides the loss
            by its number of accumulated batches before backward (Lightning), so that the
            records carry the batch loss itself.
        scaled : the loss was multiplied by the watched GradScaler's scale (Lightning hands
            the scaled loss to ``on_before_backward``): it is divided by the current scale,
            on the device."""
        if self._setup.pending and self._active:
            self._probe_loss(loss)
        if scaled and self.scaler is not None and self._active:
            scale = current_scale(self.scaler)
            if isinstance(loss, self._torch.Tensor):
                loss = loss.detach() / scale
            else:
                loss = float(loss) / float(scale)
        return self._note_loss(loss, factor)

    def _note_loss(self, loss: Any, factor: float = 1.0) -> Any:
        if not self._active:
            return loss
        torch = self._torch
        if isinstance(loss, torch.Tensor):
            if not (loss.numel() and loss.is_floating_point()):
                return loss
            value = loss.detach()
            value = value if value.dim() == 0 else value.float().mean()
        else:
            value = torch.tensor(float(loss), dtype=torch.float64)
        if factor != 1.0:
            value = value * factor
        if self._record_now:
            self._losses.append(value)
        else:  # a step not recorded: only added to the window's sum, on the device
            value = value.double()
            self._window = value if self._window is None else self._window + value
            self._window_count += 1
            if self._span_start is None:
                self._span_start = self.step
            if self.step - self._span_start + 1 >= loss_span(self.step):  # a curve point
                self._marks.append((self.step, self._window, self._window_count))
                self._span_start = None
        return loss

    def _loss_hook(self, module: Any, args: Any, output: Any) -> None:
        torch = self._torch
        if self._setup.pending and torch.is_grad_enabled() \
                and not torch.compiler.is_compiling():  # the first loss: read once
            self._setup.from_module(module, args)
        if torch.is_grad_enabled():
            self._note_loss(output)

    def _probe_loss(self, loss: Any) -> None:
        """The set-up from the first loss given to record_loss that has a graph (or is a
        number); a loss computed without gradients (evaluation) is not the training loss."""
        torch = self._torch
        if isinstance(loss, torch.Tensor) and not loss.requires_grad:
            return
        if not torch.compiler.is_compiling():
            self._setup.from_loss(loss)

    # ---- forward hooks --------------------------------------------------------------------
    def _recording(self) -> bool:
        return self._record_now

    def _order_hook(self, name: str, layer: Any = None) -> Any:
        order, removers = self._order, self._bias_removers

        def hook(output: Any) -> None:
            if name not in order:
                order[name] = len(order)
            if layer is not None:
                removers.observe(layer, output)

        safe = make_hook(hook, grad_only=False, batch=self._batch)
        self._order_hooks.append(safe)
        return safe

    def _activation_hook(self, layer: ActivationLayer) -> Any:
        order, name = self._order, layer.name
        reduce = ActivationReducer(layer, self._scratch, squared=self.all_reduce)

        def hook(output: Any) -> None:  # a tensor, in a forward with gradients enabled
            if name not in order:
                order[name] = len(order)
            if self._record_now and output.is_floating_point():
                call = reduce(output)
                if call is not None:
                    self._calls.append((layer, call))

        return make_hook(hook, batch=self._batch)

    # ---- reading parameters ---------------------------------------------------------------
    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._stepped = True
        if not self._recording():
            return
        if not self._in_scaler_step and not self._by_caller:
            self._reading = self._param_reader.read()
        self._param_reader.before_step(args, kwargs)

    def read_gradients(self) -> None:
        """Read this step's gradients now (``read_gradients="by-caller"``): call it once the
        gradients are final and before the optimizer step — Lightning's
        ``on_before_optimizer_step``, after AMP unscaling and before clipping. Does nothing
        on a step that is not recorded."""
        if not (self._active and self._recording()):
            return
        scale = loss_scale(self.scaler, self.optimizer) \
            if self.scaler is not None and self.optimizer is not None else None
        self._reading = self._param_reader.read(scale)

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
        if recording and not (self._by_caller and self._reading is not None):
            self._reading = self._param_reader.read(loss_scale(self.scaler, optimizer))
        self._in_scaler_step, self._stepped = True, False
        try:
            result = original(optimizer, *args, **kwargs)
        finally:
            self._in_scaler_step = False
        if recording and self.optimizer is not None and not self._stepped:
            self._delta = "skipped"  # the watched optimizer did not run: ΔW = 0
        found = found_inf(self.scaler, optimizer)
        if not recording and found is not None:  # counted on the device: no host sync
            flag = found.clamp(max=1.0)
            self._skips_between = flag if self._skips_between is None \
                else self._skips_between + flag
        self._end_step(found if recording else None)
        return result

    # ---- no optimizer: the end of each backward pass ------------------------------------
    def _on_grad(self, param: Any) -> None:
        """A parameter's gradient is accumulated: once per backward pass, ask autograd to
        call :meth:`_after_backward` when the whole pass is done (every gradient final)."""
        if not self._record_now and (self.optimizer is not None or self.scaler is not None):
            return  # kept on a compiled model (removing it would recompile): nothing to do
        if not self._backward_queued:
            self._backward_queued = True
            from torch.autograd import Variable

            # queued from inside a callback, it runs after the callbacks queued during the
            # pass — DDP's, which writes the averaged gradients into .grad, among them
            engine = Variable._execution_engine
            engine.queue_callback(lambda: engine.queue_callback(self._after_backward))

    def _after_backward(self) -> None:
        self._backward_queued = False
        if not self._active:
            return
        boundary = self.optimizer is None and self.scaler is None  # each backward is a step
        if self._record_now:
            self._preclip = self._total_grad_norm()
            if boundary:
                self._reading = self._param_reader.read()
        if boundary:
            self._end_step()

    def _total_grad_norm(self) -> tuple[Any, Any] | None:
        """(‖∂C/∂θ‖ over every gradient of the model, the loss scale they carry or None): the
        norm ``clip_grad_norm_`` would return now, a 0-d device tensor (no host sync)."""
        torch = self._torch
        grads = [p.grad for p in self._grad_params if p.grad is not None]
        if not grads:
            return None
        grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
        total_norm = getattr(torch.nn.utils, "get_total_norm", None)
        if total_norm is not None:  # torch ≥ 2.6: the very function clip_grad_norm_ uses
            total = total_norm(grads)
        else:
            total = torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(g).to(grads[0].device) for g in grads]))
        return total, current_scale(self.scaler) if self.scaler is not None else None

    # ---- recording ------------------------------------------------------------------------
    def _end_step(self, inf_flags: Any = None) -> None:
        recorded = False
        try:
            if self._recording() and self._reading is not None:
                self._record(self._reading, inf_flags)
                recorded = True
        finally:
            self._calls, self._reading, self._delta = [], None, None
            self._losses, self._preclip = [], None
            self._param_reader.plan = None
            for probe in (self._time_grads, self._attention, self._functional):
                probe.clear()
            self.step += 1
            self._record_now = self.schedule.records(self.step)
            if self._active:  # hooks of recorded steps only: the others run as if unwatched
                self._act_hooks(self._record_now or self._compiled)
                if self.optimizer is not None or self.scaler is not None:
                    self._grad_hooks(self._record_now or self._compiled)
        if recorded and self.sinks:
            self._emit()

    def _emit(self) -> None:
        """Hand the records made since the last call to the sinks (reads the step's values:
        on a GPU this waits for the copy that would otherwise be read at the next record)."""
        records = self.history
        fresh, self._emitted = records[self._emitted:], len(records)
        if fresh:
            emit(self.sinks, fresh)

    def _drain(self) -> None:
        """Read the values of a step copied without blocking (GPU), if one is on its way."""
        if self._pending is not None:
            copy, values, finish = self._pending
            self._pending = None
            values.extend(copy.values())
            finish(values)

    def _record(self, reading: Reading, inf_flags: Any) -> None:
        self._drain()
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
        between_at = None
        if inf_flags is not None:  # the skips since the previous record (0 if none)
            between = self._skips_between if self._skips_between is not None \
                else inf_flags.new_zeros(())
            between_at = transfer.add(between.reshape(1))  # ranks agree: their mean
            self._skips_between = None
        loss_at = window_at = None
        in_window = len(self._losses) + self._window_count
        if self._losses:
            losses = stack_scalars(self._losses).double()
            loss_at = transfer.add(losses.mean().reshape(1))
            total = losses.sum() if self._window is None else losses.sum() + self._window
            window_at = transfer.add((total / in_window).reshape(1))
        marks = [(at_step, transfer.add(running.reshape(1)), count)
                 for at_step, running, count in self._marks]
        self._window, self._window_count, self._marks, self._span_start = None, 0, [], None
        curve = self._history.loss_curve
        assert curve is not None  # made with the history
        clip_at, clip_scale = None, None
        if self._preclip is not None:
            clip_at = transfer.add(self._preclip[0].double().reshape(1))
            clip_scale = self._preclip[1]
            if hasattr(clip_scale, "reshape"):  # a device tensor: brought over with the rest
                clip_scale = transfer.add(clip_scale.double().reshape(1))
        deferred = not self.all_reduce and bool(reading.squares) \
            and self._copier.wanted(reading.squares[0].device)
        counts_at = transfer.add(nonfinite_counts(reading.grads), summed=True) \
            if deferred and reading.grads else None
        extras = self._time_grads.take(transfer) + self._attention.take(transfer)
        joined = transfer.joined() if deferred else None
        step = self.step

        def finish(values: list[float]) -> None:
            """What is read from the step's values: the skip, the loss, the clip norm."""
            if counts_at is not None:  # counted on the device at the step (deferred path)
                for i, (layer, _) in enumerate(params.keys):
                    params.nonfinite[layer] = params.nonfinite.get(layer, 0) \
                        + int(values[counts_at + i])
            fields: dict[str, Any] = {}
            if inf_at is not None:
                fields["skipped"] = values[inf_at] > 0
                if fields["skipped"]:
                    self.skipped_steps.append(step)
            if between_at is not None:
                fields["skipped_between"] = int(round(values[between_at]))
            if loss_at is not None:
                fields["loss"] = values[loss_at]
            if window_at is not None:
                fields["loss_window"] = values[window_at]
            # the loss curve: one point per full span since the last record, then the rest
            # of the window up to this step (differences of the running sums)
            before, counted = 0.0, 0
            for at_step, at, count in marks:
                curve.append((at_step, (values[at] - before) / (count - counted)))
                before, counted = values[at], count
            if window_at is not None and in_window > counted:
                curve.append((step, (values[window_at] * in_window - before)
                              / (in_window - counted)))
            if clip_at is not None:
                divisor = values[clip_scale] if isinstance(clip_scale, int) \
                    else (clip_scale or 1.0)
                fields["grad_norm_before_clip"] = values[clip_at] / divisor
            if fields:
                self._step_fields[step] = fields

        if joined is not None:  # a GPU: copied without blocking, read at the next record
            values: list[float] = []
            world = 1
            params.reading = None  # its non-finite counts travel with the values
            self._pending = (self._copier.start(joined), values, finish)
        else:
            values, world = transfer.run(self.all_reduce)
            params.count_nonfinite(values)  # exact counts now, while the gradients exist
            finish(values)
        if self._order_handles:  # the forward order is known now
            if self._compiled:  # removing a hook would recompile the graph: kept to the end
                self._handles += self._order_handles
            else:
                for handle in self._order_handles:
                    handle.remove()
                release_all(self._order_hooks)
            self._order_handles = []
            self._bias_removers.clear()
            if self._compiled and not self._order:
                warnings.warn(_NOT_TRACED, stacklevel=2)
            for layer in self._params:  # layers never called in a forward come last
                self._order.setdefault(layer.name, len(self._order))
            assign_output(self._params, self._order)
        order, step, epoch = self._order, self.step, self.epoch

        def base(name: str) -> dict[str, Any]:
            return {"layer": name, "index": order[name], "step": step, "epoch": epoch}

        self._raw.append((base, values, world, acts, params, extras))

    def _activation_slots(self, transfer: Transfer) -> list[ActivationSlots]:
        """The step's activation calls grouped per layer (a module called several times in
        a step pools its calls), in the order of their first call."""
        calls = self._calls + self._functional.take() + self._time_grads.take_states()
        if len({id(layer) for layer, _ in calls}) == len(calls):  # one call each
            return [ActivationSlots(layer, [call], transfer, self.all_reduce)
                    for layer, call in calls]
        grouped: dict[int, tuple[ActivationLayer, list[ActivationCall]]] = {}
        for layer, call in calls:
            grouped.setdefault(id(layer), (layer, []))[1].append(call)
        return [ActivationSlots(layer, group, transfer, self.all_reduce)
                for layer, group in grouped.values()]


# ---- helpers ----------------------------------------------------------------------------------

_NOT_TRACED = (
    "gradsight.watch: no forward hook of this torch.compile'd model ran — it was compiled "
    "before watch() installed them, and a compiled graph keeps the hooks it was traced "
    "with. Call watch() before the compiled model's first forward (or torch.compiler.reset() "
    "first): until then no activation statistics and no forward order are recorded.")


def _check_optimizer(torch: Any, optimizer: Any) -> Any:
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise GradsightError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    return optimizer


def _check_loss_fn(torch: Any, loss_fn: Any) -> Any:
    """A loss module to hook; a plain function cannot be hooked (use record_loss)."""
    if loss_fn is None or isinstance(loss_fn, torch.nn.Module):
        return loss_fn
    raise GradsightError(
        f"loss_fn must be a torch.nn.Module (nn.CrossEntropyLoss(), ...) to be hooked, got "
        f"{type(loss_fn).__name__}; for a loss function call watcher.record_loss(loss)")


def _trainable(model: Any) -> list[Any]:
    """The model's parameters that get a gradient, each once (tied weights too)."""
    seen: set[int] = set()
    params = []
    for param in model.parameters():
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            params.append(param)
    return params


def _check_scaler(scaler: Any) -> Any:
    if scaler is None:
        return None
    if not all(hasattr(scaler, attr) for attr in ("step", "scale", "get_scale")):
        raise GradsightError(
            f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}"
        )
    enabled = getattr(scaler, "is_enabled", lambda: True)()
    return scaler if enabled else None


def watch(model: Any, every: int | None = None, optimizer: Any = None, scaler: Any = None,
          all_reduce: bool = False, loss_fn: Any = None, sinks: Any = None,
          read_gradients: str = "at-step") -> Watcher:
    """Watch a ``torch.nn.Module``'s training: one :class:`LayerStats` per layer per step.

    model : the module (DistributedDataParallel / DataParallel, FSDP1 and ``torch.compile``
        wrappers are unwrapped: layer names are the module paths of your model, without
        ``module.`` or ``_orig_mod.``; watch a compiled model before its first forward — its
        hooks then cause no graph break and no recompilation; FSDP2 (``fully_shard``)
        parameters' norms are summed over their shards). Parametrised layers are leaf
        modules with a ``weight`` (Linear, Conv*, ...), nn.RNN/LSTM/GRU per layer and
        direction (``"lstm.l0"``), nn.MultiheadAttention as q, k, v, out_proj, and any other
        parameter; each record has a ``role`` and ``watcher.coverage`` lists what is not
        watched (see :mod:`._layers`); activations are nn.Sigmoid, Tanh,
        ReLU, LeakyReLU, ELU, GELU, SiLU, ... modules, and functional activations
        (``F.relu(x)``) read as the input of the next layer (``source="input of <layer>"``).
        Recurrent layers also get ``kind="sequence"`` records (‖∂C/∂x_t‖ over time,
        :mod:`._sequence`), nn.MultiheadAttention one ``kind="attention"`` record per head
        (attention entropy, :mod:`._attention`).
    every : record steps 0, every, 2·every, …; None (default): every step for the first 50,
        then every 50th up to step 5,000, then every 500th
        (:mod:`gradsight.diagnostics.schedule`); ``every=1`` records every step.
    optimizer : the ``torch.optim`` optimizer; gives update ratios ‖ΔW‖/‖W‖ and the step
        boundary. Recommended.
    scaler : the ``torch.amp.GradScaler`` of mixed-precision training: norms are unscaled
        and steps the scaler skips are flagged.
    all_reduce : under ``torch.distributed``, average the recorded values over ranks
        (non-finite counts are summed) with one all-reduce per step; every rank records.
    loss_fn : the loss module the loop calls (``nn.CrossEntropyLoss()``, ...): a forward hook
        keeps its value, so the records carry the batch loss and ``diagnose`` judges the
        loss curve. For a loss computed by hand call ``watcher.record_loss(loss)``.
    sinks : where each recorded step's readings go as soon as they are made: a
        ``TensorBoardSink``, a ``WandbSink``, or any ``write(step, scalars)`` object or
        function (:mod:`gradsight.diagnostics.sinks`; tags such as ``grad_norm/fc1``).
    read_gradients : ``"at-step"`` (default): the optimizer's step pre-hook reads the
        gradients. ``"by-caller"``: the training framework calls
        :meth:`Watcher.read_gradients` when they are final — for trainers that run the
        forward and backward inside ``optimizer.step(closure)`` (the Lightning callback).

    Returns a :class:`Watcher` (a context manager; ``.history``, ``.remove()``).
    """
    return Watcher(model, every=every, optimizer=optimizer, scaler=scaler,
                   all_reduce=all_reduce, loss_fn=loss_fn, sinks=sinks,
                   read_gradients=read_gradients)
