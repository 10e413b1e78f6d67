"""The gradient that reaches each time step of a recurrent layer (nn.RNN, nn.LSTM, nn.GRU).

Backpropagation through time carries the error of step t back to step t − 1 through
∂h_t/∂h_{t−1} (Wₕₕᵀ times the gates' derivatives); when that factor is below 1 the error
that reaches the first steps shrinks geometrically with T — the vanishing gradient of the
article on it, along time instead of depth.

**What is measured: ‖∂C/∂x_t‖ for every t**, the gradient of the cost with respect to the
layer's *input* at step t. It is Wᵢₕᵀ δ_t, where δ_t (the error of the gates at t) holds
everything that has come back through the recurrence to step t; its ratio
‖∂C/∂x_first‖ / ‖∂C/∂x_last‖ is the vanishing (≪ 1) or exploding (≫ 1) over time as one
number. The gradient of the sequence *output* y_t is not that number: it is only what the
layers above inject at step t (exactly 0 for t < T when the loss reads the last step), the
same whatever the recurrence does.

How: at recorded steps only, a forward pre-hook hands the module an identity view of its
input (``x.view_as(x)``; a leaf copy that requires grad when x does not, so autograd also
computes ∂C/∂x — one extra product with Wᵢₕ, at recorded steps) and registers a tensor hook
on it; the hook reduces the gradient to T norms on the device, in float64 (a gradient
vanishing as 1e-40 would underflow to 0 when squared in float32). They reach the host with
the step's other values, in its one transfer.

**The states of a plain nn.RNN are its activation**: h_t = tanh(z_t) (or relu(z_t)) with
z_t = Wᵢₕx_t + bᵢₕ + Wₕₕh_{t−1} + bₕₕ, so its output sequence (the top layer's h_t, both
directions) is read like an activation module's output, in an activation record
``"<layer>:h"`` (``source`` says so): the saturated fraction of tanh, the dead units of relu.

Not measured, with the reason in the record's ``note``: a PackedSequence input (the time
steps of different sequences are interleaved in one flat tensor; their first and last steps
are not one index), a bidirectional layer's ratio (its input gradient at t mixes the forward
direction's error, which flows to early steps, with the backward direction's, which flows to
late ones: the first/last ratio judges neither) and gate saturation — PyTorch's fused
RNN/LSTM/GRU kernels compute the gates inside one call and expose neither z nor the gate
activations, so their saturation cannot be read without re-running the cell step by step
(an LSTM's h_t = o_t ⊙ tanh(c_t) is a product of gates, no single activation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...diagnostics.stats import LayerStats
from ._functional import FunctionalLayer
from ._layers import ActivationLayer, activation_of
from ._reduce import ActivationCall, ActivationReducer, Scratch, Transfer

GATES_NOT_MEASURABLE = (
    "gate saturation not measurable: PyTorch's fused RNN/LSTM/GRU kernels compute the gates "
    "inside one call and expose neither z nor the gate activations")
PACKED_NOT_MEASURED = (
    "gradient over time not measured: the input is a PackedSequence, whose time steps of "
    "different sequences are interleaved in one flat tensor (no common first/last step)")
BIDIRECTIONAL_NOT_MEASURED = (
    "first/last ratio not measured: a bidirectional layer's input gradient at t mixes the "
    "forward direction's error (reaching early steps) with the backward direction's "
    "(reaching late ones)")

#: the suffix of a recurrent layer's gradient-over-time records (``"lstm:time"``)
SUFFIX = ":time"
#: the suffix of a plain nn.RNN's state records (``"rnn:h"``)
STATE_SUFFIX = ":h"


@dataclass
class RecurrentLayer:
    name: str
    module: Any
    batch_first: bool
    bidirectional: bool
    norms: list[Any] = field(default_factory=list)  # the step's (T,) float64 norms per call
    packed: bool = False
    states: tuple[ActivationLayer, ActivationReducer] | None = None  # nn.RNN: h_t = f(z_t)

    @property
    def record_name(self) -> str:
        return self.name + SUFFIX


def find_recurrent(model: Any, nn: Any) -> list[RecurrentLayer]:
    """The nn.RNN / nn.LSTM / nn.GRU modules of ``model`` (already unwrapped)."""
    return [RecurrentLayer(name or type(module).__name__.lower(), module,
                           bool(module.batch_first), bool(module.bidirectional))
            for name, module in model.named_modules() if isinstance(module, nn.RNNBase)]


class TimeGradients:
    """‖∂C/∂x_t‖ per time step of every recurrent layer, at the recorded steps."""

    def __init__(self, torch: Any, model: Any, order: dict[str, int],
                 scratch: Scratch | None = None, squared: bool = False) -> None:
        self.torch = torch
        self.layers = find_recurrent(model, torch.nn)
        self.order = order
        nn, scratch = torch.nn, scratch if scratch is not None else Scratch()
        for layer in self.layers:
            if isinstance(layer.module, nn.RNN):
                kind = nn.Tanh if layer.module.nonlinearity == "tanh" else nn.ReLU
                spec = activation_of(kind(), nn)
                assert spec is not None
                state = FunctionalLayer(layer.name + STATE_SUFFIX, layer.module, **spec,
                                        unit_dim=-1, source=f"output of {layer.name} (h_t)")
                layer.states = (state, ActivationReducer(state, scratch, squared=squared))
        #: the step's calls of the nn.RNN states, for the activation records
        self.state_calls: list[tuple[ActivationLayer, ActivationCall]] = []
        self._handles: list[Any] = []
        #: whether the current step is recorded (the watcher's schedule; hooks that stay
        #: installed on every step, as under torch.compile, return at once otherwise)
        self.recording: Callable[[], bool] = lambda: True
        #: (step, layer name, [‖∂C/∂x_t‖ for t = 0 … T−1]) of every recorded step
        self.profiles: list[tuple[int, str, list[float]]] = []

    def hooks(self, on: bool) -> None:
        if on and not self._handles:
            self._handles = [layer.module.register_forward_pre_hook(
                self._pre_hook(layer), with_kwargs=True) for layer in self.layers]
            self._handles += [layer.module.register_forward_hook(self._state_hook(layer))
                              for layer in self.layers if layer.states is not None]
        elif not on:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def clear(self) -> None:
        for layer in self.layers:
            layer.norms, layer.packed = [], False
        self.state_calls = []

    def take_states(self) -> list[tuple[ActivationLayer, ActivationCall]]:
        """The step's nn.RNN state calls (activation statistics), taken once."""
        calls, self.state_calls = self.state_calls, []
        return calls

    def _state_hook(self, layer: RecurrentLayer) -> Any:
        torch, order = self.torch, self.order
        packed_type = torch.nn.utils.rnn.PackedSequence
        assert layer.states is not None
        state, reduce = layer.states

        def hook(module: Any, args: Any, output: Any) -> None:
            if not torch.is_grad_enabled() or not self.recording():
                return
            h = output[0]
            if isinstance(h, packed_type):
                h = h.data  # every valid step of every sequence, (Σ lengths, units)
            if isinstance(h, torch.Tensor) and h.is_floating_point():
                order.setdefault(state.name, len(order))
                call = reduce(h)
                if call is not None:
                    self.state_calls.append((state, call))

        return hook

    def _pre_hook(self, layer: RecurrentLayer) -> Any:
        torch, order = self.torch, self.order
        packed_type = torch.nn.utils.rnn.PackedSequence

        def hook(module: Any, args: Any, kwargs: Any) -> Any:
            if not torch.is_grad_enabled() or not self.recording():
                return None
            order.setdefault(layer.record_name, len(order))
            from_kwargs = not args
            x = kwargs.get("input") if from_kwargs else args[0]
            if isinstance(x, packed_type):
                layer.packed = True
                return None
            if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
                return None
            if not x.requires_grad and not any(p.requires_grad for p in module.parameters()):
                return None  # no graph: nothing flows back
            probe = x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)
            time_dim = 1 if layer.batch_first and x.dim() == 3 else 0
            dims = tuple(d for d in range(x.dim()) if d != time_dim)

            def on_grad(grad: Any) -> None:
                exact = torch.float32 if grad.device.type == "mps" else torch.float64
                layer.norms.append(torch.linalg.vector_norm(grad.detach(), 2, dims,
                                                            dtype=exact))

            probe.register_hook(on_grad)
            if from_kwargs:
                return args, {**kwargs, "input": probe}
            return (probe, *args[1:]), kwargs

        return hook

    def take(self, transfer: Transfer) -> list[PendingTime]:
        """The step's norms added to ``transfer``; the step's state is cleared."""
        pending = []
        for layer in self.layers:
            if not layer.norms and not layer.packed:
                continue
            self.order.setdefault(layer.record_name, len(self.order))
            lengths = {n.shape[0] for n in layer.norms}
            # squares go over (summed over calls, and over ranks under all_reduce): the
            # norm of the whole step's batch is √Σ‖g_t‖²
            if len(lengths) == 1:  # calls of one length: the whole profile
                squares = self.torch.stack(layer.norms).square().sum(0)
                at = transfer.add(squares, summed=True)
                pending.append(PendingTime(layer, at, squares.shape[0], self.profiles))
            elif layer.norms:  # several lengths: the first and last steps of each call
                ends = self.torch.stack([self.torch.stack([n[0] for n in layer.norms]),
                                         self.torch.stack([n[-1] for n in layer.norms])])
                at = transfer.add(ends.square().sum(1), summed=True)
                pending.append(PendingTime(layer, at, None, self.profiles))
            else:
                pending.append(PendingTime(layer, None, None, self.profiles))
        self.clear()
        return pending


