"""Which modules of a torch model gradsight watches, and how each activation is judged.

A *parametrised layer* is one record of weights W (and biases b) — a :class:`ParamLayer` made
of :class:`Part` s, each a parameter or a block of rows of one:

* a leaf module with a ``weight`` parameter (Linear, Conv*, Embedding, BatchNorm/LayerNorm
  with affine weights, ...): W = ``weight``, b = ``bias``;
* nn.RNN / LSTM / GRU: one record per layer k and direction, ``"lstm.l0"`` and
  ``"lstm.l0_reverse"``: W = (``weight_ih_lk``, ``weight_hh_lk``, ``weight_hr_lk``),
  b = (``bias_ih_lk``, ``bias_hh_lk``); an RNN/LSTM/GRU cell likewise, as one record;
* nn.MultiheadAttention: four records ``"attn.q"``, ``"attn.k"``, ``"attn.v"`` (the three row
  blocks of the packed ``in_proj_weight``/``in_proj_bias``, or ``q_proj_weight``, ... when
  kdim/vdim differ; ``bias_k``/``bias_v`` join k/v) and ``"attn.out_proj"``;
* any other parameter (one on a container module, a custom leaf's extra tensor): its own
  record named as the parameter (``"module.param"``) with role ``"other"``.

A parameter shared by several modules (an embedding tied to the output head) is recorded
once, under the first module's name; the others are listed in :attr:`ParamLayer.shared`.
Parameters that are not watched (a PReLU's slope, judged as an activation; a lazy module's
uninitialised weight) are listed with the reason by :func:`coverage_of`.

Each record has a role: ``"hidden"`` (Linear, Bilinear, Conv*, recurrent, attention
projections), ``"norm"`` (BatchNorm*, InstanceNorm*, LayerNorm, GroupNorm, RMSNorm, ...),
``"embedding"`` (Embedding, EmbeddingBag), ``"output"`` (the hidden-type layer that acts last
in the forward pass, set by :func:`assign_output` once the order is known) or ``"other"``.

An *activation layer* is an instance of one of the activation classes below. Activations
applied as functions inside ``forward`` (``torch.relu(x)``) are not modules: they are read
as the input of the next layer (:mod:`._functional`).

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
import re
from dataclasses import dataclass, field
from typing import Any

from ... import activations
from ...diagnostics.arrays import saturation_bounds
from ...diagnostics.coverage import Coverage
from ...errors import GradsightError

#: f′ below this fraction of its maximum counts as saturated (as in LayerStats).
SATURATION_LEVEL = 0.01


@dataclass(frozen=True)
class Saturation:
    """a is saturated where a < lo or a > hi; with ``inclusive`` also on a bound (a ≤ lo or
    a ≥ hi: hardtanh's derivative is 0 there)."""

    lo: float
    hi: float
    inclusive: bool = False


@dataclass(frozen=True)
class Part:
    """One tensor of a record: a parameter, or its rows [start, stop) when it is packed
    (``in_proj_weight`` holds W_q, W_k, W_v one above the other)."""

    param: Any
    rows: tuple[int, int] | None = None

    def of(self, tensor: Any) -> Any:
        """This part's block of a tensor shaped like the parameter (its grad, a buffer)."""
        return tensor if self.rows is None else tensor[self.rows[0]:self.rows[1]]

    @property
    def numel(self) -> int:
        return int(self.of(self.param.detach()).numel())


@dataclass
class ParamLayer:
    """One watched record: ‖∂C/∂W‖ is taken over all ``weights`` parts together, ‖∂C/∂b‖ over
    all ``biases``. ``module`` is the module whose forward hook places the record in forward
    order (nn.MultiheadAttention itself for its out_proj, whose own hook never fires: MHA
    calls ``F.multi_head_attention_forward``). ``shared``: other names of a tied weight."""

    name: str
    module: Any
    weights: list[Part]
    biases: list[Part] = field(default_factory=list)
    role: str = "hidden"
    shared: list[str] = field(default_factory=list)
    aliases: list[tuple[str, Any]] = field(default_factory=list)  # (name, module) of ties
    #: why the bias's gradient is zero by construction, found from the model's structure
    #: (:class:`BiasRemovers`, or a key projection's bias); None when it is not known to be
    bias_zero_by: str | None = None

    @property
    def weight(self) -> Any:
        """The first weight parameter (None for a module whose weight is recorded elsewhere)."""
        return self.weights[0].param if self.weights else None

    @property
    def bias(self) -> Any:
        return self.biases[0].param if self.biases else None

    def parameters(self) -> list[Any]:
        """The distinct parameters of the record (a packed one once)."""
        seen: dict[int, Any] = {}
        for part in self.weights + self.biases:
            seen.setdefault(id(part.param), part.param)
        return list(seen.values())


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
    except GradsightError:  # a parameter gradsight's registry does not model (slope ≥ 1)
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
    """The watched records of ``model`` (already unwrapped), in ``named_modules`` order (the
    watcher reorders them by the forward pass); see the module docstring for what a record is.
    """
    params: list[ParamLayer] = []
    acts: list[ActivationLayer] = []
    # Layers whose output is (N, C, ...) with units along dim 1, and those with units last.
    channel_first = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)
    channel_last = (nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding, nn.RNNBase,
                    nn.MultiheadAttention)
    last_is_conv = True  # before any param layer: (N, C, ...) layout
    owner: dict[tuple[int, Any], ParamLayer] = {}  # (id(parameter), rows) → its record
    by_module: dict[int, list[ParamLayer]] = {}
    inside_attention: set[int] = set()  # MHA's out_proj: recorded with its MHA
    for name, module in model.named_modules(remove_duplicate=False):
        label = name or type(module).__name__.lower()
        if id(module) in by_module:  # a module used twice (shared layers): noted once
            for record in by_module[id(module)]:
                record.shared.append(label)
            continue
        by_module[id(module)] = []
        spec = activation_of(module, nn)
        if spec is not None:  # PReLU has a weight but is judged as an activation
            acts.append(ActivationLayer(label, module, **spec,
                                        unit_dim=1 if last_is_conv else -1))
            continue
        if id(module) in inside_attention:
            continue
        if isinstance(module, nn.MultiheadAttention):
            inside_attention.add(id(module.out_proj))
        for record in _records_of(label, name, module, nn):
            kept = _untied(record, label, module, owner)
            if kept is not None:
                params.append(kept)
                by_module[id(module)].append(kept)
        if by_module[id(module)] and isinstance(module, channel_first + channel_last):
            last_is_conv = isinstance(module, channel_first)
    return params, acts


