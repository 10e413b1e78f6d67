"""The vanishing-gradient lab: Nielsen's per-layer speeds, sweeps, Glorot & Bengio's
saturation (:mod:`.vanishing`; the shared network and cost code in :mod:`.common`,
the saturation study in :mod:`.glorot`)."""

from __future__ import annotations

from .vanishing import (
    LOSSES,
    NIELSEN_SPEEDS,
    ActivationTrajectory,
    NielsenCrossEntropy,
    SweepResult,
    VanishResult,
    activation_trajectory,
    layer_speeds,
    nielsen_speeds,
    sweep,
)

__all__ = [
    "NIELSEN_SPEEDS", "LOSSES", "NielsenCrossEntropy", "VanishResult", "SweepResult",
    "ActivationTrajectory", "nielsen_speeds", "sweep", "activation_trajectory",
    "layer_speeds",
]
