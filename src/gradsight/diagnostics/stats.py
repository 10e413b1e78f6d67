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
    kind : ``"param"`` for a layer with weights, ``"activation"`` for an activation layer.
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
