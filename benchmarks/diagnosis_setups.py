"""The runs of the diagnosis benchmark: set-ups with a known fault, trained in plain PyTorch.

Each :class:`Setup` names a fault class (``vanishing``, ``exploding``, ``dying_relu``,
``saturation``, ``tiny_lr``, ``oscillating``, ``mismatch`` or ``healthy``), a data set, a
model and a training configuration. :func:`train_run` trains it for one seed under
``gradsight.watch(model, optimizer=opt, loss_fn=loss_fn)`` with the default recording
schedule, and measures, with its own plain-PyTorch code only (``p.grad`` after backward,
weight copies around ``optimizer.step()``, ``x.grad`` of the input, its own forward passes
over the data on a twin of the model), what confirms the fault independently of gradsight:

========== ===============================================================================
vanishing  dense/CNN: median over steps of ‖∂C/∂W_first‖/‖∂C/∂W_last‖ of the hidden layers
           < 1e-2; recurrent: median of ‖∂C/∂x_0‖/‖∂C/∂x_T‖ (input gradient at the first vs
           the last time step) < 1e-2
exploding  peak total gradient norm ≥ 100 × the median of the first 10 steps, or a non-finite
           gradient or loss
dying_relu ≥ 50% of a hidden ReLU layer's units output 0 on every training sample (end)
saturation ≥ 50% of a hidden sigmoid/tanh layer's activations have f′ < 1% of its maximum
           (σ′ < 0.0025, 1 − a² < 0.01), over the training set (end)
tiny_lr    median over steps of max over layers ‖ΔW‖/‖W‖ < 1e-6 and the training loss
           dropped < 1% from the first to the last epoch
oscillating the end-of-epoch training-set loss rises, by more than 10% of the initial loss, in
           ≥ 25% of the epochs
mismatch   structure (a softmax/sigmoid module feeds a loss that applies its own) plus: the
           outputs are probabilities (rows sum to 1 / lie in (0, 1)) and ‖∂L/∂z‖ of the
           logits z is smaller than under the matched loss on the same z
healthy    validation accuracy ≥ the set-up's stated level and none of the signatures above
========== ===============================================================================

It also computes, in the same loop, what AUTOTRAINER's callback reads at each epoch end
(``utils/utils.py`` ``LossHistory.on_epoch_end``: the gradients of the first training batch,
the layer outputs on it, the weights, and Keras' epoch loss/accuracy), summarised by
:func:`autotrainer_gradient_summary` and friends, ports of its ``monitor.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits, make_blobs, make_circles, make_moons
from torch import nn

import gradsight

CLASSES = ("vanishing", "exploding", "dying_relu", "saturation", "tiny_lr", "oscillating",
           "mismatch", "healthy")
FAULTS = CLASSES[:-1]

# confirmation thresholds (see the module docstring)
VANISH_RATIO = 1e-2
EXPLODE_FACTOR = 100.0
DEAD_SHARE = 0.5
SATURATED_SHARE = 0.5
TINY_UPDATE = 1e-6
TINY_LOSS_DROP = 0.01
RISE = 0.10
RISE_SHARE = 0.25


@dataclass(frozen=True)
class Setup:
    """One set-up: a fault class, data, model and training; trained once per seed."""

    name: str
    fault: str
    family: str
    arch: str
    data: str
    model: dict[str, Any]
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    loss: str = "ce"
    epochs: int = 30
    batch_size: int = 32
    min_accuracy: float = 0.0   # healthy runs must reach it on the validation split
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_peak: float | None = None  # a triangular lr bump to lr_peak around mid-run
    peak_width: float = 0.3  # its half-width, as a share of the run
    seeds: tuple[int, ...] = (0, 1, 2)
    quick: bool = False
    note: str = ""


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int


def _split(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int,
           standardise: bool = True, dtype: Any = torch.float32) -> Data:
    rng = np.random.default_rng(seed + 1000)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    cut = int(0.8 * len(x))
    if standardise:
        mean, std = x[:cut].mean(0), x[:cut].std(0) + 1e-8
        x = (x - mean) / std
    as_x = (lambda a: torch.tensor(a, dtype=dtype)) if dtype is not torch.long else (
        lambda a: torch.tensor(a, dtype=torch.long))
    return Data(as_x(x[:cut]), torch.tensor(y[:cut], dtype=torch.long), as_x(x[cut:]),
                torch.tensor(y[cut:], dtype=torch.long), n_classes)


def make_data(name: str, seed: int, **kw: Any) -> Data:
    """The data set ``name`` for ``seed``: 80% training, 20% validation."""
    n = kw.get("n", 1000)
    rng = np.random.default_rng(seed)
    if name == "circles":
        x, y = make_circles(n, noise=kw.get("noise", 0.08), factor=0.5, random_state=seed)
        classes = 2
    elif name == "moons":
        x, y = make_moons(n, noise=kw.get("noise", 0.15), random_state=seed)
        classes = 2
    elif name == "blobs":
        x, y = make_blobs(n, centers=4, n_features=2, cluster_std=kw.get("std", 1.0),
                          random_state=seed)
        classes = 4
    elif name == "digits":
        digits = load_digits()
        x, y = digits.data.reshape(-1, 1, 8, 8) / 16.0, digits.target
        if kw.get("flat"):
            x = x.reshape(len(x), -1)
        data = _split(x, y, 10, seed, standardise=False)
        mean, std = data.x_train.mean(), data.x_train.std()
        data.x_train, data.x_val = (data.x_train - mean) / std, (data.x_val - mean) / std
        return data
    elif name == "seq_sum":  # label: is the sum of the sequence positive (every step counts)
        t = kw.get("T", 20)
        x = rng.standard_normal((n, t, 1)).astype(np.float32)
        y = (x.sum(axis=(1, 2)) > 0).astype(int)
        return _split(x, y, 2, seed, standardise=False)
    elif name == "seq_first":  # label: the sign of the first step, then T−1 steps of noise
        t = kw.get("T", 150)
        x = rng.standard_normal((n, t, 1)).astype(np.float32)
        y = rng.integers(0, 2, n)
        x[:, 0, 0] = 2.0 * y - 1.0
        return _split(x, y, 2, seed, standardise=False)
    elif name == "tokens":  # label: does token 1 occur more often than token 2
        t, vocab = kw.get("T", 12), kw.get("vocab", 8)
        x = rng.integers(0, vocab, (n, t))
        diff = (x == 1).sum(1) - (x == 2).sum(1)
        x, diff = x[diff != 0], diff[diff != 0]
        return _split(x, (diff > 0).astype(int), 2, seed, standardise=False, dtype=torch.long)
    else:
        raise ValueError(f"unknown data set {name!r}")
    if kw.get("flip", 0.0):
        flip = rng.random(len(y)) < kw["flip"]
        y = np.where(flip, rng.integers(0, classes, len(y)), y)
    data = _split(x, y, classes, seed)
    if kw.get("scale", 1.0) != 1.0:  # unstandardised inputs
        data.x_train, data.x_val = data.x_train * kw["scale"], data.x_val * kw["scale"]
    return data


# --------------------------------------------------------------------------- models

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU,
               "leaky_relu": nn.LeakyReLU}


def keras_init(weight: torch.Tensor, name: str) -> None:
    """Keras' initialisers by name (fans as Keras counts them), or ``normal:σ`` for N(0, σ²)."""
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_out *= receptive
    with torch.no_grad():
        if name == "glorot_uniform":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            weight.uniform_(-limit, limit)
        elif name == "glorot_normal":
            nn.init.trunc_normal_(weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)) / 0.8796,
                                  -2 * math.sqrt(2.0 / (fan_in + fan_out)) / 0.8796,
                                  2 * math.sqrt(2.0 / (fan_in + fan_out)) / 0.8796)
        elif name == "he_normal":
            std = math.sqrt(2.0 / fan_in) / 0.8796
            nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)
        elif name == "he_uniform":
            limit = math.sqrt(6.0 / fan_in)
            weight.uniform_(-limit, limit)
        elif name == "lecun_normal":
            std = math.sqrt(1.0 / fan_in) / 0.8796
            nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)
        elif name == "random_normal":
            weight.normal_(0.0, 0.05)
        elif name == "random_uniform":
            weight.uniform_(-0.05, 0.05)
        elif name.startswith("normal:"):
            weight.normal_(0.0, float(name.split(":")[1]))
        elif name != "torch":
            raise ValueError(f"unknown initialiser {name!r}")


