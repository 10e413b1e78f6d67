"""TensorBoard and Weights & Biases: the readings of every recorded step, drawn by the trackers
practitioners already watch.

Both sinks take what :func:`~gradsight.diagnostics.sinks.scalars` makes of a step — one scalar
per reading and layer, ``grad_norm/encoder.layer.0.attention``, ``dead/net.2``,
``gradsight/loss`` — so a tracker draws one curve per layer and reading::

    with TensorBoardSink("runs/exp1") as board:
        with gradsight.watch(model, optimizer=optimizer, sinks=[board]) as watcher:
            ...  # the training loop, unchanged

:func:`history_to_tensorboard` writes a history recorded earlier (or loaded from a file) under
the same tags, with its loss curve.

**TensorBoard** needs neither torch nor TensorFlow: the events are written with TensorBoard's
own writer classes (``EventFileWriter``, ``RecordWriter`` and its protocol buffers), so the
NumPy engine's ``Monitor`` uses the sink as ``watch`` does. Values are written as float64
tensors of the scalars plugin (what ``torch.utils.tensorboard`` writes with
``double_precision=True``): the float32 of a plain ``add_scalar`` keeps 7 digits and turns
a vanished gradient's norm below 1e-45 into 0. NaN and ±inf stay NaN and ±inf — a NaN
gradient is a finding, never dropped.

*Tags.* A TensorBoard tag is made of ASCII letters, digits and ``_ . - /`` (the characters
TensorFlow and ``torch.utils.tensorboard`` keep); a layer name may hold others (a space,
brackets, a colon, an accented letter). :func:`tensorboard_tag` replaces each other character
by ``_`` and strips a leading ``/``: ``grad_norm/blocks[0] attn`` becomes
``grad_norm/blocks_0__attn``; ``.`` ``/`` ``_`` ``-`` are kept, so module paths are
unchanged. If two layers' tags become the same, the second is written as ``<tag>_2`` (then
``_3``, …), so their curves never merge.

**W&B** keys may hold any character, so :class:`WandbSink` logs the tags as they are.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import GradsightError, InvalidValueError, OutputError, require_extra
from ..io import atomic_path
from .records import as_records, has_history
from .sinks import by_step, scalars
from .stats import LayerStats

__all__ = ["LOSS_CURVE_TAG", "STEP_FIELD", "TensorBoardSink", "WandbSink",
           "history_to_tensorboard", "tensorboard_tag"]

#: the tag of a history's loss curve (mean loss over short spans of steps)
LOSS_CURVE_TAG = "gradsight/loss_curve"
#: the W&B field that holds the recorded step: the x-axis of every gradsight chart
STEP_FIELD = "gradsight/step"

_NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_./\-]")
_FILE_NUMBER = itertools.count()  # tells apart the histories one process writes per second


def tensorboard_tag(tag: str) -> str:
    """``tag`` as a valid TensorBoard tag: every character but ASCII letters, digits and
    ``_ . - /`` becomes ``_``; a leading ``/`` is dropped.

    >>> tensorboard_tag("grad_norm/encoder.layer.0.attention")
    'grad_norm/encoder.layer.0.attention'
    >>> tensorboard_tag("dead/blocks[0] relu:1")
    'dead/blocks_0__relu_1'
    """
    return _NOT_IN_TAG.sub("_", tag).lstrip("/") or "_"


class _TagNames:
    """Each tag's TensorBoard name, kept for the life of one writer so that two tags whose
    cleaned names collide get two curves (``x``, ``x_2``) and the same tag always one."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, tag: str) -> str:
        name = self._names.get(tag)
        if name is None:
            base = name = tensorboard_tag(tag)
            for number in itertools.count(2):
                if name not in self._taken:
                    break
                name = f"{base}_{number}"
            self._names[tag] = name
            self._taken.add(name)
        return name


# ---- TensorBoard ----------------------------------------------------------------------------
def _tensorboard(purpose: str) -> SimpleNamespace:
    """TensorBoard's writer classes and protocol buffers (an optional extra: imported here)."""
    require_extra("tensorboard", "tensorboard", purpose)
    event_pb2 = require_extra("tensorboard.compat.proto.event_pb2", "tensorboard", purpose)
    summary_pb2 = require_extra("tensorboard.compat.proto.summary_pb2", "tensorboard", purpose)
    types_pb2 = require_extra("tensorboard.compat.proto.types_pb2", "tensorboard", purpose)
    writer = require_extra("tensorboard.summary.writer.event_file_writer", "tensorboard",
                           purpose)
    records = require_extra("tensorboard.summary.writer.record_writer", "tensorboard", purpose)
    scalar = require_extra("tensorboard.plugins.scalar.metadata", "tensorboard", purpose)
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=scalar.PLUGIN_NAME),
        data_class=summary_pb2.DataClass.DATA_CLASS_SCALAR)
    return SimpleNamespace(Event=event_pb2.Event, SourceMetadata=event_pb2.SourceMetadata,
                           DT_DOUBLE=types_pb2.DT_DOUBLE,
                           EventFileWriter=writer.EventFileWriter,
                           RecordWriter=records.RecordWriter, scalar_metadata=metadata)


