"""watch() on recurrent layers (gradient over time), attention (entropy per head) and
functional activations (read as the input of the next layer), each against PyTorch."""

from __future__ import annotations

import copy
import math

import pytest

import gradsight
from gradsight.diagnostics import (
    LayerStats,
    history_from_csv,
    history_from_json,
    history_to_csv,
    history_to_json,
)

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


class Recurrent(nn.Module):
    """(projection →) recurrent layer → head on the last time step."""

    def __init__(self, cell: type, n_in: int = 3, hidden: int = 8, batch_first: bool = True,
                 project: bool = True) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, hidden) if project else nn.Identity()
        self.rnn = cell(hidden if project else n_in, hidden, batch_first=batch_first)
        self.mid = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 2)
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.inp(x))
        last = y[:, -1] if self.batch_first else y[-1]
        return self.head(torch.tanh(self.mid(last)))


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 1,
           every: int = 1) -> gradsight.torch_adapter.Watcher:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with gradsight.watch(model, optimizer=optimizer, every=every) as watcher:
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    return watcher


def _time_norms_by_hand(model: Recurrent, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖∂C/∂x_t‖ per t: autograd.grad of the loss with respect to the recurrent layer's input."""
    z = model.inp(x)
    if not z.requires_grad:
        z = z.detach().requires_grad_(True)
    out, _ = model.rnn(z)
    last = out[:, -1] if model.batch_first else out[-1]
    loss = F.cross_entropy(model.head(torch.tanh(model.mid(last))), y)
    (grad,) = torch.autograd.grad(loss, z)
    time_dim = 1 if model.batch_first else 0
    dims = tuple(d for d in range(grad.dim()) if d != time_dim)
    return torch.linalg.vector_norm(grad.double(), 2, dims)


# ---- the gradient over time -----------------------------------------------------------------
@pytest.mark.parametrize("cell", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("project", [True, False])
def test_time_gradients_equal_autograd_of_the_recurrent_input(cell, batch_first, project):
    torch.manual_seed(1)
    model = Recurrent(cell, batch_first=batch_first, project=project)
    x = torch.randn(5, 9, 3) if batch_first else torch.randn(9, 5, 3)
    y = torch.randint(0, 2, (5,))
    expected = _time_norms_by_hand(copy.deepcopy(model), x, y)
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x), y).backward()
    watcher = _train(model, x, y)
    ((step, name, norms),) = watcher.time_gradients
    assert (step, name) == (0, "rnn:time") and len(norms) == 9
    assert norms == pytest.approx(expected.tolist(), rel=1e-6, abs=1e-12)
    (record,) = [r for r in watcher.history if r.kind == "sequence"]
    assert record.time_steps == 9
    assert record.time_grad_first == pytest.approx(float(expected[0]), rel=1e-6)
    assert record.time_grad_last == pytest.approx(float(expected[-1]), rel=1e-6)
    assert record.time_grad_ratio == pytest.approx(float(expected[0] / expected[-1]), rel=1e-6)
    if cell is nn.RNN:  # no gates: its states are read as its activation instead
        assert "no gates" in record.note and "rnn:h" in record.note
    else:
        assert "gate saturation not measurable" in record.note
    # measuring does not change the gradients the optimizer used (one SGD step: W − η∂C/∂W)
    for (label, p), q in zip(reference.named_parameters(), model.parameters(), strict=True):
        before = dict(reference.named_parameters())[label]
        assert torch.allclose(q.detach(), before.detach() - 0.01 * p.grad, atol=1e-7), label


def test_time_gradients_pool_the_calls_of_a_step():
    """Two backward passes before one optimizer step (accumulation): √Σ‖g_t‖² of both."""
    torch.manual_seed(2)
    model = Recurrent(nn.GRU)
    xs, ys = [torch.randn(4, 6, 3) for _ in range(2)], [torch.randint(0, 2, (4,))] * 2
    by_hand = [_time_norms_by_hand(copy.deepcopy(model), x, y) for x, y in zip(xs, ys,
                                                                                strict=True)]
    expected = (by_hand[0] ** 2 + by_hand[1] ** 2).sqrt()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        optimizer.zero_grad()
        for x, y in zip(xs, ys, strict=True):
            F.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert watcher.time_gradients[0][2] == pytest.approx(expected.tolist(), rel=1e-6)