def _untied(record: ParamLayer, label: str, module: Any,
            owner: dict[tuple[int, Any], ParamLayer]) -> ParamLayer | None:
    """The record without the parts another record already holds (a tied weight is recorded
    once, under the first name; that record notes ``label``); None if nothing is left."""
    keep: dict[str, list[Part]] = {"weights": [], "biases": []}
    for kind in ("weights", "biases"):
        for part in getattr(record, kind):
            first = owner.get((id(part.param), part.rows))
            if first is None:
                owner[(id(part.param), part.rows)] = record
                keep[kind].append(part)
            elif label not in first.shared:
                first.shared.append(label)
                first.aliases.append((label, module))
    if not keep["weights"] and not keep["biases"]:
        return None
    record.weights, record.biases = keep["weights"], keep["biases"]
    return record


_RECURRENT = re.compile(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")


def _records_of(label: str, path: str, module: Any, nn: Any) -> list[ParamLayer]:
    """The records of one module's own parameters (not its children's); ``path`` is the
    module's name in the model ("" for the model itself)."""
    own = dict(module.named_parameters(recurse=False))
    records: list[ParamLayer] = []
    if isinstance(module, nn.RNNBase):
        records = _recurrent(label, module, own)
    elif isinstance(module, nn.MultiheadAttention):
        records = _attention(label, module, nn)
    elif isinstance(module, nn.RNNCellBase):
        weights = [Part(own[n]) for n in ("weight_ih", "weight_hh") if n in own]
        biases = [Part(own[n]) for n in ("bias_ih", "bias_hh") if n in own]
        records = [ParamLayer(label, module, weights, biases, "hidden")] if weights else []
    elif next(module.children(), None) is None and _usable(own.get("weight"), nn):
        bias = own.get("bias")
        records = [ParamLayer(label, module, [Part(own["weight"])],
                              [Part(bias)] if _usable(bias, nn) else [], role_of(module, nn))]
    used = {id(part.param) for record in records for part in record.weights + record.biases}
    if isinstance(module, nn.MultiheadAttention):
        used |= {id(p) for p in module.out_proj.parameters()}
    for pname, param in own.items():  # anything else: a record of its own
        if id(param) not in used and _usable(param, nn):
            records.append(ParamLayer(f"{path}.{pname}" if path else pname, module,
                                      [Part(param)], [], "other"))
    return records


def _usable(param: Any, nn: Any) -> bool:
    """A parameter whose values exist (not a lazy module's uninitialised one)."""
    return isinstance(param, nn.Parameter) and not isinstance(
        param, nn.parameter.UninitializedParameter)


def _recurrent(label: str, module: Any, own: dict[str, Any]) -> list[ParamLayer]:
    """nn.RNN/LSTM/GRU: one record per layer k and direction, W = weight_ih, weight_hh (and
    LSTM's projection weight_hr), b = bias_ih, bias_hh."""
    groups: dict[str, ParamLayer] = {}
    for pname, param in own.items():
        match = _RECURRENT.match(pname)
        if match is None:
            continue
        key = f"l{match[3]}{match[4] or ''}"
        record = groups.setdefault(key, ParamLayer(f"{label}.{key}", module, [], [], "hidden"))
        (record.weights if match[1] == "weight" else record.biases).append(Part(param))
    return [record for record in groups.values() if record.weights]


def _attention(label: str, module: Any, nn: Any) -> list[ParamLayer]:
    """nn.MultiheadAttention: q, k, v (blocks of the packed in_proj, or the separate
    q/k/v_proj_weight when kdim/vdim differ) and out_proj, all placed by the MHA's hook."""
    width = int(module.embed_dim)
    blocks = [(i * width, (i + 1) * width) for i in range(3)]
    packed = module.in_proj_weight
    if packed is not None:
        weights = [Part(packed, rows) for rows in blocks]
    else:
        weights = [Part(module.q_proj_weight), Part(module.k_proj_weight),
                   Part(module.v_proj_weight)]
    records = []
    for i, key in enumerate("qkv"):
        biases = [Part(module.in_proj_bias, blocks[i])] if module.in_proj_bias is not None \
            else []
        extra = {"k": module.bias_k, "v": module.bias_v}.get(key)
        if extra is not None:  # add_bias_kv: a learned key/value appended to the sequence
            biases.append(Part(extra))
        record = ParamLayer(f"{label}.{key}", module, [weights[i]], biases, "hidden")
        if key == "k" and biases and extra is None:
            record.bias_zero_by = ("the softmax over the keys: a key bias b_k adds the same "
                                   "q·b_k to every score of a query")
        records.append(record)
    out = module.out_proj
    records.append(ParamLayer(f"{label}.out_proj", module, [Part(out.weight)],
                              [Part(out.bias)] if _usable(out.bias, nn) else [], "hidden"))
    return records


class BiasRemovers:
    """Finds, in the forward passes of the first step, the hidden layers whose output goes
    straight into a normalisation that subtracts a per-channel mean: BatchNorm using batch
    statistics (in training), InstanceNorm. Such a layer's bias b adds the same constant to
    every value of its channel, the mean takes it away, and ∂C/∂b = 0 by construction —
    whatever the precision (under bf16 autocast the measured ‖∂C/∂b‖/‖∂C/∂W‖ of a conv
    before BatchNorm reaches 7e-4, which no threshold on the numbers separates from a bias
    that learns). Autograd's graph says what feeds what: the normalisation's output node
    lists its input's node, which is the hidden layer's output node.

    A compiled model's forward has no autograd nodes (the records then fall back on the
    measured ratio, see ``diagnostics.rules.zero_by_construction``)."""

    def __init__(self, nn: Any) -> None:
        self._classes = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
        self._outputs: dict[int, ParamLayer] = {}  # id(grad_fn of an output) → its layer

    def observe(self, layer: ParamLayer, output: Any) -> None:
        node = getattr(output, "grad_fn", None)
        if node is None:
            return
        module = layer.module
        if layer.role in ("hidden", "output") and layer.biases:
            self._outputs[id(node)] = layer  # alive until the norm after it has run
        elif isinstance(module, self._classes) and self._uses_batch_statistics(module):
            for parent, _ in node.next_functions:
                hidden = self._outputs.get(id(parent)) if parent is not None else None
                if hidden is not None and output.dim() >= 2 and \
                        output.shape[1] == _bias_size(hidden):
                    hidden.bias_zero_by = (f"{type(module).__name__} {layer.name!r} after it "
                                           "subtracts each channel's mean, the bias with it")

    @staticmethod
    def _uses_batch_statistics(module: Any) -> bool:
        return bool(module.training or not module.track_running_stats
                    or module.running_mean is None)

    def clear(self) -> None:
        """The first step is over: no node is kept (each would hold a graph alive)."""
        self._outputs = {}


def _bias_size(layer: ParamLayer) -> int:
    return sum(part.numel for part in layer.biases)


def role_of(module: Any, nn: Any) -> str:
    """The role of a leaf module's record: hidden, norm, embedding or other (the output role
    is given by :func:`assign_output`, from the forward order)."""
    norms = tuple(cls for cls in (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
                                  getattr(nn, "RMSNorm", None), nn.LocalResponseNorm)
                  if cls is not None)
    if isinstance(module, norms):
        return "norm"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.RNNBase,
                           nn.RNNCellBase, nn.MultiheadAttention)):
        return "hidden"
    return "other"