class _Events:
    """Builds the Events of one event file: one Event per step holding each tag's value as a
    float64 scalar tensor; the scalars plugin's metadata goes with a tag's first value only
    (TensorBoard keeps the first it reads)."""

    def __init__(self, tb: SimpleNamespace) -> None:
        self.tb = tb
        self.names = _TagNames()
        self._described: set[str] = set()

    def version(self) -> Any:
        """The first event of every event file: the file format's version."""
        return self.tb.Event(wall_time=time.time(), file_version="brain.Event:2",
                             source_metadata=self.tb.SourceMetadata(writer="gradsight"))

    def step(self, step: int, values: dict[str, float], wall_time: float) -> Any:
        event = self.tb.Event(wall_time=wall_time, step=step)
        for tag, value in values.items():
            name = self.names(tag)
            entry = event.summary.value.add(tag=name)
            entry.tensor.dtype = self.tb.DT_DOUBLE  # a scalar: the shape has no dimension
            entry.tensor.double_val.append(value)
            if name not in self._described:
                entry.metadata.CopyFrom(self.tb.scalar_metadata)
                self._described.add(name)
        return event


def _log_dir(log_dir: Any, purpose: str) -> Path:
    """``log_dir`` as a Path, refused at once if it is not a path or is a file."""
    if not isinstance(log_dir, (str, os.PathLike)):
        raise InvalidValueError(f"{purpose} log_dir must be a folder path, got "
                                f"{type(log_dir).__name__}")
    path = Path(log_dir)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write TensorBoard events into {str(path)!r}: it is a file, "
                          "not a folder")
    return path


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int | float) or step != int(step) \
            or step < 0:
        raise InvalidValueError(f"a step must be an integer ≥ 0, got {step!r}")
    return int(step)


def _floats(values: dict[str, Any]) -> dict[str, float]:
    """The scalars as floats: NaN and ±inf pass as they are."""
    result = {}
    for tag, value in values.items():
        try:
            result[str(tag)] = float(value)
        except (TypeError, ValueError):
            raise InvalidValueError(f"scalar {tag!r} must be a number, got {value!r}") \
                from None
    return result


class TensorBoardSink:
    """A sink that writes each recorded step's scalars to a TensorBoard event file in
    ``log_dir`` (created if missing; other files there are left alone: the file gets a name
    of its own, ``events.out.tfevents.<time>.<host>.<pid>.<n>.gradsight``, as TensorBoard's
    ``EventFileWriter`` names it).

    log_dir : the run's folder (``tensorboard --logdir`` its parent to compare runs).
    flush_secs : how often the writer's background thread writes what it holds to disk, so
        that a TensorBoard watching the folder draws the curves during training; ``flush()``
        (called by ``watch`` and ``Monitor`` at the end) writes at once.

    Use it as a context manager, or call :meth:`close` when done (``watch`` and ``Monitor``
    only flush it: the same sink may serve several runs). Tags: see the module docstring.
    """

    def __init__(self, log_dir: str | os.PathLike[str], flush_secs: float = 30.0) -> None:
        tb = _tensorboard("TensorBoardSink")
        self.log_dir = _log_dir(log_dir, "TensorBoardSink")
        if isinstance(flush_secs, bool) or not isinstance(flush_secs, int | float) \
                or not math.isfinite(flush_secs) or flush_secs <= 0:
            raise InvalidValueError(f"flush_secs must be a number of seconds > 0, got "
                                    f"{flush_secs!r}")
        self._events = _Events(tb)
        try:
            self._writer = tb.EventFileWriter(
                os.fspath(self.log_dir), flush_secs=flush_secs,
                filename_suffix=".gradsight")
        except OSError as error:
            raise OutputError(f"cannot write TensorBoard events into {str(self.log_dir)!r}: "
                              f"{error.strerror or error}") from None
        self._closed = False

    def write(self, step: int, scalars: dict[str, float]) -> None:
        """Queue one step's scalars (one event; the writer's thread writes it)."""
        if self._closed:
            raise OutputError(f"the TensorBoardSink of {str(self.log_dir)!r} is closed; "
                              "make a new one to write again")
        event = self._events.step(_check_step(step), _floats(scalars), time.time())
        self._writer.add_event(event)

    def flush(self) -> None:
        """Write every queued event to disk now."""
        if not self._closed:
            self._writer.flush()

    def close(self) -> None:
        """Flush, close the file and stop the writer's thread (a second call does nothing)."""
        if not self._closed:
            self._closed = True
            self._writer.close()

    def __enter__(self) -> TensorBoardSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"TensorBoardSink({str(self.log_dir)!r}, {state})"


def _records_of(history: Any) -> tuple[list[LayerStats], Any]:
    """The LayerStats of a history (:func:`~.records.as_records`) and the loss curve it
    carries, if any."""
    holder = history.history if has_history(history) else history
    return as_records(history), getattr(holder, "loss_curve", None)


