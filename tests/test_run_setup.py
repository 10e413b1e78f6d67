"""The run's set-up (``history.setup``): how the network ends and what it is trained with.

Oracles: the construction of each test (which activation ends the model, which loss, how
many classes, which optimizer), the first loss recomputed by hand — with torch/NumPy
arithmetic, not the loss functions — on the same first batch from a copy of the initial
model, and the probabilities test done by the test itself on that batch's output (range,
row sums).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from gradsight import optim  # noqa: E402
from gradsight.adapters.torch import watch  # noqa: E402
from gradsight.adapters.torch._setup import SetupProbe  # noqa: E402
from gradsight.diagnostics import Monitor, history_from_json, history_to_json  # noqa: E402
from gradsight.diagnostics.history import RecordList  # noqa: E402
from gradsight.diagnostics.run_setup import (  # noqa: E402
    RunSetup,
    engine_setup,
    looks_like_probabilities,
)
from gradsight.engine import Activation, Sequential, mlp  # noqa: E402
from gradsight.engine.layers import Layer  # noqa: E402
from gradsight.engine.train import fit  # noqa: E402

F64 = torch.float64
KEYS = {"output_activation", "loss", "classes", "first_loss", "probabilities", "optimizer"}
N, D, C = 24, 5, 4


# ---- the test's own oracles ---------------------------------------------------------------------
def _probabilities(values, class_dim):
    """The test's own check: all in [0, 1] and rows along ``class_dim`` summing to 1."""
    values = torch.as_tensor(values, dtype=F64)
    inside = bool(((values >= 0) & (values <= 1)).all())
    if class_dim is None or not inside:
        return inside
    return bool(((values.sum(dim=class_dim) - 1).abs() <= 1e-3).all())


def _ce_by_hand(z, y):
    """mean over rows of log Σₖ e^(z_k) − z_y (z: (N, C) float64)."""
    return float((z.exp().sum(dim=1).log() - z[torch.arange(len(y)), y]).mean())


def _bce_by_hand(p, y):
    return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())


def _sigmoid_by_hand(z):
    return 1 / (1 + (-z).exp())


def _softmax_by_hand(z, dim=1):
    e = (z - z.max(dim=dim, keepdim=True).values).exp()
    return e / e.sum(dim=dim, keepdim=True)


def _data(seed=0, classes=C):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g, dtype=F64), torch.randint(0, classes, (N,),
                                                                       generator=g)


def _train(model, x, y, loss_fn=None, by_hand=None, optimizer="SGD", steps=3):
    """Train full-batch (step 0's batch is x); (setup, the initial model's output on x)."""
    with torch.no_grad():
        first_output = copy.deepcopy(model)(x)
    opt = getattr(torch.optim, optimizer)(model.parameters(), lr=0.05)
    with watch(model, optimizer=opt, loss_fn=loss_fn) as watcher:
        for _ in range(steps):
            opt.zero_grad()
            output = model(x)
            loss = loss_fn(output, y) if loss_fn is not None \
                else watcher.record_loss(by_hand(output, y))
            loss.backward()
            opt.step()
    assert watcher.setup is watcher.history.setup
    assert getattr(watcher.history, "setup", None) == getattr(watcher, "setup", None)
    return watcher.history.setup, first_output


def _mlp(*tail, out=C):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, out), *tail).to(F64)


# ---- PyTorch: the loss module's hook ------------------------------------------------------------
def test_softmax_module_into_cross_entropy_loss():
    x, y = _data()
    setup, out = _train(_mlp(nn.Softmax(dim=1)), x, y, nn.CrossEntropyLoss())
    assert set(setup) == KEYS
    assert setup["output_activation"] == "softmax" and setup["loss"] == "cross_entropy"
    assert setup["classes"] == C and setup["optimizer"] == "SGD"
    # the loss applied log-softmax to the probabilities: C = mean(log Σ e^p − p_y)
    assert setup["first_loss"] == pytest.approx(_ce_by_hand(out, y), rel=1e-12)
    assert _probabilities(out, 1) is True and setup["probabilities"] is True


