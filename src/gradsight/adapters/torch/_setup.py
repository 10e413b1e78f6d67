"""The run's set-up read from autograd at the first loss: the output activation, the loss's
kind, the classes, whether the loss got probabilities (:class:`~gradsight.diagnostics.
run_setup.RunSetup`).

Read once, at the first loss computed with gradients enabled, then never again (one flag
checked per loss call afterwards):

* ``watch(..., loss_fn=nn.CrossEntropyLoss())``: the loss module's forward hook sees the
  module (its kind: :data:`LOSS_MODULES`, else its class name) and the tensor it is given.
  The ``grad_fn`` of that tensor says what produced it — ``SoftmaxBackward0`` is a softmax,
  whether an ``nn.Softmax`` module or ``F.softmax`` in ``forward`` — looking through the
  nodes that only move values around (views, reshapes, permutes, transposes, clones, slices,
  dtype casts: :data:`THROUGH`); the values themselves say whether they look like
  probabilities.
* ``watcher.record_loss(loss)``: the loss tensor's own ``grad_fn`` gives the kind
  (``NllLossBackward0`` after ``LogSoftmaxBackward0`` is cross_entropy — F.cross_entropy is
  exactly log_softmax then nll_loss —, ``BinaryCrossEntropyBackward0`` bce, ...), through a
  reduction or a scaling of the loss (``loss.mean()``, ``loss / accumulation``); the nodes'
  saved tensors give the loss's input when autograd kept it (probabilities, classes).

Nothing is guessed: a compiled region's node (``CompiledFunctionBackward``, under
``torch.compile``) or a custom ``autograd.Function`` hides what it computed, so the output
activation is ``"unknown"``; a loss whose graph matches no known loss is ``"unknown"`` too;
and anything unexpected while reading makes the values ``"unknown"``/None — it never raises
into the training loop. The probabilities test is a 0-d tensor on the device, read when the
set-up is (no host sync at the step).
"""

from __future__ import annotations

from typing import Any

from ...diagnostics.run_setup import (
    BINARY_LOSSES,
    CLASS_LOSSES,
    ROW_SUM_TOLERANCE,
    UNKNOWN,
    RunSetup,
)

#: loss module classes (torch.nn) → the kind of loss; other modules give their class name
LOSS_MODULES = {"CrossEntropyLoss": "cross_entropy", "NLLLoss": "nll", "BCELoss": "bce",
                "BCEWithLogitsLoss": "bce_with_logits", "MSELoss": "mse", "L1Loss": "l1",
                "HuberLoss": "huber", "SmoothL1Loss": "smooth_l1", "KLDivLoss": "kl_div"}
#: autograd nodes of an activation → its name
ACTIVATION_NODES = {"SoftmaxBackward0": "softmax", "LogSoftmaxBackward0": "log_softmax",
                    "SigmoidBackward0": "sigmoid", "TanhBackward0": "tanh",
                    "ReluBackward0": "relu", "GeluBackward0": "gelu", "SiluBackward0": "silu",
                    "SoftplusBackward0": "softplus", "LeakyReluBackward0": "leaky_relu",
                    "EluBackward0": "elu", "LogSigmoidBackward0": "log_sigmoid",
                    "HardtanhBackward0": "hardtanh"}
#: nodes that only move or copy values: the activation is looked for behind them
THROUGH = frozenset({
    "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "PermuteBackward0",
    "TransposeBackward0", "TransposeBackward1", "TBackward0", "CloneBackward0",
    "SliceBackward0", "SelectBackward0", "SqueezeBackward0", "SqueezeBackward1",
    "SqueezeBackward2", "UnsqueezeBackward0", "ToCopyBackward0", "AliasBackward0",
    "ExpandBackward0", "NarrowBackward0",
})
#: nodes of a reduction or a scaling of the loss (``loss.mean()``, ``loss / k``)
REDUCTIONS = frozenset({"MeanBackward0", "MeanBackward1", "SumBackward0", "SumBackward1",
                        "DivBackward0", "MulBackward0"})