def _curve_points(curve: Any) -> Iterator[tuple[int, float]]:
    """The loss curve's (step, mean loss) points, checked."""
    for point in curve or ():
        try:
            step, loss = point
        except (TypeError, ValueError):
            raise InvalidValueError(f"a loss curve holds (step, loss) pairs, got {point!r}") \
                from None
        yield _check_step(step), _floats({LOSS_CURVE_TAG: loss})[LOSS_CURVE_TAG]


def _event_file_name() -> str:
    """TensorBoard's event file name (it reads the files whose name holds ``tfevents``)."""
    return (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(_FILE_NUMBER)}.history.gradsight")


def history_to_tensorboard(history: Any, log_dir: str | os.PathLike[str]) -> Path:
    """Write a recorded history to a new TensorBoard event file in ``log_dir``; return the
    file's path.

    Every recorded step gets the scalars that :class:`TensorBoardSink` would have written
    live (same tags, same values), and the history's ``loss_curve`` — (step, mean loss)
    points, kept by ``watch`` and ``Monitor`` — goes under ``gradsight/loss_curve``.
    ``history`` is a list or ``RecordList`` of :class:`LayerStats` (or their dicts), or a
    Monitor or Watcher. Everything is checked before anything is written; the file is
    written whole under a temporary name and then renamed, and gets a name no other file in
    ``log_dir`` has: nothing there is overwritten.
    """
    tb = _tensorboard("history_to_tensorboard")
    folder = _log_dir(log_dir, "history_to_tensorboard")
    records, curve = _records_of(history)
    steps: dict[int, dict[str, float]] = {_check_step(step): scalars(group)
                                          for step, group in by_step(records)}
    for step, loss in _curve_points(curve):
        steps.setdefault(step, {})[LOSS_CURVE_TAG] = loss
    if not steps:
        raise InvalidValueError("history_to_tensorboard got a history with no records")
    events = _Events(tb)
    wall_time = time.time()
    encoded = [events.version().SerializeToString()]
    encoded += [events.step(step, steps[step], wall_time).SerializeToString()
                for step in sorted(steps)]
    target = folder / _event_file_name()
    while target.exists():  # the same second, process and number: a file copied in
        target = folder / _event_file_name()
    with atomic_path(target) as tmp, open(tmp, "wb") as stream:
        writer = tb.RecordWriter(stream)
        for data in encoded:
            writer.write(data)
    return target


# ---- Weights & Biases -----------------------------------------------------------------------
class WandbSink:
    """A sink that logs each recorded step's scalars to a W&B run.

    run : the run (``wandb.init(...)``'s result); None: the active run, ``wandb.run``.

    Each step is logged as one row holding the scalars (NaN and ±inf as they are: W&B keeps
    them as ``NaN``, ``Infinity``, ``-Infinity``) and ``gradsight/step``, the recorded step,
    which every gradsight chart takes as its x-axis (``run.define_metric(..., step_metric=
    "gradsight/step")``, W&B's documented way to a custom x-axis). W&B's own step only grows:
    while it is not ahead of the recorded step the row is logged at ``step=`` the recorded
    step (so W&B's step is the training step, and metrics the loop logs at the same step
    share the row); once the loop's own ``run.log`` calls have moved it ahead, rows are
    logged at W&B's next step instead — never dropped — and the charts stay right through
    ``gradsight/step``. The sink never finishes the run: the run is the caller's.
    """

    def __init__(self, run: Any = None) -> None:
        wandb = require_extra("wandb", "wandb", "WandbSink")
        self.run = wandb.run if run is None else run
        if self.run is None:
            raise GradsightError("WandbSink needs an active W&B run: call wandb.init() first, "
                                 "or pass run=")
        self._defined: set[str] = set()

    def _define(self, tags: Iterable[str]) -> None:
        """Make ``gradsight/step`` the x-axis of every tag's chart (once per tag family)."""
        if not self._defined:
            self.run.define_metric(STEP_FIELD)
            self._defined.add(STEP_FIELD)
        for tag in tags:
            # "grad_norm/*" covers a reading of every layer; the step's own readings
            # ("gradsight/loss") one by one, as "gradsight/*" would also take gradsight/step
            name = tag if tag.startswith("gradsight/") or "/" not in tag \
                else f"{tag.split('/', 1)[0]}/*"
            if name not in self._defined:
                self.run.define_metric(name, step_metric=STEP_FIELD)
                self._defined.add(name)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        """Log one step's scalars (see the class docstring for the step used)."""
        step = _check_step(step)
        row: dict[str, float | int] = dict(_floats(scalars))
        self._define(row)
        row[STEP_FIELD] = step
        if self.run.step <= step:
            self.run.log(row, step=step)
        else:
            self.run.log(row)

    def flush(self) -> None:
        """Commit the row of the last step logged: W&B keeps a row given ``step=`` open for
        more values of that step, so ``run.summary`` and the charts would lag one recorded
        step until the next ``run.log`` or ``run.finish()`` (``watch`` and ``Monitor`` call
        this when the run ends)."""
        self.run.log({}, commit=True)

    def close(self) -> None:
        """Nothing to do: the run is the caller's to finish."""

    def __enter__(self) -> WandbSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