def test_a_long_lstm_whose_gradient_vanishes_over_time_is_flagged():
    torch.manual_seed(0)
    model = Recurrent(nn.LSTM, n_in=2, hidden=8).double()
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.mul_(0.5)
    x, y = torch.randn(4, 200, 2, dtype=torch.float64), torch.randint(0, 2, (4,))
    by_hand = _time_norms_by_hand(copy.deepcopy(model), x, y)
    assert 0 < by_hand[0] / by_hand[-1] < 1e-30  # our own measurement: it vanishes
    watcher = _train(model, x, y, steps=2)
    records = [r for r in watcher.history if r.kind == "sequence"]
    assert records[0].time_grad_ratio == pytest.approx(float(by_hand[0] / by_hand[-1]),
                                                       rel=1e-6)
    findings = gradsight.diagnose(watcher.history)
    (finding,) = [f for f in findings if f.code == "vanishing-over-time"]
    assert finding.severity == "critical" and finding.layers == ["rnn:time"]
    assert finding.evidence["time_grad_ratio"]["rnn:time"] < 1e-30
    assert "not measurable" in finding.evidence["gate_saturation"]


def test_a_healthy_short_gru_is_not_flagged():
    torch.manual_seed(0)
    model = Recurrent(nn.GRU)
    x, y = torch.randn(16, 5, 3), torch.randint(0, 2, (16,))
    watcher = _train(model, x, y, steps=5)
    ratios = [r.time_grad_ratio for r in watcher.history if r.kind == "sequence"]
    assert len(ratios) == 5 and all(1e-3 < r < 1e3 for r in ratios)
    codes = {f.code for f in gradsight.diagnose(watcher.history)}
    assert not codes & {"vanishing-over-time", "exploding-over-time"}


def test_the_over_time_rule_thresholds():
    def history(ratio: float) -> list[LayerStats]:
        return [LayerStats("a", 0, 0, grad_W_norm=1.0), LayerStats("b", 2, 0, grad_W_norm=1.0),
                LayerStats("rnn:time", 1, 0, kind="sequence", time_grad_ratio=ratio)]

    def found(ratio: float) -> list[tuple[str, str]]:
        return [(f.code, f.severity) for f in gradsight.diagnose(history(ratio))
                if "time" in f.code]

    assert found(1e-2) == [] and found(10.0) == []
    assert found(1e-4) == [("vanishing-over-time", "warning")]
    assert found(1e-7) == [("vanishing-over-time", "critical")]
    assert found(0.0) == [("vanishing-over-time", "critical")]  # underflowed first step
    assert found(1e4) == [("exploding-over-time", "warning")]
    assert found(1e7) == [("exploding-over-time", "critical")]


def test_a_packed_sequence_is_said_not_measured():
    torch.manual_seed(0)
    rnn, head = nn.LSTM(3, 8), nn.Linear(8, 2)
    model = nn.ModuleDict({"rnn": rnn, "head": head, "inp": nn.Linear(3, 3)})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(6, 4, 3)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        optimizer.zero_grad()
        packed = nn.utils.rnn.pack_padded_sequence(model["inp"](x), [6, 5, 3, 2])
        _, (h, _) = rnn(packed)
        head(h[-1]).square().mean().backward()
        optimizer.step()
    (record,) = [r for r in watcher.history if r.kind == "sequence"]
    assert record.time_grad_ratio is None and "PackedSequence" in record.note
    findings = gradsight.diagnose(watcher.history)
    (info,) = [f for f in findings if f.code == "time-gradient-not-measured"]
    assert info.severity == "info" and "PackedSequence" in info.explanation


def test_a_bidirectional_layer_records_its_ends_but_no_ratio():
    torch.manual_seed(0)
    model = Recurrent(nn.GRU)
    model.rnn = nn.GRU(8, 4, batch_first=True, bidirectional=True)
    x, y = torch.randn(3, 5, 3), torch.randint(0, 2, (3,))
    (record,) = [r for r in _train(model, x, y).history if r.kind == "sequence"]
    assert record.time_grad_first > 0 and record.time_grad_ratio is None
    assert "bidirectional" in record.note