def dense_net(n_in: int, n_out: int, hidden: list[int], activation: str, init: str,
              bias_init: float | list[float] = 0.0,
              output: str | None = None) -> nn.Sequential:
    """A Keras-style MLP: Dense(+activation) × len(hidden), a Dense output, ``output``;
    ``bias_init`` a constant for every hidden bias, or one per hidden layer."""
    layers: list[nn.Module] = []
    width = n_in
    biases = bias_init if isinstance(bias_init, list) else [bias_init] * len(hidden)
    for units, bias in zip(hidden, biases, strict=True):
        linear = nn.Linear(width, units)
        keras_init(linear.weight, init)
        nn.init.constant_(linear.bias, bias)
        layers += [linear, ACTIVATIONS[activation]()]
        width = units
    head = nn.Linear(width, n_out)
    keras_init(head.weight, init if not init.startswith("normal:") else "glorot_uniform")
    nn.init.zeros_(head.bias)
    layers.append(head)
    if output == "softmax":
        layers.append(nn.Softmax(dim=1))
    elif output == "sigmoid":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """conv-BN-act ×2, max-pool, dense-act, dense (8×8 digits)."""

    def __init__(self, n_out: int, activation: str = "relu", init: str = "torch",
                 bias_init: float = 0.0, output: str | None = None) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.conv1, self.bn1, self.act1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), act()
        self.conv2, self.bn2, self.act2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), act()
        self.pool = nn.MaxPool2d(2)
        self.fc, self.act3 = nn.Linear(32 * 16, 64), act()
        self.head = nn.Linear(64, n_out)
        for layer in (self.conv1, self.conv2, self.fc, self.head):
            keras_init(layer.weight, init)
        nn.init.constant_(self.fc.bias, bias_init)
        self.out = {"softmax": nn.Softmax(dim=1), "sigmoid": nn.Sigmoid()}.get(output or "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.pool(self.act2(self.bn2(self.conv2(x))))
        x = self.head(self.act3(self.fc(x.flatten(1))))
        return self.out(x) if self.out is not None else x


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-BN-ReLU-conv-BN, plus the (projected) input, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1, self.relu1 = nn.BatchNorm2d(c_out), nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(c_out), nn.ReLU()
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.skip(x))