def test_logits_into_cross_entropy_loss():
    x, y = _data()
    setup, out = _train(_mlp(), x, y, nn.CrossEntropyLoss(), optimizer="Adam")
    assert setup["output_activation"] is None and setup["loss"] == "cross_entropy"
    assert setup["classes"] == C and setup["optimizer"] == "Adam"
    assert setup["first_loss"] == pytest.approx(_ce_by_hand(out, y), rel=1e-12)
    assert _probabilities(out, 1) is False and setup["probabilities"] is False
    # a loss of random logits starts near the chance level ln C
    assert abs(setup["first_loss"] - math.log(C)) < 0.5


def test_sigmoid_into_bce_loss():
    x, labels = _data(classes=2)
    y = labels.to(F64).unsqueeze(1)
    setup, out = _train(_mlp(nn.Sigmoid(), out=1), x, y, nn.BCELoss())
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == ("sigmoid", "bce", 2)
    assert setup["first_loss"] == pytest.approx(_bce_by_hand(out, y), rel=1e-12)
    assert _probabilities(out, None) is True and setup["probabilities"] is True


def test_sigmoid_into_bce_with_logits_loss():
    x, labels = _data(classes=2)
    y = labels.to(F64).unsqueeze(1)
    setup, out = _train(_mlp(nn.Sigmoid(), out=1), x, y, nn.BCEWithLogitsLoss(),
                        optimizer="AdamW")
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        ("sigmoid", "bce_with_logits", 2)
    assert setup["optimizer"] == "AdamW"
    # the loss squashed the probabilities again: BCE of σ(p)
    assert setup["first_loss"] == pytest.approx(_bce_by_hand(_sigmoid_by_hand(out), y),
                                                rel=1e-12)
    assert _probabilities(out, None) is True and setup["probabilities"] is True


def test_log_softmax_into_nll_loss():
    x, y = _data()
    setup, out = _train(_mlp(nn.LogSoftmax(dim=1)), x, y, nn.NLLLoss())
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        ("log_softmax", "nll", C)
    assert setup["first_loss"] == pytest.approx(float(-out[torch.arange(N), y].mean()),
                                                rel=1e-12)
    assert _probabilities(out, 1) is False and setup["probabilities"] is False


def test_mse_regression():
    x, _ = _data()
    y = 3.0 * x[:, :1] - 1.0
    setup, out = _train(_mlp(out=1), x, y, nn.MSELoss())
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == (None, "mse", None)
    assert setup["first_loss"] == pytest.approx(float(((out - y) ** 2).mean()), rel=1e-12)
    assert setup["probabilities"] is _probabilities(out, None)


class _LanguageModel(nn.Module):
    """(B, T) tokens → (B, T, V) logits (or probabilities with ``softmax``)."""

    def __init__(self, vocabulary, softmax=False):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocabulary, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, vocabulary)
        self.softmax = softmax

    def forward(self, tokens):
        logits = self.head(torch.tanh(self.mix(self.embed(tokens))))
        return F.softmax(logits, dim=-1) if self.softmax else logits


@pytest.mark.parametrize("softmax", [False, True])
def test_language_model_output_reshaped_before_cross_entropy(softmax):
    B, T, V = 3, 5, 11
    g = torch.Generator().manual_seed(1)
    tokens, targets = torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T),
                                                                              generator=g)
    model = _LanguageModel(V, softmax).to(F64)
    with torch.no_grad():
        out = copy.deepcopy(model)(tokens)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, optimizer=opt, loss_fn=loss_fn) as watcher:
        for _ in range(2):
            opt.zero_grad()
            loss_fn(model(tokens).reshape(-1, V), targets.reshape(-1)).backward()
            opt.step()
    setup = watcher.history.setup
    assert setup["output_activation"] == ("softmax" if softmax else None)  # through the view
    assert setup["loss"] == "cross_entropy" and setup["classes"] == V
    assert setup["first_loss"] == pytest.approx(
        _ce_by_hand(out.reshape(-1, V), targets.reshape(-1)), rel=1e-12)
    assert _probabilities(out, -1) is softmax and setup["probabilities"] is softmax


