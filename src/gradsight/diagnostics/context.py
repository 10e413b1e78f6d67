"""What the rules of :mod:`.rules` and :mod:`.loss_rules` read and write: the
:class:`Context` (the history pivoted per layer, plus the optional model, data, loss curve and
the run's set-up), the fixes they recommend, and the helpers that make a :class:`Finding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GradsightError, InvalidValueError
from .findings import Finding, Thresholds
from .history import LayerHistory, require_history
from .neurons import classify_neurons, hidden_layers

# (fix text, configuration change for doctor) — the change is {} when doctor cannot try it
Fix = tuple[str, dict[str, Any]]
RELU_HE: Fix = ("Use ReLU in the hidden layers with He initialisation (Var w = 2/n_in): "
           "relu′(z) = 1 for z > 0, so δ passes back without shrinking",
           {"activation": "relu", "init": "he_normal"})
LEAKY_HE: Fix = ("Use leaky ReLU (slope 0.01 for z ≤ 0) with He initialisation: like ReLU, "
            "but a unit never gets a zero derivative, so none can die",
            {"activation": "leaky_relu", "init": "he_normal"})
XAVIER: Fix = ("Initialise with Xavier/Glorot (Var w = 2/(n_in+n_out)) so z stays near 0, where "
          "σ′ is largest", {"init": "xavier_uniform"})
TANH: Fix = ("Use tanh instead of sigmoid: tanh′(0) = 1 against σ′(0) = 0.25",
        {"activation": "tanh", "init": "xavier_uniform"})
ADAM: Fix = ("Use Adam (lr 0.001): it scales each weight's step by its own gradient history, so "
        "small gradients still move their weights", {"optimizer": "adam", "lr": 0.001})
LR_DOWN: Fix = ("Lower the learning rate η (×0.1): w_new = w_old − η∂C/∂w takes smaller steps",
           {"lr_factor": 0.1})
LR_UP: Fix = ("Raise the learning rate η (×10)", {"lr_factor": 10.0})
CROSS_ENTROPY: Fix = ("Use the cross-entropy cost instead of the quadratic cost: its gradient "
                 "(ŷ − y)·x has no σ′(z) factor, so a badly wrong output learns fastest",
                 {"loss": "cross_entropy"})
HE: Fix = ("Initialise with He (Var w = 2/n_in), scaled for ReLU layers", {"init": "he_normal"})
STANDARDISE: Fix = ("Standardise the inputs (mean 0, std 1) so that z = xW + b starts small", {})
FEWER_LAYERS: Fix = ("Use fewer hidden layers: each one multiplies δ by another f′(z)", {})
CLIP: Fix = ("Clip the gradient norm (e.g. to 1) before each update", {})
CHECK_DATA: Fix = ("Check the inputs and targets for NaN/inf", {})
BF16: Fix = ("Use bfloat16 autocast instead of float16: it has float32's range, so nothing "
             "overflows and no GradScaler is needed", {})
UNSCALE_CLIP: Fix = ("Clip the gradient norm after scaler.unscale_(optimizer), before "
                     "scaler.step(optimizer)", {})


def _finding(code: str, severity: str, title: str, layers: list[str], evidence: dict[str, Any],
             explanation: str, fixes: list[Fix]) -> Finding:
    return Finding(code, severity, title, layers, evidence, explanation,
                   [text for text, _ in fixes], [change for _, change in fixes if change])


def _median(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else math.nan


@dataclass
class Context:
    """What the rules read: the history per layer and the optional extras."""

    layers: LayerHistory
    limits: Thresholds
    hidden_params: list[str]
    hidden_acts: list[str]
    output_acts: list[str]
    act_name: dict[str, str]
    late_steps: np.ndarray
    losses: list[float] = field(default_factory=list)
    accuracy: float | None = None
    model: Any = None
    data: tuple[Any, Any] | None = None
    loss: str | None = None
    _states: Any = None
    skipped_steps: list[int] = field(default_factory=list)  # the GradScaler skipped them
    recorded_steps: list[int] = field(default_factory=list)  # every recorded step, skipped too
    all_params: list[str] = field(default_factory=list)  # param layers, skipped steps too
    loss_steps: list[int] | None = None  # the step of each of ``losses``, when known
    skips_between: dict[int, int] = field(default_factory=dict)  # step → skips not recorded
    setup: Any = None  # what the backend saw of the run: output activation, loss, classes...
    _memo: dict[str, Any] = field(default_factory=dict)  # results one rule asks of another

    def once(self, key: str, compute: Any) -> Any:
        """``compute()`` the first time ``key`` is asked for, the kept result after: a rule
        that reads another's finding does not judge the run twice."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def neuron_states(self) -> Any:
        """classify_neurons on the training data (once), or None without model and data."""
        if self._states is None and self.model is not None and self.data is not None:
            try:
                hidden_layers(self.model)
            except GradsightError:
                return None
            self._states = classify_neurons(self.model, self.data[0], self.data[1],
                                            loss=self.loss)
        return self._states

    @classmethod
    def build(cls, history: Any, model: Any, data: Any, train_history: Any,
              loss: str | None, limits: Thresholds) -> Context:
        everything = require_history(history)
        # steps the GradScaler skipped (inf/NaN from its scale search) are no training step:
        # every rule but the one on skipped steps reads the others only
        kept = [r for r in everything if not r.skipped]
        layers = LayerHistory(kept)
        params = layers.layers_of("param")
        last_param = max((r.index for r in layers.records if r.kind == "param"), default=-1)
        acts = layers.layers_of("activation")
        index = {r.layer: r.index for r in layers.records}
        names = {r.layer: (r.activation or "") for r in layers.records if r.kind == "activation"}
        late = layers.steps[-max(1, math.ceil(0.2 * len(layers.steps))):]
        losses, accuracy = _losses(train_history, history)
        loss_steps = None
        if train_history is None:  # the batch losses on the records, skipped steps left out
            steps, batch_losses = _record_losses(kept)
            curve = getattr(history, "loss_curve", None)
            if curve and len(curve) >= len(batch_losses):  # finer: every step, in short spans
                skipped = {r.step for r in everything if r.skipped}
                kept_curve = [(s, v) for s, v in curve if s not in skipped]
                steps, batch_losses = [s for s, _ in kept_curve], [v for _, v in kept_curve]
            if batch_losses:
                losses, loss_steps = batch_losses, steps
        if data is not None:
            data = _pair(data)
        context = cls(layers, limits, _hidden(layers, params),
                      [a for a in acts if index[a] < last_param],
                      [a for a in acts if index[a] > last_param], names, late, losses,
                      accuracy, model, data, loss)
        context.skipped_steps = sorted({r.step for r in everything if r.skipped})
        context.skips_between = {r.step: int(r.skipped_between) for r in everything
                                 if r.skipped_between is not None}
        context.recorded_steps = sorted({r.step for r in everything})
        context.all_params = LayerHistory(everything).layers_of("param")
        context.loss_steps = loss_steps
        context.setup = getattr(history, "setup", None)
        return context

    def values(self, field_name: str, layer: str, late: bool = False) -> np.ndarray:
        """One field of one layer at every recorded step of the history (NaN where the
        layer has no record: a history cut in the middle of a step, a layer that did not
        run), so that two layers' series always line up step by step."""
        steps, values = self.layers.series(field_name, layer)
        every = self.layers.steps
        if steps.size != every.size or not np.array_equal(steps, every):
            aligned = np.full(every.size, np.nan)
            aligned[np.searchsorted(every, steps)] = values
            steps, values = every, aligned
        return values[np.isin(steps, self.late_steps)] if late else values

    def hidden_kinds(self) -> set[str]:
        return {self.act_name[a].split(":")[0] for a in self.hidden_acts}

    def saturating(self) -> bool:
        """Whether a hidden layer uses a saturating activation (sigmoid, tanh)."""
        return bool(self.hidden_kinds() & {"sigmoid", "tanh"})


