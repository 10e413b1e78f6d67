"""Monitor: record per-layer gradient-flow statistics while ``fit`` trains a network.

:class:`Monitor` is a :class:`gradsight.train.Callback`. On the steps it records (by default
every step for the first 50, then every 50th up to 5,000, then every 500th — see
:mod:`.schedule`; ``every=k``: steps 0, k, 2k, …) it
reads what the forward and backward passes already hold — each Dense layer's ∂C/∂W, ∂C/∂b
and W, each activation layer's cached output a and the f′ its backward pass used — and
appends one :class:`~gradsight.diagnostics.LayerStats` per layer to ``monitor.history``. It
never runs an extra forward or backward pass, and it keeps the cost low:

* ‖∂C/∂W‖, ‖∂C/∂b‖, ‖W‖ and the update ‖ΔW‖ come from ``ctx.norms``, the step's squared
  norms, which ``fit`` measures where it costs least — its NaN guard computes g·g anyway, and
  the update of a step ``w ← w − rate·d`` has norm rate·‖d‖ — on the steps the Monitor
  announces (:meth:`Monitor.wants_norms`). A hand-made context without ``norms``: each norm is
  one BLAS dot, and W is copied before the update to measure ΔW;
* fractions are ``count_nonzero`` of one comparison — of f′ itself for the saturated
  fraction, as the backward pass left it.

Histories export to a list of dicts (``pandas.DataFrame(history_records(h))``), JSON and CSV,
and :class:`LayerHistory` pivots one into per-layer series (layer → steps, values) for plots
and verdicts.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from ..engine.callbacks import Callback
from .arrays import (
    Known,
    Work,
    activation_fields,
    norm_and_nonfinite,
    param_fields,
    saturation_bounds,
)
from .history import (
    LayerHistory,
    RecordList,
    history_from_csv,
    history_from_json,
    history_records,
    history_to_csv,
    history_to_json,
    require_history,
)
from .run_setup import RunSetup, engine_setup
from .schedule import LossCurve, RecordingSchedule
from .sinks import as_sinks, emit, flush_all
from .stats import LayerStats

__all__ = [
    "Monitor", "LayerHistory", "history_records", "history_to_json", "history_from_json",
    "history_to_csv", "history_from_csv", "layer_stats_of", "saturation_bounds",
    "require_history",
]

def _is_param(layer: Any) -> bool:
    return hasattr(layer, "W") and hasattr(layer, "grad_W")


def _is_activation(layer: Any) -> bool:
    return hasattr(layer, "activation") and hasattr(layer, "output")


def _record(layer: Any, index: int, step: int, epoch: int | None) -> LayerStats | None:
    name = getattr(layer, "name", f"layer{index}")
    if _is_param(layer) and layer.grad_W is not None:
        return LayerStats(name, index, step, epoch, "param", **param_fields(layer))
    if _is_activation(layer) and layer.output is not None:
        return LayerStats(name, index, step, epoch, "activation", **activation_fields(layer))
    return None


def layer_stats_of(model: Any, step: int = 0, epoch: int | None = None) -> list[LayerStats]:
    """One LayerStats per layer of an engine model, from its cached forward/backward values.

    Call it after ``model.forward(X)`` and ``model.backward(dC/dŷ)``; ``update_ratio`` stays
    None (there was no optimizer step). Layers that are neither Dense nor an activation are
    skipped.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        records = [_record(layer, i, step, epoch) for i, layer in enumerate(model.layers)]
    output = _output_index(model)
    for record in records:
        if record is not None and record.kind == "param":
            record.role = "output" if record.index == output else "hidden"
    return [record for record in records if record is not None]


def _output_index(model: Any) -> int:
    """The index of the last Dense layer (role "output"; the Dense layers before it are
    "hidden"), -1 without one."""
    return max((i for i, layer in enumerate(model.layers) if _is_param(layer)), default=-1)