# ---- PyTorch: record_loss, read from the loss's graph -------------------------------------------
class _FunctionalSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hidden, self.out = nn.Linear(D, 8), nn.Linear(8, C)

    def forward(self, x):
        return F.softmax(self.out(F.relu(self.hidden(x))), dim=1)


def test_functional_softmax_into_functional_cross_entropy_by_record_loss():
    x, y = _data()
    setup, out = _train(_FunctionalSoftmax().to(F64), x, y, by_hand=F.cross_entropy)
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        ("softmax", "cross_entropy", C)
    assert setup["first_loss"] == pytest.approx(_ce_by_hand(out, y), rel=1e-12)
    # measured on the softmax's own output, which autograd kept
    assert _probabilities(out, 1) is True and setup["probabilities"] is True


def test_logits_into_functional_cross_entropy_by_record_loss():
    x, y = _data()
    setup, out = _train(_mlp(), x, y, by_hand=F.cross_entropy)
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        (None, "cross_entropy", C)
    assert setup["first_loss"] == pytest.approx(_ce_by_hand(out, y), rel=1e-12)
    assert setup["probabilities"] is None  # the logits themselves are not kept by autograd


@pytest.mark.parametrize(("tail", "loss", "expected"), [
    ((nn.Sigmoid(),), F.binary_cross_entropy, ("sigmoid", "bce", 2)),
    ((), F.binary_cross_entropy_with_logits, (None, "bce_with_logits", 2)),
    ((nn.Tanh(),), F.mse_loss, ("tanh", "mse", None)),
    ((), F.l1_loss, (None, "l1", None)),
    ((), F.huber_loss, (None, "huber", None)),
])
def test_binary_and_regression_losses_by_record_loss(tail, loss, expected):
    x, labels = _data(classes=2)
    y = labels.to(F64).unsqueeze(1)
    setup, out = _train(_mlp(*tail, out=1), x, y, by_hand=loss)
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == expected
    by_hand = {"bce": lambda: _bce_by_hand(out, y),
               "bce_with_logits": lambda: _bce_by_hand(_sigmoid_by_hand(out), y),
               "mse": lambda: float(((out - y) ** 2).mean()),
               "l1": lambda: float((out - y).abs().mean()),
               "huber": lambda: float(torch.where((out - y).abs() < 1, 0.5 * (out - y) ** 2,
                                                  (out - y).abs() - 0.5).mean())}
    assert setup["first_loss"] == pytest.approx(by_hand[expected[1]](), rel=1e-12)
    if expected[1] == "l1":  # |output − target|: the output itself is not kept
        assert setup["probabilities"] is None
    else:
        assert setup["probabilities"] is _probabilities(out, None)


def test_log_softmax_then_nll_by_record_loss_is_cross_entropy():
    # F.cross_entropy is log_softmax then nll_loss: in the graph the two are the same thing
    x, y = _data()
    setup, out = _train(_mlp(nn.LogSoftmax(dim=1)), x, y, by_hand=F.nll_loss)
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        (None, "cross_entropy", C)
    assert setup["first_loss"] == pytest.approx(float(-out[torch.arange(N), y].mean()),
                                                rel=1e-12)


def test_nll_of_a_non_log_softmax_output_by_record_loss():
    x, y = _data()
    setup, out = _train(_mlp(nn.Softmax(dim=1)), x, y, by_hand=F.nll_loss)
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        ("softmax", "nll", C)
    assert setup["first_loss"] == pytest.approx(float(-out[torch.arange(N), y].mean()),
                                                rel=1e-12)
    assert _probabilities(out, 1) is True and setup["probabilities"] is True


