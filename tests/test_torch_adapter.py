"""The PyTorch adapter: the same LayerStats as the engine's Monitor, through hooks.

Oracles: the NumPy engine with identical weights (Monitor, classify_neurons), values
computed directly with torch on the same tensors (norms, means, dead channels), and
non-AMP runs for the AMP path. All on the CPU, float64 where values are compared exactly.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _bounded import run_bounded

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import gradsight  # noqa: E402
from gradsight import optim  # noqa: E402
from gradsight.adapters.torch import (  # noqa: E402
    classify_neurons_torch,
    diagnose_torch,
    torch_runner,
    watch,
)
from gradsight.diagnostics import Monitor, classify_neurons, diagnose  # noqa: E402
from gradsight.engine import mlp  # noqa: E402
from gradsight.errors import GradsightError, InvalidValueError  # noqa: E402

F64 = torch.float64
FIELDS = ("grad_W_norm", "grad_b_norm", "weight_norm", "update_ratio", "act_mean", "act_std",
          "saturated_fraction", "dead_fraction", "nonfinite")
TORCH_ACTS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def _to_torch(model, inplace=False):
    """The engine model as nn.Sequential with the same weights (torch weight = W.T)."""
    modules = []
    for layer in model.layers:
        if hasattr(layer, "W"):
            linear = nn.Linear(*layer.W.shape).to(F64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.W.T))
                linear.bias.copy_(torch.from_numpy(layer.b))
            modules.append(linear)
        else:
            name = layer.activation.name
            modules.append(nn.ReLU(inplace=True) if name == "relu" and inplace
                           else TORCH_ACTS[name]())
    return nn.Sequential(*modules)


def _engine_pair(activation, seed=0):
    """An engine MLP with saturated (sigmoid/tanh) or dead (relu) units, its data."""
    model = mlp("5-8-6-3", activation=activation, init="normal", bias_init="normal", seed=seed)
    model.dense_layers[0].W *= 2.5
    if activation == "relu":
        model.dense_layers[0].b[:3] = -50.0  # three units off on every sample
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(size=(24, 5))
    y = rng.normal(size=(24, 3))
    return model, X, y


def _quadratic(output, target):
    return 0.5 * ((output - target) ** 2).sum() / output.shape[0]


def _sgd_loop(model, optimizer, X, y, steps, loss_fn=_quadratic):
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()


def _close(a, b, rel=1e-6):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-12


def _hooks_left(model, optimizer=None):
    left = []
    for name, module in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            if getattr(module, attr):
                left.append((name, attr))
    for param in model.parameters():
        if getattr(param, "_post_accumulate_grad_hooks", None):
            left.append(("param", "_post_accumulate_grad_hooks"))
    if optimizer is not None:
        if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
            left.append(("optimizer", "step hooks"))
    return left


# ---- the cross-check with the engine -------------------------------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("with_optimizer", [True, False])
def test_same_layer_stats_as_engine_monitor(activation, with_optimizer):
    model, X, y = _engine_pair(activation)
    net = _to_torch(model)
    monitor = Monitor()
    gradsight.fit(model, X, y, loss="quadratic", optimizer=optim.SGD(lr=0.3), epochs=3,
                  batch_size=len(X), shuffle=False, callbacks=[monitor], progress=False)
    sgd = torch.optim.SGD(net.parameters(), lr=0.3)
    with watch(net, optimizer=sgd if with_optimizer else None) as watcher:
        _sgd_loop(net, sgd, torch.from_numpy(X), torch.from_numpy(y), 3)
    engine = {(r.step, r.index): r for r in monitor.history}
    ours = {(r.step, r.index): r for r in watcher.history}
    assert set(engine) == set(ours) and len(ours) == 3 * 5
    for key, expected in engine.items():
        got = ours[key]
        assert (got.kind, got.activation) == (expected.kind, expected.activation)
        for field in FIELDS:
            want = getattr(expected, field)
            if field == "update_ratio" and not with_optimizer:
                want = None  # no optimizer: no update is known
            assert _close(getattr(got, field), want), (key, field, getattr(got, field), want)
    # the comparison is not vacuous: the cases under test occur
    acts = [r for r in watcher.history if r.kind == "activation"]
    if activation == "relu":
        assert max(r.dead_fraction for r in acts) >= 3 / 8
    else:
        assert max(r.saturated_fraction for r in acts) > 0.05
    assert [r.layer for r in watcher.history[:5]] == ["0", "1", "2", "3", "4"]


def test_in_place_relu_gives_the_same_stats_and_gradients():
    model, X, y = _engine_pair("relu")
    plain, in_place = _to_torch(model), _to_torch(model, inplace=True)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    runs = []
    for net in (plain, in_place):
        sgd = torch.optim.SGD(net.parameters(), lr=0.1)
        with watch(net, optimizer=sgd) as watcher:
            _sgd_loop(net, sgd, X, y, 2)
        runs.append(watcher.history)
    assert len(runs[0]) == len(runs[1]) == 10
    for a, b in zip(*runs, strict=True):
        for field in FIELDS:
            assert _close(getattr(a, field), getattr(b, field), 1e-12)
    for p, q in zip(plain.parameters(), in_place.parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p.grad, q.grad)
    # the record is of the ReLU's output a = max(z, 0), not of z which it overwrote
    first = _to_torch(model)
    with torch.no_grad():
        a = torch.relu(first[0](X))
    record = runs[1][1]
    assert (record.layer, record.step) == ("1", 0)
    assert record.act_mean == pytest.approx(float(a.mean()), rel=1e-12)
    assert record.dead_fraction == pytest.approx(float((a.amax(dim=0) <= 0).double().mean()))


def test_stats_are_taken_before_a_later_in_place_op():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Dropout(0.5, inplace=True),
                        nn.Linear(16, 1)).to(F64)
    X = torch.randn(32, 4, dtype=F64)
    with watch(net) as watcher:
        net(X).sum().backward()
    with torch.no_grad():
        expected = nn.functional.gelu(net[0](X))  # the output before dropout zeroed half
    record = next(r for r in watcher.history if r.layer == "1")
    assert record.act_mean == pytest.approx(float(expected.mean()), rel=1e-12)
    assert record.act_std == pytest.approx(float(expected.std(correction=0)), rel=1e-10)


def test_conv_net_records_conv_layers_and_dead_channels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.Tanh(),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).to(F64)
    with torch.no_grad():
        net[0].bias[0] = -100.0  # channel 0 is off everywhere
    X = torch.randn(6, 2, 8, 8, dtype=F64)
    target = torch.randint(0, 2, (6,))
    sgd = torch.optim.SGD(net.parameters(), lr=0.01)
    with watch(net, optimizer=sgd) as watcher:
        sgd.zero_grad()
        nn.functional.cross_entropy(net(X), target).backward()
        grads = {name: m.weight.grad.norm().item() for name, m in net.named_children()
                 if hasattr(m, "weight")}
        old = {name: m.weight.detach().clone() for name, m in net.named_children()
               if hasattr(m, "weight")}
        a = torch.relu(net[0](X)).detach()
        sgd.step()
    records = {r.layer: r for r in watcher.history}
    assert [r.layer for r in watcher.history] == ["0", "1", "2", "3", "5"]
    assert [records[k].kind for k in ("0", "2", "5")] == ["param"] * 3
    for name, norm in grads.items():
        assert records[name].grad_W_norm == pytest.approx(norm, rel=1e-12)
        change = (getattr(net, name).weight.detach() - old[name]).norm().item()
        assert records[name].update_ratio == pytest.approx(change / old[name].norm().item())
    dead_channels = int((a.amax(dim=(0, 2, 3)) <= 0).sum())
    assert dead_channels >= 1
    assert records["1"].dead_fraction == pytest.approx(dead_channels / 4)
    assert records["1"].act_mean == pytest.approx(float(a.mean()), rel=1e-12)


# ---- hooks and steps -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["optimizer", "hooks", "scaler"])
def test_every_hook_is_removed_even_when_the_loop_raises(mode):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(inplace=True), nn.Linear(5, 1))
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu") if mode == "scaler" else None
    X = torch.randn(8, 3)

    def step():
        sgd.zero_grad()
        loss = net(X).pow(2).mean()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(sgd)
            scaler.update()
        else:
            loss.backward()
            sgd.step()

    with pytest.raises(RuntimeError, match="boom"), \
            watch(net, optimizer=sgd if mode != "hooks" else None, scaler=scaler) as watcher:
        step()
        step()
        raise RuntimeError("boom")
    assert _hooks_left(net, sgd) == []
    if scaler is not None:
        assert "step" not in scaler.__dict__
    recorded, steps = len(watcher.history), watcher.step
    assert recorded == 3 * 2  # two Linear layers and the ReLU, two steps
    step()
    step()  # no hook fires any more: nothing is recorded, the step counter stands still
    assert (len(watcher.history), watcher.step) == (recorded, steps)


def test_every_k_records_steps_zero_k_2k():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 1))
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    with watch(net, every=3, optimizer=sgd) as watcher:
        _sgd_loop(net, sgd, torch.randn(8, 3), torch.randn(8, 1), 7)
        assert watcher.step == 7 and not net[1]._forward_hooks  # step 7 is not recorded
        _sgd_loop(net, sgd, torch.randn(8, 3), torch.randn(8, 1), 2)
        assert net[1]._forward_hooks  # step 9 will be
    assert sorted({r.step for r in watcher.history}) == [0, 3, 6]
    with pytest.raises(InvalidValueError, match="every"):
        watch(net, every=0)
    with pytest.raises(GradsightError, match="torch.optim.Optimizer"):
        watch(net, optimizer="sgd")


def test_eval_forwards_under_no_grad_are_not_recorded():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 1)).to(F64)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    X, Xv = torch.randn(8, 3, dtype=F64), 100 * torch.randn(8, 3, dtype=F64)
    with watch(net, optimizer=sgd) as watcher:
        sgd.zero_grad()
        net(X).pow(2).mean().backward()
        with torch.no_grad():
            expected = torch.sigmoid(net[0](X))  # the training batch's a, weights unchanged
            net(Xv)  # a validation pass between backward and step
        sgd.step()
    record = next(r for r in watcher.history if r.layer == "1")
    assert record.act_mean == pytest.approx(float(expected.mean()), rel=1e-12)
    assert record.act_std == pytest.approx(float(expected.std(correction=0)), rel=1e-10)


def test_nonfinite_values_are_counted_not_hidden():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Sigmoid(), nn.Linear(6, 2)).to(F64)
    X = torch.randn(8, 3, dtype=F64)
    X[2, 0] = math.nan  # one sample poisons its row of z, a, and every gradient
    for with_optimizer in (True, False):
        probe = copy.deepcopy(net)
        probe(X).sum().backward()
        bad = {name: sum(int((~torch.isfinite(p.grad)).sum()) for p in m.parameters())
               for name, m in probe.named_children() if hasattr(m, "weight")}
        sgd = torch.optim.SGD(net.parameters(), lr=0.1)
        with watch(net, optimizer=sgd if with_optimizer else None) as watcher:
            sgd.zero_grad()
            net(X).sum().backward()
            sgd.step()
        records = {r.layer: r for r in watcher.history}
        assert records["1"].nonfinite == 6 and math.isnan(records["1"].act_mean)
        assert {k: records[k].nonfinite for k in bad} == bad and bad["0"] > 0
        assert math.isnan(records["0"].grad_W_norm)
        assert "nonfinite" in diagnose(watcher.history).codes
        net = nn.Sequential(nn.Linear(3, 6), nn.Sigmoid(), nn.Linear(6, 2)).to(F64)


# ---- AMP ---------------------------------------------------------------------------------------
def _amp_pair():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 3))
    return net, copy.deepcopy(net), torch.randn(32, 6), torch.randint(0, 3, (32,))


def _scaled_steps(net, scaler, X, y, steps, unscale=False, autocast=None):
    sgd = torch.optim.SGD(net.parameters(), lr=0.05)
    with watch(net, optimizer=sgd, scaler=scaler) as watcher:
        for _ in range(steps):
            sgd.zero_grad()
            if autocast is not None:
                with torch.autocast("cpu", dtype=autocast):
                    loss = nn.functional.cross_entropy(net(X), y)
            else:
                loss = nn.functional.cross_entropy(net(X), y)
            if scaler is None:
                loss.backward()
                sgd.step()
                continue
            scaler.scale(loss).backward()
            if unscale:
                scaler.unscale_(sgd)  # the clipping pattern: unscaled before step
            scaler.step(sgd)
            scaler.update()
    return watcher


@pytest.mark.parametrize("unscale", [False, True])
def test_grad_scaler_norms_are_unscaled(unscale):
    net, reference, X, y = _amp_pair()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 14)
    amp = _scaled_steps(net, scaler, X, y, 3, unscale=unscale)
    plain = _scaled_steps(reference, None, X, y, 3)
    assert len(amp.history) == len(plain.history) == 15 and amp.skipped_steps == []
    for a, b in zip(amp.history, plain.history, strict=True):
        for field in ("grad_W_norm", "grad_b_norm", "weight_norm", "update_ratio"):
            assert _close(getattr(a, field), getattr(b, field), 1e-6), field


def test_bfloat16_autocast_norms_close_to_float32():
    net, reference, X, y = _amp_pair()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    amp = _scaled_steps(net, scaler, X, y, 2, autocast=torch.bfloat16)
    plain = _scaled_steps(reference, None, X, y, 2)
    for a, b in zip(amp.history, plain.history, strict=True):
        if a.kind == "param":
            assert a.grad_W_norm == pytest.approx(b.grad_W_norm, rel=0.05)
        else:
            assert a.act_mean == pytest.approx(b.act_mean, rel=0.05, abs=1e-3)


def test_steps_the_scaler_skips_are_flagged():
    net, _, X, y = _amp_pair()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    sgd = torch.optim.SGD(net.parameters(), lr=0.05)
    with watch(net, optimizer=sgd, scaler=scaler) as watcher:
        for step in range(3):
            sgd.zero_grad()
            loss = nn.functional.cross_entropy(net(X), y)
            if step == 1:
                loss = loss * torch.tensor(math.inf)  # overflowing gradients
            scaler.scale(loss).backward()
            before = [p.detach().clone() for p in net.parameters()]
            scaler.step(sgd)
            scaler.update()
            if step == 1:
                assert all(torch.equal(p, q) for p, q in zip(before, net.parameters(),
                                                             strict=True))
    assert watcher.skipped_steps == [1]
    skipped = [r for r in watcher.history if r.step == 1 and r.kind == "param"]
    assert len(skipped) == 3
    assert all(r.update_ratio == 0.0 and r.nonfinite > 0 for r in skipped)
    assert all(r.nonfinite == 0 for r in watcher.history if r.step != 1)


# ---- verdicts, quick diagnosis, neurons ------------------------------------------------------
def _deep(activation, seed=0):
    torch.manual_seed(seed)
    layers = []
    for _ in range(6):
        linear = nn.Linear(20, 20)
        if activation == "sigmoid":  # LeCun N(0, 1/n): each layer scales δ by ≈ σ′ ≤ ¼
            nn.init.normal_(linear.weight, 0.0, 1.0 / math.sqrt(20))
            layers += [linear, nn.Sigmoid()]
        else:
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(20, 2))


def _loader(n=96, batch=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 20, generator=generator)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return DataLoader(TensorDataset(X, y), batch_size=batch, shuffle=False)


def test_saturating_sigmoid_net_yields_the_vanishing_finding():
    found = {}
    for activation in ("sigmoid", "relu"):
        net = _deep(activation)
        sgd = torch.optim.SGD(net.parameters(), lr=0.1)
        with watch(net, optimizer=sgd) as watcher:
            for x, t in _loader():
                sgd.zero_grad()
                nn.functional.cross_entropy(net(x), t).backward()
                sgd.step()
        found[activation] = diagnose(watcher.history)
    vanishing = found["sigmoid"].get("vanishing-gradients")
    assert vanishing is not None and vanishing.evidence["ratio_last_first"] > 10
    assert found["relu"].get("vanishing-gradients") is None  # the contrast: He + ReLU


def test_diagnose_torch_on_a_small_loader():
    net = _deep("sigmoid")
    before = [p.detach().clone() for p in net.parameters()]
    result = diagnose_torch(net, _loader(), nn.CrossEntropyLoss(), steps=8, lr=0.1)
    assert "vanishing-gradients" in result.findings.codes
    assert len(result.losses) == 8 and len(result.history) == 8 * 13
    assert sorted({r.step for r in result.history}) == list(range(8))
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))
    findings, history = result
    assert history is result.history and findings is result.findings
    # copy=False trains the caller's model with the caller's optimizer
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)
    diagnose_torch(net, _loader(), nn.CrossEntropyLoss(), steps=2, optimizer=adam, copy=False)
    assert not all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))
    assert _hooks_left(net, adam) == []


def test_classify_neurons_torch_matches_the_engine():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(150, 5)), rng.integers(0, 3, 150)
    for activation, scale in (("sigmoid", 30.0), ("relu", 1.0)):
        model, _, _ = _engine_pair(activation)
        model.dense_layers[0].W *= scale
        expected = classify_neurons(model, X, y)
        net = _to_torch(model, inplace=True)
        got = classify_neurons_torch(net, torch.from_numpy(X), torch.from_numpy(y),
                                     chunk_size=32)
        loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
                            batch_size=50)
        assert [n.state for n in classify_neurons_torch(net, loader)] == \
            [n.state for n in got]
        assert len(got) == len(expected) == 14
        for a, b in zip(expected, got, strict=True):
            assert (a.hidden, a.unit, a.state) == (b.hidden, b.unit, b.state)
            for field in ("active_fraction", "positive_fraction", "mean_derivative", "mean_z",
                          "accuracy_on_samples"):
                assert _close(getattr(a, field), getattr(b, field), 1e-9), field
        states = {n.state for n in got}
        assert ("dead" in states) if activation == "relu" else \
            {"saturated-wrong", "learning"} <= states
        assert _hooks_left(net) == []


# ---- distributed, doctor, no torch ----------------------------------------------------------
# In its own process, which ends with os._exit: the gloo process group's destructor, run when
# DDP's reducer is freed after destroy_process_group, can hang joining its threads (seen in a
# pytest worker, which then never finished).
SINGLE_RANK_SCRIPT = """
import copy, json, os, sys
import torch
import torch.distributed as dist
from torch import nn
import gradsight
from gradsight.adapters.torch import is_main_process