# ---- the callback ---------------------------------------------------------------------------
class Monitor(Callback):
    """A ``fit`` callback that records per-layer :class:`LayerStats` on the steps of its
    schedule: ``every=None`` (default) every step for the first 50, then every 50th up to
    step 5,000, then every 500th (:class:`~.schedule.RecordingSchedule`); ``every=k`` steps
    0, k, 2k, … (``every=1``: every step).

    After the backward pass of a recorded step it stores, per Dense layer, ‖∂C/∂W‖, ‖∂C/∂b‖
    (Nielsen's speed of learning) and ‖W‖; after the optimizer step, update_ratio =
    ‖W_new − W_old‖/‖W_old‖ (all from ``ctx.norms``). Per activation layer it
    stores the mean and spread of a, the saturated fraction (sigmoid/tanh: f′ < 1% of max)
    and the dead fraction (ReLU family: units with z ≤ 0 on every sample of the batch).
    ``losses`` holds (step, batch loss) for the recorded steps. ``sinks`` (a
    ``TensorBoardSink``, a ``WandbSink`` or any ``write(step, scalars)``) get each recorded
    step's readings once the step is complete (:mod:`~gradsight.diagnostics.sinks`).
    ``history.setup`` (also
    ``monitor.setup``) is the run's set-up seen at its first step — output activation, loss,
    classes, first loss, whether the output looks like probabilities, optimizer
    (:class:`~gradsight.diagnostics.run_setup.RunSetup`).

    It only reads (``read_only``): ``fit`` then hands it the norms its NaN guard measured on
    the steps it records.

    >>> Monitor(every=10).every
    10
    """

    read_only = True  # it changes neither weights nor gradients

    def __init__(self, every: int | None = None, sinks: Any = None) -> None:
        self.schedule = RecordingSchedule(every)
        self.sinks = as_sinks(sinks)
        self._emitted = 0  # records already handed to the sinks
        self.every = self.schedule.every  # None: the default schedule
        self.history: RecordList = RecordList()
        self.losses: list[tuple[int, float]] = []
        self._source: Any = None  # the loop's list of every step's loss, and how far read
        self._seen = 0
        self._curve = LossCurve()  # every step's loss, in short spans (history.loss_curve)
        self.history.loss_curve = self._curve.points
        self._work: dict[int, Work] = {}
        self._pending: list[tuple[LayerStats, Any, np.ndarray | None, int | None]] = []
        self._model: Any = None
        self._shared = _Positions()
        self._plan: list[tuple[int, Any, bool, np.ndarray | None]] = []
        self._output = -1  # index of the last Dense layer: role "output"

    def wants_norms(self, step: int) -> bool:
        """True on the steps it records: it then asks ``ctx.norms``."""
        return self.schedule.records(step)

    # only the steps it records: ``fit`` may fuse the updates of the others
    looks_at = wants_norms

    def on_train_begin(self, ctx: Any) -> None:
        self._pending = []
        self._prepare(ctx.model)

    def _prepare(self, model: Any) -> None:
        """The per-layer plan (layer index, layer, is a param layer, W buffer), made once."""
        self._model, self._shared, self._plan = model, _Positions(model), []
        self._output = _output_index(model)
        for index, layer in enumerate(model.layers):
            if _is_param(layer):
                self._plan.append((index, layer, True, np.empty_like(layer.W)))
            elif _is_activation(layer):
                self._plan.append((index, layer, False, None))

    @property
    def setup(self) -> dict[str, Any] | None:
        """The run's set-up seen at its first step (``history.setup``); None before it."""
        return self.history.setup

    def on_after_backward(self, ctx: Any) -> None:
        if self.history.setup is None:  # the first step: once, then never again
            self.history.setup = _setup_of(ctx)
        if not self.schedule.records(ctx.step):
            return
        loss = getattr(ctx, "batch_loss", None)
        between = self._losses_between(ctx)
        if ctx.model is not self._model:
            self._prepare(ctx.model)
        step, epoch = int(ctx.step), _int_or_none(ctx.epoch)
        shared, history = self._shared, self.history
        start = len(history)
        norms = getattr(ctx, "norms", None)
        grads = None if norms is None else shared.fits(norms.gradients())
        weights = None if norms is None else shared.fits(norms.weights())
        copy = norms is None  # without the loop's norms, ΔW is measured on a copy of W
        pending: list[Any] = []
        with np.errstate(over="ignore", invalid="ignore"):
            for index, layer, param, buffer in self._plan:
                name = getattr(layer, "name", f"layer{index}")
                if param and layer.grad_W is not None:
                    position = shared.of(index, layer)
                    known = None if position is None else shared.known(position, grads,
                                                                       weights)
                    if not copy or buffer is None or buffer.shape != layer.W.shape:
                        buffer = None
                    record = LayerStats(name, index, step, epoch, "param",
                                        **param_fields(layer, buffer, known),
                                        role="output" if index == self._output else "hidden")
                    pending.append((record, layer, buffer,
                                    None if position is None else position[0]))
                elif not param and layer.output is not None:
                    record = LayerStats(name, index, step, epoch, "activation",
                                        **activation_fields(layer, self._work_for(index,
                                                                                   layer)))
                else:
                    continue
                history.append(record)
        self._pending = pending
        if loss is not None:
            self.losses.append((step, float(loss)))
            window = (sum(between) + float(loss)) / (len(between) + 1)
            for record in history[start:]:  # diagnose(monitor.history) sees it too
                record.loss, record.loss_window = float(loss), window
            for i, value in enumerate(between):  # the steps since the last record, in spans
                self._curve.add(step - len(between) + i, value)
            self._curve.add(step, float(loss), close=True)

    def _losses_between(self, ctx: Any) -> list[float]:
        """The batch losses of the steps since the last recorded one: the training loop
        keeps every step's loss in ``ctx.history.batch_losses`` (the fast path calls no hook
        on the steps nobody looks at), so the window costs nothing between records."""
        done = getattr(getattr(ctx, "history", None), "batch_losses", None)
        if done is None:
            return []
        if done is not self._source:  # a new fit: its own list
            self._source, self._seen = done, len(done)
        between = [float(v) for v in done[self._seen:]]
        self._seen = len(done) + 1  # this step's loss is appended after the hooks
        return between

    def _work_for(self, index: int, layer: Any) -> Work:
        work = self._work.get(index)
        if work is None or not work.fits(layer.output):
            work = self._work[index] = Work(layer.output.size, layer.output.dtype)
        return work

    def on_batch_end(self, ctx: Any) -> None:
        norms = getattr(ctx, "norms", None)
        updates = None if norms is None else self._shared.fits(norms.updates())
        with np.errstate(over="ignore", invalid="ignore"):
            for record, layer, buffer, position in self._pending:
                if updates is not None and position is not None:  # measured by the loop
                    change = math.sqrt(updates[position])
                elif buffer is not None:
                    np.subtract(layer.W, buffer, out=buffer)  # buffer now holds ΔW
                    change, _ = norm_and_nonfinite(buffer)
                else:
                    continue
                record.update_ratio = _ratio(change, record.weight_norm)
        self._pending = []
        if self.sinks and len(self.history) > self._emitted:  # the step is complete now
            fresh, self._emitted = self.history[self._emitted:], len(self.history)
            emit(self.sinks, fresh)

    def on_train_end(self, ctx: Any) -> None:
        flush_all(self.sinks)

    def layer_history(self) -> LayerHistory:
        """The recorded history pivoted per layer."""
        return LayerHistory(self.history)

    def __len__(self) -> int:
        return len(self.history)

    def __repr__(self) -> str:
        steps = len({r.step for r in self.history})
        return f"Monitor({self.schedule}, {len(self.history)} records over {steps} steps)"

    def _repr_html_(self) -> str:
        if not self.history:
            return f"<p>{html.escape(repr(self))}</p>"
        return LayerHistory(self.history)._repr_html_()


