"""The false alarms and misses of the old rules, each as the small PyTorch set-up that showed
it (dense nets on 2-D data, watched as a practitioner would: ``watch(model, optimizer=opt,
loss_fn=loss_fn)`` with the default schedule, then ``diagnose(watcher.history)``).

Every case failed with the rules before they were calibrated; the oracle of each is a
measurement of the run's own, taken with plain PyTorch (accuracy, the dead share over the
data, the gradients read from ``p.grad``), not gradsight's numbers.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from sklearn.datasets import make_blobs, make_circles, make_moons  # noqa: E402
from torch import nn  # noqa: E402

import gradsight  # noqa: E402

pytestmark = pytest.mark.slow  # each case trains a small network for a few hundred steps


def _data(name: str, seed: int, noise: float | None = None):
    if name == "circles":
        X, y = make_circles(512, noise=0.1 if noise is None else noise, factor=0.5,
                            random_state=seed)
    elif name == "moons":
        X, y = make_moons(512, noise=0.2 if noise is None else noise, random_state=seed)
    else:
        X, y = make_blobs(512, centers=4, random_state=seed, cluster_std=1.5)
    X = (X - X.mean(0)) / X.std(0)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


def _mlp(widths: list[int], act, out: int = 2, std: float | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=False):
        linear = nn.Linear(a, b)
        if std is not None:
            nn.init.normal_(linear.weight, 0.0, std)
        layers += [linear, act()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out))


def _train(model, X, y, optimizer, epochs: int = 50, seed: int = 0):
    """Train with mini-batches of 32; (findings, accuracy, first-layer ‖∂C/∂W‖ per step)."""
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    first_grads = []
    with gradsight.watch(model, optimizer=optimizer, loss_fn=loss_fn) as watcher:
        for _ in range(epochs):
            order = torch.randperm(len(X), generator=generator)
            for i in range(0, len(X), 32):
                batch = order[i:i + 32]
                optimizer.zero_grad()
                loss_fn(model(X[batch]), y[batch]).backward()
                first_grads.append(float(first.weight.grad.norm()))
                optimizer.step()
    with torch.no_grad():
        accuracy = float((model(X).argmax(1) == y).float().mean())
    return gradsight.diagnose(watcher.history), accuracy, first_grads


def _problems(findings) -> list[str]:
    return [f.code for f in findings if f.severity != "info"]


def _dead_share(model, X) -> float:
    """The largest share of a ReLU layer's units that output 0 on every sample (own forward)."""
    worst, h = 0.0, X
    with torch.no_grad():
        for module in model:
            h = module(h)
            if isinstance(module, nn.ReLU):
                worst = max(worst, float((h <= 0).all(0).float().mean()))
    return worst


@pytest.mark.parametrize("seed", [0, 1])
def test_healthy_relu_networks_with_some_dead_units_get_no_warning(seed):
    """Before: "WARNING Dead ReLU units … lower the learning rate" at 9–22% dead units on
    networks that reach their accuracy ceiling."""
    torch.manual_seed(seed)
    X, y = _data("circles", seed)
    model = _mlp([2, 32, 32, 32], nn.ReLU)
    findings, accuracy, _ = _train(model, X, y, torch.optim.Adam(model.parameters(), 1e-2),
                                   seed=seed)
    assert accuracy > 0.97 and 0.05 < _dead_share(model, X) < 0.5
    assert _problems(findings) == []
    assert findings.get("dead-units").severity == "info"


def test_healthy_sgd_relu_network_on_blobs_gets_no_warning():
    torch.manual_seed(2)
    X, y = _data("blobs", 2)
    model = _mlp([2, 16, 16], nn.ReLU, out=4)
    findings, accuracy, _ = _train(model, X, y, torch.optim.SGD(model.parameters(), 0.1), seed=2)
    assert accuracy > 0.9
    assert _problems(findings) == []


