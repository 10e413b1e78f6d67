"""The fast step of fit (gradsight.engine.fast): NumPy's BLAS kernels, the fast optimizer
updates, the fused SGD update and the guard.

Oracles: the plain step (``fit(..., fast=False)``, the readable engine), NumPy's own products,
the optimizers' own rule on stored gradients, and fit with a per-step callback, which turns
fusion off, for whole training runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradsight import Callback, Monitor, fit, nn, optim
from gradsight.engine.callbacks import History, TrainContext
from gradsight.engine.fast import blas as _blas
from gradsight.engine.fast.passes import FastPasses
from gradsight.engine.fast.step import FastStep
from gradsight.engine.fast.update import FastUpdate

DTYPES = [np.float32, np.float64]


def _tolerance(dtype: type) -> float:
    return 1e-5 if dtype == np.float32 else 1e-13


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_blas_is_reached_and_used(dtype: type) -> None:
    # NumPy's wheels bring OpenBLAS with 64-bit integer symbols: the kernels must be found,
    # or fit silently loses its fused update
    assert _blas.backend(dtype) == "numpy-blas"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "m", "k"), [(1, 1, 1), (7, 5, 3), (128, 70, 33)])
def test_product_kernel_accumulates_left_transposed_times_right(dtype: type, n: int, m: int,
                                                                k: int) -> None:
    rng = np.random.default_rng(n + m + k)
    left, right = rng.normal(size=(n, m)).astype(dtype), rng.normal(size=(n, k)).astype(dtype)
    out = rng.normal(size=(m, k)).astype(dtype)
    expected = out - 0.3 * (left.T.astype(np.float64) @ right)
    kernel = _blas.product_kernel(out, left, right)
    assert kernel is not None
    kernel(-0.3)
    np.testing.assert_allclose(out, expected, rtol=_tolerance(dtype), atol=_tolerance(dtype))
    # the vector form: out ← out + α·leftᵀ·v (a bias update with v = 1)
    vector, v = rng.normal(size=m).astype(dtype), rng.normal(size=n).astype(dtype)
    expected_vector = vector + 2.0 * (left.T.astype(np.float64) @ v)
    _blas.product_kernel(vector, left, v)(2.0)  # type: ignore[misc]
    np.testing.assert_allclose(vector, expected_vector, rtol=_tolerance(dtype),
                               atol=_tolerance(dtype))


def test_product_kernel_writes_only_its_rows_and_rebinds_to_a_new_batch_view() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(20, 4))
    right = rng.normal(size=(5, 3))
    block = rng.normal(size=(6, 3))
    untouched = block.copy()
    out = block[1:5]  # a row-slice: contiguous, inside a larger array
    kernel = _blas.product_kernel(out, data[0:5], right)
    assert kernel is not None
    kernel(1.0)
    np.testing.assert_allclose(block[1:5], untouched[1:5] + data[0:5].T @ right, rtol=1e-13)
    np.testing.assert_array_equal(block[[0, 5]], untouched[[0, 5]])
    before = block.copy()
    assert kernel.rebind(data[5:10])  # the next batch: same shape, a new view
    kernel(-1.0)
    np.testing.assert_allclose(block[1:5], before[1:5] - data[5:10].T @ right, rtol=1e-13)
    assert not kernel.rebind(data[0:4])  # another shape is refused


def test_product_kernel_refuses_what_blas_cannot_do_in_place() -> None:
    a, b = np.ones((4, 3)), np.ones((4, 2))
    assert _blas.product_kernel(np.ones((3, 2)), a, b) is not None
    assert _blas.product_kernel(np.ones((3, 2), np.float32), a, b) is None  # mixed dtypes
    assert _blas.product_kernel(np.ones((2, 3)).T, a, b) is None  # not C-contiguous
    assert _blas.product_kernel(np.ones((3, 2)), np.ones((3, 4)).T, b) is None
    assert _blas.product_kernel(np.ones((3, 3)), a, b) is None  # wrong shape
    read_only = np.ones((3, 2))
    read_only.flags.writeable = False
    assert _blas.product_kernel(read_only, a, b) is None
    assert _blas.product_kernel(np.ones((3, 2), int), a.astype(int), b.astype(int)) is None


def test_the_probe_rejects_functions_that_do_not_compute_the_product() -> None:
    def nothing(*args: object) -> None:
        return None

    fake = _blas._Functions(nothing, nothing, nothing, _blas.ctypes.c_int64,
                            _blas.ctypes.c_double)
    assert not _blas._probe(fake, np.dtype(np.float64))
    real = _blas._numpy_blas(np.dtype(np.float64))
    assert real is not None and _blas._probe(real, np.dtype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_axpy_kernel_matches_the_two_pass_update(dtype: type) -> None:
    rng = np.random.default_rng(1)
    param, d = rng.normal(size=(300, 70)).astype(dtype), rng.normal(size=(300, 70)).astype(dtype)
    expected = param.astype(np.float64) - 0.05 * d
    _blas.subtract_scaled(param, d, 0.05, {"scratch": np.empty_like(param)})
    np.testing.assert_allclose(param, expected, rtol=_tolerance(dtype), atol=_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_products_is_sgd_step_without_stored_gradients(dtype: type) -> None:
    rng = np.random.default_rng(2)
    layer = nn.Dense(9, 5, dtype=dtype, seed=0)
    X = rng.normal(size=(16, 9)).astype(dtype)
    layer.forward(X)
    layer.backward(rng.normal(size=(16, 5)).astype(dtype))  # stores ∂C/∂W = Xᵀδ, ∂C/∂b
    reference = [layer.W.copy(), layer.b.copy()]
    optim.SGD(lr=0.2).step(reference, [layer.grad_W, layer.grad_b])
    delta = layer.delta
    assert delta is not None
    update = FastUpdate(optim.SGD(lr=0.2))
    ones = np.ones(16, dtype=dtype)
    assert update.step_products([layer.W, layer.b], [(X, delta), (delta, ones)])
    for fused, ref in zip((layer.W, layer.b), reference, strict=True):
        np.testing.assert_allclose(fused, ref, rtol=_tolerance(dtype), atol=_tolerance(dtype))


@pytest.mark.parametrize("sgd", [optim.SGD(lr=0.1, momentum=0.9),
                                 optim.SGD(lr=0.1, weight_decay=0.01)])
def test_step_products_refuses_rules_that_are_not_plain(sgd: optim.SGD) -> None:
    W, a, d = np.ones((3, 2)), np.ones((4, 3)), np.ones((4, 2))
    assert not FastUpdate(sgd).step_products([W], [(a, d)])
    np.testing.assert_array_equal(W, np.ones((3, 2)))


def test_step_products_changes_nothing_when_one_array_cannot_be_fused() -> None:
    W, b = np.ones((3, 2)), np.ones(2)
    a, d = np.ones((4, 3)), np.ones((4, 2))
    update = FastUpdate(optim.SGD(lr=0.1))
    assert not update.step_products([W, b], [(a, d), (d[:, ::-1], np.ones(4))])
    np.testing.assert_array_equal(W, np.ones((3, 2)))
    np.testing.assert_array_equal(b, np.ones(2))


class EveryStep(Callback):
    """A callback that looks at every step (and so turns fusion off)."""

    def on_batch_end(self, ctx: TrainContext) -> None:
        pass


class EpochEnd(Callback):
    """A callback with only an epoch hook: it copies the stored gradients at each epoch end."""

    def __init__(self) -> None:
        self.gradients: list[list[np.ndarray]] = []

    def on_epoch_end(self, ctx: TrainContext) -> None:
        self.gradients.append([g.copy() for g in ctx.model.gradients()])


def _step(model: nn.Sequential, optimizer: object, callbacks: list) -> FastStep:
    return FastStep(model, nn.loss("cross_entropy"), optimizer, callbacks, History())


def test_fit_fuses_only_plain_sgd_without_per_step_callbacks() -> None:
    assert _step(nn.mlp("3-4-2", seed=0), optim.SGD(lr=0.1), []).fused(0)
    assert _step(nn.mlp("3-4-2", seed=0), optim.SGD(lr=0.1), [EpochEnd()]).fused(0)
    assert not _step(nn.mlp("3-4-2", seed=0), optim.SGD(lr=0.1), [EveryStep()]).fused(0)
    assert not _step(nn.mlp("3-4-2", seed=0), optim.SGD(lr=0.1, momentum=0.5), []).fused(0)
    assert not _step(nn.mlp("3-4-2", seed=0), optim.Adam(lr=0.1), []).fused(0)
    hooks = Callback()
    hooks.on_after_backward = lambda ctx: None  # type: ignore[method-assign]
    assert not _step(nn.mlp("3-4-2", seed=0), optim.SGD(lr=0.1), [hooks]).fused(0)

    class OwnDense(nn.Dense):
        pass

    own = nn.Sequential([OwnDense(3, 2, seed=0)])
    assert not _step(own, optim.SGD(lr=0.1), []).fused(0)


@pytest.mark.parametrize(("sizes", "activation", "loss", "shuffle"), [
    ("5-8-8-3", "sigmoid", "cross_entropy", False),
    ("5-8-8-3", "relu", "cross_entropy", True),
    ("5-6-1", "tanh", "quadratic", True),
    ("5-7-6-5-2", "leaky_relu", "bce_with_logits", False),
    ("5-3", "sigmoid", "quadratic", True),
])
def test_fused_fit_trains_exactly_like_the_unfused_rule(sizes: str, activation: str,
                                                        loss: str, shuffle: bool) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(45, 5))  # 45 = 4 batches of 11 and one of 1
    k = int(sizes.split("-")[-1])
    if loss == "cross_entropy":
        y: np.ndarray = rng.integers(0, k, size=45)
    else:
        y = rng.integers(0, 2, size=(45, k)).astype(float)
    validation = (rng.normal(size=(9, 5)), y[:9])
    runs = []
    for callbacks in ([EpochEnd()], [EpochEnd(), EveryStep()]):
        model = nn.mlp(sizes, activation=activation, seed=1)
        history = fit(model, X, y, loss=loss, optimizer=optim.SGD(lr=0.3), epochs=3,
                      batch_size=11, shuffle=shuffle, seed=5, validation=validation,
                      callbacks=callbacks, progress=False)
        runs.append((model, history, callbacks[0]))
    (fused, fused_history, fused_seen), (plain, plain_history, plain_seen) = runs
    np.testing.assert_allclose(fused_history.batch_losses, plain_history.batch_losses,
                               rtol=1e-12)
    for a, b in zip(fused_history.epochs, plain_history.epochs, strict=True):
        for key in ("loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-12)
        assert (a["accuracy"], a["val_accuracy"]) == (b["accuracy"], b["val_accuracy"])
    for a, b in zip(fused.parameters(), plain.parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    # the stored gradients: those of each epoch's last step, as the unfused loop leaves them
    for epoch_a, epoch_b in zip(fused_seen.gradients, plain_seen.gradients, strict=True):
        for a, b in zip(epoch_a, epoch_b, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    assert len(fused_seen.gradients) == 3
    assert any(g.any() for g in fused.gradients())


def test_fused_fit_in_float32_matches_the_unfused_rule() -> None:
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(256, 20)).astype(np.float32), rng.integers(0, 4, size=256)
    runs = []
    for callbacks in ([], [EveryStep()]):
        model = nn.mlp("20-32-32-4", activation="sigmoid", dtype="float32", seed=2)
        fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.5), epochs=4,
            batch_size=32, callbacks=callbacks, progress=False)
        runs.append(model)
    for a, b in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_an_optimizer_that_holds_kernels_can_be_copied_and_pickled() -> None:
    import copy
    import pickle

    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, size=40)
    sgd = optim.SGD(lr=0.2)
    fit(nn.mlp("3-40-2", seed=0), X, y, loss="cross_entropy", optimizer=sgd, epochs=1,
        batch_size=8, progress=False)
    for clone in (copy.deepcopy(sgd), pickle.loads(pickle.dumps(sgd))):
        trained, reference = nn.mlp("3-40-2", seed=1), nn.mlp("3-40-2", seed=1)
        fit(trained, X, y, loss="cross_entropy", optimizer=clone, epochs=2, batch_size=8,
            progress=False)
        fit(reference, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.2), epochs=2,
            batch_size=8, progress=False)
        for a, b in zip(trained.parameters(), reference.parameters(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_product_kernel_without_transpose_is_addmm(dtype: type) -> None:
    rng = np.random.default_rng(8)
    left, right = rng.normal(size=(6, 4)).astype(dtype), rng.normal(size=(4, 3)).astype(dtype)
    out = rng.normal(size=(6, 3)).astype(dtype)
    expected = out + 0.5 * (left.astype(np.float64) @ right)
    kernel = _blas.product_kernel(out, left, right, transpose_left=False)
    assert kernel is not None
    kernel(0.5)
    np.testing.assert_allclose(out, expected, rtol=_tolerance(dtype), atol=_tolerance(dtype))
    assert _blas.product_kernel(out, left, right.T.copy(), transpose_left=False) is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_into_buffers_adds_the_bias_inside_the_product(dtype: type) -> None:
    # the fast pass: z ← b, then z ← X·W + z in one BLAS call; the plain one: NumPy's X·W + b
    rng = np.random.default_rng(9)
    layer = nn.Dense(30, 20, bias_init="normal", dtype=dtype, seed=0)
    op = FastPasses(nn.Sequential([layer])).ops[0]
    data = rng.normal(size=(64, 30)).astype(dtype)
    for start in (0, 16, 32):  # successive batch views of the same data
        batch = data[start:start + 16]
        fresh = layer.forward(batch)
        into_buffer = op.forward(batch)
        assert op.addmm is not None  # the BLAS path was taken
        expected = batch.astype(np.float64) @ layer.W + layer.b
        np.testing.assert_allclose(into_buffer, expected, rtol=_tolerance(dtype) * 10,
                                   atol=_tolerance(dtype) * 10)
        np.testing.assert_allclose(into_buffer, fresh, rtol=_tolerance(dtype) * 10,
                                   atol=_tolerance(dtype) * 10)
    layer.b += 1.0  # a later bias change is seen (the kernel reads b through z each call)
    np.testing.assert_allclose(op.forward(data[:16]), data[:16] @ layer.W + layer.b, rtol=1e-4)


class EveryThird(Callback):
    """Looks at steps 0, 3, 6, …: the others may be fused."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[np.ndarray]]] = []

    def looks_at(self, step: int) -> bool:
        return step % 3 == 0

    def on_after_backward(self, ctx: TrainContext) -> None:
        if ctx.step % 3 == 0:  # (called at other steps too when another callback looks)
            self.seen.append((ctx.step, [g.copy() for g in ctx.model.gradients()]))