#: loss nodes whose first input is the loss's input (saved as ``_saved_self``)
LOSS_NODES = {"BinaryCrossEntropyBackward0": "bce",
              "BinaryCrossEntropyWithLogitsBackward0": "bce_with_logits",
              "MseLossBackward0": "mse", "HuberLossBackward0": "huber",
              "SmoothL1LossBackward0": "smooth_l1"}
NLL_NODES = frozenset({"NllLossBackward0", "NllLoss2DBackward0"})
_STEPS = 64  # the longest chain of nodes walked through


def _name(node: Any) -> str:
    return type(node).__name__


def _first_input(node: Any) -> Any:
    """The node of a node's first differentiable input (None: a constant)."""
    inputs = getattr(node, "next_functions", ())
    return inputs[0][0] if inputs else None


def _behind(node: Any, names: frozenset[str]) -> tuple[Any, bool]:
    """(the first node that is not one of ``names``, whether any was passed) along the first
    inputs."""
    passed = False
    for _ in range(_STEPS):
        if node is None or _name(node) not in names:
            return node, passed
        node, passed = _first_input(node), True
    return None, passed


def _saved(node: Any, attribute: str) -> Any:
    """A tensor autograd saved on ``node``, or None (not saved, freed, or hooked away)."""
    try:
        return getattr(node, attribute, None)
    except Exception:  # noqa: BLE001 — saved-tensor hooks (offloading, checkpointing) may fail
        return None