class PendingTime:
    """Where one recurrent layer's norms of a step are in the transfer."""

    def __init__(self, layer: RecurrentLayer, at: int | None, steps: int | None,
                 profiles: list[tuple[int, str, list[float]]]) -> None:
        self.name, self.bidirectional, self.packed = (
            layer.record_name, layer.bidirectional, layer.packed)
        self.key = self.name  # its place in the forward order
        self.gates = GATES_NOT_MEASURABLE if layer.states is None else (
            f"no gates (plain RNN): its states h_t = f(z_t) are read as an activation in "
            f"{layer.states[0].name}")
        self.at, self.steps, self.profiles = at, steps, profiles

    def records(self, base: dict[str, Any], values: list[float]) -> list[LayerStats]:
        notes = [self.gates]
        fields: dict[str, Any] = {}
        if self.at is None:
            notes.insert(0, PACKED_NOT_MEASURED)
        else:
            count = self.steps if self.steps is not None else 2
            norms = [math.sqrt(v) for v in values[self.at:self.at + count]]
            if self.steps is not None:
                self.profiles.append((base["step"], self.name, norms))
                fields["time_steps"] = self.steps
            first, last = norms[0], norms[-1]
            fields.update(time_grad_first=first, time_grad_last=last)
            if self.bidirectional:
                notes.insert(0, BIDIRECTIONAL_NOT_MEASURED)
            else:
                fields["time_grad_ratio"] = time_ratio(first, last)
            if self.packed:
                notes.insert(0, "some calls of this step had a PackedSequence input and are "
                                "not included")
        return [LayerStats(**base, kind="sequence", note="; ".join(notes), **fields)]


def time_ratio(first: float, last: float) -> float:
    """‖∂C/∂x_first‖ / ‖∂C/∂x_last‖; 0/0 is NaN (no gradient at all), x/0 is inf.

    >>> time_ratio(1e-6, 1.0), time_ratio(0.0, 0.0) != time_ratio(0.0, 0.0)
    (1e-06, True)
    """
    if last > 0:
        return first / last
    return math.inf if first > 0 else math.nan