def test_reduced_and_scaled_losses_are_looked_through():
    x, y = _data()
    half_mean = lambda out, t: F.cross_entropy(out, t, reduction="none").mean() / 2  # noqa: E731
    setup, out = _train(_mlp(nn.Sigmoid()), x, y, by_hand=half_mean)
    assert (setup["output_activation"], setup["loss"]) == ("sigmoid", "cross_entropy")
    assert setup["first_loss"] == pytest.approx(_ce_by_hand(out, y) / 2, rel=1e-12)
    assert _probabilities(out, 1) is False and setup["probabilities"] is False  # rows ≠ 1


def test_label_smoothing_by_record_loss_is_unknown_not_guessed():
    x, y = _data()
    smoothed = lambda out, t: F.cross_entropy(out, t, label_smoothing=0.1)  # noqa: E731
    setup, _ = _train(_mlp(), x, y, by_hand=smoothed)
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        ("unknown", "unknown", None)
    # with the module the kind is known from the class
    setup, _ = _train(_mlp(), x, y, nn.CrossEntropyLoss(label_smoothing=0.1))
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        (None, "cross_entropy", C)


def test_a_number_given_to_record_loss_and_no_loss_at_all():
    x, y = _data()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with watch(model, optimizer=opt) as watcher:
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        watcher.record_loss(loss.item())
        loss.backward()
        opt.step()
    assert watcher.setup == {"output_activation": "unknown", "loss": "unknown", "classes": None,
                             "first_loss": pytest.approx(loss.item(), rel=1e-15),
                             "probabilities": None, "optimizer": "SGD"}
    model = _mlp()
    with watch(model) as watcher:  # no optimizer, no loss
        nn.CrossEntropyLoss()(model(x), y).backward()
    assert watcher.setup == {"output_activation": "unknown", "loss": None, "classes": None,
                             "first_loss": None, "probabilities": None, "optimizer": None}