class SetupProbe:
    """Reads the run's set-up at the first loss; :meth:`setup` gives the :class:`RunSetup`."""

    def __init__(self, torch: Any, optimizer: Any, loss_fn: Any) -> None:
        self._torch = torch
        self.pending = True  # until the first loss with gradients has been read
        self.optimizer = None if optimizer is None else type(optimizer).__name__
        self.loss = None if loss_fn is None else self._module_kind(loss_fn)
        self.activation: str | None = UNKNOWN
        self.classes: int | None = None
        self._probabilities: Any = None  # a 0-d bool tensor on the device, or a bool
        self._custom = torch.autograd.function.BackwardCFunction

    # ---- reading ----------------------------------------------------------------------------
    def from_module(self, module: Any, args: Any) -> None:
        """The loss module's forward hook at the first loss: its input tensor."""
        self.pending = False
        try:
            self.loss = self._module_kind(module)
            x = args[0] if isinstance(args, (tuple, list)) and args else None
            if not isinstance(x, self._torch.Tensor):
                return
            self.activation = self._activation_of(x)
            if self.loss in CLASS_LOSSES:
                self.classes = int(x.shape[1] if x.dim() >= 2 else x.shape[0])
            elif self.loss in BINARY_LOSSES:
                self.classes = 2
            self._probabilities = self._looks_like_probabilities(
                x, (1 if x.dim() >= 2 else 0) if self.loss in CLASS_LOSSES else None)
        except Exception:  # noqa: BLE001 — never into the user's loop: not measured
            self.activation, self.classes, self._probabilities = UNKNOWN, None, None

    def from_loss(self, loss: Any) -> None:
        """``record_loss`` at the first loss: the loss tensor's autograd graph."""
        self.pending = False
        try:
            self._read_graph(loss)
        except Exception:  # noqa: BLE001 — never into the user's loop: not measured
            self.loss, self.activation, self.classes, self._probabilities = \
                UNKNOWN, UNKNOWN, None, None

    def setup(self, first_loss: float | None) -> RunSetup:
        """The set-up (the probabilities test is brought to the host here, once)."""
        probabilities = self._probabilities
        if probabilities is not None and not isinstance(probabilities, bool):
            try:
                probabilities = bool(probabilities.item())
            except Exception:  # noqa: BLE001 — e.g. the device is gone: not measured
                probabilities = None
            self._probabilities = probabilities
        return RunSetup(self.activation, self.loss, self.classes, first_loss, probabilities,
                        self.optimizer)

    # ---- the pieces -------------------------------------------------------------------------
    def _module_kind(self, module: Any) -> str:
        for cls in type(module).__mro__:
            if cls.__module__.startswith("torch.nn") and cls.__name__ in LOSS_MODULES:
                return LOSS_MODULES[cls.__name__]
        return type(module).__name__

    def _activation_of(self, x: Any) -> str | None:
        """What produced the loss's input ``x``, looking through views and copies."""
        node = x.grad_fn
        if node is None:  # a leaf: the network's own parameter (nothing applied), or constant
            return None if x.requires_grad else UNKNOWN
        return self._activation_at(_behind(node, THROUGH)[0])

    def _activation_at(self, node: Any) -> str | None:
        if node is None:
            return UNKNOWN
        if isinstance(node, self._custom):  # torch.compile's graph, a custom Function
            return UNKNOWN
        name = _name(node)
        if name == "AccumulateGrad":  # a leaf parameter fed to the loss as it is
            return None
        return ACTIVATION_NODES.get(name)  # another op: nothing applied to the output

    def _looks_like_probabilities(self, x: Any, class_dim: int | None) -> Any:
        """A 0-d bool tensor (on x's device): all finite, in [0, 1] and, along ``class_dim``,
        rows summing to 1 within the tolerance. None for non-floating values."""
        torch = self._torch
        if not x.is_floating_point() or x.numel() == 0:
            return None
        with torch.no_grad():
            x = x.detach()
            ok = torch.isfinite(x).all() & (x >= 0).all() & (x <= 1).all()
            if class_dim is not None:
                sums = torch.sum(x, dim=class_dim, dtype=torch.float32)
                ok = ok & ((sums - 1.0).abs() <= ROW_SUM_TOLERANCE).all()
        return ok

    def _read_graph(self, loss: Any) -> None:
        torch = self._torch
        if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
            self.loss = UNKNOWN  # a number, or a loss without a graph: its kind is not seen
            return
        root = _behind(loss.grad_fn, REDUCTIONS)[0]
        self.loss, self.activation = UNKNOWN, UNKNOWN
        if root is None or isinstance(root, self._custom):
            return
        name = _name(root)
        if name in NLL_NODES:
            inner, _ = _behind(_first_input(root), THROUGH)
            if inner is not None and _name(inner) == "LogSoftmaxBackward0":
                self._cross_entropy(root, inner)
                return
            self.loss = "nll"
            self.activation = self._activation_at(_behind(_first_input(root), THROUGH)[0])
            x = _saved(root, "_saved_self")
            if x is not None:
                self.classes = int(x.shape[1] if x.dim() >= 2 else x.shape[0])
                self._probabilities = self._looks_like_probabilities(
                    x, 1 if x.dim() >= 2 else 0)
        elif name in LOSS_NODES:
            self.loss = LOSS_NODES[name]
            if self.loss in BINARY_LOSSES:
                self.classes = 2
            inputs = root.next_functions
            first = 0 if inputs and inputs[0][0] is not None else 1  # mse(target, output)
            if first >= len(inputs):
                return
            self.activation = self._activation_at(_behind(inputs[first][0], THROUGH)[0])
            x = _saved(root, "_saved_self" if first == 0 else "_saved_target")
            if x is not None:
                self._probabilities = self._looks_like_probabilities(x, None)
        elif name == "AbsBackward0" and _name(_first_input(root)) == "SubBackward0":
            self.loss = "l1"  # |output − target| reduced: F.l1_loss
            self.activation = self._activation_at(
                _behind(_first_input(_first_input(root)), THROUGH)[0])

    def _cross_entropy(self, nll: Any, log_softmax: Any) -> None:
        """F.cross_entropy: nll_loss(log_softmax(x, dim)): x is log_softmax's input."""
        self.loss = "cross_entropy"
        dim = _saved(log_softmax, "_saved_dim")
        log_probabilities = _saved(log_softmax, "_saved_result")  # x's shape
        if log_probabilities is not None and dim is not None:
            self.classes = int(log_probabilities.shape[dim])
        else:
            saved = _saved(nll, "_saved_self")
            if saved is not None:
                self.classes = int(saved.shape[1] if saved.dim() >= 2 else saved.shape[0])
        source, moved = _behind(_first_input(log_softmax), THROUGH)
        self.activation = self._activation_at(source)
        if source is None or moved or dim is None:
            return  # x itself is not saved; behind a view the rows are not known
        produced = _saved(source, "_saved_result")  # x, when its activation saved it
        if produced is not None and log_probabilities is not None \
                and produced.shape == log_probabilities.shape:
            self._probabilities = self._looks_like_probabilities(produced, dim)