def test_steps_a_callback_does_not_look_at_are_fused_and_the_others_see_true_gradients(
) -> None:
    assert [_step(nn.mlp("3-4-2", seed=0), optim.SGD(lr=0.1), [EveryThird()]).fused(step)
            for step in range(4)] == [False, True, True, False]
    rng = np.random.default_rng(10)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, size=50)
    runs = []
    for callbacks in ([EveryThird()], [EveryThird(), EveryStep()]):
        model = nn.mlp("4-9-7-3", activation="sigmoid", seed=3)
        fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.4), epochs=3,
            batch_size=8, callbacks=callbacks, progress=False)
        runs.append((model, callbacks[0]))
    (fused, fused_seen), (plain, plain_seen) = runs
    assert [s for s, _ in fused_seen.seen] == [s for s, _ in plain_seen.seen] == list(
        range(0, 21, 3))
    for (_, a), (_, b) in zip(fused_seen.seen, plain_seen.seen, strict=True):
        for ga, gb in zip(a, b, strict=True):
            np.testing.assert_allclose(ga, gb, rtol=1e-11, atol=1e-15)
    for a, b in zip(fused.parameters(), plain.parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)


def test_a_monitor_records_the_same_numbers_when_the_steps_between_are_fused() -> None:
    rng = np.random.default_rng(11)
    X, y = rng.normal(size=(64, 6)), rng.integers(0, 2, size=64)
    monitors = []
    for extra in ([], [EveryStep()]):
        monitor = Monitor(every=4)
        fit(nn.mlp("6-8-8-2", activation="tanh", seed=4), X, y, loss="cross_entropy",
            optimizer=optim.SGD(lr=0.3), epochs=4, batch_size=8,
            callbacks=[monitor, *extra], progress=False)
        monitors.append(monitor)
    fused, plain = monitors
    assert len(fused.history) == len(plain.history) > 0
    for a, b in zip(fused.history, plain.history, strict=True):
        assert (a.layer, a.step, a.kind) == (b.layer, b.step, b.kind)
        for field in ("grad_W_norm", "weight_norm", "update_ratio", "mean", "std"):
            x, z = getattr(a, field, None), getattr(b, field, None)
            assert (x is None) == (z is None)
            if x is not None:
                assert x == pytest.approx(z, rel=1e-9, abs=1e-15), field


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_scale_add_is_a_momentum_buffer_update(dtype: type, alpha: float) -> None:
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(50, 40)).astype(dtype), rng.normal(size=(50, 40)).astype(dtype)
    expected = alpha * x.astype(np.float64) + 0.9 * y
    state = {"scratch": np.empty_like(y)}
    _blas.scale_add(y, x, alpha, 0.9, state)
    np.testing.assert_allclose(y, expected, rtol=_tolerance(dtype), atol=_tolerance(dtype))
    assert state["axpby"][2] is not None  # NumPy's OpenBLAS has axpby: one BLAS pass
    strided = rng.normal(size=(50, 80))[:, ::2]  # not contiguous: NumPy's passes instead
    target = rng.normal(size=(50, 40))
    expected = alpha * strided + 0.9 * target
    _blas.scale_add(target, strided, alpha, 0.9, {"scratch": np.empty_like(target)})
    np.testing.assert_allclose(target, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_the_guard_stops_a_fused_run_where_it_stops_the_unfused_one(activation: str) -> None:
    rng = np.random.default_rng(13)
    X, y = rng.normal(size=(64, 3)), rng.normal(size=64) * 10
    runs = []
    for callbacks in ([], [EveryStep()]):
        model = nn.mlp("3-16-16-1", activation=activation, init="he_normal", seed=0)
        history = fit(model, X, y, loss="quadratic", optimizer=optim.SGD(lr=1e6), epochs=50,
                      batch_size=8, callbacks=callbacks, progress=False)
        runs.append((model, history))
    (fused, fused_history), (plain, plain_history) = runs
    assert fused_history.stopped is not None and fused_history.stopped.startswith("non-finite")
    assert fused_history.stopped == plain_history.stopped
    assert fused_history.steps == plain_history.steps
    for a, b in zip(fused.parameters(), plain.parameters(), strict=True):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("with_validation", [False, True])
def test_after_a_fused_fit_the_stored_gradients_are_those_of_the_last_step(
        with_validation: bool) -> None:
    rng = np.random.default_rng(14)
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    validation = (rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)) if with_validation \
        else None  # 8 rows, as a training batch: the validation pass reuses its buffers
    models = []
    for callbacks in ([], [EveryStep()]):
        model = nn.mlp("5-7-3", activation="sigmoid", seed=5)
        fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.3), epochs=3,
            batch_size=8, validation=validation, callbacks=callbacks, progress=False)
        models.append(model)
    for a, b in zip(models[0].gradients(), models[1].gradients(), strict=True):
        assert b.any()
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)


