"""Gradient-flow diagnostics: per-layer statistics, monitor, neuron states, verdicts, doctor."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .stats import LayerStats

# Public name → submodule that defines it; imported on first use so that importing
# gradsight.diagnostics stays cheap.
_LAZY = {
    "Monitor": "monitor",
    "LayerHistory": "history",
    "history_to_json": "history",
    "history_to_csv": "history",
    "history_records": "history",
    "history_from_json": "history",
    "history_from_csv": "history",
    "load_history": "history",
    "save_history": "history",
    "classify_neurons": "neurons",
    "neuron_derivative_map": "neurons",
    "NeuronState": "neurons",
    "NeuronStates": "neurons",
    "diagnose": "verdict",
    "Finding": "findings",
    "Findings": "findings",
    "Thresholds": "findings",
    "speed_ratio": "speed",
    "doctor": "fixes",
    "DoctorResult": "fixes",
    "DoctorSetup": "fixes",
    "engine_runner": "fixes",
    "RunOutcome": "runner",
    "Coverage": "coverage",
}

__all__ = ["LayerStats", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
