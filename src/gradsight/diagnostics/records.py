"""The records of a history, whatever holds them: what every reader and writer of histories
(exports, saved files, TensorBoard) takes as its input.

A history is a list of :class:`~gradsight.diagnostics.stats.LayerStats` — or of their dicts
(from JSON or a CSV, where numbers may be text) — or an object that holds one: a Monitor or a
Watcher (``.history``), a LayerHistory (``.records``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import DataError, InvalidValueError
from .stats import LayerStats

__all__ = ["as_records", "has_history", "record_from_dict"]


def has_history(value: Any) -> bool:
    """Whether ``value`` holds a history in ``.history`` (a Monitor, a Watcher)."""
    return hasattr(value, "history") and not isinstance(value, (list, tuple))


def as_records(history: Any) -> list[LayerStats]:
    """The LayerStats of a history: a list of them (a RecordList) or of their dicts, a
    Monitor or Watcher (its ``.history``), or a LayerHistory (its ``.records``)."""
    if has_history(history):
        history = history.history
    if not isinstance(history, (list, tuple)) and hasattr(history, "records"):
        return list(history.records)
    if not isinstance(history, Iterable) or isinstance(history, (str, bytes, dict)):
        raise InvalidValueError(f"a history must be a list of LayerStats, got "
                                f"{type(history).__name__}")
    records = []
    for item in history:
        if isinstance(item, LayerStats):
            records.append(item)
        elif isinstance(item, dict):
            records.append(record_from_dict(item))
        else:
            raise InvalidValueError(f"a history holds LayerStats records, got "
                                    f"{type(item).__name__}")
    return records


_INT_FIELDS = {"index", "step", "epoch", "nonfinite", "time_steps", "skipped_between"}
_TEXT_FIELDS = {"layer", "kind", "activation", "source", "note", "role", "bias_zero_by"}
_BOOL_FIELDS = {"skipped"}
_BOOL_TEXT = {"true": True, "1": True, "false": False, "0": False}


def record_from_dict(data: dict[str, Any]) -> LayerStats:
    """A LayerStats from a dict whose numbers may be strings ("nan", "1e-3", "")."""
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TEXT_FIELDS:
            clean[key] = None if value in (None, "") and key not in ("layer", "kind") \
                else value
        elif value is None or value == "":
            clean[key] = None
        elif key in _BOOL_FIELDS:
            clean[key] = _bool(key, value)
        else:
            try:
                clean[key] = int(value) if key in _INT_FIELDS else float(value)
            except (TypeError, ValueError):
                raise DataError(f"history field {key!r} must be a number, got {value!r}") \
                    from None
    try:
        return LayerStats.from_dict(clean)
    except TypeError as error:
        raise DataError(f"history record is missing a field: {error}") from None


def _bool(key: str, value: Any) -> bool:
    """A flag from JSON (true/false) or CSV ("True"/"False")."""
    if isinstance(value, bool):
        return value
    flag = _BOOL_TEXT.get(str(value).strip().lower())
    if flag is None:
        raise DataError(f"history field {key!r} must be true or false, got {value!r}")
    return flag
