"""watch() on the architectures people train: every parameter accounted for (coverage), each
record's role, the order layers act in, and every recorded number recomputed by hand.

Models are written out by hand (torchvision cannot be imported here): a CNN with conv biases
before BatchNorm and in-place ReLU, a ResNet-shaped net, a Transformer encoder with a tied
embedding/head and GELU, LSTM/GRU/RNN (bidirectional, two layers), nn.MultiheadAttention in
both of its parameter layouts. PyTorch is the oracle: each norm is recomputed from ``p.grad``
(a block of ``in_proj_weight`` for q, k, v) with ``torch.linalg.vector_norm``.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import gradsight  # noqa: E402
from gradsight.diagnostics import LayerStats  # noqa: E402
from gradsight.diagnostics.context import Context  # noqa: E402
from gradsight.diagnostics.coverage import Coverage  # noqa: E402
from gradsight.diagnostics.findings import Thresholds  # noqa: E402
from gradsight.diagnostics.history import (  # noqa: E402
    history_from_csv,
    history_from_json,
    history_to_csv,
    history_to_json,
)

REL = 1e-5  # float32 norms: the watcher's t·t against vector_norm, both in float32


# ---- models ---------------------------------------------------------------------------------
class CNN(nn.Module):
    """Conv(bias=True) → BatchNorm2d → ReLU(inplace=True), three times, then a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.features(x))


class Block(nn.Module):
    """A ResNet basic block; the downsample branch runs last, as in torchvision."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyLM(nn.Module):
    """Embedding → 2 TransformerEncoderLayers (d 32, 4 heads, GELU, batch_first) → a head
    whose weight is the embedding's (tied)."""

    def __init__(self, vocab: int = 20, d: int = 32, head_bias: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 4, dim_feedforward=64, dropout=0.0,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab, bias=head_bias)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)))


