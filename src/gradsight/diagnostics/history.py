"""Histories of LayerStats: pivot per layer, export to dicts, JSON and CSV, and back; save a
run (records and metadata) to a Parquet or JSON Lines file and load it for its diagnosis.

Re-exported by :mod:`gradsight.diagnostics.monitor`, where users find them. The file formats
themselves are :mod:`gradsight.diagnostics.history_files`.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, GradsightError, InvalidValueError
from ..io import atomic_path, atomic_write_text, dumps, jsonable
from .coverage import Coverage
from .history_files import json_float, read_history_file, write_history_file
from .records import as_records, has_history
from .run_setup import RunSetup
from .stats import LayerStats
from .trackers import history_to_tensorboard

__all__ = ["LayerHistory", "RecordList", "history_records", "history_to_json", "history_from_json",
           "history_to_csv", "history_from_csv", "require_history", "save_history",
           "load_history"]


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


# ---- pivot per layer -------------------------------------------------------------------------
class LayerHistory:
    """A history pivoted per layer: ``series(field, layer)`` → (steps, values).

    Missing values (a field that does not apply, or None) become NaN in the arrays, so plots
    show gaps rather than invented numbers. Non-finite values are kept as they are.

    >>> h = [LayerStats("dense0", 0, s, 0, grad_b_norm=0.1 * (s + 1)) for s in range(3)]
    >>> steps, values = LayerHistory(h).series("grad_b_norm", "dense0")
    >>> steps.tolist(), values.round(2).tolist()
    ([0, 1, 2], [0.1, 0.2, 0.3])
    """

    def __init__(self, history: Any) -> None:
        self.records = as_records(history)
        order: dict[str, tuple[int, str]] = {}
        for record in self.records:
            order.setdefault(record.layer, (record.index, record.kind))
        self.layers: list[str] = sorted(order, key=lambda name: order[name][0])
        self.kinds: dict[str, str] = {name: order[name][1] for name in self.layers}
        self.steps: np.ndarray = np.array(sorted({r.step for r in self.records}), dtype=int)
        self._by_layer: dict[str, list[LayerStats]] = {name: [] for name in self.layers}
        for record in self.records:
            self._by_layer[record.layer].append(record)
        for rows in self._by_layer.values():
            rows.sort(key=lambda r: r.step)

    def layers_of(self, kind: str) -> list[str]:
        """The layer names of one kind (``"param"`` or ``"activation"``), in forward order."""
        return [name for name in self.layers if self.kinds[name] == kind]

    def series(self, field: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one field of one layer; None → NaN."""
        if field not in LayerStats.field_names():
            raise InvalidValueError(f"unknown LayerStats field {field!r}; "
                                    f"known: {', '.join(LayerStats.field_names())}")
        if layer not in self._by_layer:
            raise InvalidValueError(f"unknown layer {layer!r}; known: {', '.join(self.layers)}")
        rows = self._by_layer[layer]
        steps = np.array([r.step for r in rows], dtype=int)
        values = np.array([_float(getattr(r, field)) for r in rows], dtype=np.float64)
        return steps, values

    def matrix(self, field: str, kind: str | None = None) -> tuple[list[str], np.ndarray,
                                                                     np.ndarray]:
        """(layers, steps, values[layer, step]) for a layer × step heatmap (NaN where absent)."""
        names = self.layers if kind is None else self.layers_of(kind)
        position = {int(s): j for j, s in enumerate(self.steps)}
        values = np.full((len(names), len(self.steps)), np.nan)
        for i, name in enumerate(names):
            steps, series = self.series(field, name)
            values[i, [position[int(s)] for s in steps]] = series
        return names, self.steps.copy(), values

    def last(self, field: str) -> dict[str, float]:
        """The most recent value of ``field`` per layer (layers where it applies)."""
        result = {}
        for name in self.layers:
            _, values = self.series(field, name)
            if values.size and not all(getattr(r, field) is None for r in self._by_layer[name]):
                result[name] = float(values[-1])
        return result

    def to_dict(self) -> dict[str, Any]:
        """{layer: {"kind", "steps", field: values...}} with only the fields that apply."""
        result: dict[str, Any] = {}
        for name in self.layers:
            rows = self._by_layer[name]
            entry: dict[str, Any] = {"kind": self.kinds[name], "steps": [r.step for r in rows]}
            for field in LayerStats.field_names()[6:]:
                column = [getattr(r, field) for r in rows]
                if any(v is not None for v in column):
                    entry[field] = column
            result[name] = entry
        return jsonable(result)

    def __repr__(self) -> str:
        return (f"LayerHistory({len(self.layers)} layers × {len(self.steps)} steps: "
                f"{', '.join(self.layers)})")

    def _repr_html_(self) -> str:
        head = ("<tr><th>layer</th><th>‖∂C/∂W‖</th><th>‖∂C/∂b‖</th><th>‖ΔW‖/‖W‖</th>"
                "<th>mean a</th><th>saturated</th><th>dead</th><th>non-finite</th></tr>")
        rows = []
        for name in self.layers:
            r = self._by_layer[name][-1]
            cells = [r.grad_W_norm, r.grad_b_norm, r.update_ratio, r.act_mean,
                     r.saturated_fraction, r.dead_fraction, r.nonfinite]
            rows.append(f"<tr><td>{_escape(name)}</td>"
                        + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>")
        caption = (f"<caption>gradsight monitor — last recorded step "
                   f"{int(self.steps[-1]) if len(self.steps) else '–'}</caption>")
        return f"<table>{caption}{head}{''.join(rows)}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.3g}"


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


# ---- export ---------------------------------------------------------------------------------
def history_records(history: Any) -> list[dict[str, Any]]:
    """The history as a list of plain dicts (``pandas.DataFrame(history_records(h))``)."""
    return [record.to_dict() for record in as_records(history)]


def history_to_json(history: Any, path: str | os.PathLike[str] | None = None) -> str:
    """JSON text of the history (a list of records; non-finite floats as "nan"/"inf").

    With ``path`` the text is also written there atomically.
    """
    text = dumps(history_records(history))
    if path is not None:
        atomic_write_text(path, text + "\n")
    return text


def history_from_json(text_or_path: str | os.PathLike[str]) -> list[LayerStats]:
    """Inverse of :func:`history_to_json`: JSON text or the path of a JSON file."""
    text = os.fspath(text_or_path)
    if not text.lstrip().startswith(("[", "{")):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as error:
            raise DataError(f"cannot read history file {text!r}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"history is not valid JSON: {error.msg} at line {error.lineno}") \
            from None
    if isinstance(data, dict):
        data = data.get("history", data.get("records"))
    if not isinstance(data, list):
        raise DataError("history JSON must be a list of records")
    return as_records(data)


def history_to_csv(history: Any, path: str | os.PathLike[str] | None = None) -> str:
    """CSV text of the history (header = LayerStats fields; None → empty cell).

    With ``path`` the text is also written there atomically.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = LayerStats.field_names()
    writer.writerow(names)
    for record in history_records(history):
        writer.writerow(["" if record[n] is None else _csv_cell(record[n]) for n in names])
    text = buffer.getvalue()
    if path is not None:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return text


def _csv_cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(jsonable(value))
    return str(value)


def history_from_csv(path: str | os.PathLike[str]) -> list[LayerStats]:
    """Inverse of :func:`history_to_csv` (reads the file at ``path``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(f"cannot read history file {os.fspath(path)!r}: {error.strerror}") \
            from None
    rows = list(csv.DictReader(io.StringIO(text)))
    return as_records(rows)


def require_history(history: Any) -> list[LayerStats]:
    """The records of a non-empty history, else :class:`GradsightError`."""
    records = as_records(history)
    if not records:
        raise GradsightError("the history is empty: train with a Monitor (every ≥ 1) so "
                             "that at least one step is recorded")
    return records


class RecordList(list[LayerStats]):
    """A history (a plain list of LayerStats) that also carries the run's coverage
    (:class:`~gradsight.diagnostics.coverage.Coverage`), so that ``diagnose(watcher.history)``
    reports what was not watched, and its set-up.

    coverage : the parameters watched (PyTorch); None for the engine's Monitor.
    setup : what the backend saw of the run at its first step — the dict of
        :class:`~gradsight.diagnostics.run_setup.RunSetup` (keys ``output_activation``,
        ``loss``, ``classes``, ``first_loss``, ``probabilities``, ``optimizer``); None until
        the first step. Read it with ``getattr(history, "setup", None)``.
    """

    coverage: Any = None  # a diagnostics.coverage.Coverage
    setup: dict[str, Any] | None = None
    #: the loss of every step averaged over short spans — (last step, mean loss), see
    #: ``diagnostics.schedule.LossCurve`` — where the backend kept it; None otherwise
    loss_curve: list[tuple[int, float]] | None = None

    def __repr__(self) -> str:
        """A summary, not every record: a long run holds hundreds of thousands of them."""
        if not self:
            return "RecordList(0 records)"
        steps = sorted({r.step for r in self})
        layers = len({r.layer for r in self})
        return (f"RecordList({len(self)} records: {layers} layers at {len(steps)} recorded "
                f"steps, {steps[0]}…{steps[-1]})")

    def _repr_html_(self) -> str:
        """The summary and the last recorded step's table (as a Monitor shows it)."""
        if not self:
            return "<p>RecordList(0 records)</p>"
        return f"<p>{html.escape(repr(self))}</p>{LayerHistory(self)._repr_html_()}"

    def save(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the records and the run's metadata to ``path`` (see :func:`save_history`)."""
        return save_history(self, path, format)

    def to_tensorboard(self, log_dir: str | os.PathLike[str]) -> Any:
        """Write the history as TensorBoard event files in ``log_dir`` (see
        :func:`gradsight.diagnostics.trackers.history_to_tensorboard`)."""
        return history_to_tensorboard(self, log_dir)


# ---- saved histories ---------------------------------------------------------------------------
def save_history(history: Any, path: str | os.PathLike[str], format: str | None = None) -> Path:
    """Save a history — a list of LayerStats, a RecordList, a Monitor's or a Watcher's — with
    its set-up, loss curve and coverage, so that :func:`load_history` gives back what
    ``diagnose`` needs to judge the run as it would have where it ran.

    format : ``"parquet"`` (pyarrow, the ``parquet`` extra: a typed table pandas reads) or
        ``"jsonl"`` (JSON Lines, no dependency); by default the one ``path``'s suffix names
        (``.parquet``, ``.jsonl``), and for a path without a suffix Parquet where pyarrow is
        installed, else JSON Lines.

    The file is written atomically: a failure leaves no half-written file and an older file at
    ``path`` intact. Returns the path.
    """
    holder = history.history if has_history(history) else history
    records = as_records(history)
    setup = getattr(holder, "setup", None)
    curve = getattr(holder, "loss_curve", None)
    coverage = getattr(holder, "coverage", None)
    if coverage is None and holder is not history:  # a Watcher keeps it too
        coverage = getattr(history, "coverage", None)
    metadata = {"setup": None if setup is None else dict(setup),
                "loss_curve": None if curve is None else [[int(s), float(v)] for s, v in curve],
                "coverage": None if coverage is None else coverage.to_dict()}
    return write_history_file(path, records, metadata, format)


def load_history(path: str | os.PathLike[str]) -> RecordList:
    """The history at ``path``: one :func:`save_history` wrote (``.parquet``, ``.jsonl``; with
    its set-up, loss curve and coverage), or one exported by :func:`history_to_json` /
    :func:`history_to_csv` (``.json``, ``.csv``: the records only).

    A file that is missing, empty, truncated, corrupt or not a gradsight history is one
    :class:`~gradsight.errors.DataError` naming the path and what was expected.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".csv"):
        return RecordList(_read_export(Path(path), suffix))
    records, metadata = read_history_file(path)
    history = RecordList(records)
    where = f"cannot read history {os.fspath(path)!r}"
    history.setup = _setup_from(metadata.get("setup"), where)
    history.loss_curve = _curve_from(metadata.get("loss_curve"), where)
    history.coverage = _coverage_from(metadata.get("coverage"), where)
    return history


def _read_export(path: Path, suffix: str) -> list[LayerStats]:
    """The records of a JSON or CSV export, every failure one line naming the path."""
    where = f"cannot read history {str(path)!r}"
    expected = "a JSON list of records (history_to_json)" if suffix == ".json" \
        else "a CSV table of records (history_to_csv)"
    if path.is_dir():
        raise DataError(f"{where}: it is a folder; expected {expected}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise DataError(f"{where}: {reason}; expected {expected}") from None
    if not text.strip():
        raise DataError(f"{where}: the file is empty; expected {expected}")
    if suffix == ".json" and not text.lstrip().startswith(("[", "{")):
        raise DataError(f"{where}: not JSON; expected {expected}")
    try:
        return history_from_json(text) if suffix == ".json" else history_from_csv(path)
    except GradsightError as error:
        raise DataError(f"{where}: {error}; expected {expected}") from None


#: the set-up's keys that hold a float (JSON keeps a non-finite one as "nan", "inf", "-inf")
_SETUP_FLOATS = {f.name for f in fields(RunSetup) if "float" in str(f.type)}


def _setup_from(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DataError(f"{where}: its set-up is not a JSON object")
    setup = dict(value)
    for key in _SETUP_FLOATS & set(setup):
        if isinstance(setup[key], str):
            setup[key] = _json_float(setup[key], f"{where}: set-up {key!r}")
    return setup


def _json_float(value: Any, what: str) -> float:
    """A number as JSON keeps it (:func:`~.history_files.json_float`), else DataError."""
    try:
        return json_float(value)
    except ValueError:
        raise DataError(f"{what} must be a number, got {value!r}") from None


def _curve_from(value: Any, where: str) -> list[tuple[int, float]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) for p in value):
        raise DataError(f"{where}: its loss curve is not a list of [step, mean loss] pairs")
    return [(int(step), _json_float(mean, f"{where}: loss curve")) for step, mean in value]


def _coverage_from(value: Any, where: str) -> Any:
    """The Coverage a saved history carries, or None."""
    if value is None:
        return None
    try:
        if not all(isinstance(value[n], int) and not isinstance(value[n], bool)
                   for n in ("watched", "total")):
            raise TypeError
        return Coverage.from_dict(value)
    except (TypeError, KeyError, ValueError, AttributeError):
        raise DataError(f"{where}: its coverage is not a JSON object with the counts "
                        "'watched' and 'total'") from None