def _pair(data: Any) -> tuple[Any, Any]:
    """(X, y) from a pair or a Dataset."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    if hasattr(data, "X") and hasattr(data, "y"):
        return data.X, data.y
    raise InvalidValueError(f"data must be an (X, y) pair or a Dataset, got "
                            f"{type(data).__name__}")


def _losses(train_history: Any, history: Any) -> tuple[list[float], float | None]:
    """Loss per epoch (or per recorded batch) and the last accuracy, from what was given."""
    source = train_history
    if source is not None and hasattr(source, "epochs"):
        batches = list(getattr(source, "batch_losses", []) or [])
        if len(source.epochs) < 4 and len(batches) >= 4:  # too few epochs: use the batches
            last = source.epochs[-1].get("accuracy") if source.epochs else None
            return [float(v) for v in batches], None if last is None else float(last)
        source = source.epochs
    if isinstance(source, dict):
        source = source.get("epochs", [])
    if source:
        if isinstance(source[0], dict):
            accuracy = source[-1].get("accuracy")
            return [float(e["loss"]) for e in source if e.get("loss") is not None], (
                None if accuracy is None else float(accuracy))
        return [float(v) for v in source], None
    batch = getattr(history, "losses", None) or []
    return [float(loss) for _, loss in batch], None


def _hidden(layers: LayerHistory, params: list[str]) -> list[str]:
    """The hidden layers whose gradients the depth rules compare, in forward order: the param
    records with role "hidden" (not norm, embedding, output or other: a BatchNorm's ∂C/∂γ
    is not a conv's ∂C/∂W); in a history without roles, every param layer but the last."""
    roles = {r.layer: r.role for r in layers.records if r.kind == "param"}
    if all(role is None for role in roles.values()):
        return params[:-1]
    return [name for name in params if roles.get(name) == "hidden"]


def _record_losses(records: list[Any]) -> tuple[list[int], list[float]]:
    """(steps, losses) from the records, one per recorded step: the mean loss of the window
    of steps the record closes (``loss_window``) where the backend kept it, else the batch
    loss of the recorded step."""
    by_step: dict[int, float] = {}
    for record in records:
        value = record.loss_window if record.loss_window is not None else record.loss
        if value is not None:
            by_step.setdefault(record.step, float(value))
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]