# Adam's and AdaGrad's first step moves each weight by at most η: only a rate beyond the
# largest float32 overflows them
@pytest.mark.parametrize(("optimizer", "dtype"), [
    (optim.SGD(lr=1e307, momentum=0.9), "float64"), (optim.RMSProp(lr=1e307), "float64"),
    (optim.Adam(lr=1e39), "float32"), (optim.AdaGrad(lr=1e39), "float32")])
def test_a_prepared_step_that_would_overflow_is_undone(optimizer: optim.Optimizer,
                                                       dtype: str) -> None:
    model = nn.mlp("2-3-1", activation="linear", dtype=dtype, seed=0)
    before = model.get_weights()
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    history = fit(model, corners, [100.0, -100.0, 100.0, -100.0], optimizer=optimizer,
                  epochs=2, batch_size=4, progress=False)
    assert history.stopped is not None and history.stopped.startswith("non-finite weights of")
    assert "the update was undone" in history.stopped and history.steps == 0
    for kept, original in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, original)


class WeightsAround(Callback):
    """Copies the weights before and after every step (an oracle for ‖ΔW‖)."""

    read_only = True

    def __init__(self) -> None:
        self.before: list[list[np.ndarray]] = []
        self.after: list[list[np.ndarray]] = []

    def on_after_backward(self, ctx: TrainContext) -> None:
        self.before.append([p.copy() for p in ctx.model.parameters()])

    def on_batch_end(self, ctx: TrainContext) -> None:
        self.after.append([p.copy() for p in ctx.model.parameters()])


