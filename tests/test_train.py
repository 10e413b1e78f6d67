"""gradsight.fit: learning the articles' examples, matching a PyTorch loop, guards and hooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_moons
from sklearn.model_selection import train_test_split

from gradsight import nn, optim
from gradsight.engine.train import Callback, History, TrainContext, evaluate, fit
from gradsight.errors import DataError, InvalidValueError, ShapeError, UnknownNameError

CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)


@pytest.mark.parametrize(("gate", "targets"), [("OR", [0, 1, 1, 1]), ("AND", [0, 0, 0, 1])])
def test_the_articles_single_sigmoid_neuron_learns_or_and_and(gate: str,
                                                               targets: list[int]) -> None:
    # the articles: ŷ = σ(wᵀx + b), quadratic cost, w ← w − η ∂C/∂w
    model = nn.mlp("2-1", output_activation="sigmoid", seed=0)
    history = fit(model, CORNERS, targets, loss="quadratic", optimizer=optim.SGD(lr=2.0),
                  epochs=500, batch_size=4, progress=False)
    predicted = (model.predict(CORNERS)[:, 0] > 0.5).astype(int)
    assert predicted.tolist() == targets, gate
    assert history.final["accuracy"] == 1.0
    assert history.loss[-1] < history.loss[0] / 10


def test_tanh_2_4_1_network_solves_xor() -> None:
    model = nn.mlp("2-4-1", activation="tanh", output_activation="sigmoid", seed=0)
    history = fit(model, CORNERS, [0, 1, 1, 0], loss="quadratic", optimizer=optim.SGD(lr=1.0),
                  epochs=1000, batch_size=4, progress=False)
    assert ((model.predict(CORNERS)[:, 0] > 0.5).astype(int)).tolist() == [0, 1, 1, 0]
    assert history.final["loss"] < 0.01


def test_relu_network_on_moons_reaches_95_percent_held_out() -> None:
    X, y = make_moons(n_samples=600, noise=0.15, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    model = nn.mlp("2-16-16-2", activation="relu", init="he_normal", seed=0)
    history = fit(model, X_train, y_train, loss="cross_entropy", optimizer=optim.Adam(lr=0.01),
                  epochs=60, batch_size=32, validation=(X_test, y_test), progress=False)
    assert history.final["val_accuracy"] >= 0.95
    assert evaluate(model, X_test, y_test, "cross_entropy")[1] == history.final["val_accuracy"]


def test_mlp_on_digits_reaches_90_percent_test_accuracy() -> None:
    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 1e-8
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    model = nn.mlp("64-32-10", activation="tanh", dtype="float32", seed=0)
    history = fit(model, X_train, y_train, loss="cross_entropy",
                  optimizer=optim.SGD(lr=0.1, momentum=0.9), epochs=15, batch_size=32,
                  validation=(X_test, y_test), progress=False)
    predicted = np.argmax(model.predict(X_test), axis=1)
    assert np.mean(predicted == y_test) >= 0.90
    assert history.final["val_accuracy"] == pytest.approx(np.mean(predicted == y_test))
    assert all(p.dtype == np.float32 for p in model.parameters())


def _torch_twin(model: nn.Sequential):
    torch = pytest.importorskip("torch")
    modules = []
    for layer in model.layers:
        if isinstance(layer, nn.Dense):
            linear = torch.nn.Linear(layer.n_in, layer.n_out, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.tensor(layer.W.T))
                linear.bias.copy_(torch.tensor(layer.b))
            modules.append(linear)
        else:
            activation = {"sigmoid": torch.nn.Sigmoid(), "tanh": torch.nn.Tanh()}
            modules.append(activation[layer.activation.name])
    return torch, torch.nn.Sequential(*modules)


@pytest.mark.parametrize("momentum", [0.0, 0.9])  # 0: the fused SGD step (BLAS axpy)
def test_fit_reproduces_a_pytorch_training_loop_in_float64(momentum: float) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, size=50)
    model = nn.mlp("4-6-5-3", activation="tanh", seed=1)
    torch, twin = _torch_twin(model)
    history = fit(model, X, y, loss="cross_entropy",
                  optimizer=optim.SGD(lr=0.1, momentum=momentum), epochs=3, batch_size=16,
                  shuffle=False, progress=False)
    reference = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=momentum)
    X_t, y_t, losses = torch.tensor(X), torch.tensor(y), []
    for _ in range(3):
        for start in range(0, 50, 16):
            reference.zero_grad()
            loss = torch.nn.functional.cross_entropy(twin(X_t[start:start + 16]),
                                                     y_t[start:start + 16])
            loss.backward()
            reference.step()
            losses.append(loss.item())
    np.testing.assert_allclose(history.batch_losses, losses, rtol=1e-12)
    linears = [m for m in twin if isinstance(m, torch.nn.Linear)]
    for layer, linear in zip(model.dense_layers, linears, strict=True):
        np.testing.assert_allclose(layer.W, linear.weight.detach().numpy().T, rtol=1e-10)
        np.testing.assert_allclose(layer.b, linear.bias.detach().numpy(), rtol=1e-10)
    assert history.steps == 12 and len(history) == 3
    # epoch loss: batch costs weighted by batch size (16, 16, 16, 2)
    weights = np.array([16, 16, 16, 2]) / 50
    assert history.loss[0] == pytest.approx(float(np.dot(losses[:4], weights)), rel=1e-12)


def test_fit_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, size=40)

    def run(seed: int) -> tuple[list[np.ndarray], History]:
        model = nn.mlp("3-5-2", activation="relu", seed=0)
        history = fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.1),
                      epochs=3, batch_size=8, seed=seed, progress=False)
        return model.get_weights(), history

    (first, h1), (second, h2), (other, _) = run(5), run(5), run(6)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert h1.batch_losses == h2.batch_losses and h1.epochs == h2.epochs
    assert any(not np.array_equal(a, c) for a, c in zip(first, other, strict=True))


class Recorder(Callback):
    """Keeps a copy of the weights after every applied step and the order of the hooks."""

    def __init__(self) -> None:
        self.weights: list[list[np.ndarray]] = []
        self.calls: list[str] = []

    def on_train_begin(self, ctx: TrainContext) -> None:
        self.weights.append(ctx.model.get_weights())
        self.calls.append("begin")

    def on_after_backward(self, ctx: TrainContext) -> None:
        self.calls.append(f"after_backward {ctx.epoch} {ctx.step}")

    def on_batch_end(self, ctx: TrainContext) -> None:
        self.weights.append(ctx.model.get_weights())
        self.calls.append(f"batch_end {ctx.epoch} {ctx.step}")

    def on_epoch_end(self, ctx: TrainContext) -> None:
        self.calls.append(f"epoch_end {ctx.epoch}")

    def on_train_end(self, ctx: TrainContext) -> None:
        self.calls.append("end")


def test_nan_guard_stops_on_an_absurd_learning_rate_and_keeps_finite_weights() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)), rng.normal(size=64) * 10
    model = nn.mlp("3-16-16-1", activation="relu", init="he_normal", seed=0)
    recorder = Recorder()
    history = fit(model, X, y, loss="quadratic", optimizer=optim.SGD(lr=1e6), epochs=50,
                  batch_size=8, callbacks=[recorder], progress=False)
    assert history.stopped is not None and history.stopped.startswith("non-finite")
    assert "epoch " in history.stopped and "step " in history.stopped
    assert "dense" in history.stopped or "output of layer" in history.stopped
    assert all(np.isfinite(p).all() for p in model.parameters())
    # the model keeps the weights of the last applied (finite) step
    for kept, last in zip(model.get_weights(), recorder.weights[-1], strict=True):
        np.testing.assert_array_equal(kept, last)
    assert history.steps == len(recorder.weights) - 1 == len(history.batch_losses)
    assert recorder.calls[-1] == "end"


class NaNBackward(nn.Activation):
    """An activation whose backward pass produces NaN (a bug a user might write)."""

    def backward(self, dA: np.ndarray) -> np.ndarray:
        return super().backward(dA) * np.nan


def test_nan_guard_names_the_layer_with_a_non_finite_gradient() -> None:
    model = nn.Sequential([nn.Dense(2, 3, seed=0), NaNBackward("tanh"), nn.Dense(3, 1, seed=1)])
    before = model.get_weights()
    history = fit(model, CORNERS, [0, 1, 1, 0], optimizer=optim.SGD(lr=0.1), epochs=2,
                  batch_size=2, progress=False)
    assert history.stopped.startswith(
        "non-finite gradient ∂C/∂W, ∂C/∂b of layer dense0 at epoch 0, step 0 (batch 0)")
    assert history.steps == 0 and history.epochs == []
    for kept, original in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, original)


class Exploding:
    """An optimizer whose update overflows (gradients stay finite)."""

    lr = 1.0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for p in params:
            p *= 1e308
            p *= 1e308


def test_an_update_that_makes_weights_non_finite_is_undone() -> None:
    model = nn.mlp("2-3-1", seed=0)
    before = model.get_weights()
    history = fit(model, CORNERS, [0, 1, 1, 0], optimizer=Exploding(), epochs=2,
                  batch_size=4, progress=False)
    assert history.stopped.startswith("non-finite weights of dense0 after the update")
    assert "epoch 0, step 0" in history.stopped
    for kept, original in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, original)


@pytest.mark.parametrize("with_callback", [False, True])
def test_plain_sgd_update_that_overflows_is_undone(with_callback: bool) -> None:
    model = nn.mlp("2-3-1", activation="linear", seed=0)
    before = model.get_weights()
    history = fit(model, CORNERS, [100.0, -100.0, 100.0, -100.0],
                  optimizer=optim.SGD(lr=1e307), epochs=2, batch_size=4,
                  callbacks=[Recorder()] if with_callback else [], progress=False)
    assert history.stopped.startswith("non-finite weights of dense")
    assert "the update was undone" in history.stopped and history.steps == 0
    for kept, original in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, original)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes", ["3-4-2", "120-90-2"])  # 10,800 weights: several chunks
def test_plain_sgd_step_equals_the_optimizer_rule(sizes: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    n_in = int(sizes.split("-")[0])
    X, y = rng.normal(size=(12, n_in)), rng.integers(0, 2, size=12)
    fused = nn.mlp(sizes, dtype=dtype, seed=0)
    reference = nn.mlp(sizes, dtype=dtype, seed=0)
    fit(fused, X, y, "cross_entropy", optim.SGD(lr=0.3), epochs=2, batch_size=12, progress=False)
    sgd, cost = optim.SGD(lr=0.3), nn.loss("cross_entropy")
    for _ in range(2):
        reference.backward(cost.gradient(reference.forward(X), y))
        sgd.step(reference.parameters(), reference.gradients())
    tolerance = 1e-14 if dtype == "float64" else 1e-6  # BLAS may fuse the multiply-add
    for a, b in zip(fused.parameters(), reference.parameters(), strict=True):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)
    untrained = nn.mlp(sizes, dtype=dtype, seed=0).parameters()[0]
    assert fused.parameters()[0].ravel()[-1] != untrained.ravel()[-1]  # the last chunk moved


class Interrupt(Callback):
    def __init__(self, at_step: int, hook: str) -> None:
        self.at_step, self.hook = at_step, hook

    def on_after_backward(self, ctx: TrainContext) -> None:
        if self.hook == "after_backward" and ctx.step == self.at_step:
            raise KeyboardInterrupt

    def on_batch_end(self, ctx: TrainContext) -> None:
        if self.hook == "batch_end" and ctx.step == self.at_step:
            raise KeyboardInterrupt


@pytest.mark.parametrize(("hook", "applied"), [("batch_end", 6), ("after_backward", 5)])
def test_ctrl_c_leaves_a_usable_model_and_history(hook: str, applied: int) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2)), rng.integers(0, 2, size=40)
    model = nn.mlp("2-4-2", activation="tanh", seed=0)
    recorder = Recorder()
    history = fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.1), epochs=5,
                  batch_size=4, callbacks=[Interrupt(5, hook), recorder], progress=False)
    assert history.stopped == "interrupted"
    assert history.steps == applied == len(history.batch_losses)
    assert recorder.calls[-1] == "end"
    assert np.isfinite(model.predict(X)).all()
    assert history.to_dict()["stopped"] == "interrupted"


def test_callback_hooks_order_context_and_stop() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 2)), rng.normal(size=(10, 1))

    class Inspect(Recorder):
        def on_after_backward(self, ctx: TrainContext) -> None:
            super().on_after_backward(ctx)
            # the gradients are those of the batch, before the update
            check = ctx.model.copy()
            cost = nn.loss("quadratic")
            check.backward(cost.gradient(check.forward(ctx.X_batch), ctx.y_batch))
            for ours, expected in zip(ctx.model.gradients(), check.gradients(), strict=True):
                np.testing.assert_allclose(ours, expected, rtol=1e-12)
            assert ctx.batch_loss == pytest.approx(cost.value(ctx.output, ctx.y_batch))

        def on_batch_end(self, ctx: TrainContext) -> None:
            super().on_batch_end(ctx)
            if ctx.step == 3:
                ctx.stop_training, ctx.stop_reason = True, "enough"

    inspect = Inspect()
    history = fit(nn.mlp("2-3-1", seed=0), X, y, optimizer=optim.SGD(lr=0.1), epochs=4,
                  batch_size=4, shuffle=True, callbacks=[inspect], progress=False)
    assert inspect.calls == [
        "begin", "after_backward 0 0", "batch_end 0 0", "after_backward 0 1", "batch_end 0 1",
        "after_backward 0 2", "batch_end 0 2", "epoch_end 0", "after_backward 1 3",
        "batch_end 1 3", "end",
    ]
    assert history.stopped == "enough" and history.steps == 4 and len(history) == 1
    assert history.final["accuracy"] is None  # regression targets


def test_validation_metrics_are_computed_on_the_end_of_epoch_model() -> None:
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 2, size=30)
    Xv, yv = rng.normal(size=(12, 3)), rng.integers(0, 2, size=12)
    model = nn.mlp("3-4-1", activation="sigmoid", seed=0)
    history = fit(model, X, y, loss="bce_with_logits", optimizer=optim.SGD(lr=0.5), epochs=2,
                  batch_size=30, validation=(Xv, yv), progress=False)
    val_loss, val_accuracy = evaluate(model, Xv, yv, "bce_with_logits")
    assert history.final["val_loss"] == pytest.approx(val_loss, rel=1e-12)
    assert history.final["val_accuracy"] == val_accuracy
    logits = model.predict(Xv)[:, 0]
    assert val_accuracy == np.mean((logits > 0).astype(int) == yv)  # σ(z) > 0.5 ⇔ z > 0
    # one batch per epoch: the epoch loss is the cost before that epoch's update
    assert history.loss == pytest.approx(history.batch_losses, rel=1e-12)
    assert set(history.epochs[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}


def test_float32_training_stays_float32() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 3, size=20)
    model = nn.mlp("3-5-3", activation="sigmoid", dtype="float32", seed=0)
    seen: list[np.dtype] = []

    class Dtypes(Callback):
        def on_after_backward(self, ctx: TrainContext) -> None:
            seen.extend([ctx.output.dtype, ctx.X_batch.dtype])
            seen.extend(g.dtype for g in ctx.model.gradients())

    fit(model, X, y, loss="cross_entropy", optimizer=optim.Adam(lr=0.01), epochs=2,
        batch_size=7, callbacks=[Dtypes()], progress=False)
    assert set(seen) == {np.dtype(np.float32)}
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_bad_input_raises_clear_errors() -> None:
    model = nn.mlp("3-4-2", seed=0)
    X, y = np.zeros((5, 3)), np.array([0, 1, 0, 1, 1])
    with pytest.raises(ShapeError, match=r"\(5, 4\)"):
        fit(model, np.zeros((5, 4)), y, "cross_entropy", progress=False)
    with pytest.raises(ShapeError, match="5 samples but y has shape \\(4,\\)"):
        fit(model, X, y[:4], "cross_entropy", progress=False)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match=r"X\[3, 1\] is nan"):
        fit(model, bad, y, "cross_entropy", progress=False)
    with pytest.raises(DataError, match="empty"):
        fit(model, np.zeros((0, 3)), [], "cross_entropy", progress=False)
    with pytest.raises(DataError, match=r"training y: label 2 .*0\.\.1"):
        fit(model, X, [0, 1, 2, 0, 1], "cross_entropy", progress=False)
    with pytest.raises(DataError, match=r"validation y: label 7"):
        fit(model, X, y, "cross_entropy", validation=(X, [0, 1, 7, 0, 1]), progress=False)
    with pytest.raises(DataError, match="validation X"):
        fit(model, X, y, "cross_entropy", validation=(bad, y), progress=False)
    with pytest.raises(UnknownNameError, match="quadratic"):
        fit(model, X, y, "hinge", progress=False)
    with pytest.raises(InvalidValueError, match="epochs"):
        fit(model, X, y, "cross_entropy", epochs=-1, progress=False)
    with pytest.raises(InvalidValueError, match="batch_size"):
        fit(model, X, y, "cross_entropy", batch_size=0, progress=False)
    with pytest.raises(InvalidValueError, match="optimizer"):
        fit(model, X, y, "cross_entropy", optimizer=0.1, progress=False)
    with pytest.raises(UnknownNameError, match="adam"):
        fit(model, X, y, "cross_entropy", optimizer="adamw", progress=False)
    with pytest.raises(InvalidValueError, match="Sequential"):
        fit("model", X, y, progress=False)


def test_progress_bar_only_on_a_terminal(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.mlp("2-1", seed=0)
    fit(model, CORNERS, [0, 1, 1, 1], epochs=2, batch_size=2, progress=True)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    fit(model, CORNERS, [0, 1, 1, 1], epochs=2, batch_size=2, progress=True)
    assert "epoch 2/2" in capsys.readouterr().err
    fit(model, CORNERS, [0, 1, 1, 1], epochs=2, batch_size=2, progress=False)
    assert capsys.readouterr().err == ""


def test_history_dict_and_html() -> None:
    model = nn.mlp("2-1", output_activation="sigmoid", seed=0)
    history = fit(model, CORNERS, [0, 1, 1, 1], optimizer="sgd", epochs=3, batch_size=2,
                  progress=False)
    data = history.to_dict()
    assert [e["epoch"] for e in data["epochs"]] == [0, 1, 2] and data["steps"] == 6
    assert len(data["batch_losses"]) == 6 and all(math.isfinite(v) for v in data["batch_losses"])
    assert "<table>" in history._repr_html_() and "val_loss" in history._repr_html_()
    assert "3 epochs" in repr(history)


@pytest.mark.parametrize("hook", ["on_train_begin", "on_train_end"])
def test_ctrl_c_in_the_first_or_last_hook_leaves_a_usable_model(hook):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    model = nn.mlp("2-3-1", output_activation="sigmoid", seed=0)

    class Interrupt(Callback):
        pass

    def interrupt(self, ctx):
        raise KeyboardInterrupt

    setattr(Interrupt, hook, interrupt)
    history = fit(model, X, [0, 1, 1, 0], loss="quadratic", epochs=3, batch_size=4,
                            callbacks=[Interrupt()], progress=False)
    assert history.stopped == "interrupted"
    assert history.steps == (0 if hook == "on_train_begin" else 3)
    assert np.isfinite(model.predict(X)).all()


def test_fit_one_of_many_turns_an_interrupted_run_into_a_keyboard_interrupt():
    from gradsight.engine.train import fit_one_of_many

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    model = nn.mlp("2-3-1", output_activation="sigmoid", seed=0)

    class Interrupt(Callback):
        def on_batch_end(self, ctx):
            if ctx.step == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_one_of_many(model, X, [0, 1, 1, 0], loss="quadratic", epochs=5, batch_size=2,
                        callbacks=[Interrupt()], progress=False)
    assert np.isfinite(model.predict(X)).all()  # fit left the model usable first
    history = fit_one_of_many(model, X, [0, 1, 1, 0], loss="quadratic", epochs=1,
                              batch_size=2, progress=False)
    assert history.stopped is None and history.steps == 2


def test_ctrl_c_stops_a_whole_multi_run_command_with_exit_130():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import gradsight.train as t\n"
        "real = t.fit\n"
        "def interrupted(*a, **k):\n"
        "    h = real(*a, **k)\n"
        "    h.stopped = 'interrupted'\n"
        "    return h\n"
        "t.fit = interrupted\n"
        "sys.argv = ['gradsight', 'vanish', '--hidden', '30,30', '--samples', '100',\n"
        "            '--seeds', '2', '--train-epochs', '1', '--quiet']\n"
        "from gradsight.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 130
    assert done.stderr.strip().splitlines() == ["error: interrupted"]


class NormsReader(Callback):
    """Asks ``ctx.norms`` at every step and keeps copies of what they should equal."""

    read_only = True

    def __init__(self) -> None:
        self.asked: list[tuple[list[float], list[float], list[float] | None]] = []
        self.expected: list[tuple[list[float], list[float], list[float]]] = []
        self.before: list[np.ndarray] = []
        self.pending: tuple[list[float], list[float]] | None = None

    def wants_norms(self, step: int) -> bool:
        return True

    def on_after_backward(self, ctx: TrainContext) -> None:
        assert ctx.norms is not None
        self.before = [p.copy() for p in ctx.model.parameters()]
        self.pending = ([float(np.sum(g.astype(np.float64) ** 2)) for g in ctx.model.gradients()],
                        [float(np.sum(p.astype(np.float64) ** 2)) for p in self.before])
        self.asked.append((list(ctx.norms.gradients()), list(ctx.norms.weights()), None))

    def on_batch_end(self, ctx: TrainContext) -> None:
        assert ctx.norms is not None and self.pending is not None
        updates = ctx.norms.updates()
        assert updates is not None
        grads, weights = self.asked[-1][:2]
        self.asked[-1] = (grads, weights, list(updates))
        change = [float(np.sum((p - b).astype(np.float64) ** 2))
                  for p, b in zip(ctx.model.parameters(), self.before, strict=True)]
        self.expected.append((*self.pending, change))


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("optimizer", [lambda: optim.SGD(lr=0.5), lambda: optim.Adam(lr=0.05)])
def test_callbacks_read_the_steps_norms_from_ctx_norms(fast: bool, optimizer) -> None:
    rng = np.random.default_rng(21)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, size=40)
    reader = NormsReader()
    fit(nn.mlp("3-5-2", activation="tanh", seed=2), X, y, loss="cross_entropy",
        optimizer=optimizer(), epochs=2, batch_size=8, callbacks=[reader], progress=False,
        fast=fast)
    assert len(reader.asked) == len(reader.expected) == 10
    for (grads, weights, updates), (grads_0, weights_0, change_0) in zip(
            reader.asked, reader.expected, strict=True):
        np.testing.assert_allclose(grads, grads_0, rtol=1e-12)
        np.testing.assert_allclose(weights, weights_0, rtol=1e-12)
        np.testing.assert_allclose(updates, change_0, rtol=1e-6)  # Δw = −rate·d: rounding