class Recurrent(nn.Module):
    def __init__(self, kind: str, bidirectional: bool = False) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(6, 12, num_layers=2, batch_first=True,
                                     bidirectional=bidirectional)
        self.fc = nn.Linear(12 * (2 if bidirectional else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class Attention(nn.Module):
    """Linear → MultiheadAttention (packed in_proj, or separate q/k/v weights when the keys
    and values have their own widths) → Linear."""

    def __init__(self, separate: bool = False) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.separate = separate
        extra = {"kdim": 10, "vdim": 12} if separate else {}
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True, **extra)
        if separate:
            self.keys = nn.Linear(6, 10)
            self.values = nn.Linear(6, 12)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        h = self.inp(x)
        k, v = (self.keys(x), self.values(x)) if self.separate else (h, h)
        out, _ = self.attn(h, k, v)
        return self.fc(out.mean(dim=1))


def _data(model: nn.Module, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(model, TinyLM):
        return torch.randint(0, 20, (8, 10)), torch.randint(0, 20, (8, 10))
    if isinstance(model, (Recurrent, Attention)) or getattr(model, "sequences", False):
        return torch.randn(batch, 7, 6), torch.randint(0, 3, (batch,))
    return torch.randn(batch, 3, 8, 8), torch.randint(0, 4, (batch,))


def train(model: nn.Module, steps: int = 3, optimizer: torch.optim.Optimizer | None = None,
          seed: int = 0, **watch_args):
    """Train on one fixed synthetic batch with Adam; returns (watcher, grads of the last step,
    weights before the last step, weights after it)."""
    torch.manual_seed(seed)
    x, y = _data(model)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    before: dict[str, torch.Tensor] = {}
    with gradsight.watch(model, optimizer=opt, every=1, **watch_args) as watcher:
        for _ in range(steps):
            opt.zero_grad()
            out = model(x)
            nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            opt.step()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.grad is not None}
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return watcher, grads, before, after


def last_step(watcher) -> dict[str, LayerStats]:
    history = watcher.history
    step = max(r.step for r in history)
    return {r.layer: r for r in history if r.step == step and r.kind == "param"}


def norm(*tensors: torch.Tensor) -> float:
    return math.sqrt(sum(float(torch.linalg.vector_norm(t.double())) ** 2 for t in tensors))


def close(measured: float | None, expected: float) -> bool:
    return measured is not None and math.isclose(measured, expected, rel_tol=REL, abs_tol=1e-12)


def check_record(record: LayerStats, weights: list, biases: list, grads, before, after) -> None:
    """Every number of one record against the hand computation: (parameter name, row slice
    or None) for the W and the b parts."""
    def block(table, name, rows):
        return table[name] if rows is None else table[name][rows]

    assert close(record.grad_W_norm, norm(*(block(grads, n, r) for n, r in weights)))
    if biases:
        assert close(record.grad_b_norm, norm(*(block(grads, n, r) for n, r in biases)))
    else:
        assert record.grad_b_norm is None
    old = norm(*(block(before, n, r) for n, r in weights))
    assert close(record.weight_norm, old)
    change = norm(*(block(after, n, r) - block(before, n, r) for n, r in weights))
    assert math.isclose(record.update_ratio, change / old, rel_tol=1e-4)


def order(watcher) -> list[str]:
    return [name for name, _ in sorted(last_step(watcher).items(), key=lambda kv: kv[1].index)]


def no_false_finding(findings) -> None:
    assert not [f for f in findings if f.severity in ("critical", "warning")], str(findings)
    assert "vanishing-gradients" not in findings.codes
    assert "exploding-gradients" not in findings.codes


# ---- recurrent layers -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_weights_are_watched_per_layer_and_direction(kind, bidirectional):
    torch.manual_seed(0)
    model = Recurrent(kind, bidirectional)
    watcher, grads, before, after = train(model)
    assert watcher.coverage.fraction == 1.0 and watcher.coverage.left_out == {}
    suffixes = ["", "_reverse"] if bidirectional else [""]
    names = [f"rnn.l{k}{s}" for k in range(2) for s in suffixes]
    assert order(watcher) == [*names, "fc"]
    records = last_step(watcher)
    for name in names:
        key = name.removeprefix("rnn.")
        layer, sfx = key.split("_", 1)[0], "_reverse" if key.endswith("_reverse") else ""
        weights = [(f"rnn.weight_{g}_{layer}{sfx}", None) for g in ("ih", "hh")]
        biases = [(f"rnn.bias_{g}_{layer}{sfx}", None) for g in ("ih", "hh")]
        check_record(records[name], weights, biases, grads, before, after)
        assert records[name].role == "hidden"
    assert records["fc"].role == "output"
    check_record(records["fc"], [("fc.weight", None)], [("fc.bias", None)], grads, before,
                 after)


def test_lstm_coverage_was_eleven_percent():
    """Before: only the head of an LSTM model was watched (its weight_ih/hh were not)."""
    torch.manual_seed(0)
    model = Recurrent("LSTM")
    watcher, *_ = train(model, steps=1)
    assert {"rnn.l0", "rnn.l1"} <= set(last_step(watcher))
    assert watcher.coverage.watched == sum(p.numel() for p in model.parameters())


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_projection_and_cells():
    """LSTM(proj_size) adds weight_hr to each layer's W; an LSTMCell is one record."""

    class Cells(nn.Module):
        sequences = True

        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(6, 12, proj_size=4, batch_first=True)
            self.cell = nn.GRUCell(4, 5)
            self.fc = nn.Linear(5, 3)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(self.cell(out[:, -1]))

    torch.manual_seed(0)
    model = Cells()
    watcher, grads, before, after = train(model, optimizer=torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9))
    assert watcher.coverage.fraction == 1.0
    assert order(watcher) == ["lstm.l0", "cell", "fc"]
    records = last_step(watcher)
    check_record(records["lstm.l0"], [("lstm.weight_ih_l0", None), ("lstm.weight_hh_l0", None),
                                      ("lstm.weight_hr_l0", None)],
                 [("lstm.bias_ih_l0", None), ("lstm.bias_hh_l0", None)], grads, before, after)
    check_record(records["cell"], [("cell.weight_ih", None), ("cell.weight_hh", None)],
                 [("cell.bias_ih", None), ("cell.bias_hh", None)], grads, before, after)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_healthy_recurrent_run_has_no_false_finding(kind):
    torch.manual_seed(1)
    watcher, *_ = train(Recurrent(kind, bidirectional=True), steps=30)
    no_false_finding(gradsight.diagnose(watcher.history))


