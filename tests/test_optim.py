"""gradsight.optim against torch.optim (float64 oracle) on identical gradient functions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from gradsight import optim
from gradsight.errors import InvalidValueError, ShapeError, UnknownNameError

torch = pytest.importorskip("torch")

SHAPES = [(3,), (4, 5), (2, 3, 2), (1,)]
STEPS = 250

# (our class, torch class name, hyperparameters) — every option and the useful combinations
CASES: list[tuple[type[optim.Optimizer], str, dict[str, Any]]] = [
    (optim.SGD, "SGD", {"lr": 0.05}),
    (optim.SGD, "SGD", {"lr": 0.05, "momentum": 0.9}),
    (optim.SGD, "SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}),
    (optim.SGD, "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (optim.SGD, "SGD", {"lr": 0.05, "weight_decay": 0.1}),
    (optim.SGD, "SGD", {"lr": 0.05, "momentum": 0.7, "dampening": 0.2, "weight_decay": 0.05}),
    (optim.SGD, "SGD", {"lr": 0.03, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (optim.AdaGrad, "Adagrad", {"lr": 0.1}),
    (optim.AdaGrad, "Adagrad", {"lr": 0.2, "lr_decay": 0.01}),
    (optim.AdaGrad, "Adagrad", {"lr": 0.1, "weight_decay": 0.1, "eps": 1e-6}),
    (optim.AdaGrad, "Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5, "lr_decay": 0.1}),
    (optim.RMSProp, "RMSprop", {"lr": 0.01}),
    (optim.RMSProp, "RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    (optim.RMSProp, "RMSprop", {"lr": 0.01, "centered": True}),
    (optim.RMSProp, "RMSprop", {"lr": 0.005, "momentum": 0.9}),
    (optim.RMSProp, "RMSprop", {"lr": 0.005, "momentum": 0.5, "centered": True}),
    (optim.RMSProp, "RMSprop", {"lr": 0.01, "weight_decay": 0.1, "centered": True}),
    (optim.Adam, "Adam", {"lr": 0.01}),
    (optim.Adam, "Adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6}),
    (optim.Adam, "Adam", {"lr": 0.01, "amsgrad": True}),
    (optim.Adam, "Adam", {"lr": 0.01, "weight_decay": 0.1}),
    (optim.Adam, "Adam", {"lr": 0.01, "weight_decay": 0.05, "amsgrad": True}),
    # β, α < 0.5: torch's lerp takes its other branch, end − (end − start)·(1 − w)
    (optim.Adam, "Adam", {"lr": 0.01, "betas": (0.3, 0.4), "amsgrad": True}),
    (optim.RMSProp, "RMSprop", {"lr": 0.01, "alpha": 0.3, "centered": True, "momentum": 0.3,
                                "weight_decay": 0.01}),
    (optim.AdaGrad, "Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1,
                                "initial_accumulator_value": 0.2}),
]


_NOISE = np.random.default_rng(11).normal(size=(400, 64))


def gradient(p: np.ndarray, index: int, step: int = 0) -> np.ndarray:
    """∂C/∂w of C = Σ (w − t)² − 0.15 cos(2w), plus a fixed per-step perturbation 0.05·ξ_k.

    The cost is convex, so the trajectory feeds back and settles; the perturbation plays the
    part of minibatch noise. Without it, centered RMSProp's denominator √(v − ḡ²) collapses at
    an exact optimum and the run becomes sensitive to the last bit (torch fuses multiply-adds
    with FMA, NumPy cannot), which no reimplementation could reproduce to 1e-10.
    """
    target = np.linspace(-1.0, 1.0, p.size).reshape(p.shape) + index
    noise = _NOISE[step % len(_NOISE), index * 13:index * 13 + p.size].reshape(p.shape)
    return 2.0 * (p - target) + 0.3 * np.sin(2.0 * p) + 0.05 * noise


def initial_params(dtype=np.float64) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(0.0, 2.0, size=shape).astype(dtype) for shape in SHAPES]


def run_ours(opt: optim.Optimizer, params: list[np.ndarray], steps: int) -> list[list[np.ndarray]]:
    path = []
    for k in range(steps):
        opt.step(params, [gradient(p, i, k) for i, p in enumerate(params)])
        path.append([p.copy() for p in params])
    return path


def run_torch(name: str, hyper: dict, params: list[np.ndarray], steps: int, dtype=torch.float64):
    tensors = [torch.tensor(p, dtype=dtype) for p in params]
    opt = getattr(torch.optim, name)(tensors, foreach=False, **hyper)
    path = []
    for k in range(steps):
        for i, t in enumerate(tensors):
            t.grad = torch.from_numpy(gradient(t.detach().numpy().copy(), i, k)).to(dtype)
        opt.step()
        path.append([t.detach().numpy().copy() for t in tensors])
    return path


def max_relative_error(ours, theirs) -> float:
    worst = 0.0
    for step_ours, step_theirs in zip(ours, theirs, strict=True):
        for a, b in zip(step_ours, step_theirs, strict=True):
            # per tensor ‖a − b‖∞ / ‖b‖∞: an element crossing 0 must not blow up the ratio
            worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst


@pytest.mark.parametrize(("cls", "torch_name", "hyper"), CASES,
                         ids=[f"{c[1]}-{'-'.join(c[2])}" for c in CASES])
def test_matches_torch_optim_float64(cls, torch_name, hyper):
    ours = run_ours(cls(**hyper), initial_params(), STEPS)
    theirs = run_torch(torch_name, hyper, initial_params(), STEPS)
    assert max_relative_error(ours, theirs) < 1e-10
    # the run really moved the parameters (a no-op optimizer would fail above too, but be explicit)
    assert not np.allclose(ours[-1][1], initial_params()[1])


@pytest.mark.parametrize(("cls", "torch_name", "hyper"), CASES[::3])
def test_float32_stays_float32_and_tracks_torch(cls, torch_name, hyper):
    params = initial_params(np.float32)
    opt = cls(**hyper)
    for k in range(50):
        grads = [gradient(p, i, k).astype(np.float32) for i, p in enumerate(params)]
        opt.step(params, grads)
        assert all(p.dtype == np.float32 for p in params)
    theirs = run_torch(torch_name, hyper, initial_params(np.float32), 50, dtype=torch.float32)
    for a, b in zip(params, theirs[-1], strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_float32_params_with_float64_gradients_stay_float32():
    params = initial_params(np.float32)
    opt = optim.Adam(lr=0.01, weight_decay=0.1, amsgrad=True)
    opt.step(params, [gradient(p.astype(np.float64), i) for i, p in enumerate(params)])
    assert [p.dtype for p in params] == [np.float32] * len(SHAPES)


def test_the_articles_iterates_are_plain_sgd():
    """The article on the derivative in training: x ← x − 0.1·(2x − 4) from 8 gives 2 + 6·0.8^k."""
    x = np.array([8.0])
    opt = optim.SGD(lr=0.1)
    for k in range(1, 30):
        opt.step([x], [2 * x - 4])
        assert x[0] == pytest.approx(2 + 6 * 0.8**k, abs=1e-12)


@pytest.mark.parametrize(("cls", "hyper"), [(c[0], c[2]) for c in CASES])
def test_reset_forgets_state(cls, hyper):
    opt = cls(**hyper)
    first = run_ours(opt, initial_params(), 20)
    continued = run_ours(opt, initial_params(), 20)     # same start, but state carried over
    opt.reset()
    again = run_ours(opt, initial_params(), 20)
    fresh = run_ours(cls(**hyper), initial_params(), 20)
    assert max_relative_error(again, fresh) == 0.0
    assert max_relative_error(again, first) == 0.0
    if cls is not optim.SGD or hyper.get("momentum"):
        assert max_relative_error(continued, first) > 1e-6   # stateful: carried state matters


def test_weight_decay_does_not_modify_the_gradient_arrays():
    params = initial_params()
    grads = [gradient(p, i) for i, p in enumerate(params)]
    copies = [g.copy() for g in grads]
    optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.5).step(params, grads)
    optim.Adam(lr=0.1, weight_decay=0.5).step(params, grads)
    for g, c in zip(grads, copies, strict=True):
        np.testing.assert_array_equal(g, c)


def test_state_is_per_position():
    """Two positions with different gradients keep separate momentum buffers."""
    a, b = np.array([1.0]), np.array([1.0])
    opt = optim.SGD(lr=0.1, momentum=0.9)
    opt.step([a, b], [np.array([1.0]), np.array([0.0])])
    opt.step([a, b], [np.array([0.0]), np.array([0.0])])
    # a: buffer 1 then 0.9 → 1 − 0.1 − 0.09;  b never moves
    assert a[0] == pytest.approx(0.81, abs=1e-15)
    assert b[0] == 1.0


def test_get_names_and_defaults():
    assert optim.names() == ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
    assert isinstance(optim.get("sgd"), optim.SGD) and optim.get("sgd").momentum == 0
    assert optim.get("momentum").momentum == 0.9
    nesterov = optim.get("nesterov", lr=0.2)
    assert nesterov.nesterov and nesterov.momentum == 0.9 and nesterov.lr == 0.2
    assert optim.get("ADAM").betas == (0.9, 0.999) and optim.get("adam").lr == 0.001
    assert optim.get("adagrad").eps == 1e-10 and optim.get("rmsprop").alpha == 0.99
    same = optim.Adam()
    assert optim.get(same) is same


def test_defaults_equal_torch_defaults():
    import inspect

    pairs = [(optim.SGD, torch.optim.SGD), (optim.AdaGrad, torch.optim.Adagrad),
             (optim.RMSProp, torch.optim.RMSprop), (optim.Adam, torch.optim.Adam)]
    for ours, theirs in pairs:
        their_params = inspect.signature(theirs.__init__).parameters
        for name, value in ours().hyperparameters().items():
            default = their_params[name].default
            expected = list(default) if isinstance(default, tuple) else default
            assert value == expected, (ours.__name__, name)


@pytest.mark.parametrize("name", optim.names())
def test_hyperparameters_roundtrip_and_json(name):
    opt = optim.get(name, lr=0.05)
    text = json.dumps(opt.hyperparameters())
    rebuilt = optim.get(opt.name, **json.loads(text))
    assert rebuilt.hyperparameters() == opt.hyperparameters()
    assert type(rebuilt) is type(opt)
    assert repr(opt).startswith(type(opt).__name__ + "(lr=0.05")


def test_name_reflects_sgd_variant():
    assert optim.SGD().name == "sgd"
    assert optim.SGD(momentum=0.5).name == "momentum"
    assert optim.SGD(momentum=0.5, nesterov=True).name == "nesterov"


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: optim.SGD(lr=0), "lr"),
        (lambda: optim.SGD(lr=-0.1), "lr"),
        (lambda: optim.Adam(lr=float("nan")), "lr"),
        (lambda: optim.SGD(lr=float("inf")), "lr"),
        (lambda: optim.SGD(momentum=-0.1), "momentum"),
        (lambda: optim.SGD(nesterov=True), "nesterov"),
        (lambda: optim.SGD(momentum=0.9, dampening=0.1, nesterov=True), "dampening"),
        (lambda: optim.SGD(weight_decay=-1), "weight_decay"),
        (lambda: optim.Adam(betas=(1.0, 0.999)), "betas[0]"),
        (lambda: optim.Adam(betas=(0.9, -0.1)), "betas[1]"),
        (lambda: optim.Adam(betas=(0.9,)), "betas"),
        (lambda: optim.Adam(eps=-1e-8), "eps"),
        (lambda: optim.RMSProp(alpha=1.5), "alpha"),
        (lambda: optim.AdaGrad(lr_decay=-0.1), "lr_decay"),
        (lambda: optim.AdaGrad(initial_accumulator_value=-1), "initial_accumulator_value"),
        (lambda: optim.get("adam", momentum=0.9), "momentum"),
    ],
)
def test_invalid_hyperparameters(build, fragment):
    with pytest.raises(InvalidValueError) as info:
        build()
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_lr_setter_validates():
    opt = optim.SGD(lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5
    with pytest.raises(InvalidValueError, match="lr"):
        opt.lr = 0.0


def test_unknown_name():
    with pytest.raises(UnknownNameError, match="unknown optimizer 'adamw'.*adam"):
        optim.get("adamw")


def test_bad_arrays():
    opt = optim.SGD(lr=0.1)
    with pytest.raises(ShapeError):
        opt.step([np.zeros(2)], [])
    with pytest.raises(ShapeError):
        opt.step([np.zeros(2)], [np.zeros(3)])
    with pytest.raises(InvalidValueError, match="float32 or float64"):
        opt.step([np.zeros(2, dtype=int)], [np.zeros(2)])
    momentum = optim.SGD(lr=0.1, momentum=0.9)
    momentum.step([np.zeros(2)], [np.ones(2)])
    with pytest.raises(ShapeError, match="reset"):
        momentum.step([np.zeros(3)], [np.ones(3)])
    with pytest.raises(ShapeError, match="reset"):
        momentum.step([np.zeros(2), np.zeros(2)], [np.ones(2), np.ones(2)])
    momentum.reset()
    momentum.step([np.zeros(3)], [np.ones(3)])      # fine after reset


def test_a_bad_array_leaves_every_parameter_untouched():
    first, second = np.ones(2), np.ones(3)
    with pytest.raises(ShapeError):
        optim.SGD(lr=0.1).step([first, second], [np.ones(2), np.ones(4)])
    np.testing.assert_array_equal(first, np.ones(2))


@pytest.mark.parametrize(("cls", "torch_name", "hyper"), [
    (optim.SGD, "SGD", {"momentum": 0.9, "nesterov": True}),
    (optim.AdaGrad, "Adagrad", {"lr_decay": 0.1}),
    (optim.RMSProp, "RMSprop", {"momentum": 0.5, "centered": True}),
    (optim.Adam, "Adam", {"amsgrad": True}),
])
def test_learning_rate_schedule_matches_torch(cls, torch_name, hyper):
    """lr changed between steps (η_k = 0.1·0.99^k) acts like a torch param_group change."""
    ours = cls(lr=0.1, **hyper)
    params = initial_params()
    tensors = [torch.tensor(p) for p in params]
    theirs = getattr(torch.optim, torch_name)(tensors, lr=0.1, foreach=False, **hyper)
    for k in range(STEPS):
        ours.lr = theirs.param_groups[0]["lr"] = 0.1 * 0.99**k
        ours.step(params, [gradient(p, i, k) for i, p in enumerate(params)])
        for i, t in enumerate(tensors):
            t.grad = torch.from_numpy(gradient(t.numpy().copy(), i, k))
        theirs.step()
    assert max_relative_error([params], [[t.numpy() for t in tensors]]) < 1e-10


def test_sgd_default_lr_is_torchs():
    import inspect

    default = inspect.signature(torch.optim.SGD.__init__).parameters["lr"].default
    assert optim.SGD().lr == default


def test_takes_answers_by_the_same_names_as_get():
    assert optim.takes("SGD", "momentum") and optim.takes(" rmsprop ", "momentum")
    assert not optim.takes("adam", "momentum") and not optim.takes("adagrad", "momentum")
    assert optim.takes("adam", "amsgrad") and not optim.takes("unknown", "lr")
