"""LayerStats: the one record per layer and step that every backend emits.

The NumPy engine's :class:`~gradsight.diagnostics.Monitor` and the PyTorch adapter's
``watch`` both produce these records, so verdicts, plots and reports are written once.
A network's layers are recorded one by one in forward order: a parametrised layer (Dense,
Linear, Conv) fills the gradient and weight fields, an activation fills the activation
fields; a field that does not apply to a layer is ``None``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class LayerStats:
    """Statistics of one layer at one recorded training step.

    Fields (C is the cost of the batch, W and b the layer's weights and biases). A field that
    does not apply to the layer is None: the gradient and weight fields on an activation
    layer, the activation fields on a layer with weights, ``saturated_fraction`` outside
    sigmoid/tanh, ``dead_fraction`` outside the ReLU family.

    layer : the layer's name (engine: ``"dense0"``, ``"sigmoid0"``; torch: module path).
    index : position of the layer in forward order (0 = first).
    step : optimizer step number (0-based) at which the record was taken.
    epoch : epoch number (0-based), or None where the training loop has no epochs.
    kind : ``"param"`` for a layer with weights, ``"activation"`` for an activation layer,
        ``"sequence"`` for the gradient over time of a recurrent layer, ``"attention"`` for
        one attention head.
    activation : the activation's name for an activation layer (``"sigmoid"``), else None.
    grad_W_norm : ‖∂C/∂W‖, the Frobenius norm of the weight gradient.
    grad_b_norm : ‖∂C/∂b‖, the norm of the bias gradient — Nielsen's "speed of learning" of
        the layer (chapter 5 of Neural Networks and Deep Learning).
    weight_norm : ‖W‖ before the update.
    update_ratio : ‖ΔW‖/‖W‖, the size of the optimizer's update relative to the weights
        (≈1e-3 is the usual healthy order of magnitude); None when the update is unknown.
    act_mean, act_std : mean and standard deviation of the layer's output a on the batch.
    saturated_fraction : for a saturating activation (sigmoid, tanh), the fraction of the
        batch's values (samples × units) whose local derivative f′(z) is below 1% of its
        maximum (σ′ < 0.0025, tanh′ < 0.01): those inputs teach the unit almost nothing.
    dead_fraction : for a ReLU-family activation, the fraction of units that are inactive
        (z ≤ 0, so relu′ = 0) on every sample of the batch.
    nonfinite : number of NaN/±inf values among the layer's gradients (param layer) or
        outputs (activation layer). Never hidden: a non-zero count is a finding.
    skipped : True when the mixed-precision GradScaler skipped this step's optimizer update
        (inf/NaN in the scaled gradients; the diagnosis leaves such steps out of every rule
        and judges the skips themselves), False when a scaler ran it, None without a scaler.
    grad_norm_before_clip : the total gradient norm of the whole model, ‖∂C/∂θ‖ over every
        parameter with a gradient, at the end of the step's (last) backward pass — before any
        ``clip_grad_norm_`` — on every param record of the step; None where not measured.
    loss : the step's batch loss C (mean over the step's loss calls), on every record of
        the step; None where the loss was not seen.
    source : where an activation record's values were read (torch): ``"module"`` (the
        output of an activation module) or ``"input of <layer>"`` (a functional activation,
        ``F.relu(x)``, read as the input of the next layer).
    time_steps : T, the sequence length, for a ``"sequence"`` record (a recurrent layer).
    time_grad_first, time_grad_last : ‖∂C/∂x_t‖ at the first and last time step, the gradient
        that reaches the recurrent layer's input at step t after flowing back through time.
    time_grad_ratio : time_grad_first / time_grad_last: ≪ 1 is a gradient vanishing over
        time, ≫ 1 one exploding over time.
    attention_entropy : for an ``"attention"`` record (one head of a MultiheadAttention),
        the entropy −Σ p log p of its attention probabilities over the keys, in nats, mean
        over the queries: ≈ 0 is collapsed attention (one key), ≈ ``attention_entropy_uniform``
        is uniform attention.
    attention_entropy_uniform : the entropy of uniform attention, ln T over the T keys a
        query may attend (mean over the queries when masks differ).
    note : what could not be measured for this record and why (e.g. a PackedSequence input,
        the gates of a fused LSTM kernel).
    role : what a param record's layer does (both backends): ``"hidden"`` (Dense, Linear,
        Conv*, a recurrent layer, an attention projection), ``"norm"`` (BatchNorm, LayerNorm,
        GroupNorm, RMSNorm, ...), ``"embedding"``, ``"output"`` (the last layer before the
        loss) or ``"other"``; None on other records and in histories saved without roles
        (the rules then take every param record but the last as hidden).
    loss_window : the mean batch loss over the steps since the previous recorded step, this
        one included (= ``loss`` when every step is recorded): the loss curve between sparse
        records, smoothed over every step and not one batch.
    bias_zero_by : on a param record whose bias gradient is zero by construction, why —
        found from the model's structure (a conv followed by BatchNorm, whose mean removes
        the bias; an attention key projection, whose bias the softmax ignores); the depth
        rules then never read that bias. None when nothing is known.
    skipped_between : under a GradScaler, how many of the steps since the previous recorded
        step (those not recorded) it skipped — counted on the device, so that skips between
        sparse records are not lost; on every record of the step; None without a scaler.
    """

    layer: str
    index: int
    step: int
    epoch: int | None = None
    kind: str = "param"
    activation: str | None = None
    grad_W_norm: float | None = None
    grad_b_norm: float | None = None
    weight_norm: float | None = None
    update_ratio: float | None = None
    act_mean: float | None = None
    act_std: float | None = None
    saturated_fraction: float | None = None
    dead_fraction: float | None = None
    nonfinite: int = 0
    skipped: bool | None = None
    grad_norm_before_clip: float | None = None
    loss: float | None = None
    source: str | None = None
    time_steps: int | None = None
    time_grad_first: float | None = None
    time_grad_last: float | None = None
    time_grad_ratio: float | None = None
    attention_entropy: float | None = None
    attention_entropy_uniform: float | None = None
    note: str | None = None
    role: str | None = None
    skipped_between: int | None = None
    bias_zero_by: str | None = None
    loss_window: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON- and pandas-friendly)."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        """The field names in declaration order (the CSV header)."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerStats:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = set(cls.field_names())
        return cls(**{k: v for k, v in data.items() if k in known})