# ---- attention ------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum"])
def test_attention_projections_split_into_q_k_v(optimizer):
    torch.manual_seed(0)
    model = Attention()
    opt = {"adam": lambda p: torch.optim.Adam(p, lr=1e-3),
           "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
           "momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)}[optimizer](
        model.parameters())
    watcher, grads, before, after = train(model, optimizer=opt)
    assert watcher.coverage.fraction == 1.0 and watcher.coverage.left_out == {}
    # out_proj's own forward hook never fires (MHA is functional): placed after v
    assert order(watcher) == ["inp", "attn.q", "attn.k", "attn.v", "attn.out_proj", "fc"]
    records = last_step(watcher)
    for i, key in enumerate("qkv"):
        rows = slice(16 * i, 16 * (i + 1))
        check_record(records[f"attn.{key}"], [("attn.in_proj_weight", rows)],
                     [("attn.in_proj_bias", rows)], grads, before, after)
        assert records[f"attn.{key}"].role == "hidden"
    check_record(records["attn.out_proj"], [("attn.out_proj.weight", None)],
                 [("attn.out_proj.bias", None)], grads, before, after)
    assert records["fc"].role == "output"


def test_attention_with_separate_key_and_value_widths():
    torch.manual_seed(0)
    model = Attention(separate=True)
    watcher, grads, before, after = train(model)
    assert model.attn.in_proj_weight is None
    assert watcher.coverage.fraction == 1.0
    records = last_step(watcher)
    for i, key in enumerate("qkv"):
        check_record(records[f"attn.{key}"], [(f"attn.{key}_proj_weight", None)],
                     [("attn.in_proj_bias", slice(16 * i, 16 * (i + 1)))], grads, before, after)
    names = order(watcher)
    assert names.index("attn.q") < names.index("attn.out_proj") < names.index("fc")


# ---- the Transformer with a tied embedding ----------------------------------------------------
def test_transformer_tied_embedding_recorded_once_in_forward_order():
    torch.manual_seed(0)
    model = TinyLM()
    watcher, grads, before, after = train(model)
    coverage = watcher.coverage
    assert coverage.fraction == 1.0 and coverage.left_out == {}
    assert coverage.shared == {"embed": ["head"]}
    records = last_step(watcher)
    assert "head" not in records
    # the tied weight's gradient is the sum of both uses: recorded once, under "embed"
    check_record(records["embed"], [("embed.weight", None)], [], grads, before, after)
    assert records["embed"].role == "embedding"
    expected = ["embed"]
    for k in range(2):
        p = f"encoder.layers.{k}."
        expected += [p + "self_attn.q", p + "self_attn.k", p + "self_attn.v",
                     p + "self_attn.out_proj", p + "norm1", p + "linear1", p + "linear2",
                     p + "norm2"]
    assert order(watcher) == expected
    roles = {name: r.role for name, r in records.items()}
    assert {n for n, role in roles.items() if role == "norm"} == {
        f"encoder.layers.{k}.norm{j}" for k in range(2) for j in (1, 2)}
    # the head acts last but its weight is recorded under "embed": no output record
    assert "output" not in roles.values()
    for k in range(2):
        p = f"encoder.layers.{k}."
        for i, key in enumerate("qkv"):
            rows = slice(32 * i, 32 * (i + 1))
            check_record(records[p + "self_attn." + key],
                         [(p + "self_attn.in_proj_weight", rows)],
                         [(p + "self_attn.in_proj_bias", rows)], grads, before, after)
        for name in ("linear1", "linear2", "norm1", "norm2", "self_attn.out_proj"):
            check_record(records[p + name], [(p + name + ".weight", None)],
                         [(p + name + ".bias", None)], grads, before, after)
    # every parameter appears in exactly one record
    counted = sum(1 for _ in records)
    assert counted == 1 + 2 * 8


def test_transformer_before_split_covered_two_thirds():
    """Before: in_proj_weight was skipped (66% covered) and out_proj was ordered last."""
    torch.manual_seed(0)
    watcher, *_ = train(TinyLM(), steps=1)
    names = order(watcher)
    assert "encoder.layers.0.self_attn.q" in names
    assert names.index("encoder.layers.0.self_attn.out_proj") < names.index(
        "encoder.layers.0.linear1")


def test_tied_head_with_its_own_bias():
    torch.manual_seed(0)
    model = TinyLM(head_bias=True)
    watcher, grads, before, after = train(model)
    records = last_step(watcher)
    assert watcher.coverage.fraction == 1.0
    assert records["head"].grad_W_norm is None and records["head"].weight_norm is None
    assert close(records["head"].grad_b_norm, norm(grads["head.bias"]))
    assert records["head"].role == "output"
    assert watcher.coverage.shared == {"embed": ["head"]}


