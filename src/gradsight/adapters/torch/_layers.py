"""Which modules of a torch model gradsight watches, and how each activation is judged.

A *parametrised layer* is a leaf module with a ``weight`` parameter (Linear, Conv*, Embedding,
BatchNorm/LayerNorm with affine weights, ...). An *activation layer* is an instance of one of
the activation classes below. Activations applied as functions inside ``forward``
(``torch.relu(x)``) are not modules and are not seen.

The saturation and death rules read the activation's output a, like the NumPy engine:

    sigmoid    saturated where σ′ = a(1−a) < 0.01·¼ (1% of its maximum ¼), i.e. a outside
               [lo, hi] = ½(1 ∓ √0.99) — the same bounds as the engine's Monitor
    tanh       saturated where tanh′ = 1−a² < 0.01 (1% of its maximum 1), i.e. |a| > √0.99
    softsign   saturated where (1−|a|)² < 0.01, i.e. |a| > 0.9
    hardtanh   saturated where a sits on a bound (derivative 0); hardsigmoid likewise
    relu, leaky_relu, elu, relu6, selu, celu, prelu, rrelu: a unit is *dead* when a ≤ 0
               (so z ≤ 0) on every sample of the batch; for a conv output (N, C, ...) a
               unit is a channel.

Each rule is a :class:`Saturation` interval (counted by comparisons with the interval's
ends, see :mod:`._reduce`). ``finite`` records what a module's output can be, which decides
how its NaN/±inf values are counted cheaply: ``"bounded"`` (within a finite interval or NaN:
sigmoid, tanh, ...), ``"below"`` (never −inf: relu, elu, gelu, silu, ... — checked by the
test suite on ±inf inputs) or ``"any"``. Only the exact classes named here get ``"bounded"``
or ``"below"``; a subclass may compute anything, so it gets ``"any"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ... import activations
from ...diagnostics.arrays import saturation_bounds

#: f′ below this fraction of its maximum counts as saturated (as in LayerStats).
SATURATION_LEVEL = 0.01


@dataclass(frozen=True)
class Saturation:
    """a is saturated where a < lo or a > hi; with ``inclusive`` also on a bound (a ≤ lo or
    a ≥ hi: hardtanh's derivative is 0 there)."""

    lo: float
    hi: float
    inclusive: bool = False


@dataclass
class ParamLayer:
    name: str
    module: Any
    weight: Any
    bias: Any  # Parameter or None


@dataclass
class ActivationLayer:
    name: str
    module: Any
    activation: str
    saturation: Saturation | None  # None: the activation does not saturate on both sides
    dead_rule: bool  # ReLU family: record dead_fraction
    unit_dim: int = 1  # 1 for (N, C, ...) conv outputs; -1 after a Linear on (N, ..., F)
    finite: str = "any"  # "bounded", "below" (never −inf) or "any": see the module docstring
    nonnegative: bool = False  # a ≥ 0 (relu, relu6): a dead unit's peak is exactly 0


def _saturating(name: str) -> Saturation:
    """sigmoid/tanh: f′ < 1% of max f′ ⇔ a outside the engine Monitor's bounds (lo, hi)."""
    return Saturation(*saturation_bounds(activations.get(name), SATURATION_LEVEL))


def _registry_name(base: str, parameter: float, default: float) -> str:
    """gradsight's activation name ("leaky_relu", "leaky_relu:0.2") where it has one."""
    if parameter == default:
        return base
    try:
        return activations.get(f"{base}:{parameter!r}").name
    except Exception:  # a parameter gradsight's registry does not model (slope ≥ 1)
        return base


def activation_of(module: Any, nn: Any) -> dict[str, Any] | None:
    """The judging rules of an activation module (ActivationLayer fields), else None."""
    spec = _activation_spec(module, nn)
    if spec is None:
        return None
    name, saturation, dead = spec
    kind = type(module)
    if kind in (nn.Sigmoid, nn.Tanh, nn.ReLU6, nn.Hardsigmoid, nn.Softsign) or (
            kind is nn.Hardtanh and math.isfinite(module.min_val + module.max_val)):
        finite = "bounded"
    elif kind in (nn.ReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish) \
            or (kind is nn.Softplus and float(module.beta) > 0):
        finite = "below"
    else:
        finite = "any"
    return {"activation": name, "saturation": saturation, "dead_rule": dead,
            "finite": finite, "nonnegative": kind in (nn.ReLU, nn.ReLU6)}


def _activation_spec(module: Any, nn: Any) -> tuple[str, Saturation | None, bool] | None:
    """(name, saturation interval, dead rule) for an activation module, else None."""
    # Order matters: ReLU6 subclasses Hardtanh.
    if isinstance(module, nn.Sigmoid):
        return "sigmoid", _saturating("sigmoid"), False
    if isinstance(module, nn.Tanh):
        return "tanh", _saturating("tanh"), False
    if isinstance(module, nn.ReLU6):
        return "relu6", None, True
    if isinstance(module, nn.ReLU):
        return "relu", None, True
    if isinstance(module, nn.LeakyReLU):
        return _registry_name("leaky_relu", float(module.negative_slope), 0.01), None, True
    if isinstance(module, nn.ELU):
        return _registry_name("elu", float(module.alpha), 1.0), None, True
    if isinstance(module, nn.Hardtanh):
        low, high = float(module.min_val), float(module.max_val)
        return "hardtanh", Saturation(low, high, inclusive=True), False
    if isinstance(module, nn.Hardsigmoid):
        return "hardsigmoid", Saturation(0.0, 1.0, inclusive=True), False
    if isinstance(module, nn.Softsign):  # (1 − |a|)² < 0.01 ⇔ |a| > 0.9 (as |a| < 1)
        return "softsign", Saturation(-0.9, 0.9), False
    relu_like = {nn.SELU: "selu", nn.CELU: "celu", nn.PReLU: "prelu", nn.RReLU: "rrelu"}
    smooth = {nn.Softplus: "softplus", nn.SiLU: "silu", nn.GELU: "gelu", nn.Mish: "mish",
              nn.Hardswish: "hardswish"}
    for cls, name in relu_like.items():
        if isinstance(module, cls):
            return name, None, True
    for cls, name in smooth.items():
        if isinstance(module, cls):
            return name, None, False
    return None


def find_layers(model: Any, nn: Any) -> tuple[list[ParamLayer], list[ActivationLayer]]:
    """The watched modules of ``model`` (already unwrapped), in ``named_modules`` order."""
    params: list[ParamLayer] = []
    acts: list[ActivationLayer] = []
    # Layers whose output is (N, C, ...) with units along dim 1, and those with units last.
    channel_first = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)
    channel_last = (nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding)
    last_is_conv = True  # before any param layer: (N, C, ...) layout
    for name, module in model.named_modules():
        label = name or type(module).__name__.lower()
        spec = activation_of(module, nn)
        if spec is not None:  # PReLU has a weight but is judged as an activation
            acts.append(ActivationLayer(label, module, **spec,
                                        unit_dim=1 if last_is_conv else -1))
            continue
        weight = getattr(module, "weight", None)
        is_leaf = next(module.children(), None) is None
        if is_leaf and isinstance(weight, nn.Parameter):
            bias = getattr(module, "bias", None)
            params.append(ParamLayer(label, module, weight,
                                     bias if isinstance(bias, nn.Parameter) else None))
            if isinstance(module, channel_first + channel_last):
                last_is_conv = isinstance(module, channel_first)
    return params, acts
