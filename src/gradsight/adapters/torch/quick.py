"""``diagnose_torch``: a quick look at a model and its data, without a loop of one's own."""

from __future__ import annotations

import copy as copy_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ...diagnostics.stats import LayerStats
from ...diagnostics.verdict import diagnose
from ...errors import require_positive
from ._loop import check_steps, cycle, loss_name, make_optimizer, train_steps
from ._torch import require_torch, unwrap
from .watcher import Watcher


@dataclass
class TorchDiagnosis:
    """What :func:`diagnose_torch` found.

    findings : the :class:`~gradsight.diagnostics.Findings` of ``diagnose`` (most severe
        first; ``str(findings)`` reads as a report). history : the LayerStats of every step.
    losses : the batch loss of each step. model : the model that was trained (the throwaway
        copy unless ``copy=False``).
    """

    findings: Any
    history: list[LayerStats] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    model: Any = None

    def __iter__(self) -> Any:  # findings, history = diagnose_torch(...)
        return iter((self.findings, self.history))

    def __str__(self) -> str:
        return str(self.findings)

    def _repr_html_(self) -> str:
        return str(self.findings._repr_html_())


def diagnose_torch(model: Any, loader: Iterable[Any], loss_fn: Callable[[Any, Any], Any],
                   steps: int = 50, optimizer: Any = None, lr: float = 0.01, *,
                   copy: bool = True, every: int = 1, loss: str | None = None,
                   **thresholds: Any) -> TorchDiagnosis:
    """Train ``model`` for ``steps`` steps on ``loader`` under :func:`watch`; diagnose it.

    model : a ``torch.nn.Module``. By default a **throwaway deep copy** is trained, so the
        caller's model and its weights are untouched (``copy=False`` trains the model itself).
    loader : an iterable of (inputs, targets) batches — a ``DataLoader``; it is iterated
        again when exhausted. Inputs are moved to the model's device and floating inputs
        cast to its dtype.
    loss_fn : ``loss_fn(output, target)`` → scalar tensor (``nn.CrossEntropyLoss()``...).
    optimizer : None (SGD with ``lr``), a name ("sgd", "momentum", "adam", ...), a factory
        ``lambda params: torch.optim.Adam(params, lr=1e-3)``, or an optimizer instance —
        rebuilt on the copy's parameters from its class and ``defaults`` (its state and
        per-group settings are not copied).
    loss : the cost's gradsight name for the verdict rules ("quadratic"...); guessed from
        ``loss_fn`` (nn.MSELoss → "quadratic") when None.
    thresholds : overrides of :class:`~gradsight.diagnostics.verdict.Thresholds`.

    Training stops early after a step whose loss is NaN/inf (that step is still recorded).
    """
    require_torch()
    steps = check_steps(steps)
    lr = require_positive("lr", lr)
    target = copy_module.deepcopy(unwrap(model)) if copy else model
    if not copy and _is_optimizer(optimizer):
        opt = optimizer
    else:
        opt = make_optimizer(optimizer, target.parameters(), lr)
    with Watcher(target, every=every, optimizer=opt) as watcher:
        losses = train_steps(target, cycle(loader), loss_fn, opt, steps)
    name = loss if loss is not None else loss_name(loss_fn)
    findings = diagnose(watcher.history, train_history=losses, loss=name, **thresholds)
    return TorchDiagnosis(findings, watcher.history, losses, target)


def _is_optimizer(value: Any) -> bool:
    torch = require_torch()
    return isinstance(value, torch.optim.Optimizer)