def test_only_recorded_steps_are_measured_and_hooks_are_removed():
    torch.manual_seed(0)
    model = Recurrent(nn.LSTM)
    x, y = torch.randn(3, 4, 3), torch.randint(0, 2, (3,))
    watcher = _train(model, x, y, steps=4, every=2)
    assert [s for s, _, _ in watcher.time_gradients] == [0, 2]
    with torch.no_grad():  # evaluation after the run: nothing recorded, nothing hooked
        model(x)
    assert not model.rnn._forward_pre_hooks and not model.head._forward_pre_hooks
    assert x.grad is None


# ---- attention entropy ---------------------------------------------------------------------
def _entropy_by_hand(mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor,
                     allowed: torch.Tensor | None = None) -> tuple[list[float], list[float]]:
    """softmax(QKᵀ/√d) per head, written out; ``allowed`` (B, L, S) boolean, True = may attend.
    Inputs are (B, T, E). Returns (mean entropy per head, mean ln T per head)."""
    E, H = mha.embed_dim, mha.num_heads
    d = E // H
    w, b = mha.in_proj_weight.detach().double(), mha.in_proj_bias.detach().double()
    q = query.double() @ w[:E].T + b[:E]
    k = key.double() @ w[E:2 * E].T + b[E:2 * E]
    entropies, uniforms = [], []
    for h in range(H):
        qh, kh = q[..., h * d:(h + 1) * d], k[..., h * d:(h + 1) * d]
        scores = qh @ kh.transpose(1, 2) / math.sqrt(d)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, -math.inf)
        p = torch.softmax(scores, -1)
        terms = torch.where(p > 0, -p * torch.log(p), torch.zeros_like(p))
        entropies.append(float(terms.sum(-1).mean()))
        count = allowed.sum(-1) if allowed is not None else torch.full(p.shape[:-1],
                                                                       p.shape[-1])
        uniforms.append(float(torch.log(count.double()).mean()))
    return entropies, uniforms


class Attending(nn.Module):
    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.head = nn.Linear(8, 2)
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor, **masks: torch.Tensor) -> torch.Tensor:
        z = self.inp(x)
        if not self.batch_first:
            z = z.transpose(0, 1)
        out, _ = self.attn(z, z, z, need_weights=False, **masks)
        return self.head(out)


