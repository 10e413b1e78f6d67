"""Gradient-flow diagnostics: per-layer statistics, monitor, neuron states, verdicts, doctor."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .stats import LayerStats

# Public name → submodule that defines it; imported on first use so that importing
# gradsight.diagnostics stays cheap.
_LAZY = {
    "Monitor": "monitor",
    "history_to_json": "monitor",
    "history_to_csv": "monitor",
    "history_records": "monitor",
    "classify_neurons": "neurons",
    "NeuronState": "neurons",
    "diagnose": "verdict",
    "Finding": "verdict",
    "Findings": "verdict",
    "doctor": "fixes",
    "DoctorResult": "fixes",
    "DoctorSetup": "fixes",
    "RunOutcome": "fixes",
    "engine_runner": "fixes",
    "LayerHistory": "monitor",
    "history_from_json": "monitor",
    "history_from_csv": "monitor",
    "neuron_derivative_map": "neurons",
    "NeuronStates": "neurons",
    "Thresholds": "verdict",
}

__all__ = ["LayerStats", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