def test_vanishing_gradients_do_not_also_blame_the_learning_rate():
    """Before: "Updates tiny: learning rate too low" on every vanishing-gradient run — the
    median update over the layers is tiny because the early layers are starved."""
    torch.manual_seed(0)
    X, y = _data("moons", 0)
    model = _mlp([2] + [16] * 8, nn.Sigmoid)
    findings, accuracy, first_grads = _train(model, X, y,
                                             torch.optim.SGD(model.parameters(), 0.01),
                                             epochs=20)
    last = model[-1].weight.grad.norm()
    assert accuracy < 0.6 and first_grads[-1] < 1e-4 * float(last)  # starved, confirmed
    assert _problems(findings)[0] == "vanishing-gradients"
    assert "small-updates" not in findings.codes


@pytest.mark.parametrize("seed", [0, 1])
def test_a_deep_tanh_network_that_learns_is_not_called_vanishing_or_exploding(seed):
    """Before: "Vanishing gradients" (ratio 11–17) or "exploding" on deep tanh nets that train
    fine; the early layers' weights move at a fifth of the last layer's relative rate."""
    torch.manual_seed(seed)
    X, y = _data("moons", seed)
    model = _mlp([2] + [32] * 6, nn.Tanh)
    findings, accuracy, _ = _train(model, X, y, torch.optim.SGD(model.parameters(), 0.05),
                                   seed=seed)
    assert accuracy > 0.8
    assert _problems(findings) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_a_saturated_network_is_not_called_exploding(seed):
    """Before: "Exploding gradients" listed with the saturation, from the first/last hidden
    gradient ratio alone, while the gradient norms were 1–4 and did not grow."""
    torch.manual_seed(seed)
    X, y = _data("moons", seed)
    model = _mlp([2, 32, 32], nn.Tanh, std=8.0)
    findings, _, first_grads = _train(model, X, y, torch.optim.SGD(model.parameters(), 0.05),
                                      seed=seed)
    assert max(first_grads) < 10.0
    assert "exploding-gradients" not in findings.codes
    assert _problems(findings)[0] == "saturated-layers"


@pytest.mark.parametrize("seed", [0, 1])
def test_a_transient_explosion_is_seen_and_named_first(seed):
    """Before: Adam at η = 1 — the gradient norm jumps by ~1000× in the first steps and falls
    back — gave no "exploding" (the growth compares the first and last fifths) or listed the
    dead units it leaves behind first."""
    torch.manual_seed(seed)
    X, y = _data("moons", seed)
    model = _mlp([2, 32, 32, 32], nn.ReLU)
    findings, _, first_grads = _train(model, X, y, torch.optim.Adam(model.parameters(), 1.0),
                                      seed=seed)
    assert max(first_grads[:20]) > 100 * first_grads[0]  # the spike, measured by hand
    assert _problems(findings)[0] == "exploding-gradients"
    assert findings.get("exploding-gradients").evidence["spike"] > 100


def test_a_dead_first_layer_is_dead_units_not_an_infinite_vanishing_ratio():
    """Before: "vanishing gradients, ratio inf" (critical, first) when the first layer's
    gradient is exactly 0 behind dead units; the cause is the dead units."""
    torch.manual_seed(0)
    X, y = _data("moons", 0)
    model = _mlp([2, 32, 32, 32], nn.ReLU)
    nn.init.constant_(model[0].bias, -20.0)
    findings, _, first_grads = _train(model, X, y, torch.optim.SGD(model.parameters(), 0.1),
                                      epochs=5)
    assert max(first_grads) == 0.0 and _dead_share(model, X) == 1.0
    assert _problems(findings)[0] == "dead-units"
    assert findings.get("dead-units").severity == "critical"
    assert "vanishing-gradients" not in findings.codes


@pytest.mark.parametrize("seed", [0, 1])
def test_a_network_converged_above_the_noise_floor_has_not_stalled(seed):
    """Before: "The loss has stalled" on networks whose loss stays above the noise floor of
    noisy data (make_moons with noise 0.4: no classifier gets near 100%)."""
    torch.manual_seed(seed)
    X, y = _data("moons", seed, noise=0.4)
    model = _mlp([2, 32, 32], nn.ReLU)
    findings, accuracy, _ = _train(model, X, y, torch.optim.Adam(model.parameters(), 1e-2),
                                   epochs=80, seed=seed)
    assert 0.8 < accuracy < 0.95
    assert "stalled-loss" not in findings.codes