def assign_output(layers: list[ParamLayer], order: dict[str, int]) -> None:
    """Give the role ``"output"`` to the hidden-type record that acts last in the forward
    pass (the last layer before the loss) — unless a module whose weight is tied to another
    record acts after it (a head tied to the embedding: its weight is recorded there)."""
    hidden = [layer for layer in layers if layer.role in ("hidden", "output")]
    for layer in hidden:
        layer.role = "hidden"
    if not hidden:
        return
    last = max(hidden, key=lambda layer: order.get(layer.name, -1))
    tied = [order[name] for layer in layers if layer is not last
            for name in layer.shared if name in order and name != last.name]
    if not tied or max(tied) < order.get(last.name, -1):
        last.role = "output"


def coverage_of(model: Any, layers: list[ParamLayer], acts: list[ActivationLayer],
                nn: Any) -> Coverage:
    """Which parameters of ``model`` the records watch (by element count), and why the others
    are not watched; tied weights with their other names."""
    watched_parts = {(id(part.param), part.rows): part.numel
                     for layer in layers for part in layer.weights + layer.biases}
    watched_by_param: dict[int, int] = {}
    for (key, _rows), numel in watched_parts.items():
        watched_by_param[key] = watched_by_param.get(key, 0) + numel
    activation_modules = {id(layer.module) for layer in acts}
    total = watched = 0
    left_out: dict[str, str] = {}
    for pname, param in model.named_parameters():
        numel = 0 if isinstance(param, nn.parameter.UninitializedParameter) else param.numel()
        total += numel
        seen = min(watched_by_param.get(id(param), 0), numel)
        watched += seen
        if seen < numel or numel == 0:
            path = pname.rpartition(".")[0]
            module = model.get_submodule(path)
            if isinstance(param, nn.parameter.UninitializedParameter):
                left_out[pname] = ("uninitialised (a lazy module): run one forward pass "
                                   "before watch()")
            elif id(module) in activation_modules:
                left_out[pname] = (f"parameter of the activation {type(module).__name__}, "
                                   "judged by its output (activation statistics)")
            else:
                left_out[pname] = f"not understood ({type(module).__name__})"
    shared = {layer.name: list(layer.shared) for layer in layers if layer.shared}
    return Coverage(watched=watched, total=total, left_out=left_out, shared=shared)