def test_healthy_transformer_has_no_false_finding():
    torch.manual_seed(2)
    watcher, *_ = train(TinyLM(), steps=30)
    findings = gradsight.diagnose(watcher.history)
    no_false_finding(findings)
    assert findings.coverage.fraction == 1.0


# ---- CNN with BatchNorm, ResNet ---------------------------------------------------------------
def test_cnn_with_batchnorm_roles_order_and_numbers():
    torch.manual_seed(0)
    model = CNN()
    watcher, grads, before, after = train(model)
    assert watcher.coverage.fraction == 1.0
    names = ["features.0", "features.1", "features.3", "features.4", "features.7",
             "features.8", "fc"]
    assert order(watcher) == names
    records = last_step(watcher)
    assert [records[n].role for n in names] == ["hidden", "norm", "hidden", "norm", "hidden",
                                               "norm", "output"]
    for name in names:
        check_record(records[name], [(name + ".weight", None)], [(name + ".bias", None)],
                     grads, before, after)


def test_cnn_conv_bias_before_batchnorm_gives_no_false_vanishing():
    """Before: the conv bias's gradient (0 by construction under BatchNorm) was read as the
    first layer's speed: a critical "vanishing gradients" with a ratio of ~1e6."""
    torch.manual_seed(1)
    watcher, *_ = train(CNN(), steps=30)
    records = last_step(watcher)
    assert records["features.0"].grad_b_norm < 1e-4 * records["features.0"].grad_W_norm
    findings = gradsight.diagnose(watcher.history)
    no_false_finding(findings)
    # at thresholds that always fire, the depth finding says which biases it left out
    strict = gradsight.diagnose(watcher.history, vanishing_warning=1.0001,
                                vanishing_critical=1.0001)
    depth = strict.get("vanishing-gradients") or strict.get("exploding-gradients")
    assert depth is not None and depth.evidence["field"] == "grad_W_norm"
    assert set(depth.evidence["excluded_biases"]) == {"features.0", "features.3", "features.7"}