@pytest.mark.parametrize("optimizer", [optim.Adam(lr=0.01), optim.SGD(lr=0.1, momentum=0.9),
                                       optim.AdaGrad(lr=0.1), optim.RMSProp(lr=0.01)])
def test_safe_steps_need_no_backup_and_the_monitor_sees_the_true_update(
        optimizer: optim.Optimizer, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[FastStep] = []
    original = FastStep.__init__

    def keep(self: FastStep, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        steps.append(self)

    monkeypatch.setattr(FastStep, "__init__", keep)
    rng = np.random.default_rng(15)
    X, y = rng.normal(size=(48, 4)), rng.integers(0, 2, size=48)
    model = nn.mlp("4-6-2", activation="tanh", seed=6)
    monitor, oracle = Monitor(every=1), WeightsAround()
    history = fit(model, X, y, loss="cross_entropy", optimizer=optimizer, epochs=2,
                  batch_size=8, callbacks=[monitor, oracle], progress=False)
    assert history.stopped is None and len(steps) == 1
    assert steps[0].applier.backup is None  # no step needed the copy-and-check path
    dense = [r for r in monitor.history if r.kind == "param"]
    assert len(dense) == 2 * 12
    for record in dense:
        position = 2 * [d.name for d in model.dense_layers].index(record.layer)
        change = np.linalg.norm(oracle.after[record.step][position]
                                - oracle.before[record.step][position])
        weight = np.linalg.norm(oracle.before[record.step][position])
        assert record.update_ratio == pytest.approx(change / weight, rel=1e-6)


def test_without_numpy_blas_fit_falls_back_to_numpy_and_scipy_and_trains_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # where NumPy's BLAS cannot be reached (another BLAS, another symbol scheme): no fused
    # step, no addmm, SciPy's axpy — the same training, to rounding
    rng = np.random.default_rng(16)
    X, y = rng.normal(size=(60, 5)), rng.integers(0, 3, size=60)

    def train() -> list[np.ndarray]:
        model = nn.mlp("5-40-3", activation="sigmoid", seed=7)
        fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.3, momentum=0.5),
            epochs=2, batch_size=12, progress=False)
        fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.3), epochs=2,
            batch_size=12, progress=False)
        return model.parameters()

    with_blas = train()
    monkeypatch.setattr(_blas, "_numpy_blas", lambda dtype: None)
    assert _blas.backend(np.float64) == "scipy-blas"
    without = train()
    for a, b in zip(with_blas, without, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)