def _attention_records(watcher) -> tuple[list[float], list[float]]:
    records = [r for r in watcher.history if r.kind == "attention" and r.step == 0]
    assert [r.layer for r in records] == ["attn:head0", "attn:head1"]
    return ([r.attention_entropy for r in records],
            [r.attention_entropy_uniform for r in records])


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_entropy_equals_softmax_qk_by_hand(batch_first):
    torch.manual_seed(3)
    model = Attending(batch_first)
    x = torch.randn(3, 7, 4)
    z = model.inp(x).detach()
    expected = _entropy_by_hand(model.attn, z, z)
    # PyTorch's own probabilities agree with the hand computation
    _, weights = model.attn(z, z, z, need_weights=True, average_attn_weights=False) \
        if batch_first else model.attn(*(z.transpose(0, 1),) * 3, need_weights=True,
                                       average_attn_weights=False)
    own = torch.special.entr(weights.double()).sum(-1).mean((0, 2))
    assert own.tolist() == pytest.approx(expected[0], rel=1e-5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        model(x).square().mean().backward()
        optimizer.step()
    entropy, uniform = _attention_records(watcher)
    assert entropy == pytest.approx(expected[0], rel=1e-5)
    assert uniform == pytest.approx([math.log(7)] * 2, rel=1e-12)
    assert all(0 < e < math.log(7) for e in entropy)


def test_attention_entropy_with_causal_and_padding_masks():
    torch.manual_seed(4)
    model = Attending()
    x = torch.randn(2, 5, 4)
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)  # True: may not attend
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    allowed = ~causal.unsqueeze(0) & ~padding.unsqueeze(1)
    z = model.inp(x).detach()
    expected = _entropy_by_hand(model.attn, z, z, allowed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        model(x, attn_mask=causal, key_padding_mask=padding).square().mean().backward()
        optimizer.step()
    entropy, uniform = _attention_records(watcher)
    assert entropy == pytest.approx(expected[0], rel=1e-5)
    assert uniform == pytest.approx(expected[1], rel=1e-12)


def test_uniform_and_collapsed_attention_are_visible():
    torch.manual_seed(5)
    model = Attending()
    x = torch.randn(2, 6, 4)
    with torch.no_grad():  # Q = 0: every score is 0, attention is exactly uniform
        model.attn.in_proj_weight[:8].zero_()
        model.attn.in_proj_bias[:8].zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        model(x).sum().backward()
        optimizer.step()
    entropy, uniform = _attention_records(watcher)
    assert entropy == pytest.approx([math.log(6)] * 2, rel=1e-6) and entropy == \
        pytest.approx(uniform, rel=1e-6)
    with torch.no_grad():  # a huge query along one key's direction: collapsed on it
        model.attn.in_proj_weight[:8] = 1e4 * model.attn.in_proj_weight[8:16]
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        model(x).sum().backward()
        optimizer.step()
    entropy, _ = _attention_records(watcher)
    assert max(entropy) < 0.05


def test_transformer_encoder_layer_attention_entropy_and_functional_gelu():
    torch.manual_seed(6)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu",
                                       batch_first=True)
    x = torch.randn(3, 6, 16)
    expected = _entropy_by_hand(layer.self_attn, x, x)
    with torch.no_grad():  # the input of linear2: gelu(linear1(norm1(x + sa(x))))
        sa = layer.self_attn(x, x, x, need_weights=False)[0]
        hidden = F.gelu(layer.linear1(layer.norm1(x + sa))).double()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    with gradsight.watch(layer, optimizer=optimizer, every=1) as watcher:
        layer(x).square().mean().backward()
        optimizer.step()
    records = [r for r in watcher.history if r.kind == "attention"]
    assert [r.attention_entropy for r in records] == pytest.approx(expected[0], rel=1e-5)
    (gelu,) = [r for r in watcher.history if r.kind == "activation"]
    assert gelu.activation == "gelu" and gelu.source.startswith("input of dropout")
    assert gelu.act_mean == pytest.approx(float(hidden.mean()), rel=1e-5)
    assert gelu.act_std == pytest.approx(float(hidden.std(correction=0)), rel=1e-5)


# ---- functional activations ----------------------------------------------------------------
class Functional(nn.Module):
    def __init__(self, act) -> None:
        super().__init__()
        self.first, self.second, self.out = nn.Linear(4, 16), nn.Linear(16, 16), nn.Linear(16, 2)
        self.act = act
        with torch.no_grad():
            self.first.bias[:5] = -100.0  # five units dead on every sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.second(self.act(self.first(x)))))


@pytest.mark.parametrize("name, act", [
    ("relu", F.relu), ("relu", lambda z: z.relu()), ("relu", lambda z: F.relu(z, inplace=True)),
    ("gelu", F.gelu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
])
def test_functional_activation_statistics_equal_the_next_layers_input(name, act):
    torch.manual_seed(7)
    model = Functional(act)
    x = torch.randn(32, 4)
    with torch.no_grad():
        a = act(model.first(x)).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        model(x).square().mean().backward()
        optimizer.step()
    records = [r for r in watcher.history if r.kind == "activation"]
    assert [r.layer for r in records] == ["second:input", "out:input"]
    assert [r.source for r in records] == ["input of second", "input of out"]
    first = records[0]
    assert first.activation == name
    assert first.act_mean == pytest.approx(float(a.mean()), rel=1e-5)
    assert first.act_std == pytest.approx(float(a.std(correction=0)), rel=1e-5)
    if name in ("relu", "gelu"):
        dead = float((a.amax(0) <= 0).double().mean()) if name == "relu" else None
        assert first.dead_fraction == (pytest.approx(dead) if dead is not None else None)
    if name == "relu":
        assert first.dead_fraction == pytest.approx(5 / 16)
    if name in ("tanh", "sigmoid"):
        assert first.saturated_fraction is not None
    # the functional record sits between the layers it connects
    index = {r.layer: r.index for r in watcher.history if r.step == 0}
    assert index["first"] < index["second:input"] < index["second"]


def test_an_activation_module_is_not_counted_twice():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 8), nn.GELU(),
                          nn.Dropout(0.0), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        model(torch.randn(8, 4)).sum().backward()
        optimizer.step()
    acts = [(r.layer, r.source) for r in watcher.history if r.kind == "activation"]
    assert acts == [("1", "module"), ("3", "module")]