def test_a_bias_before_batchnorm_is_known_from_the_structure_in_bf16_too():
    """The bias's zero gradient is found from what feeds what (autograd's graph), not only
    from the numbers: under bf16 autocast the measured ‖∂C/∂b‖/‖∂C/∂W‖ of a conv before
    BatchNorm is far above float32's 1e-7 (it was 7e-4 here) — the numbers alone would take
    the bias for one that learns."""
    torch.manual_seed(1)
    model = CNN()
    x, y = _data(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gradsight.watch(model, optimizer=opt, every=1) as watcher:
        for _ in range(20):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    records = last_step(watcher)
    convs = ["features.0", "features.3", "features.7"]
    for name in convs:
        assert "BatchNorm2d" in records[name].bias_zero_by, name
    assert records["fc"].bias_zero_by is None
    measured = max(r.grad_b_norm / r.grad_W_norm for r in watcher.history if r.layer in convs)
    assert measured > 1e-4  # bf16: the numbers alone would not have told
    strict = gradsight.diagnose(watcher.history, vanishing_warning=1.0001,
                                vanishing_critical=1.0001)
    depth = strict.get("vanishing-gradients") or strict.get("exploding-gradients")
    assert depth is not None and depth.evidence["field"] == "grad_W_norm"
    assert set(depth.evidence["excluded_biases"]) == set(convs)
    assert "BatchNorm2d 'features.1'" in depth.evidence["excluded_biases"]["features.0"]


@pytest.mark.parametrize("case", ["relu between", "eval mode", "other channels"])
def test_a_bias_the_normalisation_does_not_remove_is_not_excluded(case):
    torch.manual_seed(0)
    if case == "relu between":  # BatchNorm after the ReLU: the bias shifts the ReLU's input
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(8),
                              nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
    elif case == "eval mode":  # running statistics: a constant, the bias passes through
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                              nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
        model[1].eval()
    else:  # a LayerNorm over the features removes their mean only, not a bias per feature
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.LayerNorm(16),
                              nn.Linear(16, 4))
    x = torch.randn(8, 3, 8, 8)
    y = torch.randint(0, 4, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gradsight.watch(model, optimizer=opt, every=1) as watcher:
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert all(r.bias_zero_by is None for r in watcher.history)
    first = [r for r in watcher.history if r.kind == "param" and r.role == "hidden"][0]
    assert first.grad_b_norm > 1e-3 * first.grad_W_norm  # the bias does learn


def test_an_attention_key_bias_is_known_to_be_zero_by_construction():
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(4, 5, 16)
    with gradsight.watch(attention, every=1) as watcher:
        out, _ = attention(x, x, x)
        out.square().mean().backward()
    records = {r.layer: r for r in watcher.history if r.kind == "param"}
    assert "softmax" in records["multiheadattention.k"].bias_zero_by
    assert records["multiheadattention.q"].bias_zero_by is None
    assert records["multiheadattention.v"].bias_zero_by is None
    # the oracle: autograd's gradient of the key block of in_proj_bias
    k_bias_grad = attention.in_proj_bias.grad[16:32]
    assert float(k_bias_grad.abs().max()) < 1e-6 * float(attention.in_proj_bias.grad.abs().max())


def test_resnet_roles_numbers_and_depth_compares_convolutions_only():
    torch.manual_seed(0)
    model = ResNet()
    watcher, grads, before, after = train(model)
    assert watcher.coverage.fraction == 1.0
    names = order(watcher)
    assert names[0] == "conv1" and names[-1] == "fc"
    # the downsample branch acts after conv2/bn2 in this block's forward
    assert names.index("layer2.bn2") < names.index("layer2.downsample.0")
    records = last_step(watcher)
    for name, record in records.items():
        expected = {"fc": "output"}.get(name, "norm" if "bn" in name or name.endswith(
            "downsample.1") else "hidden")
        assert record.role == expected, name
        biases = [(name + ".bias", None)] if name + ".bias" in grads else []
        check_record(record, [(name + ".weight", None)], biases, grads, before, after)
    context = Context.build(watcher.history, None, None, None, None, Thresholds())
    # before: the BN before fc was "the last hidden layer" (its ∂C/∂γ against conv1's ∂C/∂W)
    assert context.hidden_params[0] == "conv1"
    assert context.hidden_params[-1] == "layer2.downsample.0"
    assert all(records[n].role == "hidden" for n in context.hidden_params)


class ResNet18(nn.Module):
    """ResNet-18 for 32×32 images (CIFAR stem: one 3×3 conv, no max-pool), written out."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True))
        blocks, width = [], 64
        for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [Block(width, outputs, stride), Block(outputs, outputs, 1)]
            width = outputs
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(
            self.blocks(self.stem(x)), 1), 1))


@pytest.mark.slow
def test_resnet18_batchnorm_before_fc_gives_no_false_exploding():
    """Before: ‖∂C/∂γ‖ of the BN before fc was compared with the stem conv's ‖∂C/∂W‖ (ratio
    0.044 on this run): a false "exploding gradients" warning on a stable run."""
    torch.manual_seed(0)
    model = ResNet18()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with gradsight.watch(model, optimizer=opt, every=1) as watcher:
        for _ in range(4):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    records = last_step(watcher)
    assert records["blocks.7.bn2"].role == "norm" and records["fc"].role == "output"
    assert watcher.coverage.fraction == 1.0
    no_false_finding(gradsight.diagnose(watcher.history))


def test_healthy_resnet_has_no_false_finding():
    torch.manual_seed(3)
    watcher, *_ = train(ResNet(), steps=30)
    no_false_finding(gradsight.diagnose(watcher.history))


# ---- coverage: what is not watched, and diagnose ------------------------------------------------
class Odd(nn.Module):
    """A PReLU (its slope is judged as an activation), a parameter on a container module and
    a custom leaf with a tensor that is neither weight nor bias."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(6))
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.PReLU(8)
        self.fc2 = nn.Linear(8, 8)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc3(self.act2(self.fc2(self.act(self.fc1(x + self.pos)))))


def test_coverage_lists_what_is_not_watched_and_diagnose_reports_it():
    torch.manual_seed(0)
    model = Odd()
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with gradsight.watch(model, optimizer=opt, every=1) as watcher:
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    total = sum(p.numel() for p in model.parameters())
    coverage = watcher.coverage
    assert coverage.total == total and coverage.watched == total - 8
    assert math.isclose(coverage.fraction, (total - 8) / total)
    assert list(coverage.left_out) == ["act.weight"]
    assert "PReLU" in coverage.left_out["act.weight"]
    records = last_step(watcher)
    assert records["pos"].role == "other"
    assert close(records["pos"].grad_W_norm, norm(model.pos.grad))
    for source in (watcher.history, watcher):
        findings = gradsight.diagnose(source)
        assert findings.coverage is coverage
        info = findings.get("coverage")
        assert info is not None and info.severity == "info" and info.layers == ["act.weight"]
        assert "Not watched: act.weight" in info.title
        assert findings.to_dict()["coverage"]["fraction"] == coverage.fraction
        assert findings.to_dict()["coverage"]["left_out"] == {
            "act.weight": coverage.left_out["act.weight"]}