def test_a_deep_sigmoid_network_trained_with_adam_learns_because_adam_rescales():
    """The same deep sigmoid network: with SGD it is vanishing (a warning at least); with
    Adam the first layer's steps are as large as the last's although its gradient is
    thousands of times smaller — an info that says why it learns."""
    X, y = _data("moons", 0)
    torch.manual_seed(0)
    sgd = _mlp([2] + [16] * 6, nn.Sigmoid)
    with_sgd, sgd_accuracy, _ = _train(sgd, X, y, torch.optim.SGD(sgd.parameters(), 0.05),
                                       epochs=20)
    torch.manual_seed(0)
    adam = _mlp([2] + [16] * 6, nn.Sigmoid)
    with_adam, adam_accuracy, _ = _train(adam, X, y, torch.optim.Adam(adam.parameters(), 1e-2),
                                         epochs=20)
    assert adam_accuracy > 0.85 > sgd_accuracy
    assert _problems(with_sgd)[0] == "vanishing-gradients"
    finding = with_adam.get("vanishing-gradients")
    assert finding is not None and finding.severity == "info"
    assert "compensated" in finding.title and "Adam" in finding.explanation
    assert finding.evidence["update_ratio_first_last"] > 0.1
    assert _problems(with_adam) == []


def test_an_oscillating_loss_is_found_with_the_learning_rate_as_first_fix():
    """Before: no rule for a loss that goes up and down. SGD at η = 3 on a ReLU net; the
    oracle is the run's own loss per epoch, which rises in at least a quarter of them."""
    torch.manual_seed(1)
    X, y = _data("moons", 1)
    model = _mlp([2, 32, 32], nn.ReLU)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), 3.0)
    generator = torch.Generator().manual_seed(1)
    epochs = []
    with gradsight.watch(model, optimizer=optimizer, loss_fn=loss_fn) as watcher:
        for _ in range(50):
            order, total = torch.randperm(len(X), generator=generator), 0.0
            for i in range(0, len(X), 32):
                batch = order[i:i + 32]
                optimizer.zero_grad()
                loss = loss_fn(model(X[batch]), y[batch])
                loss.backward()
                optimizer.step()
                total += float(loss) * len(batch)
            epochs.append(total / len(X))
    rising = sum(b > a for a, b in zip(epochs, epochs[1:], strict=False)) / (len(epochs) - 1)
    assert rising >= 0.25
    finding = gradsight.diagnose(watcher.history).get("oscillating-loss")
    assert finding is not None and finding.severity == "warning"
    assert "η" in finding.fixes[0] and finding.changes[0] == {"lr_factor": 0.1}
    assert finding.evidence["rising_share"] >= 0.2  # the threshold, of 20 spans


@pytest.mark.parametrize("output", ["softmax module", "functional softmax", "sigmoid"])
def test_an_output_activation_that_does_not_suit_the_loss_is_named_first(output):
    """Before: no rule — softmax followed by CrossEntropyLoss (log-softmax applied again) or
    a sigmoid into a categorical cross-entropy trained without a word."""
    torch.manual_seed(0)
    X, y = _data("moons", 0)
    body = _mlp([2, 32, 32], nn.ReLU)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x):
            z = self.body(x)
            if output == "functional softmax":
                return torch.softmax(z, dim=1)
            return torch.sigmoid(z) if output == "sigmoid" else z

    model = nn.Sequential(body, nn.Softmax(dim=1)) if output == "softmax module" else Net()
    findings, _, _ = _train(model, X, y, torch.optim.Adam(model.parameters(), 1e-2),
                            epochs=10)
    expected = "sigmoid" if output == "sigmoid" else "softmax"
    assert _problems(findings)[0] == "output-loss-mismatch"
    assert findings[0].evidence["output_activation"] == expected
    assert findings[0].evidence["loss"] == "cross_entropy"


def test_logits_into_cross_entropy_are_no_mismatch():
    torch.manual_seed(0)
    X, y = _data("moons", 0)
    model = _mlp([2, 32, 32], nn.ReLU)
    findings, _, _ = _train(model, X, y, torch.optim.Adam(model.parameters(), 1e-2), epochs=5)
    assert "output-loss-mismatch" not in findings.codes