def test_one_functional_activation_feeding_two_layers_is_read_once():
    class Fork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.left, self.right = nn.Linear(4, 8), nn.Linear(8, 2), \
                nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = F.relu(self.first(x))
            return self.left(a) + self.right(a)

    model = Fork()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        model(torch.randn(8, 4)).sum().backward()
        optimizer.step()
    assert [r.layer for r in watcher.history if r.kind == "activation"] == ["left:input"]


def test_new_records_survive_json_and_csv(tmp_path):
    torch.manual_seed(9)
    model = Recurrent(nn.LSTM)
    x, y = torch.randn(3, 4, 3), torch.randint(0, 2, (3,))
    history = _train(model, x, y, steps=2).history
    assert {r.kind for r in history} >= {"sequence", "activation", "param"}
    assert history_from_json(history_to_json(history)) == history
    history_to_csv(history, tmp_path / "h.csv")
    back = history_from_csv(tmp_path / "h.csv")
    assert [r.to_dict() for r in back] == [r.to_dict() for r in history]


def test_calls_of_different_lengths_pool_their_first_and_last_steps():
    torch.manual_seed(10)
    model = Recurrent(nn.LSTM)
    batches = [(torch.randn(3, 4, 3), torch.randint(0, 2, (3,))),
               (torch.randn(3, 6, 3), torch.randint(0, 2, (3,)))]
    by_hand = [_time_norms_by_hand(copy.deepcopy(model), x, y) for x, y in batches]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        optimizer.zero_grad()
        for x, y in batches:
            F.cross_entropy(model(x), y).backward()
        optimizer.step()
    (record,) = [r for r in watcher.history if r.kind == "sequence"]
    first = math.hypot(float(by_hand[0][0]), float(by_hand[1][0]))
    last = math.hypot(float(by_hand[0][-1]), float(by_hand[1][-1]))
    assert record.time_steps is None and watcher.time_gradients == []
    assert (record.time_grad_first, record.time_grad_last) == (pytest.approx(first, rel=1e-6),
                                                               pytest.approx(last, rel=1e-6))
    assert record.time_grad_ratio == pytest.approx(first / last, rel=1e-6)


@pytest.mark.slow
def test_the_report_shows_time_ratios_and_head_entropies():
    from gradsight.present.report import build_report, render_html

    torch.manual_seed(11)
    model = Recurrent(nn.LSTM)
    x, y = torch.randn(3, 4, 3), torch.randint(0, 2, (3,))
    history = _train(model, x, y).history
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    with gradsight.watch(layer, optimizer=optimizer, every=1) as watcher:
        layer(torch.randn(2, 3, 8)).sum().backward()
        optimizer.step()
    report = build_report("t", findings=[], layer_history=history + watcher.history)
    tables = {t.title: t for s in report.sections for t in s.tables}
    (time_table,) = [t for title, t in tables.items() if title.startswith("recurrent")]
    (sequence,) = [r for r in history if r.kind == "sequence"]
    assert time_table.rows[0]["last_time_grad_ratio"] == sequence.time_grad_ratio
    (heads,) = [t for title, t in tables.items() if title.startswith("attention heads")]
    assert [r["layer"] for r in heads.rows] == ["self_attn:head0", "self_attn:head1"]
    activations = [t for title, t in tables.items() if title == "activation layers"]
    assert all(r["kind"] == "activation" for t in activations for r in t.rows)
    assert "attention heads" in render_html(report)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_plain_rnn_states_are_read_as_its_activation(nonlinearity):
    torch.manual_seed(12)
    model = Recurrent(nn.RNN)
    model.rnn = nn.RNN(8, 8, batch_first=True, nonlinearity=nonlinearity)
    with torch.no_grad():
        model.rnn.weight_ih_l0.mul_(6.0)  # large z: saturated tanh, some relu units off
        model.rnn.bias_ih_l0[:3] = -100.0  # three relu units dead on every step
    x, y = torch.randn(6, 5, 3), torch.randint(0, 2, (6,))
    with torch.no_grad():
        h = model.rnn(model.inp(x))[0].double()
    (record,) = [r for r in _train(model, x, y).history if r.layer == "rnn:h"]
    assert record.kind == "activation" and record.activation == nonlinearity
    assert record.source == "output of rnn (h_t)"
    assert record.act_mean == pytest.approx(float(h.mean()), rel=1e-5)
    assert record.act_std == pytest.approx(float(h.std(correction=0)), rel=1e-5)
    if nonlinearity == "tanh":  # tanh′ = 1 − a² < 0.01
        assert record.saturated_fraction == pytest.approx(float((h.abs() > 0.99 ** 0.5)
                                                                .double().mean()))
        assert record.saturated_fraction > 0.2
    else:
        dead = float((h.reshape(-1, 8).amax(0) <= 0).double().mean())
        assert dead >= 3 / 8 and record.dead_fraction == pytest.approx(dead)