def test_full_coverage_adds_no_finding_and_plain_histories_have_none():
    torch.manual_seed(0)
    watcher, *_ = train(Recurrent("GRU"), steps=3)
    findings = gradsight.diagnose(watcher.history)
    assert "coverage" not in findings.codes and findings.coverage.fraction == 1.0
    plain = gradsight.diagnose(list(watcher.history))
    assert plain.coverage is None and "coverage" not in plain.to_dict()
    given = gradsight.diagnose(list(watcher.history), coverage=Coverage(5, 10, {"x": "why"}))
    assert given.get("coverage") is not None


def test_a_module_used_twice_is_recorded_once():
    shared = nn.Linear(8, 8)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), shared, nn.Tanh(), shared, nn.Tanh(),
                          nn.Linear(8, 2))
    watcher, *_ = train_plain(model)
    assert [n for n in order(watcher)] == ["0", "2", "6"]
    assert watcher.coverage.shared == {"2": ["4"]}
    assert watcher.coverage.fraction == 1.0


def train_plain(model, steps: int = 2):
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradsight.watch(model, optimizer=opt, every=1) as watcher:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return watcher, None


def test_parts_in_different_param_groups_are_measured_from_a_copy():
    """weight_ih and weight_hh of one LSTM layer with different learning rates: ‖ΔW‖ of the
    record is that of both, measured (no single η to multiply by)."""
    torch.manual_seed(0)
    model = Recurrent("LSTM")
    ih = [p for n, p in model.named_parameters() if "_ih_" in n]
    rest = [p for n, p in model.named_parameters() if "_ih_" not in n]
    opt = torch.optim.SGD([{"params": ih, "lr": 0.1}, {"params": rest, "lr": 0.01}])
    watcher, grads, before, after = train(model, optimizer=opt)
    records = last_step(watcher)
    check_record(records["rnn.l0"], [("rnn.weight_ih_l0", None), ("rnn.weight_hh_l0", None)],
                 [("rnn.bias_ih_l0", None), ("rnn.bias_hh_l0", None)], grads, before, after)


def test_roles_survive_json_and_csv(tmp_path):
    torch.manual_seed(0)
    watcher, *_ = train(CNN(), steps=2)
    history = watcher.history
    for restored in (history_from_json(history_to_json(history)),
                     history_from_csv(_write(tmp_path, history_to_csv(history)))):
        assert [r.role for r in restored] == [r.role for r in history]


def _write(tmp_path, text: str):
    path = tmp_path / "h.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_frozen_layers_are_watched_and_no_optimizer_path_reads_every_part():
    """A frozen embedding still has its record (‖W‖, no gradient); without an optimizer the
    end of each backward pass reads the LSTM's and the attention's parts all the same."""

    class Frozen(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 6)
            self.embed.weight.requires_grad_(False)
            self.lstm = nn.LSTM(6, 8, batch_first=True)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.fc = nn.Linear(8, 3)

        def forward(self, tokens):
            h, _ = self.lstm(self.embed(tokens))
            out, _ = self.attn(h, h, h)
            return self.fc(out[:, -1])

    torch.manual_seed(0)
    model = Frozen()
    tokens, y = torch.randint(0, 20, (8, 5)), torch.randint(0, 3, (8,))
    with gradsight.watch(model, every=1) as watcher:
        nn.functional.cross_entropy(model(tokens), y).backward()
    assert watcher.coverage.fraction == 1.0
    records = last_step(watcher)
    assert order(watcher) == ["embed", "lstm.l0", "attn.q", "attn.k", "attn.v",
                              "attn.out_proj", "fc"]
    assert records["embed"].grad_W_norm is None
    assert close(records["embed"].weight_norm, norm(model.embed.weight))
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert close(records["lstm.l0"].grad_W_norm,
                 norm(grads["lstm.weight_ih_l0"], grads["lstm.weight_hh_l0"]))
    assert close(records["attn.v"].grad_b_norm, norm(grads["attn.in_proj_bias"][16:]))
    assert records["attn.v"].update_ratio is None  # no optimizer: no update known