class _Positions:
    """Where each param layer's W, ∂C/∂W and ∂C/∂b sit in model.parameters()/gradients(),
    to read the lists of ``ctx.norms``; the arrays are kept to check that they still
    are the model's."""

    def __init__(self, model: Any = None) -> None:
        params = getattr(model, "parameters", None)
        grads = getattr(model, "gradients", None)
        self.params = list(params()) if callable(params) else []
        self.grads = list(grads()) if callable(grads) else []
        where = {id(g): k for k, g in enumerate(self.grads)}
        self.positions: dict[int, tuple[int, int | None]] = {}
        if len(self.params) != len(self.grads):
            return
        for index, layer in enumerate(getattr(model, "layers", ())):
            if _is_param(layer) and id(layer.grad_W) in where:
                grad_b = getattr(layer, "grad_b", None)
                self.positions[index] = (where[id(layer.grad_W)],
                                         None if grad_b is None else where.get(id(grad_b)))

    def of(self, index: int, layer: Any) -> tuple[int, int | None] | None:
        """(position of W, of b or None) of layer ``index`` if its arrays are still there."""
        position = self.positions.get(index)
        if position is None:
            return None
        w, b = position
        grad_b = getattr(layer, "grad_b", None)
        if self.grads[w] is not layer.grad_W or self.params[w] is not layer.W:
            return None
        if grad_b is not None and (b is None or self.grads[b] is not grad_b):
            return None
        return position

    def fits(self, squares: Any) -> Any:
        """``squares`` if it is a list aligned with the parameters, else None."""
        return squares if squares is not None and len(squares) == len(self.grads) else None

    def known(self, position: tuple[int, int | None], grads: Any, weights: Any) -> Known:
        """The shared squares of one layer, from lists :meth:`fits` has let through."""
        w, b = position
        return (None if grads is None else grads[w],
                None if grads is None or b is None else grads[b],
                None if weights is None else weights[w])


def _setup_of(ctx: Any) -> dict[str, Any]:
    """The run's set-up from the first step's context; never an exception into ``fit``: what
    cannot be read is unknown."""
    try:
        setup = engine_setup(ctx.model, getattr(ctx, "loss", None),
                             getattr(ctx, "optimizer", None), getattr(ctx, "output", None),
                             getattr(ctx, "batch_loss", None))
    except Exception:  # noqa: BLE001 — a hand-made context or model: not measured
        setup = RunSetup()
    return setup.to_dict()


def _ratio(change: float, weight: float | None) -> float:
    """‖ΔW‖/‖W‖, with 0/0 = 0 and x/0 = inf."""
    if weight is not None and weight > 0 and math.isfinite(weight):
        return change / weight
    if change == 0:
        return 0.0
    return math.inf if math.isfinite(change) else math.nan


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
