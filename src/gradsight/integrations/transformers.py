"""``GradsightCallback`` for the Hugging Face ``transformers.Trainer``: gradsight's readings of a
fine-tuning run, logged through the Trainer's own ``log``, and its findings at the end.

::

    from gradsight.integrations.transformers import GradsightCallback

    trainer = Trainer(model=model, args=args, train_dataset=train,
                      callbacks=[GradsightCallback(report="run.html")])
    trainer.train()     # logs grad_norm/<layer>, ... ; prints the findings; writes run.html

The callback finds the ``Trainer`` that runs it when training starts (it walks up the call
stack of ``on_train_begin`` to the ``Trainer`` whose callbacks hold it): a ``TrainerCallback``
is never handed its trainer. ``GradsightCallback(...).bind(trainer)`` names it explicitly
(and adds the callback to it).

**The order of events** in ``Trainer._inner_training_loop`` (transformers 5) and what gradsight
does at each::

    on_train_begin             watch(trainer.model, optimizer=<the torch optimizer>, ...)
    per optimizer step:
      on_step_begin
      per micro-batch:         forward (the loss is noted), backward
                               (recorded steps: ‖∂C/∂θ‖ at the end of the pass)
      _clip_grad_norm          the Trainer clips the gradients (max_grad_norm > 0)
      on_pre_optimizer_step
      optimizer.step()         the watcher's step pre-hook reads ∂C/∂W and ‖W‖; the post-hook
                               measures ‖ΔW‖ and records the step
      on_optimizer_step; lr_scheduler.step(); zero_grad; global_step += 1
      on_step_end              the step's readings go to trainer.log(...)
      (the Trainer's own log of loss and grad_norm, when it logs)
    on_train_end               hooks removed; diagnose; findings printed; report written

**Before or after clipping.** The Trainer clips (``max_grad_norm``, 1.0 by default) just before
``optimizer.step()``, so the per-layer readings taken in the optimizer's step pre-hook —
``grad_W_norm``, ``grad_b_norm`` and the ``update_ratio`` that follows from them — are of the
*clipped* gradients, the ones the optimizer uses. ``grad_norm_before_clip`` (one number per
step, logged as ``gradsight/grad_norm_before_clip``) is the total ‖∂C/∂θ‖ over the whole model
taken at the end of the step's last backward pass, *before* clipping: the number the Trainer
itself logs as ``grad_norm``. A spike that clipping hides in ``grad_norm/<layer>`` shows there.

**The loss.** A forward hook on the model notes ``output.loss`` of every training forward
(gradients enabled, ``model.training``). Under gradient accumulation the Trainer backpropagates
either the micro-batch loss divided by the number of micro-batches of the step or, when the
model was given ``num_items_in_batch`` (it normalises over the whole accumulated batch itself),
the micro-batch loss as it is; the callback weighs each micro-batch's loss so that a record's
``loss`` is their *sum as backpropagated* — the step's loss, the number the Trainer logs as
``loss`` when it logs every step. The loss noted is always the model's own ``output.loss``:
with ``compute_loss_func`` or label smoothing the Trainer keeps the labels from the model, which
then returns no loss — the records carry none and the loss-curve rules do not run (likewise
for a model called with ``return_dict=False``, whose tuple is not read). NaN and ±inf losses
are kept as they are, unlike the Trainer's own ``loss`` with ``logging_nan_inf_filter`` (on by
default), which replaces a non-finite step's loss by the mean of the losses since its last log.

**What is logged, and when.** The step numbers of the records count optimizer steps from 0;
the Trainer's ``global_step`` counts the steps done, so record step ``s`` is logged at
``global_step`` ``s + 1``. At each recorded step the readings of
:func:`gradsight.diagnostics.sinks.scalars` (``grad_norm/<layer>``, ``update_ratio/<layer>``,
``dead/<layer>``, ``gradsight/loss``, ...) go to ``trainer.log``: they land in
``trainer.state.log_history`` and every reporting integration draws them (TensorBoard and W&B
prefix them with ``train/``). NaN and ±inf are logged as they are. Each log is one more line
on the console (the Trainer prints every log dict), so ``every`` defaults to the Trainer's own
``logging_steps`` (when ``logging_strategy="steps"``; otherwise gradsight's default schedule):
records at steps 0, L, 2L, … (logged at global steps 1, L + 1, 2L + 1, …: the first step,
then one gradsight line for each of the Trainer's lines at L, 2L, …). Pass
``every=`` to record more densely (the report and the findings use every recorded step), or
``log=False`` to keep the readings out of the Trainer's log.

**Mixed precision and DDP.** ``bf16=True`` runs the forward under autocast with float32
weights and gradients: nothing changes. Under ``fp16=True`` (a GPU) the Trainer's GradScaler is
watched: the norms are unscaled and the steps it skips flagged. Under DDP (``torch.distributed``
initialised with more than one process) the readings are averaged over the ranks, one
all-reduce per recorded step, so every rank logs the same numbers; the findings are printed and
the report written by the main process only (``state.is_world_process_zero``). When the model
is given ``num_items_in_batch`` counted over every process (``average_tokens_across_devices``,
on by default), the Trainer multiplies each rank's loss by the number of processes before
backward, so that DDP's average of the gradients is their sum; the loss noted is multiplied
likewise — the loss whose gradients the records hold, and the Trainer's own logged ``loss``.
(A model that ignores ``num_items_in_batch``, such as BERT's classification head, is then
trained on that many times its mean loss, by the Trainer as by the records.)

The Trainer has no event for an exception: when ``train()`` raises, the hooks stay until
``callback.remove()`` or the next ``train()``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..adapters.torch import Watcher, watch
from ..diagnostics.sinks import as_sinks
from ..errors import GradsightError, OutputError, require_extra, require_positive_int
from .run_end import conclude, judge

# an optional extra: the Trainer's callback base class is needed to define the callback
_hf = require_extra("transformers", "transformers", "GradsightCallback")
_TrainerCallback: Any = _hf.TrainerCallback  # typed Any: mypy does not read transformers

__all__ = ["GradsightCallback"]


class GradsightCallback(_TrainerCallback):
    """Watch a ``transformers.Trainer`` run with gradsight (see the module docstring).

    every : record steps 0, every, 2·every, …; None: the Trainer's ``logging_steps`` (with
        ``logging_strategy="steps"``), else gradsight's default schedule.
    report : path of an HTML report (findings first, then the per-layer evidence) written at
        the end of training by the main process; None: no report.
    title : the report's title.
    print_findings : print the findings at the end of training (main process).
    log : log each recorded step's readings through ``trainer.log``.
    sinks : further sinks for the readings (``TensorBoardSink``, ``WandbSink``, a function
        ``sink(step, scalars)``), handed to :func:`gradsight.watch`.
    console : also print the readings' log rows on the console. The Trainer prints every
        dict it logs (its progress bar, or ``PrinterCallback`` with ``disable_tqdm``) — one
        line of several scalars per layer — so by default its console printers skip
        gradsight's rows (only while they are logged); the rows still reach
        ``state.log_history`` and every reporting integration.

    During and after training: ``callback.watcher`` (the :class:`~gradsight.adapters.torch.
    Watcher`), ``callback.history`` (the records); after it ``callback.findings``
    (:func:`gradsight.diagnose` of them) and ``callback.report_path``.
    """

    def __init__(self, every: int | None = None, report: str | os.PathLike[str] | None = None,
                 title: str = "gradsight — Hugging Face Trainer run",
                 print_findings: bool = True, log: bool = True, sinks: Any = None,
                 console: bool = False) -> None:
        super().__init__()
        self.console = bool(console)
        self.every = None if every is None else require_positive_int("every", every)
        if report is not None and Path(report).is_dir():
            raise OutputError(f"cannot write {str(report)!r}: it is a folder; give a file name")
        self.report, self.title = report, str(title)
        self.print_findings, self.log = bool(print_findings), bool(log)
        self.sinks = as_sinks(sinks)  # a bad sink is refused now, not at the first step
        self.trainer: Any = None
        self.watcher: Watcher | None = None
        self.findings: Any = None
        self.report_path: str | None = None
        self._pending: list[dict[str, float]] = []  # readings recorded, not yet logged
        self._loss_handle: Any = None

    @property
    def history(self) -> Any:
        """The records so far (:attr:`Watcher.history`); None before training."""
        return None if self.watcher is None else self.watcher.history

    def bind(self, trainer: Any) -> GradsightCallback:
        """Tie the callback to ``trainer`` (and add it to its callbacks if it is not there);
        returns the callback. Needed only where ``on_train_begin`` is not called from the
        Trainer's own training loop."""
        if not isinstance(trainer, _hf.Trainer):
            raise GradsightError(
                f"trainer must be a transformers.Trainer, got {type(trainer).__name__}")
        if not _holds(trainer, self):
            trainer.add_callback(self)
        self.trainer = trainer
        return self

    def remove(self) -> None:
        """Remove every hook (the watcher's and the loss hook); the records stay readable."""
        if self._loss_handle is not None:
            self._loss_handle.remove()
            self._loss_handle = None
        if self.watcher is not None:
            self.watcher.remove()

    # ---- the run ----------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       optimizer: Any = None, **kwargs: Any) -> None:
        self.remove()  # a previous train() that raised left its hooks
        found = _find_trainer(self)
        trainer = found if found is not None else self.trainer
        if trainer is None:
            warnings.warn("GradsightCallback: the transformers.Trainer running it was not "
                          "found, so the readings are not logged through it; tie them with "
                          "GradsightCallback(...).bind(trainer)", stacklevel=2)
        else:
            self.trainer = trainer
            model, optimizer = trainer.model, trainer.optimizer
        every = self.every
        if every is None and str(getattr(args.logging_strategy, "value",
                                         args.logging_strategy)) == "steps":
            every = max(1, int(state.logging_steps))
        scaler = getattr(getattr(trainer, "accelerator", None), "scaler", None)
        self.findings, self.report_path, self._pending = None, None, []
        self.watcher = watch(model, every=every, optimizer=_torch_optimizer(optimizer),
                             scaler=scaler, all_reduce=_distributed(),
                             sinks=[*self.sinks, self._queue])
        self._loss_handle = self.watcher.model.register_forward_hook(self._on_forward,
                                                                     with_kwargs=True)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.watcher is not None:
            self.watcher.epoch = math.floor(state.epoch or 0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        # trainer.log resets control.should_log (CallbackHandler.on_log), which the default
        # flow callback has just set for the Trainer's own log of this step: kept as it was
        should_log = control.should_log
        self._log_pending()
        control.should_log = should_log
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        watcher = self.watcher
        if watcher is None:
            return
        self.remove()  # hands the last readings (if any) to the sinks
        self._log_pending()
        history = watcher.history
        self.findings = judge(history)
        if state.is_world_process_zero:
            steps = len({record.step for record in history})
            self.report_path = conclude(
                history, self.findings, f"gradsight — diagnosis of the Trainer's run ({steps} "
                "steps recorded)", self.print_findings, self.report, self.title)

    # ---- the pieces -------------------------------------------------------------------------
    def _queue(self, step: int, values: dict[str, float]) -> None:
        """The watcher's sink: a recorded step's readings, logged at the next ``on_step_end``
        (inside ``optimizer.step()`` the Trainer's step count is not yet the step's)."""
        if self.log:
            self._pending.append(values)

    def _log_pending(self) -> None:
        pending, self._pending = self._pending, []
        if self.trainer is None or not pending:
            return
        with _printers_quiet(self.trainer, not self.console):
            for values in pending:
                self.trainer.log(dict(values))

    def _on_forward(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        """The model's training forward: note its loss, weighed so that the step's records
        carry the sum of the losses the Trainer backpropagates (see the module docstring)."""
        watcher = self.watcher
        if watcher is None or not module.training:
            return
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss",
                                                                               None)
        if loss is None or not getattr(loss, "requires_grad", False):
            return  # no loss, or a forward without gradients (evaluation)
        micro_batches = _micro_batches(self.trainer)
        factor = micro_batches if micro_batches > 1 \
            and _scaled_for_accumulation(self.trainer, kwargs) else 1
        factor *= _across_devices(self.trainer, kwargs)
        # the watcher averages the step's losses: × k makes it their sum; the loss itself
        # goes in, so that the first one's autograd graph tells the run's set-up
        watcher.record_loss(loss, factor=float(factor))


# ---- helpers ----------------------------------------------------------------------------------

def _holds(trainer: Any, callback: Any) -> bool:
    return any(item is callback for item in trainer.callback_handler.callbacks)


def _find_trainer(callback: Any) -> Any:
    """The ``transformers.Trainer`` up the call stack whose callbacks hold ``callback``:
    ``on_train_begin`` is called from its ``_inner_training_loop``."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, _hf.Trainer) and _holds(candidate, callback):
                return candidate
            frame = frame.f_back
        return None
    finally:
        del frame  # a frame held here would keep every local of the stack alive


def _torch_optimizer(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (itself a subclass of
    ``torch.optim.Optimizer`` whose ``step`` calls the wrapped one's: hooks go on that one)."""
    import torch  # late: an optional extra, present whenever transformers trains

    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def _distributed() -> bool:
    """Whether the readings must be averaged over ranks (torch.distributed, world size > 1)."""
    import torch  # late: an optional extra, present whenever transformers trains

    dist = torch.distributed
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def _micro_batches(trainer: Any) -> int:
    """How many micro-batches the current optimizer step accumulates (fewer for the last step
    of an epoch that does not divide evenly)."""
    if trainer is None:
        return 1
    count = getattr(trainer, "current_gradient_accumulation_steps", None)
    if count is None:
        count = trainer.args.gradient_accumulation_steps
    return max(1, int(count))


def _scaled_for_accumulation(trainer: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether the Trainer backpropagates this loss as it is (already normalised over the
    accumulated batch) rather than divided by the number of micro-batches — its own test in
    ``Trainer.training_step``."""
    declared = getattr(trainer, "loss_is_scaled_for_ga", None)
    if declared is not None:
        return bool(declared)
    return kwargs.get("num_items_in_batch") is not None \
        or getattr(trainer, "compute_loss_func", None) is not None


def _across_devices(trainer: Any, kwargs: Mapping[str, Any]) -> int:
    """The factor ``Trainer.compute_loss`` multiplies the loss by under DDP when the model
    was given ``num_items_in_batch`` counted over every device (``average_tokens_across_
    devices``): the number of processes (over the tensor-parallel size), so that DDP's
    average of the gradients becomes their sum."""
    if trainer is None or kwargs.get("num_items_in_batch") is None \
            or not getattr(trainer.args, "average_tokens_across_devices", False):
        return 1
    if trainer.args.n_gpu > 1:
        return int(trainer.args.n_gpu)
    tensor_parallel = trainer.get_tp_size() if hasattr(trainer, "get_tp_size") else 1
    return max(1, int(trainer.accelerator.num_processes) // max(1, int(tensor_parallel)))


@contextlib.contextmanager
def _printers_quiet(trainer: Any, quiet: bool) -> Iterator[None]:
    """While the block logs gradsight's rows, the Trainer's console printers (its progress
    bar's ``on_log``, ``PrinterCallback``) skip them: an instance attribute shadows their
    ``on_log`` and is deleted afterwards, so the Trainer's own rows print as before."""
    printers = [c for c in trainer.callback_handler.callbacks
                if isinstance(c, (_hf.trainer_callback.ProgressCallback,
                                  _hf.trainer_callback.PrinterCallback))] if quiet else []
    for printer in printers:
        printer.on_log = _skip
    try:
        yield
    finally:
        for printer in printers:
            printer.__dict__.pop("on_log", None)


def _skip(*args: Any, **kwargs: Any) -> None:
    """An ``on_log`` that prints nothing."""
