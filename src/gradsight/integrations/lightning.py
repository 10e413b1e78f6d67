"""``GradsightCallback`` for PyTorch Lightning: gradsight's readings of a ``lightning.Trainer``
run, logged through the module's own logger, and its findings at the end of ``fit``.

::

    from gradsight.integrations.lightning import GradsightCallback

    trainer = lightning.Trainer(max_epochs=5, callbacks=[GradsightCallback(report="run.html")])
    trainer.fit(model, loader)      # prints the findings at the end; writes run.html

**When the readings are taken.** Lightning runs the forward and backward passes inside
``optimizer.step(closure)``, so the optimizer's step pre-hook — where ``watch`` normally reads
the gradients — comes before the gradients exist. The callback watches with
``read_gradients="by-caller"`` and reads them in ``on_before_optimizer_step``: after AMP
unscaling and before gradient clipping is applied, where Lightning's own
``lightning.pytorch.utilities.grad_norm`` is documented to be called. ‖ΔW‖ is measured
around the optimizer's own step (its pre- and post-hooks), and the total norm before
clipping at the end of the backward pass, as in a plain loop. The batch loss is the one
Lightning hands to ``on_before_backward``, multiplied back by ``accumulate_grad_batches``
(Lightning divides it before backward) and, under a GradScaler, divided by the loss scale
(Lightning hands over the scaled loss).

**What is logged.** At every recorded step (``every``; the default schedule records every
step for the first 50, then every 50th up to step 5,000, then every 500th) the step's
readings go to the module's loggers (``pl_module.loggers``: TensorBoard, CSV, W&B, ...)
under the tags of :mod:`gradsight.diagnostics.sinks` (``grad_norm/<layer>``,
``update_ratio/<layer>``, ``dead/<layer>``, ...), at the optimizer step they were read at,
as float64 and NaN or ±inf as they are. They go through ``logger.log_metrics`` rather than
``self.log``: Lightning re-logs a value given to ``self.log`` at every later step until the
epoch ends, which would show a sparse reading as if it had been read at the steps between.

**Mixed precision and DDP.** Under ``precision="16-mixed"`` the Trainer's GradScaler is
watched too (skipped steps are flagged); under ``"bf16-mixed"`` there is no scaler and the
gradients are float32. Under DDP (``trainer.world_size > 1``) the watcher averages the
readings over the ranks (one all-reduce per recorded step), so every rank logs the same
numbers; the findings are printed and the report written on global rank 0 only.
"""

from __future__ import annotations

import os
from typing import Any

from ..adapters.torch import Watcher
from ..diagnostics.sinks import by_step, scalars
from ..errors import require_extra
from .run_end import conclude
from .run_end import judge as judge_run

_pl = require_extra("lightning.pytorch", "lightning", "gradsight.integrations.lightning")
_Callback: Any = _pl.Callback  # the base class of every Lightning callback

__all__ = ["GradsightCallback"]


class GradsightCallback(_Callback):
    """Watch a LightningModule's training with gradsight (see the module docstring).

    every : record steps 0, every, 2·every, …; None: gradsight's default schedule.
    report : path of an HTML report (findings first, then the per-layer evidence) written
        at the end of ``fit`` on global rank 0; None: no report.
    title : the report's title.
    print_findings : print the findings at the end of ``fit`` (rank 0).
    log : log the readings through the module's loggers at each recorded step.
    sinks : further sinks for the readings (``TensorBoardSink``, ``WandbSink``, a function).

    After ``fit``: ``callback.history`` (the records), ``callback.findings``
    (:func:`gradsight.diagnose` of them) and ``callback.report_path``.
    """

    def __init__(self, every: int | None = None, report: str | os.PathLike[str] | None = None,
                 title: str = "gradsight — Lightning run", print_findings: bool = True,
                 log: bool = True, sinks: Any = None) -> None:
        super().__init__()
        self.every, self.report, self.title = every, report, title
        self.print_findings, self.log, self.sinks = print_findings, log, sinks
        self.watcher: Watcher | None = None
        self.history: Any = None
        self.findings: Any = None
        self.report_path: str | None = None
        self._logged = 0  # records already logged
        self._seen_step = 0  # the watcher's step count at the last batch end
        self._accumulate = 1

    # ---- the run ----------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = list(trainer.optimizers)
        optimizer = getattr(optimizers[0], "optimizer", optimizers[0]) if optimizers else None
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self._accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))
        self.watcher = Watcher(pl_module, every=self.every, optimizer=optimizer,
                               scaler=scaler, all_reduce=trainer.world_size > 1,
                               sinks=self.sinks, read_gradients="by-caller")
        self.history, self.findings, self._logged, self._seen_step = None, None, 0, 0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.watcher is not None:
            self.watcher.epoch = int(trainer.current_epoch)

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        if self.watcher is not None:
            # under a GradScaler Lightning hands over the scaled loss: scaled=True undoes it
            self.watcher.record_loss(loss, factor=float(self._accumulate), scaled=True)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.watcher is not None:
            self.watcher.read_gradients()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        watcher = self.watcher
        if watcher is None or not self.log or watcher.step == self._seen_step:
            return  # no optimizer step since the last batch (gradient accumulation)
        self._seen_step = watcher.step
        if not watcher.schedule.records(watcher.step - 1):
            return
        records = watcher.history
        fresh, self._logged = records[self._logged:], len(records)
        for step, group in by_step(fresh)[-1:]:  # the step just recorded
            values = scalars(group)
            for logger in trainer.loggers:  # rank 0 only: Lightning's loggers see to it
                logger.log_metrics(values, step=step)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.watcher is None:
            return
        self._finish()
        if trainer.is_global_zero:
            self.report_path = conclude(self.history, self.findings,
                                        "gradsight — diagnosis of the Lightning run",
                                        self.print_findings, self.report, self.title)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.watcher is not None:  # the hooks go; what was recorded stays readable
            self._finish(judge=False)

    def _finish(self, judge: bool = True) -> None:
        watcher = self.watcher
        assert watcher is not None
        watcher.remove()
        self.history = watcher.history
        self.watcher = None
        if judge:
            self.findings = judge_run(self.history)