def test_a_first_loss_far_above_chance_is_a_bad_initialisation():
    """Before: "no problem found" for a language model whose head is tied to an embedding
    drawn from N(0, 1): its first loss is ~10× the chance level ln V."""
    torch.manual_seed(0)
    vocab, width = 64, 64

    class TiedLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, width)  # N(0, 1): logits of size √width
            self.hidden = nn.Linear(width, width)
            self.head = nn.Linear(width, vocab, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, tokens):
            return self.head(torch.relu(self.hidden(self.embed(tokens))) + self.embed(tokens))

    model = TiedLM()
    tokens = torch.randint(0, vocab, (16, 12))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    with gradsight.watch(model, optimizer=optimizer, loss_fn=loss_fn) as watcher:
        for _ in range(30):
            optimizer.zero_grad()
            logits = model(tokens[:, :-1])
            loss = loss_fn(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
            if _ == 0:
                first = float(loss)  # the oracle: the loss of the first step, by hand
            loss.backward()
            optimizer.step()
    findings = gradsight.diagnose(watcher.history)
    finding = findings.get("bad-initial-loss")
    assert first > 3 * math.log(vocab)
    assert finding is not None and finding.severity == "warning"
    assert finding.evidence["first_loss"] == pytest.approx(first, rel=1e-5)
    assert finding.evidence["chance_level"] == pytest.approx(math.log(vocab))


def test_the_records_carry_the_mean_loss_of_the_steps_since_the_last_record():
    """``loss_window`` on a sparse schedule: the mean of every batch loss since the previous
    record, against the losses kept by hand."""
    torch.manual_seed(0)
    X, y = _data("moons", 0)
    model = _mlp([2, 16], nn.ReLU)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), 0.1)
    losses = []
    with gradsight.watch(model, optimizer=optimizer, loss_fn=loss_fn, every=5) as watcher:
        for step in range(12):
            batch = slice(32 * step, 32 * step + 32)
            optimizer.zero_grad()
            loss = loss_fn(model(X[batch]), y[batch])
            losses.append(float(loss))
            loss.backward()
            optimizer.step()
    windows = {r.step: (r.loss, r.loss_window) for r in watcher.history}
    assert sorted(windows) == [0, 5, 10]
    for step, start in ((0, 0), (5, 1), (10, 6)):
        loss, window = windows[step]
        assert loss == pytest.approx(losses[step], rel=1e-6)
        assert window == pytest.approx(sum(losses[start:step + 1]) / (step + 1 - start),
                                       rel=1e-6)


def test_the_loss_curve_holds_every_step_in_spans_of_ten_and_closes_at_records():
    """``history.loss_curve``: the mean loss of spans of 10 steps between records and of the
    rest of each window at a record, against the losses kept by hand."""
    torch.manual_seed(0)
    X, y = _data("moons", 0)
    model = _mlp([2, 8], nn.ReLU)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), 0.1)
    losses = []
    with gradsight.watch(model, optimizer=optimizer, loss_fn=loss_fn, every=25) as watcher:
        for step in range(60):
            batch = slice((8 * step) % 504, (8 * step) % 504 + 8)
            optimizer.zero_grad()
            loss = loss_fn(model(X[batch]), y[batch])
            losses.append(float(loss))
            loss.backward()
            optimizer.step()
    # records at 0, 25, 50: spans 1–10, 11–20, then 21–25 closed by the record at 25, ...
    expected = [(0, range(0, 1)), (10, range(1, 11)), (20, range(11, 21)), (25, range(21, 26)),
                (35, range(26, 36)), (45, range(36, 46)), (50, range(46, 51))]
    curve = watcher.history.loss_curve
    for (step, mean), (want_step, steps) in zip(curve, expected, strict=True):
        assert step == want_step
        assert mean == pytest.approx(sum(losses[s] for s in steps) / len(steps), rel=1e-6)
    assert [s for s, _ in curve] == [0, 10, 20, 25, 35, 45, 50]  # 51–59: no record closed them