class SmallResNet(nn.Module):
    """Stem conv-BN-ReLU, two basic blocks (16 → 32 channels), global average pool, dense."""

    def __init__(self, n_out: int, output: str | None = None) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn, self.relu = nn.BatchNorm2d(16), nn.ReLU()
        self.block1, self.block2 = BasicBlock(16, 16, 1), BasicBlock(16, 32, 2)
        self.head = nn.Linear(32, n_out)
        self.out = {"softmax": nn.Softmax(dim=1)}.get(output or "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.relu(self.bn(self.stem(x)))))
        x = self.head(x.mean(dim=(2, 3)))
        return self.out(x) if self.out is not None else x


class TinyTransformer(nn.Module):
    """Token embedding + positions, one encoder layer (d 32, 4 heads), mean pool, dense."""

    def __init__(self, n_out: int, vocab: int = 8, length: int = 12, d: int = 32,
                 layers: int = 1, output: str | None = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.1)
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, batch_first=True,
                                       activation=nn.ReLU()) for _ in range(layers))
        self.head = nn.Linear(d, n_out)
        self.out = {"softmax": nn.Softmax(dim=1)}.get(output or "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos
        for layer in self.encoder:
            h = layer(h)
        x = self.head(h.mean(dim=1))
        return self.out(x) if self.out is not None else x


class SeqNet(nn.Module):
    """nn.LSTM or nn.RNN (tanh) over the sequence; a dense head on the last output only."""

    def __init__(self, n_out: int, cell: str = "lstm", hidden: int = 32,
                 init: str = "torch", output: str | None = None) -> None:
        super().__init__()
        kind = {"lstm": nn.LSTM, "rnn": nn.RNN}[cell]
        self.rnn = kind(1, hidden, batch_first=True)
        if init == "orthogonal":
            for name, p in self.rnn.named_parameters():
                if "weight_hh" in name:
                    nn.init.orthogonal_(p)
        self.head = nn.Linear(hidden, n_out)
        self.out = {"softmax": nn.Softmax(dim=1)}.get(output or "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        x = self.head(out[:, -1])
        return self.out(x) if self.out is not None else x


def build_model(setup: Setup, data: Data) -> nn.Module:
    kw = dict(setup.model)
    n_out = 1 if setup.loss == "bce_logits" else data.n_classes
    if setup.arch == "dense":
        return dense_net(data.x_train.shape[1], n_out, **kw)
    if setup.arch == "cnn":
        return SmallCNN(n_out, **kw)
    if setup.arch == "resnet":
        return SmallResNet(n_out, **kw)
    if setup.arch == "transformer":
        return TinyTransformer(n_out, length=data.x_train.shape[1], **kw)
    if setup.arch in ("lstm", "rnn"):
        return SeqNet(n_out, cell=setup.arch, **kw)
    raise ValueError(f"unknown architecture {setup.arch!r}")


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers with a weight matrix/kernel, in the order they are defined (= run here)."""
    kinds = (nn.Linear, nn.Conv2d, nn.LSTM, nn.RNN)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def hidden_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight of each hidden layer (every weight layer but the output head)."""
    weights = []
    for _, layer in weight_layers(model)[:-1]:
        weights.append(layer.weight if hasattr(layer, "weight") else layer.weight_ih_l0)
    return weights


def final_activation(model: nn.Module) -> nn.Module | None:
    """The softmax/sigmoid module the model ends with, if it ends with one."""
    if isinstance(model, nn.Sequential):
        last = model[-1]
    else:
        last = getattr(model, "out", None)
    return last if isinstance(last, (nn.Softmax, nn.Sigmoid)) else None


# --------------------------------------------------------------------------- losses


def make_loss(name: str) -> nn.Module:
    return {"ce": nn.CrossEntropyLoss(), "bce_logits": nn.BCEWithLogitsLoss()}[name]


def target(setup: Setup, y: torch.Tensor) -> torch.Tensor:
    return y.float().unsqueeze(1) if setup.loss == "bce_logits" else y


def predict(setup: Setup, model: nn.Module, out: torch.Tensor) -> torch.Tensor:
    if setup.loss == "bce_logits":
        cut = 0.5 if isinstance(final_activation(model), nn.Sigmoid) else 0.0
        return (out[:, 0] > cut).long()
    return out.argmax(1)


def matched_probabilities(setup: Setup, model: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """What a Keras model's output would be: the loss's own link applied to logits."""
    if final_activation(model) is not None:
        return out
    return torch.sigmoid(out) if setup.loss == "bce_logits" else torch.softmax(out, dim=1)


# --------------------------------------------------------------------------- measurements


class ActivationProbe:
    """Forward hooks (our own) on a model's hidden activation modules: dead / saturated."""

    def __init__(self, model: nn.Module) -> None:
        self.kinds: dict[str, str] = {}
        self.max_out: dict[str, torch.Tensor] = {}
        self.saturated: dict[str, list[float]] = {}
        self.handles = []
        head = final_activation(model)
        for name, module in model.named_modules():
            if module is head:
                continue
            for kind, cls in (("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)):
                if isinstance(module, cls):
                    self.kinds[name] = kind
                    self.handles.append(module.register_forward_hook(self._hook(name, kind)))

    def _hook(self, name: str, kind: str) -> Any:
        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            a = out.detach()
            units = a.transpose(0, 1).reshape(a.shape[1], -1) if a.dim() == 4 else (
                a.reshape(-1, a.shape[-1]).T)
            if kind == "relu":  # per unit (channel for conv), the largest output
                peak = units.max(dim=1).values
                old = self.max_out.get(name)
                self.max_out[name] = peak if old is None else torch.maximum(old, peak)
            else:
                slope = a * (1 - a) / 0.25 if kind == "sigmoid" else 1 - a * a
                self.saturated.setdefault(name, []).extend(
                    [float((slope < 0.01).float().sum()), float(slope.numel())])
        return hook

    def result(self) -> dict[str, dict[str, float]]:
        dead = {name: float((peak <= 0).float().mean()) for name, peak in self.max_out.items()}
        saturated = {name: sum(v[0::2]) / max(1.0, sum(v[1::2]))
                     for name, v in self.saturated.items()}
        return {"dead": dead, "saturated": saturated}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def evaluate(setup: Setup, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             loss_fn: nn.Module) -> tuple[float, float]:
    """Loss and accuracy over (x, y), batch by batch (our own forward)."""
    total, correct = 0.0, 0
    with torch.no_grad():
        for part in batches(len(x), 256):
            out = model(x[part])
            total += float(loss_fn(out, target(setup, y[part]))) * len(x[part])
            correct += int((predict(setup, model, out) == y[part]).sum())
    return total / len(x), correct / len(x)


def mismatch_measure(setup: Setup, model: nn.Module, data: Data,
                     loss_fn: nn.Module) -> dict[str, Any]:
    """For a model ending in softmax/sigmoid: are the outputs probabilities, and how much
    smaller is ‖∂L/∂z‖ of the logits z than under the loss that matches them?"""
    head = final_activation(model)
    if head is None:
        return {"structural": False}
    logits: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda m, args, out: logits.append(args[0].detach()))
    with torch.no_grad():
        probs = model(data.x_train)
    handle.remove()
    z = logits[0].clone().requires_grad_()
    y = target(setup, data.y_train)
    loss_fn(head(z), y).backward()
    g_used = float(z.grad.norm())
    z.grad = None
    if isinstance(head, nn.Softmax):
        matched = nn.CrossEntropyLoss()(z, data.y_train) if setup.loss == "ce" else None
        rows = float((probs.sum(1) - 1).abs().max())
        are_probs = rows < 1e-4
    else:
        matched = (nn.BCEWithLogitsLoss()(z, y) if setup.loss == "bce_logits" else
                   nn.CrossEntropyLoss()(z, data.y_train))
        are_probs = bool(((probs >= 0) & (probs <= 1)).all())
    matched.backward()
    g_matched = float(z.grad.norm())
    return {"structural": True, "head": type(head).__name__, "loss": type(loss_fn).__name__,
            "outputs_are_probabilities": are_probs, "grad_logits": g_used,
            "grad_logits_matched": g_matched, "grad_ratio": g_used / max(g_matched, 1e-30)}


# --------------------------------------------------------------------------- AUTOTRAINER inputs
# What AUTOTRAINER's callback (utils/utils.py LossHistory.on_epoch_end) hands to
# IssueMonitor.determine, reduced to the numbers its rules in utils/monitor.py read.


def autotrainer_gradient_summary(gradient_list: list[np.ndarray]) -> dict[str, Any]:
    """monitor.py ``gradient_message_summary`` + the NaN test of ``gradient_issue``.

    Kernels are the arrays of ≥ 2 dimensions, in the model's weight order (``gradient_norm``);
    ``total_zero_ratio`` is the share of exactly-zero entries over every array
    (``gradient_zero_radio``); ``gra_rate`` = ‖first kernel‖/‖last kernel‖.
    """
    zeros = sum(int(np.sum(g == 0)) for g in gradient_list)
    size = sum(g.size for g in gradient_list)
    kernels = [float(np.linalg.norm(np.asarray(g))) for g in gradient_list if g.ndim > 1]
    nan = any(bool(np.isnan(g).any() or np.isinf(g).any()) for g in gradient_list)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = float(np.float64(kernels[0]) / np.float64(kernels[-1]))
    return {"nan": nan, "total_zero_ratio": zeros / size, "norm_kernel_first": kernels[0],
            "norm_kernel_last": kernels[-1], "gra_rate": rate}


def autotrainer_layer_summary(outputs: list[np.ndarray]) -> dict[str, Any]:
    """monitor.py ``layer_issue``'s inputs: the output layer's largest row sum of |output|
    (and NaN), and the mean |output| of every other layer."""
    last = np.absolute(outputs[-1]).reshape(len(outputs[-1]), -1).sum(1)
    return {"output_row_sum_max": float(np.max(last)),
            "output_nan": bool(np.isnan(last).any() or np.isinf(last).any()),
            "hidden_mean_abs": [float(np.mean(np.abs(o))) for o in outputs[:-1]]}


def autotrainer_weight_summary(weights: list[np.ndarray]) -> dict[str, Any]:
    """monitor.py ``weights_issue``'s inputs: NaN in any weight, the largest |w|."""
    return {"nan": any(bool(np.isnan(w).any() or np.isinf(w).any()) for w in weights),
            "max_abs": max(float(np.nanmax(np.abs(w))) if w.size else 0.0 for w in weights)}


def keras_layer_outputs(setup: Setup, model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """What AUTOTRAINER's ``get_layer_output`` returns: each layer's output, in order.

    Keras fuses a Dense/Conv with its activation, so a weight layer's output followed at once
    by an activation module is not listed; the last entry is the model's output as Keras would
    give it (a loss with a built-in softmax/sigmoid gets it applied, as a Keras output layer
    would carry it). An embedding restarts the list, as in ``get_layer_output``.
    """
    calls: list[tuple[nn.Module, np.ndarray]] = []
    leaves = [m for m in model.modules()
              if (not list(m.children()) or isinstance(m, (nn.LSTM, nn.RNN)))
              and not isinstance(m, (nn.Identity, nn.Dropout))]

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        out = out[0] if isinstance(out, tuple) else out
        if isinstance(module, nn.Embedding):
            calls.clear()
        calls.append((module, out.detach().numpy().copy()))

    handles = [m.register_forward_hook(hook) for m in leaves]
    with torch.no_grad():
        out = model(x)
    for handle in handles:
        handle.remove()
    acts = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.Softmax)
    kept = [o for i, (m, o) in enumerate(calls)
            if not (i + 1 < len(calls) and isinstance(calls[i + 1][0], acts)
                    and isinstance(m, (nn.Linear, nn.Conv2d)))]
    kept = kept[:-1] + [matched_probabilities(setup, model, out).numpy()]
    return kept


def autotrainer_output(setup: Setup, model: nn.Module, n_classes: int) -> dict[str, Any]:
    """The loss name, output width and output activation of the run's Keras twin, which
    ``loss_function_issue`` reads.

    A model ending in nn.Softmax/nn.Sigmoid shows that module as its output activation. A
    loss with a built-in link is its Keras equivalent: BCEWithLogitsLoss = a sigmoid unit +
    binary_crossentropy; CrossEntropyLoss = softmax + categorical_crossentropy, and for two
    classes a sigmoid unit + binary_crossentropy (softmax over two logits is the sigmoid of
    their difference; AUTOTRAINER calls categorical_crossentropy on ≤ 2 outputs improper).
    """
    head = final_activation(model)
    if head is not None:
        activation = "softmax" if isinstance(head, nn.Softmax) else "sigmoid"
        if setup.loss == "bce_logits":
            return {"loss": "binary_crossentropy", "output_shape": 1, "activation": activation}
        return {"loss": "categorical_crossentropy", "output_shape": n_classes,
                "activation": activation}
    if setup.loss == "bce_logits" or n_classes == 2:
        return {"loss": "binary_crossentropy", "output_shape": 1, "activation": "sigmoid"}
    return {"loss": "categorical_crossentropy", "output_shape": n_classes,
            "activation": "softmax"}


def autotrainer_check(setup: Setup, twin: nn.Module, data: Data,
                      loss_fn: nn.Module) -> dict[str, Any]:
    """One epoch end: the first batch's gradients (inference mode, like Keras' learning phase
    0), the layer outputs on it and the weights, summarised."""
    xb = data.x_train[:setup.batch_size]
    yb = data.y_train[:setup.batch_size]
    twin.zero_grad()
    loss_fn(twin(xb), target(setup, yb)).backward()
    grads = [p.grad.detach().numpy().copy() if p.grad is not None else np.zeros(p.shape)
             for p in twin.parameters()]
    gradient = autotrainer_gradient_summary(grads)
    twin.zero_grad()
    layers = autotrainer_layer_summary(keras_layer_outputs(setup, twin, xb))
    weights = autotrainer_weight_summary([p.detach().numpy() for p in twin.parameters()])
    return {"gradient": gradient, "layers": layers, "weights": weights}


# --------------------------------------------------------------------------- training


def make_optimizer(setup: Setup, model: nn.Module) -> torch.optim.Optimizer:
    if setup.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=setup.lr, momentum=setup.momentum)
    if setup.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=setup.lr)
    raise ValueError(f"unknown optimizer {setup.optimizer!r}")


def learning_rate(setup: Setup, step: int, total: int) -> float:
    """The step's learning rate: the set-up's, or a triangular bump to lr_peak mid-run."""
    if setup.lr_peak is not None:
        bump = max(0.0, 1.0 - abs(step - total / 2) / (setup.peak_width * total))
        return setup.lr + (setup.lr_peak - setup.lr) * bump
    return setup.lr


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.stack([t.detach().double().norm() for t in tensors]).norm())


def train_run(setup: Setup, seed: int) -> dict[str, Any]:
    """Train ``setup`` for ``seed`` under gradsight.watch; return what scoring needs."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    data = make_data(setup.data, seed, **setup.data_kwargs)
    model = build_model(setup, data)
    twin = build_model(setup, data)  # our measurements run on a twin: no gradsight hook
    loss_fn, twin_loss = make_loss(setup.loss), make_loss(setup.loss)
    opt = make_optimizer(setup, model)
    weights = [layer.weight if hasattr(layer, "weight") else layer.weight_ih_l0
               for _, layer in weight_layers(model)]
    hidden = hidden_weights(model)
    recurrent = setup.arch in ("lstm", "rnn")
    steps: dict[str, list[float]] = {"grad_norm": [], "hidden_ratio": [], "time_ratio": [],
                                     "update_ratio": [], "loss": []}
    epochs: dict[str, list[float]] = {"loss": [], "acc": [], "val_loss": [], "val_acc": [],
                                      "train_loss": [], "train_acc": []}
    checks: list[dict[str, Any]] = []
    generator = torch.Generator().manual_seed(seed)
    step = 0
    n = len(data.x_train)
    total = setup.epochs * len(batches(n, setup.batch_size))

    def sync_twin() -> None:
        twin.load_state_dict(model.state_dict())
        twin.eval()

    sync_twin()
    first_loss, _ = evaluate(setup, twin, data.x_train, data.y_train, twin_loss)
    with gradsight.watch(model, optimizer=opt, loss_fn=loss_fn) as watcher:
        for _epoch in range(setup.epochs):
            model.train()
            order = torch.randperm(n, generator=generator)
            seen, loss_sum, correct = 0, 0.0, 0
            for part in batches(n, setup.batch_size):
                index = order[part]
                xb, yb = data.x_train[index], data.y_train[index]
                if recurrent:
                    xb = xb.clone().requires_grad_()
                lr = learning_rate(setup, step, total)
                if lr != setup.lr:
                    for group in opt.param_groups:
                        group["lr"] = lr
                opt.zero_grad()
                out = model(xb)
                loss = loss_fn(out, target(setup, yb))
                loss.backward()
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                steps["grad_norm"].append(_norm(grads))
                steps["loss"].append(float(loss.detach()))
                if len(hidden) >= 2:
                    steps["hidden_ratio"].append(_norm([hidden[0].grad]) /
                                                 max(_norm([hidden[-1].grad]), 1e-300))
                if recurrent:
                    g = xb.grad.detach()
                    steps["time_ratio"].append(float(g[:, 0].norm()) /
                                               max(float(g[:, -1].norm()), 1e-300))
                before = [w.detach().clone() for w in weights]
                opt.step()
                with torch.no_grad():
                    steps["update_ratio"].append(max(
                        float((w - b).norm()) / max(float(b.norm()), 1e-300)
                        for w, b in zip(weights, before, strict=True)))
                seen += len(xb)
                loss_sum += float(loss.detach()) * len(xb)
                correct += int((predict(setup, model, out.detach()) == yb).sum())
                step += 1
            # Keras' epoch logs (running means over the epoch's batches) and our own pass
            sync_twin()
            epochs["loss"].append(loss_sum / seen)
            epochs["acc"].append(correct / seen)
            val_loss, val_acc = evaluate(setup, twin, data.x_val, data.y_val, twin_loss)
            train_loss, train_acc = evaluate(setup, twin, data.x_train, data.y_train, twin_loss)
            epochs["val_loss"].append(val_loss)
            epochs["val_acc"].append(val_acc)
            epochs["train_loss"].append(train_loss)
            epochs["train_acc"].append(train_acc)
            checks.append(autotrainer_check(setup, twin, data, twin_loss))
    history = watcher.history
    sync_twin()
    probe = ActivationProbe(twin)
    with torch.enable_grad():  # grad mode keeps the encoder layer off its fused fast path
        for part in batches(n, 256):
            twin(data.x_train[part])
    probe.remove()
    states = probe.result()
    measures = {"steps": steps, "epochs": epochs, "first_loss": first_loss,
                "dead": states["dead"], "saturated": states["saturated"],
                "mismatch": mismatch_measure(setup, twin, data, twin_loss)}
    autotrainer = {"history": {k: epochs[k] for k in ("loss", "acc", "val_loss", "val_acc")},
                   "checks": checks, "total_epoch": setup.epochs,
                   **autotrainer_output(setup, model, data.n_classes)}
    return {"setup": setup.name, "seed": seed, "fault": setup.fault, "family": setup.family,
            "arch": setup.arch, "history": history, "measures": measures,
            "autotrainer": autotrainer, "accuracy": epochs["val_acc"][-1],
            "min_accuracy": setup.min_accuracy, "steps": step,
            "seconds": time.perf_counter() - started}


# --------------------------------------------------------------------------- confirmation


def _median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def signatures(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each fault's signature in our own measurements: {class: {"holds": bool, ...numbers}}."""
    m = run["measures"]
    steps, epochs = m["steps"], m["epochs"]
    out: dict[str, dict[str, Any]] = {}
    ratio_key = "time_ratio" if steps["time_ratio"] else "hidden_ratio"
    ratio = _median(steps[ratio_key])
    out["vanishing"] = {"holds": bool(ratio < VANISH_RATIO), "measure": ratio_key,
                        "median_ratio": ratio}
    norms = steps["grad_norm"]
    nonfinite = (not all(math.isfinite(v) for v in norms)
                 or not all(math.isfinite(v) for v in steps["loss"]))
    early = _median(norms[:10])
    peak = max((v for v in norms if math.isfinite(v)), default=math.nan)
    growth = peak / early if early > 0 else math.inf
    out["exploding"] = {"holds": bool(nonfinite or growth >= EXPLODE_FACTOR),
                        "nonfinite": nonfinite, "peak_over_early": growth}
    dead = max(m["dead"].values(), default=0.0)
    out["dying_relu"] = {"holds": bool(dead >= DEAD_SHARE), "max_dead_share": dead}
    sat = max(m["saturated"].values(), default=0.0)
    out["saturation"] = {"holds": bool(sat >= SATURATED_SHARE), "max_saturated_share": sat}
    update = _median(steps["update_ratio"])
    first, last = m["first_loss"], epochs["train_loss"][-1]
    drop = (first - last) / first if first > 0 and math.isfinite(last) else math.nan
    out["tiny_lr"] = {"holds": bool(update < TINY_UPDATE and drop < TINY_LOSS_DROP),
                      "median_update_ratio": update, "loss_drop": drop}
    losses = [m["first_loss"], *epochs["train_loss"]]
    rises = sum(b - a > RISE * m["first_loss"] for a, b in zip(losses, losses[1:], strict=False))
    share = rises / max(1, len(losses) - 1)
    out["oscillating"] = {"holds": bool(share >= RISE_SHARE), "rise_share": share}
    mm = m["mismatch"]
    out["mismatch"] = {"holds": bool(mm["structural"] and mm["outputs_are_probabilities"]
                                     and mm["grad_ratio"] < 1.0), **mm}
    return out


def confirmation(run: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """(confirmed, why not, the other faults' signatures present)."""
    sig = signatures(run)
    present = [c for c in FAULTS if sig[c]["holds"]]
    fault = run["fault"]
    if fault == "healthy":
        if run["accuracy"] < run["min_accuracy"]:
            return False, f"accuracy {run['accuracy']:.3f} < {run['min_accuracy']}", present
        if present:
            return False, "fault signature: " + ", ".join(present), present
        return True, "", present
    if not sig[fault]["holds"]:
        numbers = {k: v for k, v in sig[fault].items() if k != "holds"}
        return False, f"{fault} signature absent: {numbers}", present
    return True, "", [c for c in present if c != fault]


# --------------------------------------------------------------------------- the set-ups


def _dense(hidden: list[int], activation: str, init: str, **kw: Any) -> dict[str, Any]:
    return {"hidden": hidden, "activation": activation, "init": init, **kw}


def _setups() -> list[Setup]:
    s: list[Setup] = []
    add = s.append
    digits = {"epochs": 8, "batch_size": 64}
    # ---- vanishing: deep sigmoid nets with SGD; recurrent nets reading only the last step
    add(Setup("van-sigmoid8-sgd-circles", "vanishing", "deep sigmoid", "dense", "circles",
              _dense([32] * 8, "sigmoid", "glorot_uniform"), lr=0.1, quick=True))
    add(Setup("van-sigmoid6-sgd-moons", "vanishing", "deep sigmoid", "dense", "moons",
              _dense([32] * 6, "sigmoid", "random_normal"), lr=0.1))
    add(Setup("van-sigmoid7-sgd-blobs", "vanishing", "deep sigmoid", "dense", "blobs",
              _dense([24] * 7, "sigmoid", "glorot_normal"), lr=0.05))
    add(Setup("van-lstm-T150", "vanishing", "long sequence", "lstm", "seq_first",
              {"hidden": 32}, optimizer="adam", lr=1e-3, epochs=8, batch_size=50,
              data_kwargs={"n": 500, "T": 150}, quick=True))
    add(Setup("van-rnn-T100", "vanishing", "long sequence", "rnn", "seq_first",
              {"hidden": 32}, lr=0.05, epochs=10, batch_size=50,
              data_kwargs={"n": 500, "T": 100}))
    # ---- exploding: growth from the start (to overflow), and a spike mid-run
    add(Setup("exp-relu5-bigInit-sgd", "exploding", "steady: large init", "dense", "moons",
              _dense([64] * 5, "relu", "normal:1.5"), lr=0.01, quick=True))
    add(Setup("exp-relu4-highlr-sgd-blobs", "exploding", "steady: lr too high", "dense",
              "blobs", _dense([64] * 4, "relu", "he_normal"), lr=1.0, momentum=0.9))
    add(Setup("exp-elu3-lrbump-moons", "exploding", "mid-run: lr bump", "dense", "moons",
              _dense([32] * 3, "elu", "he_normal"), lr=0.05, lr_peak=1.0, quick=True))
    add(Setup("exp-elu3-lrbump-blobs", "exploding", "mid-run: lr bump", "dense", "blobs",
              _dense([32] * 3, "elu", "he_normal"), lr=0.02, lr_peak=0.5, momentum=0.9))
    # ---- dying ReLU
    add(Setup("dead-relu-negbias", "dying_relu", "negative bias", "dense", "moons",
              _dense([32] * 3, "relu", "he_normal", bias_init=-3.0), lr=0.05, quick=True))
    add(Setup("dead-relu-negbias-first", "dying_relu", "negative bias, first layer", "dense",
              "circles", _dense([32] * 3, "relu", "he_normal", bias_init=[-4.0, 0.0, 0.0]),
              lr=0.05))
    add(Setup("dead-relu-negbias-first-adam", "dying_relu", "negative bias, first layer",
              "dense", "blobs", _dense([32] * 3, "relu", "he_normal", bias_init=[-4.0, 0.0, 0.0]),
              optimizer="adam", lr=1e-3))
    add(Setup("dead-cnn-negbias", "dying_relu", "negative bias", "cnn", "digits",
              {"bias_init": -6.0}, lr=0.05, **digits))
    add(Setup("dead-cnn-highlr", "dying_relu", "lr too high", "cnn", "digits", {}, lr=0.5,
              **digits))
    # ---- saturation
    add(Setup("sat-tanh-bigInit", "saturation", "large weights", "dense", "moons",
              _dense([32] * 2, "tanh", "normal:4.0"), lr=0.05, quick=True))
    add(Setup("sat-sigmoid-bigInit", "saturation", "large weights", "dense", "circles",
              _dense([32] * 2, "sigmoid", "normal:6.0"), lr=0.1))
    add(Setup("sat-tanh-rawinputs", "saturation", "unstandardised inputs", "dense", "blobs",
              _dense([32] * 2, "tanh", "glorot_uniform"), lr=0.01,
              data_kwargs={"scale": 100.0}))
    add(Setup("sat-sigmoid-rawinputs", "saturation", "unstandardised inputs", "dense",
              "moons", _dense([32] * 3, "sigmoid", "glorot_uniform"), optimizer="adam",
              lr=1e-3, data_kwargs={"scale": 100.0}))
    # ---- tiny learning rate
    add(Setup("tiny-sgd-relu", "tiny_lr", "tiny lr", "dense", "moons",
              _dense([32] * 3, "relu", "he_normal"), lr=3e-7, epochs=15, quick=True))
    add(Setup("tiny-sgd-tanh-blobs", "tiny_lr", "tiny lr", "dense", "blobs",
              _dense([32] * 3, "tanh", "glorot_uniform"), lr=1e-6, epochs=15))
    add(Setup("tiny-sgd-cnn", "tiny_lr", "tiny lr", "cnn", "digits", {}, lr=1e-6,
              epochs=6, batch_size=64))
    add(Setup("tiny-adam-transformer", "tiny_lr", "tiny lr", "transformer", "tokens", {},
              optimizer="adam", lr=1e-8, epochs=8))
    add(Setup("tiny-adam-lstm", "tiny_lr", "tiny lr", "lstm", "seq_sum", {"hidden": 32},
              optimizer="adam", lr=1e-8, epochs=6, data_kwargs={"n": 800, "T": 6}))
    # ---- oscillating loss: momentum/lr above the stable range
    add(Setup("osc-elu-mom-blobs", "oscillating", "momentum 0.98, lr 0.1", "dense", "blobs",
              _dense([32] * 2, "elu", "he_normal"), lr=0.1, momentum=0.98,
              data_kwargs={"std": 2.0}))
    add(Setup("osc-cnn-leaky-mom", "oscillating", "momentum 0.99", "cnn", "digits",
              {"activation": "leaky_relu"}, lr=0.05, momentum=0.99, epochs=10, batch_size=64,
              quick=True))
    add(Setup("osc-resnet-mom", "oscillating", "momentum 0.99", "resnet", "digits", {},
              lr=0.1, momentum=0.99, **digits))
    add(Setup("osc-transformer-mom", "oscillating", "momentum 0.99", "transformer", "tokens",
              {}, lr=0.1, momentum=0.99, epochs=15))
    # ---- output activation / loss mismatch
    add(Setup("mis-softmax-ce-blobs", "mismatch", "softmax + CrossEntropyLoss", "dense",
              "blobs", _dense([32] * 2, "relu", "he_normal", output="softmax"),
              optimizer="adam", lr=1e-2, quick=True))
    add(Setup("mis-sigmoid-bcelogits-moons", "mismatch", "sigmoid + BCEWithLogitsLoss",
              "dense", "moons", _dense([32] * 2, "relu", "he_normal", output="sigmoid"),
              optimizer="adam", lr=1e-2, loss="bce_logits"))
    add(Setup("mis-sigmoid-ce-blobs", "mismatch", "sigmoid + CrossEntropyLoss", "dense",
              "blobs", _dense([32] * 2, "tanh", "glorot_uniform", output="sigmoid"), lr=0.1))
    add(Setup("mis-softmax-ce-cnn", "mismatch", "softmax + CrossEntropyLoss", "cnn",
              "digits", {"output": "softmax"}, optimizer="adam", lr=1e-3, **digits))
    add(Setup("mis-softmax-ce-transformer", "mismatch", "softmax + CrossEntropyLoss",
              "transformer", "tokens", {"output": "softmax"}, optimizer="adam", lr=3e-3,
              epochs=10))
    # ---- healthy, including the cases that used to raise false alarms
    add(Setup("ok-relu-adam-moons", "healthy", "relu adam", "dense", "moons",
              _dense([32] * 3, "relu", "he_normal"), optimizer="adam", lr=1e-2,
              min_accuracy=0.95, quick=True))
    add(Setup("ok-relu-sgd-circles", "healthy", "relu sgd", "dense", "circles",
              _dense([32] * 3, "relu", "he_uniform"), lr=0.1, epochs=50, min_accuracy=0.95))
    add(Setup("ok-relu-adam-dead-blobs", "healthy", "relu with some dead units", "dense",
              "blobs", _dense([16] * 3, "relu", "he_normal"), optimizer="adam", lr=3e-2,
              min_accuracy=0.85))
    add(Setup("ok-relu-sgd-dead-moons", "healthy", "relu with some dead units", "dense",
              "moons", _dense([16] * 4, "relu", "he_normal"), lr=0.3, min_accuracy=0.95))
    add(Setup("ok-tanh6-sgd-noisymoons", "healthy", "deep tanh", "dense", "moons",
              _dense([32] * 6, "tanh", "glorot_uniform"), lr=0.05, min_accuracy=0.8,
              data_kwargs={"noise": 0.3}, quick=True))
    add(Setup("ok-tanh5-adam-circles", "healthy", "deep tanh", "dense", "circles",
              _dense([32] * 5, "tanh", "glorot_normal"), optimizer="adam", lr=3e-3,
              min_accuracy=0.8, data_kwargs={"noise": 0.15}))
    add(Setup("ok-elu-adam-flipped", "healthy", "noisy labels", "dense", "moons",
              _dense([32] * 3, "elu", "he_normal"), optimizer="adam", lr=3e-3,
              min_accuracy=0.75, data_kwargs={"flip": 0.3}))
    add(Setup("ok-relu-sgd-noisymoons", "healthy", "noisy labels", "dense", "moons",
              _dense([32] * 2, "relu", "he_normal"), lr=0.05, momentum=0.9,
              min_accuracy=0.8, data_kwargs={"noise": 0.3}))
    add(Setup("ok-sigmoid2-adam-blobs", "healthy", "shallow sigmoid", "dense", "blobs",
              _dense([32] * 2, "sigmoid", "glorot_uniform"), optimizer="adam", lr=1e-2,
              min_accuracy=0.85))
    add(Setup("ok-cnn-sgd-digits", "healthy", "cnn", "cnn", "digits", {}, lr=0.05,
              momentum=0.9, min_accuracy=0.95, quick=True, **digits))
    add(Setup("ok-resnet-adam-digits", "healthy", "resnet", "resnet", "digits", {},
              optimizer="adam", lr=3e-3, min_accuracy=0.95, **digits))
    add(Setup("ok-transformer-adam", "healthy", "transformer", "transformer", "tokens", {},
              optimizer="adam", lr=3e-3, epochs=15, min_accuracy=0.9))
    add(Setup("ok-lstm-adam-seqsum", "healthy", "lstm", "lstm", "seq_sum",
              {"hidden": 32}, optimizer="adam", lr=1e-2, epochs=10,
              data_kwargs={"n": 800, "T": 20}, min_accuracy=0.9))
    return s


SETUPS: list[Setup] = _setups()


def quick_setups() -> list[Setup]:
    """The ``--quick`` subset: the set-ups marked quick, first seed only."""
    return [replace(setup, seeds=setup.seeds[:1]) for setup in SETUPS if setup.quick]