# ---- the fast step against the plain step (fit(..., fast=False)), the reference ----------
@pytest.mark.parametrize(("optimizer", "sizes", "activation", "loss"), [
    (lambda: optim.SGD(lr=0.3), "5-8-8-3", "sigmoid", "cross_entropy"),
    (lambda: optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), "5-8-3", "relu",
     "cross_entropy"),
    (lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True), "5-6-1", "tanh", "quadratic"),
    (lambda: optim.Adam(lr=0.01, weight_decay=0.01, amsgrad=True), "5-7-6-2", "leaky_relu",
     "bce_with_logits"),
    (lambda: optim.Adam(lr=0.01), "5-8-3", "gelu", "cross_entropy"),
    (lambda: optim.RMSProp(lr=0.01, momentum=0.5, centered=True), "5-6-3", "elu",
     "quadratic"),
    (lambda: optim.AdaGrad(lr=0.1, lr_decay=0.01), "5-6-2", "silu", "cross_entropy"),
])
def test_the_fast_step_trains_exactly_like_the_plain_step(optimizer: object, sizes: str,
                                                          activation: str, loss: str) -> None:
    rng = np.random.default_rng(17)
    X = rng.normal(size=(45, 5))
    k = int(sizes.split("-")[-1])
    y = (rng.integers(0, k, size=45) if loss == "cross_entropy"
         else rng.integers(0, 2, size=(45, k)).astype(float))
    validation = (rng.normal(size=(9, 5)), y[:9])
    runs = []
    for fast in (True, False):
        model = nn.mlp(sizes, activation=activation, seed=1)
        monitor = Monitor(every=3)
        history = fit(model, X, y, loss=loss, optimizer=optimizer(), epochs=3,  # type: ignore
                      batch_size=11, seed=5, validation=validation, callbacks=[monitor],
                      progress=False, fast=fast)
        runs.append((model, history, monitor))
    (fast_model, fast_history, fast_monitor), (plain_model, plain_history, plain_monitor) = runs
    assert fast_history.stopped is None and plain_history.stopped is None
    np.testing.assert_allclose(fast_history.batch_losses, plain_history.batch_losses,
                               rtol=1e-12)
    for a, b in zip(fast_history.epochs, plain_history.epochs, strict=True):
        for key in ("loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-12)
        assert (a["accuracy"], a["val_accuracy"]) == (b["accuracy"], b["val_accuracy"])
    for a, b in zip(fast_model.parameters(), plain_model.parameters(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(fast_model.gradients(), plain_model.gradients(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    assert len(fast_monitor.history) == len(plain_monitor.history) > 0
    for a, b in zip(fast_monitor.history, plain_monitor.history, strict=True):
        assert (a.layer, a.step, a.kind) == (b.layer, b.step, b.kind)
        for field in ("grad_W_norm", "grad_b_norm", "weight_norm", "act_mean", "act_std",
                      "saturated_fraction", "dead_fraction"):
            x, z = getattr(a, field), getattr(b, field)
            assert (x is None) == (z is None), field
            if x is not None:
                assert x == pytest.approx(z, rel=1e-10, abs=1e-14), field
        if a.update_ratio is not None:  # rate·‖d‖ against ‖w_new − w_old‖: rounding
            assert a.update_ratio == pytest.approx(b.update_ratio, rel=1e-6)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_the_guard_stops_the_fast_step_where_it_stops_the_plain_one(activation: str) -> None:
    rng = np.random.default_rng(13)
    X, y = rng.normal(size=(64, 3)), rng.normal(size=64) * 10
    runs = []
    for fast in (True, False):
        model = nn.mlp("3-16-16-1", activation=activation, init="he_normal", seed=0)
        history = fit(model, X, y, loss="quadratic", optimizer=optim.SGD(lr=1e6), epochs=50,
                      batch_size=8, progress=False, fast=fast)
        runs.append((model, history))
    (fast_model, fast_history), (plain_model, plain_history) = runs
    assert fast_history.stopped is not None and fast_history.stopped.startswith("non-finite")
    assert fast_history.stopped == plain_history.stopped
    assert fast_history.steps == plain_history.steps
    for a, b in zip(fast_model.parameters(), plain_model.parameters(), strict=True):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=1e-9)
