"""What the doctor asks of a runner: ``runner(config) -> RunOutcome``.

:func:`~gradsight.diagnostics.fixes.doctor` trains the set-up and every candidate fix through
a runner, so that one ranking serves every backend: the NumPy engine's
(:class:`~gradsight.diagnostics.numpy_runner.EngineRunner`, the default) and the PyTorch
adapter's (``torch_runner``). This module holds the contract between them — the
:class:`RunOutcome` a run reports and the :data:`Runner` type — and nothing else, so the
doctor and the runners depend on it and not on each other.

A runner may also have ``resolve(config) -> config`` (``loss="auto"`` resolved for its data,
names checked before the first run) and ``classification`` (whether the target is a class,
for the candidates that only make sense then); the doctor uses them when present.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunOutcome", "Runner"]


@dataclass
class RunOutcome:
    """What a runner reports about one training run.

    loss : held-out cost (in ``config["eval_loss"]``); accuracy : held-out accuracy or None.
    gradient_ratio : ‖∂C/∂b‖ of the last hidden layer / of the first, after training
        (≫ 1: vanishing toward the input; None with fewer than two hidden layers).
    findings : the run's :class:`~gradsight.diagnostics.Findings`; history : the fit
        History; layer_history : the monitored LayerStats; info : anything else.
    """

    loss: float
    accuracy: float | None
    gradient_ratio: float | None
    findings: Any = field(default_factory=list)
    history: Any = None
    layer_history: Any = None
    info: dict[str, Any] = field(default_factory=dict)


#: ``runner(config) -> RunOutcome``: trains one configuration (see :mod:`.fixes` for its keys)
Runner = Callable[[dict[str, Any]], RunOutcome]