def test_lstm_and_gru_states_are_not_read_as_an_activation():
    torch.manual_seed(13)
    x, y = torch.randn(3, 4, 3), torch.randint(0, 2, (3,))
    for cell in (nn.LSTM, nn.GRU):
        layers = {r.layer for r in _train(Recurrent(cell), x, y).history}
        assert "rnn:h" not in layers and "rnn:time" in layers


@pytest.mark.parametrize("config, batched, masked", [
    ({}, False, False), ({"add_bias_kv": True}, True, True), ({"add_zero_attn": True}, True, True),
    ({"kdim": 6, "vdim": 5}, True, False), ({"kdim": 6, "vdim": 5}, True, True),
    ({"batch_first": False}, True, True), ({}, False, True),
])
def test_attention_entropy_equals_pytorchs_own_weights(config, batched, masked):
    """Against the probabilities nn.MultiheadAttention returns with need_weights=True."""
    torch.manual_seed(14)
    mha = nn.MultiheadAttention(8, 2, **config)
    batch_first = config.get("batch_first", False)
    L, S, B = 4, 5, 3
    query = torch.randn(*((B, L) if batch_first else (L, B)), 8) if batched else \
        torch.randn(L, 8)
    key = torch.randn(*((B, S) if batch_first else (S, B)), config.get("kdim", 8)) \
        if batched else torch.randn(S, config.get("kdim", 8))
    value = torch.randn(*key.shape[:-1], config.get("vdim", 8))
    if "kdim" not in config:
        key = value = query  # self-attention
        S = L
    masks = {}
    if masked:
        masks["attn_mask"] = torch.triu(torch.ones(L, S, dtype=torch.bool), 1)
        padding = torch.zeros(B, S, dtype=torch.bool)
        padding[0, -1] = True
        masks["key_padding_mask"] = padding if batched else padding[0]
    _, weights = mha(query, key, value, need_weights=True, average_attn_weights=False,
                     **masks)
    weights = weights.double() if batched else weights.double().unsqueeze(0)
    expected = torch.special.entr(weights).sum(-1).mean((0, 2))
    allowed = (weights > 0).sum(-1)  # no probability underflows here: the allowed keys
    uniform = torch.log(allowed.double()).mean((0, 2))

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn, self.head = mha, nn.Linear(8, 1)

        def forward(self) -> torch.Tensor:
            return self.head(self.attn(query, key, value, need_weights=False, **masks)[0])

    model = Wrap()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with gradsight.watch(model, optimizer=optimizer, every=1) as watcher:
        model().sum().backward()
        optimizer.step()
    entropy, ln_t = _attention_records(watcher)
    assert entropy == pytest.approx(expected.tolist(), rel=1e-5)
    assert ln_t == pytest.approx(uniform.tolist(), rel=1e-9)
