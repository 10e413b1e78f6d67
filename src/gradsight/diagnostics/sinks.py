"""Sinks: where each recorded step's readings go the moment they are made.

``watch(model, sinks=[...])`` and ``Monitor(sinks=[...])`` hand every recorded step to each
sink as one dict of scalars under readable tags — ``"<reading>/<layer>"``, e.g.
``grad_norm/encoder.layer.0.attention`` or ``dead/net.2`` — so that a tracker draws one curve
per layer and reading instead of hundreds of histograms. The same tags serve the Lightning
and Hugging Face callbacks (``gradsight.integrations``), which log them through their own
loggers, and the TensorBoard and W&B sinks.

A sink is any object with ``write(step, scalars)`` (``flush()`` and ``close()`` are optional),
or a plain function ``sink(step, scalars)``. Non-finite readings are passed on as they are:
a NaN gradient norm is a finding, never dropped.

>>> from gradsight.diagnostics.stats import LayerStats
>>> step = [LayerStats("fc1", 0, 7, kind="param", grad_W_norm=0.5, update_ratio=1e-3),
...         LayerStats("act1", 1, 7, kind="activation", dead_fraction=0.25)]
>>> scalars(step)
{'grad_norm/fc1': 0.5, 'update_ratio/fc1': 0.001, 'nonfinite/fc1': 0.0, 'dead/act1': 0.25, \
'nonfinite/act1': 0.0}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidValueError
from .stats import LayerStats

__all__ = ["LAYER_READINGS", "STEP_READINGS", "Sink", "as_sinks", "by_step", "scalars", "emit",
           "flush_all"]

#: LayerStats field → the tag prefix of its per-layer scalar, in the order they are logged
LAYER_READINGS: dict[str, str] = {
    "grad_W_norm": "grad_norm",
    "grad_b_norm": "grad_b_norm",
    "weight_norm": "weight_norm",
    "update_ratio": "update_ratio",
    "act_mean": "act_mean",
    "act_std": "act_std",
    "saturated_fraction": "saturated",
    "dead_fraction": "dead",
    "nonfinite": "nonfinite",
    "time_grad_ratio": "time_grad_ratio",
    "attention_entropy": "attention_entropy",
}

#: readings of the whole step (the same on every record of the step) → their tag
STEP_READINGS: dict[str, str] = {
    "loss": "gradsight/loss",
    "loss_window": "gradsight/loss_window",
    "grad_norm_before_clip": "gradsight/grad_norm_before_clip",
}


@runtime_checkable
class Sink(Protocol):
    """Receives the scalars of each recorded step (see the module docstring)."""

    def write(self, step: int, scalars: dict[str, float]) -> None: ...


def scalars(records: Iterable[LayerStats]) -> dict[str, float]:
    """The readings of one step's records as ``{tag: value}``: the per-layer readings that
    apply (a field that is None is left out), then the step's own readings, once."""
    result: dict[str, float] = {}
    step_values: dict[str, float] = {}
    for record in records:
        for field, prefix in LAYER_READINGS.items():
            value = getattr(record, field)
            if value is None or (field == "nonfinite" and record.kind == "sequence"):
                continue
            tag = f"{prefix}/{record.layer}"
            result[tag] = float(value)
        for field, tag in STEP_READINGS.items():
            value = getattr(record, field)
            if value is not None and tag not in step_values:
                step_values[tag] = float(value)
    result.update(step_values)
    return result


def by_step(records: Iterable[LayerStats]) -> list[tuple[int, list[LayerStats]]]:
    """The records grouped by step, steps in increasing order."""
    groups: dict[int, list[LayerStats]] = {}
    for record in records:
        groups.setdefault(int(record.step), []).append(record)
    return sorted(groups.items())


def as_sinks(sinks: Any) -> list[Any]:
    """The sinks given to ``watch`` or ``Monitor``: None, one sink or a list of them."""
    if sinks is None:
        return []
    items = [sinks] if isinstance(sinks, Sink) or callable(sinks) else list(sinks)
    for sink in items:
        if not (isinstance(sink, Sink) or callable(sink)):
            raise InvalidValueError(
                f"a sink must have a write(step, scalars) method or be a function of "
                f"(step, scalars), got {type(sink).__name__}")
    return items


def emit(sinks: list[Any], records: Iterable[LayerStats]) -> None:
    """Hand each step of ``records`` to every sink."""
    for step, group in by_step(records):
        values = scalars(group)
        for sink in sinks:
            write: Callable[[int, dict[str, float]], None] = getattr(sink, "write", sink)
            write(step, dict(values))


def flush_all(sinks: list[Any]) -> None:
    """Flush the sinks that buffer (a TensorBoard writer), so that what was written is read."""
    for sink in sinks:
        flush = getattr(sink, "flush", None)
        if callable(flush):
            flush()

