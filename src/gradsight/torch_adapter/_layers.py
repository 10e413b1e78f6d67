"""Which modules of a torch model gradsight watches, and how each activation is judged.

A *parametrised layer* is a leaf module with a ``weight`` parameter (Linear, Conv*, Embedding,
BatchNorm/LayerNorm with affine weights, ...). An *activation layer* is an instance of one of
the activation classes below. Activations applied as functions inside ``forward``
(``torch.relu(x)``) are not modules and are not seen.

The saturation and death rules read the activation's output a, like the NumPy engine:

    sigmoid    saturated where σ′ = a(1−a) < 0.01·¼ (1% of its maximum ¼), i.e. a outside
               ½(1 ∓ √0.99) — the same bounds as the engine's Monitor
    tanh       saturated where tanh′ = 1−a² < 0.01 (1% of its maximum 1), i.e. |a| > √0.99
    softsign   saturated where (1−|a|)² < 0.01
    hardtanh   saturated where a sits on a bound (derivative 0); hardsigmoid likewise
    relu, leaky_relu, elu, relu6, selu, celu, prelu, rrelu: a unit is *dead* when a ≤ 0
               (so z ≤ 0) on every sample of the batch; for a conv output (N, C, ...) a
               unit is a channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: f′ below this fraction of its maximum counts as saturated (as in LayerStats).
SATURATION_LEVEL = 0.01

# (output a, a work tensor shaped like a) -> number of saturated values (0-d tensor)
Rule = Callable[[Any, Any], Any]


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
    saturated: Rule | None  # None: the activation does not saturate on both sides
    dead_rule: bool  # ReLU family: record dead_fraction
    unit_dim: int = 1  # 1 for (N, C, ...) conv outputs; -1 after a Linear on (N, ..., F)


def _outside(low: float, high: float) -> Rule:
    """Count of a < low or a > high, i.e. of (a − c)² > h² (c, h: centre and half-width).

    Arithmetic kernels only (a boolean comparison is several times slower on the CPU):
    threshold(x, t, 0) keeps x where x > t and puts 0 elsewhere, and the sum of its signs
    counts the x > t. For c = 0 (tanh) x = a² and t = h². Otherwise x = u = 2c·a − a²
    (for sigmoid u = a(1 − a) = σ′ itself) and t = c² − h²: u > t marks the values that do
    *not* saturate, and the count is n minus theirs. A NaN counts in neither way (the
    engine reports no fraction for a layer with NaN values).
    """
    centre, half = 0.5 * (low + high), 0.5 * (high - low)
    offset = centre * centre - half * half

    if centre != 0.0 and offset <= 0.0:  # u > t would not imply u > 0: compare instead
        return _bounds_strict(low, high)

    def saturated(a: Any, work: Any) -> Any:
        import torch
        from torch.nn.functional import threshold

        if centre == 0.0:
            squares = torch.mul(a, a, out=work)
            return threshold(squares, half * half, 0.0, inplace=True).sign_().sum()
        if centre == 0.5:
            u = torch.addcmul(a, a, a, value=-1.0, out=work)  # a − a² = a(1 − a)
        else:
            u = torch.mul(a, 2.0 * centre, out=work).addcmul_(a, a, value=-1.0)
        return a.numel() - threshold(u, offset, 0.0, inplace=True).sign_().sum()

    return saturated


def _bounds_strict(low: float, high: float) -> Rule:
    def saturated(a: Any, work: Any = None) -> Any:
        return ((a < low) | (a > high)).sum(dtype=a.dtype)

    return saturated


def _saturating(name: str) -> Rule:
    """sigmoid/tanh: f′ < 1% of max f′ ⇔ a outside the engine Monitor's bounds (lo, hi)."""
    from .. import activations
    from ..diagnostics.monitor import saturation_bounds

    return _outside(*saturation_bounds(activations.get(name), SATURATION_LEVEL))


def _softsign_saturated(a: Any, work: Any = None) -> Any:
    gap = 1.0 - a.abs()
    return (gap * gap < SATURATION_LEVEL).sum(dtype=a.dtype)


def _bounds(low: float, high: float) -> Rule:
    """Count of a on or beyond a bound (hardtanh, hardsigmoid: derivative 0 there)."""

    def saturated(a: Any, work: Any = None) -> Any:
        return ((a <= low) | (a >= high)).sum(dtype=a.dtype)

    return saturated


def _registry_name(base: str, parameter: float, default: float) -> str:
    """gradsight's activation name ("leaky_relu", "leaky_relu:0.2") where it has one."""
    if parameter == default:
        return base
    from .. import activations

    try:
        return activations.get(f"{base}:{parameter!r}").name
    except Exception:  # a parameter gradsight's registry does not model (slope ≥ 1)
        return base


def activation_of(module: Any, nn: Any) -> tuple[str, Rule | None, bool] | None:
    """(name, saturation rule, dead rule) for an activation module, else None."""
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
        return "hardtanh", _bounds(low, high), False
    if isinstance(module, nn.Hardsigmoid):
        return "hardsigmoid", _bounds(0.0, 1.0), False
    if isinstance(module, nn.Softsign):
        return "softsign", _softsign_saturated, False
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
            acts.append(ActivationLayer(label, module, *spec, unit_dim=1 if last_is_conv else -1))
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