# ---- PyTorch: first step only, never guessed, never raised --------------------------------------
def test_the_setup_is_read_once_at_the_first_training_loss(monkeypatch):
    calls = []
    original = SetupProbe.from_module

    def counted(self, module, args):
        calls.append(args[0].grad_fn is not None)
        return original(self, module, args)

    monkeypatch.setattr(SetupProbe, "from_module", counted)
    x, y = _data()
    model = _mlp(nn.Softmax(dim=1))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    accumulated = []
    with watch(model, optimizer=opt, loss_fn=loss_fn) as watcher:
        with torch.no_grad():  # an evaluation first: not the training loss
            loss_fn(model(x), y)
        for _ in range(5):
            opt.zero_grad()
            for half in (slice(0, N // 2), slice(N // 2, N)):  # two accumulated losses
                loss = loss_fn(model(x[half]), y[half])
                accumulated.append(loss.item())
                loss.backward()
            opt.step()
    assert calls == [True]  # the first loss with a graph, and never again
    setup = watcher.setup
    assert setup["output_activation"] == "softmax"
    # the first step's loss: the mean of its two accumulated losses
    assert setup["first_loss"] == pytest.approx((accumulated[0] + accumulated[1]) / 2,
                                                rel=1e-12)


def test_anything_unexpected_while_reading_is_unknown_never_raised(monkeypatch):
    def broken(*args):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(SetupProbe, "_activation_of", broken)
    monkeypatch.setattr(SetupProbe, "_read_graph", broken)
    x, y = _data()
    setup, _ = _train(_mlp(nn.Softmax(dim=1)), x, y, nn.CrossEntropyLoss())
    assert (setup["output_activation"], setup["classes"], setup["probabilities"]) == \
        ("unknown", None, None)
    assert setup["loss"] == "cross_entropy" and setup["first_loss"] is not None
    setup, _ = _train(_mlp(), x, y, by_hand=F.cross_entropy)
    assert (setup["output_activation"], setup["loss"]) == ("unknown", "unknown")


class _OwnSoftmax(torch.autograd.Function):
    """A softmax of one's own: autograd sees only its Function node."""

    @staticmethod
    def forward(ctx, z):
        out = torch.softmax(z, dim=1)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return out * (grad - (grad * out).sum(dim=1, keepdim=True))


def test_a_custom_autograd_function_is_unknown():
    x, y = _data()
    model = _mlp()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with watch(model, optimizer=opt, loss_fn=loss_fn) as watcher:
        opt.zero_grad()
        probabilities = _OwnSoftmax.apply(model(x))
        loss_fn(probabilities, y).backward()
        opt.step()
    setup = watcher.setup
    assert setup["output_activation"] == "unknown" and setup["loss"] == "cross_entropy"
    # the values are still measured: the rows are probabilities
    assert _probabilities(probabilities.detach(), 1) is True and setup["probabilities"] is True


def test_under_torch_compile_the_output_activation_is_unknown():
    x, y = _data()
    torch.manual_seed(0)
    model = _mlp(nn.Softmax(dim=1))
    compiled = torch.compile(model, backend="aot_eager")
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with watch(compiled, optimizer=opt, loss_fn=loss_fn) as watcher:
        for _ in range(2):
            opt.zero_grad()
            out = compiled(x)
            assert "Compiled" in type(out.grad_fn).__name__  # what autograd shows
            loss_fn(out, y).backward()
            opt.step()
    setup = watcher.setup
    assert setup["output_activation"] == "unknown"  # a softmax, but not seen: not guessed
    assert setup["loss"] == "cross_entropy" and setup["classes"] == C


# ---- the NumPy engine ---------------------------------------------------------------------------
def _engine_data(classes):
    rng = np.random.default_rng(3)
    return rng.normal(size=(30, 3)), rng.integers(0, classes, 30)


def _engine_run(model, X, y, loss, optimizer, fast=True):
    """Full-batch fit (step 0's batch is all of X); (monitor, initial output on X)."""
    first_output = copy.deepcopy(model).forward(X)
    monitor = Monitor()
    fit(model, X, y, loss=loss, optimizer=optimizer, epochs=3, batch_size=len(X),
        callbacks=[monitor], progress=False, fast=fast)
    assert monitor.setup is monitor.history.setup
    assert isinstance(monitor.history, RecordList)
    return monitor, first_output


@pytest.mark.parametrize("fast", [True, False])
def test_engine_sigmoid_outputs_with_the_quadratic_cost(fast):
    X, labels = _engine_data(3)
    Y = np.eye(3)[labels]
    model = mlp("3-6-3", activation="relu", output_activation="sigmoid", seed=0)
    monitor, a = _engine_run(model, X, labels, "quadratic", optim.SGD(lr=0.1), fast)
    setup = getattr(monitor, "setup", None)
    assert setup == {"output_activation": "sigmoid", "loss": "mse", "classes": None,
                     "first_loss": pytest.approx(((a - Y) ** 2).sum() / (2 * len(X)),
                                                 rel=1e-12),
                     "probabilities": True, "optimizer": "SGD"}
    assert _probabilities(a, None) is True


def test_engine_logits_with_cross_entropy():
    X, y = _engine_data(3)
    model = mlp("3-6-3", activation="tanh", seed=1)
    monitor, z = _engine_run(model, X, y, "cross_entropy", optim.Adam(lr=0.01))
    by_hand = _ce_by_hand(torch.from_numpy(z), torch.from_numpy(y))
    assert monitor.history.setup == {
        "output_activation": None, "loss": "cross_entropy", "classes": 3,
        "first_loss": pytest.approx(by_hand, rel=1e-12),
        "probabilities": _probabilities(z, 1), "optimizer": "Adam"}
    assert _probabilities(z, 1) is False


def test_engine_logit_with_bce_with_logits_and_the_torch_names_of_optimizers():
    X, y = _engine_data(2)
    model = mlp("3-6-1", activation="relu", seed=2)
    monitor, z = _engine_run(model, X, y, "bce_with_logits", optim.RMSProp(lr=0.01))
    targets = torch.from_numpy(y.astype(float)).unsqueeze(1)
    by_hand = _bce_by_hand(_sigmoid_by_hand(torch.from_numpy(z)), targets)
    setup = monitor.setup
    assert (setup["output_activation"], setup["loss"], setup["classes"]) == \
        (None, "bce_with_logits", 2)
    assert setup["first_loss"] == pytest.approx(by_hand, rel=1e-12)
    assert setup["optimizer"] == "RMSprop"  # as torch.optim spells it
    monitor, _ = _engine_run(mlp("3-6-1", seed=2), X, y, "bce_with_logits",
                             optim.AdaGrad(lr=0.01))
    assert monitor.setup["optimizer"] == "Adagrad"


class _Softmax(Layer):
    """A softmax output layer of one's own (the engine has none)."""

    name = "softmax"

    def forward(self, z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        self.output = e / e.sum(axis=1, keepdims=True)
        return self.output

    def backward(self, delta):
        a = self.output
        return a * (delta - (delta * a).sum(axis=1, keepdims=True))


def test_engine_softmax_layer_of_ones_own_into_cross_entropy():
    X, y = _engine_data(3)
    body = mlp("3-6-3", activation="relu", seed=4)
    model = Sequential([*body.layers, _Softmax()])
    monitor, p = _engine_run(model, X, y, "cross_entropy", optim.SGD(lr=0.1))
    setup = monitor.setup
    # a layer the engine does not know is not guessed from its name; its values are measured
    assert setup["output_activation"] == "unknown" and setup["classes"] == 3
    assert _probabilities(p, 1) is True and setup["probabilities"] is True
    assert setup["first_loss"] == pytest.approx(
        _ce_by_hand(torch.from_numpy(p), torch.from_numpy(y)), rel=1e-12)


def test_engine_setup_reads_the_last_layer():
    linear = Sequential([*mlp("2-3", seed=0).layers, Activation("linear")])
    setup = engine_setup(linear, None, None, None, None)
    assert setup == RunSetup(None, None, None, None, None, None)
    assert engine_setup(object(), None, None, None, None).output_activation == "unknown"


def test_a_history_without_a_setup():
    X, labels = _engine_data(3)
    monitor, _ = _engine_run(mlp("3-6-3", output_activation="sigmoid", seed=0), X, labels,
                             "quadratic", optim.SGD(lr=0.1))
    assert Monitor().setup is None and getattr([], "setup", None) is None
    reloaded = history_from_json(history_to_json(monitor))
    assert getattr(reloaded, "setup", None) is None  # the records only
    json.dumps(monitor.setup)  # plain data


# ---- the probabilities test itself --------------------------------------------------------------
@pytest.mark.parametrize(("values", "axis", "expected"), [
    ([[0.25, 0.75], [1.0, 0.0]], 1, True),
    ([[0.25, 0.75 + 9e-4]], 1, True),  # within 1e-3 of 1
    ([[0.25, 0.75 + 2e-3]], 1, False),
    ([[0.5, 0.5], [0.5, 0.5]], 0, True),
    ([[0.3], [0.9]], None, True),
    ([[0.3], [1.2]], None, False),
    ([[-0.1, 1.1]], 1, False),  # sums to 1, but not in [0, 1]
    ([[math.nan, 1.0]], None, False),
    ([], None, False),
])
def test_looks_like_probabilities(values, axis, expected):
    assert looks_like_probabilities(np.array(values), axis) is expected
    if len(values):  # the PyTorch adapter's test on the same values
        probe = SetupProbe(torch, None, None)
        assert bool(probe._looks_like_probabilities(torch.tensor(values, dtype=F64),
                                                    axis)) is expected