dist.init_process_group("gloo", init_method=f"file://{sys.argv[1]}", rank=0, world_size=1)
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
reference = copy.deepcopy(net)
ddp = nn.parallel.DistributedDataParallel(net)
X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
runs = []
for model, params, reduce in ((ddp, net.parameters(), True),
                              (reference, reference.parameters(), False)):
    sgd = torch.optim.SGD(params, lr=0.1)
    with gradsight.watch(model, optimizer=sgd, all_reduce=reduce) as watcher:
        for _ in range(2):
            sgd.zero_grad()
            (0.5 * ((model(X) - y) ** 2).sum() / X.shape[0]).backward()
            sgd.step()
    runs.append([r.to_dict() for r in watcher.history])
with open(sys.argv[2], "w") as f:
    json.dump({"runs": runs, "main": is_main_process()}, f)
dist.destroy_process_group()
os._exit(0)
"""


def test_ddp_wrapper_is_unwrapped_and_all_reduce_averages(tmp_path):
    import json

    script, out = tmp_path / "single_rank.py", tmp_path / "out.json"
    script.write_text(SINGLE_RANK_SCRIPT)
    done = run_bounded([sys.executable, str(script), str(tmp_path / "rendezvous"), str(out)],
                       timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    wrapped, plain = result["runs"]
    assert [r["layer"] for r in wrapped[:3]] == ["0", "1", "2"]
    assert len(wrapped) == len(plain) > 0
    for a, b in zip(wrapped, plain, strict=True):
        for field in FIELDS:
            assert _close(a[field], b[field], 1e-12), field
    assert result["main"]


def _factory(activation, init, n_inputs, n_outputs):
    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU,
           "tanh": nn.Tanh}[activation]
    layers, width = [], n_inputs
    for _ in range(3):
        linear = nn.Linear(width, 12)
        {"normal": lambda w: nn.init.normal_(w, 0.0, 1.0),
         "he_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
         "xavier_uniform": nn.init.xavier_uniform_}[init](linear.weight)
        layers += [linear, act()]
        width = 12
    return nn.Sequential(*layers, nn.Linear(width, n_outputs))


def test_torch_runner_measures_what_an_untrained_model_scores():
    from gradsight.diagnostics.fixes import doctor

    runner = torch_runner(_factory, "moons", dtype="float64")
    config = {"activation": "sigmoid", "init": "normal", "bias_init": "zeros", "loss": "auto",
              "optimizer": "sgd", "lr": 0.5, "epochs": 0, "batch_size": 32, "hidden": [],
              "seed": 3}
    outcome = runner({**config, "eval_loss": "cross_entropy"})
    # oracle: the same seed builds the same model; score it by hand on the held-out split
    X_train, X_test, y_train, y_test = runner.data.split(3)
    torch.manual_seed(3)
    net = _factory("sigmoid", "normal", 2, 2).to(F64)
    with torch.no_grad():
        logits = net(torch.from_numpy(X_test))
    expected = nn.functional.cross_entropy(logits, torch.from_numpy(y_test).long())
    assert outcome.loss == pytest.approx(float(expected), rel=1e-9)
    accuracy = float((logits.argmax(1) == torch.from_numpy(y_test)).double().mean())
    assert outcome.accuracy == pytest.approx(accuracy)
    net.zero_grad()
    nn.functional.cross_entropy(net(torch.from_numpy(X_train[:1000])),
                                torch.from_numpy(y_train[:1000]).long()).backward()
    ratio = net[4].bias.grad.norm() / net[0].bias.grad.norm()
    assert outcome.gradient_ratio == pytest.approx(float(ratio), rel=1e-9)
    result = doctor({**config, "data": "moons", "epochs": 6}, ["activation=relu, init=he_normal"],
                    runner=runner)
    assert result.baseline.outcome.layer_history and len(result.candidates) == 1
    trained = result.candidates[0].outcome
    assert trained.loss < outcome.loss and len(trained.history) == 6
    assert {r.epoch for r in trained.layer_history} == set(range(6))


def test_package_works_without_torch():
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # as if PyTorch were not installed
        import gradsight
        from gradsight import engine
        model = engine.mlp("2-3-1", seed=0)
        assert model.forward([[0.5, -0.5]]).shape == (1, 1)
        try:
            gradsight.watch(object())
        except gradsight.GradsightError as error:
            print(error)
        else:
            raise SystemExit("no error")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'gradsight[torch]'" in done.stdout
    assert "Traceback" not in done.stderr


# ---- the CLI: gradsight doctor --factory -----------------------------------------------------
FACTORY_MODULE = '''
from torch import nn

def build(activation, init, n_inputs, n_outputs):
    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    return nn.Sequential(nn.Linear(n_inputs, 8), act(), nn.Linear(8, 8), act(),
                         nn.Linear(8, n_outputs))
'''


def _cli(*args):
    from typer.testing import CliRunner

    from gradsight.cli import app

    return CliRunner().invoke(app, ["doctor", *args])


def test_cli_doctor_with_a_torch_factory(tmp_path, monkeypatch):
    import json

    (tmp_path / "gs_user_models.py").write_text(FACTORY_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    done = _cli("--factory", "gs_user_models:build", "--data", "moons", "--activation",
                "sigmoid", "--init", "xavier_uniform", "--epochs", "2", "--try",
                "activation=relu, init=he_normal", "--json", "--quiet")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["baseline"]["config"]["activation"] == "sigmoid"
    assert [c["change"] for c in result["candidates"]] == ["activation=relu, init=he_normal"]
    assert math.isfinite(result["baseline"]["loss"])


@pytest.mark.parametrize(("spec", "message"), [
    ("no_colon", "MODULE:FUNCTION"),
    ("gs_missing_module_xyz:build", "cannot import"),
    ("json:no_such_function", "no function"),
])
def test_cli_doctor_factory_errors_are_one_line(spec, message):
    done = _cli("--factory", spec, "--epochs", "1", "--quiet")
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr


def test_grad_scaler_without_optimizer_records_at_scaler_step():
    net, reference, X, y = _amp_pair()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    sgd = torch.optim.SGD(net.parameters(), lr=0.05)
    with watch(net, scaler=scaler) as watcher:  # no optimizer: no update ratio is known
        for _ in range(2):
            sgd.zero_grad()
            scaler.scale(nn.functional.cross_entropy(net(X), y)).backward()
            scaler.step(sgd)
            scaler.update()
    plain = _scaled_steps(reference, None, X, y, 2)
    assert len(watcher.history) == 10 and watcher.skipped_steps == []
    for a, b in zip(watcher.history, plain.history, strict=True):
        assert a.update_ratio is None
        assert _close(a.grad_W_norm, b.grad_W_norm, 1e-6)


DDP_SCRIPT = '''
import json, os, sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
import gradsight
from gradsight.adapters.torch import is_main_process


def run(rank, world, path, out):
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    ddp = nn.parallel.DistributedDataParallel(net)
    generator = torch.Generator().manual_seed(rank)  # each rank sees other data
    X = (1 + rank) * torch.randn(16, 3, dtype=torch.float64, generator=generator)
    y = torch.randn(16, 1, dtype=torch.float64, generator=generator)
    sgd = torch.optim.SGD(ddp.parameters(), lr=0.1)
    with gradsight.watch(ddp, optimizer=sgd, all_reduce=True) as shared, \\
            gradsight.watch(ddp, optimizer=sgd) as local:
        for _ in range(2):
            sgd.zero_grad()
            ((ddp(X) - y) ** 2).mean().backward()
            sgd.step()
    gathered = [None] * world
    dist.all_gather_object(gathered, [r.to_dict() for r in local.history])
    if is_main_process():
        with open(out, "w") as f:
            json.dump({"shared": [r.to_dict() for r in shared.history], "local": gathered}, f)
    dist.barrier()  # both ranks done before the group is torn down
    dist.destroy_process_group()
    os._exit(0)  # no interpreter teardown: gloo's destructors can hang joining threads


if __name__ == "__main__":
    mp.spawn(run, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
'''


def test_all_reduce_averages_over_two_ranks(tmp_path):
    import json

    script = tmp_path / "ddp_two_ranks.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "out.json"
    done = run_bounded([sys.executable, str(script), str(tmp_path / "rendezvous"), str(out)],
                       timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    shared, (rank0, rank1) = result["shared"], result["local"]
    assert len(shared) == len(rank0) == len(rank1) == 6
    for s, a, b in zip(shared, rank0, rank1, strict=True):
        if s["kind"] == "activation":  # the ranks saw different data: the mean of the two
            assert s["act_mean"] == pytest.approx((a["act_mean"] + b["act_mean"]) / 2)
            assert a["act_mean"] != pytest.approx(b["act_mean"])
            assert s["saturated_fraction"] == pytest.approx(
                (a["saturated_fraction"] + b["saturated_fraction"]) / 2)
        else:  # DDP averaged the gradients: every rank holds the same
            assert s["grad_W_norm"] == pytest.approx(a["grad_W_norm"], rel=1e-12)
            assert a["grad_W_norm"] == pytest.approx(b["grad_W_norm"], rel=1e-12)
            assert s["update_ratio"] == pytest.approx(a["update_ratio"], rel=1e-12)


def test_a_reused_activation_module_pools_its_calls():
    torch.manual_seed(0)
    act = nn.Tanh()
    first, second, head = nn.Linear(3, 5), nn.Linear(5, 4), nn.Linear(4, 1)
    net = nn.Sequential(first, act, second, act, head).to(F64)
    X = torch.randn(16, 3, dtype=F64)
    with watch(net) as watcher:
        net(X).sum().backward()
    with torch.no_grad():
        a1 = torch.tanh(first(X))
        a2 = torch.tanh(second(a1))
    pooled = torch.cat([a1.reshape(-1), a2.reshape(-1)])
    (record,) = [r for r in watcher.history if r.kind == "activation"]
    assert record.act_mean == pytest.approx(float(pooled.mean()), rel=1e-12)
    assert record.act_std == pytest.approx(float(pooled.std(correction=0)), rel=1e-10)
    saturated = float(((1 - pooled ** 2) < 0.01).double().mean())
    assert record.saturated_fraction == pytest.approx(saturated)
    assert [r.layer for r in watcher.history] == ["0", "1", "2", "4"]


def test_watch_rejects_what_it_cannot_watch():
    with pytest.raises(GradsightError, match="torch.nn.Module"):
        watch(object())
    with pytest.raises(GradsightError, match="no module gradsight can watch"):
        watch(nn.Sequential(nn.Flatten()))


def test_a_sparse_gradient_with_nan_is_counted_not_a_crash():
    emb = nn.Embedding(10, 3, sparse=True)
    model = nn.Sequential(emb, nn.Flatten(), nn.Linear(3, 1))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.tensor([[1], [2]])
    with watch(model, optimizer=sgd) as watcher:
        sgd.zero_grad()
        (model(x).sum() * float("nan")).backward()
        sgd.step()
    first = [r for r in watcher.history if r.kind == "param" and r.layer == "0"][0]
    assert first.nonfinite == 6  # the 2 looked-up rows × 3 entries the sparse gradient stores
    assert math.isnan(first.grad_W_norm)


def test_norms_of_layers_in_different_dtypes_are_stacked_in_the_common_dtype():
    from gradsight.adapters.torch._reduce import stack_scalars

    joined = stack_scalars([torch.tensor(1.5, dtype=torch.float32),
                            torch.tensor(1e300, dtype=torch.float64)])
    assert joined.dtype == torch.float64 and joined.tolist() == [1.5, 1e300]
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1).double())
    model[0].register_forward_hook(lambda module, args, out: out.double())
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, optimizer=sgd) as watcher:
        sgd.zero_grad()
        model(torch.randn(5, 3)).sum().backward()
        sgd.step()
    grads = {r.layer: r.grad_W_norm for r in watcher.history if r.kind == "param"}
    assert grads["0"] == pytest.approx(float(model[0].weight.grad.norm()), rel=1e-6)
    assert grads["2"] == pytest.approx(float(model[2].weight.grad.norm()), rel=1e-12)
