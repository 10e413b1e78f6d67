"""watch() under the training set-ups people use: AMP with a GradScaler, gradient clipping,
the loss seen by the watcher, the default recording schedule, and the doctor/neuron helpers
on loaders and sequence outputs.

Oracles: the GradScaler's own scale (a skipped step halves it), the total norm that
``torch.nn.utils.clip_grad_norm_`` returns, the losses the loop computed, the documented
schedule written out step by step, the factory's own arguments, and the same modules run on
the flattened tokens.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from gradsight.adapters.torch import (  # noqa: E402
    classify_neurons_torch,
    torch_runner,
    watch,
)
from gradsight.diagnostics import LayerStats, diagnose  # noqa: E402
from gradsight.diagnostics.schedule import RecordingSchedule  # noqa: E402
from gradsight.errors import GradsightError, ShapeError  # noqa: E402


def _net(seed=0, width=32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 2))


def _data(n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 20, generator=generator)
    return X, (X[:, 0] + X[:, 1] > 0).long()


# ---- AMP: skipped steps ---------------------------------------------------------------------
def _fp16_run(steps, poison=(), init_scale=2.0 ** 24, every=None):
    """An fp16-autocast run with a real GradScaler on the CPU; ``poison``: steps whose loss
    is made inf (every gradient overflows). Returns the watcher and the steps the scaler
    skipped by its own account (its scale fell at that step's update)."""
    net, (X, y) = _net(), _data()
    sgd = torch.optim.SGD(net.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    loss_fn = nn.CrossEntropyLoss()
    skipped_by_scaler = []
    with watch(net, optimizer=sgd, scaler=scaler, loss_fn=loss_fn, every=every) as watcher:
        for step in range(steps):
            sgd.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = loss_fn(net(X), y)
            if step in poison:
                loss = loss * torch.tensor(math.inf)
            before = scaler.get_scale()
            scaler.scale(loss).backward()
            scaler.step(sgd)
            scaler.update()
            if scaler.get_scale() < before:
                skipped_by_scaler.append(step)
    return watcher, skipped_by_scaler


def test_fp16_scale_search_skips_are_flagged_and_not_a_finding():
    watcher, skipped = _fp16_run(16)
    assert skipped and skipped == list(range(len(skipped)))  # the search, at the start
    assert watcher.skipped_steps == skipped
    for record in watcher.history:
        assert record.skipped is (record.step in skipped)
    findings = diagnose(watcher.history)
    # before: critical "non-finite values" and "exploding gradients" for the scale search
    assert not {"nonfinite", "exploding-gradients", "skipped-steps"} & set(findings.codes)


def test_a_run_of_skipped_steps_is_a_warning():
    watcher, skipped = _fp16_run(20, poison=range(8, 14))
    assert set(range(8, 14)) <= set(skipped) and watcher.skipped_steps == skipped
    finding = diagnose(watcher.history).get("skipped-steps")
    assert finding is not None and finding.severity == "warning"
    assert finding.evidence["longest_run"] == 6
    assert finding.evidence["skips_after_search"] == 6
    # the skipped steps are left out of the other rules: their inf/NaN is not a finding
    assert "nonfinite" not in diagnose(watcher.history).codes


def test_skips_between_sparse_records_are_counted():
    watcher, skipped = _fp16_run(20, poison=(11, 12, 13), every=5)
    assert {11, 12, 13} <= set(skipped)
    assert watcher.skipped_steps == [s for s in skipped if s % 5 == 0]
    for record in watcher.history:  # the skips of the steps not recorded since the last one
        expected = sum(record.step - 5 < s < record.step for s in skipped)
        assert record.skipped_between == (expected if record.step else 0)
    finding = diagnose(watcher.history).get("skipped-steps")
    assert finding is not None and finding.severity == "warning"
    assert finding.evidence["skips_after_search"] == 3


def test_every_step_skipped_is_critical():
    history = [LayerStats(f"l{i}", i, s, grad_W_norm=math.nan, nonfinite=3, skipped=True)
               for s in range(4) for i in range(3)]
    finding = diagnose(history).get("skipped-steps")
    assert finding is not None and finding.severity == "critical"


def test_nan_norms_never_count_as_zero_in_the_growth_figure():
    # steps 0-1 broken (NaN, not skipped), then a steady norm of 1: no growth at all
    history = [LayerStats(f"l{i}", i, s, grad_W_norm=math.nan if s < 2 else 1.0,
                          nonfinite=1 if s < 2 else 0) for s in range(10) for i in range(3)]
    findings = diagnose(history)
    assert "nonfinite" in findings.codes
    assert "exploding-gradients" not in findings.codes  # NaN as 0 gave growth = inf


# ---- clipping -------------------------------------------------------------------------------
def _clipped_run(steps, spike_at=None, scaler=None, max_norm=0.5):
    net, (X, y) = _net(), _data()
    sgd = torch.optim.SGD(net.parameters(), lr=0.05)
    totals = []
    with watch(net, optimizer=sgd, scaler=scaler, every=1) as watcher:
        for step in range(steps):
            sgd.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16, enabled=scaler is not None):
                loss = nn.functional.cross_entropy(net(X), y)
            if step == spike_at:
                loss = loss * 1e8
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(sgd)
            totals.append(float(torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)))
            if scaler is None:
                sgd.step()
            else:
                scaler.step(sgd)
                scaler.update()
    return watcher, totals


@pytest.mark.parametrize("amp", [False, True])
def test_norm_before_clipping_is_what_clip_grad_norm_returned(amp):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8) if amp else None
    watcher, totals = _clipped_run(6, scaler=scaler)
    assert watcher.skipped_steps == []
    for record in watcher.history:
        if record.kind == "param":
            assert record.grad_norm_before_clip == pytest.approx(totals[record.step],
                                                                 rel=1e-6)
        else:
            assert record.grad_norm_before_clip is None
    after = {}
    for record in watcher.history:
        if record.kind == "param":
            after[record.step] = after.get(record.step, 0.0) + record.grad_W_norm ** 2 \
                + record.grad_b_norm ** 2
    assert all(math.sqrt(v) <= 0.5 * (1 + 1e-5) for v in after.values())  # clipped


def test_a_spike_clipped_away_still_shows():
    watcher, totals = _clipped_run(10, spike_at=5)
    assert totals[5] > 1e6 and max(totals[:5] + totals[6:]) < 100
    finding = diagnose(watcher.history).get("exploding-gradients")
    assert finding is not None and finding.evidence["gradient_norm_peak"] == pytest.approx(
        totals[5], rel=1e-6)
    # the same records without the norm before clipping: the clipped norms hide the spike
    for record in watcher.history:
        record.grad_norm_before_clip = None
    assert "exploding-gradients" not in diagnose(watcher.history).codes


# ---- the loss -------------------------------------------------------------------------------
def test_losses_recorded_are_the_losses_of_the_loop():
    net, (X, y) = _net(), _data()
    sgd = torch.optim.SGD(net.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    seen = []
    with watch(net, optimizer=sgd, loss_fn=loss_fn) as watcher:
        for _ in range(5):
            sgd.zero_grad()
            halves = [loss_fn(net(X[:32]), y[:32]), loss_fn(net(X[32:]), y[32:])]
            for half in halves:  # accumulation: two backward passes per step
                half.backward()
            sgd.step()
            with torch.no_grad():  # an evaluation call is not a training loss
                loss_fn(net(X), y)
            seen.append((float(halves[0].detach()) + float(halves[1].detach())) / 2)
    assert [step for step, _ in watcher.losses] == list(range(5))
    assert [loss for _, loss in watcher.losses] == pytest.approx(seen, rel=1e-7)
    assert all(r.loss == pytest.approx(seen[r.step], rel=1e-7) for r in watcher.history)


def test_record_loss_for_a_loss_computed_by_hand():
    net, (X, y) = _net(), _data()
    sgd = torch.optim.SGD(net.parameters(), lr=0.05)
    seen = []
    with watch(net, optimizer=sgd) as watcher:
        for _ in range(3):
            sgd.zero_grad()
            loss = ((net(X)[:, 0] - y.float()) ** 2).mean()
            watcher.record_loss(loss).backward()
            sgd.step()
            seen.append(float(loss.detach()))
    assert [loss for _, loss in watcher.losses] == pytest.approx(seen, rel=1e-7)
    with pytest.raises(GradsightError, match="record_loss"):
        watch(net, loss_fn=nn.functional.cross_entropy)


def test_diagnose_history_runs_the_loss_rules_by_itself():
    net, (X, y) = _net(), _data()
    sgd = torch.optim.SGD(net.parameters(), lr=0.02)
    loss_fn = nn.CrossEntropyLoss()
    with watch(net, optimizer=sgd, loss_fn=loss_fn) as watcher:
        for _ in range(40):
            sgd.zero_grad()
            (-loss_fn(net(X), y)).backward()  # gradient ascent: the loss rises
            sgd.step()
    assert "rising-loss" in diagnose(watcher.history).codes  # no train_history given
    assert "rising-loss" in diagnose(watcher).codes
    for record in watcher.history:
        record.loss = record.loss_window = None
    watcher.history.loss_curve = None  # the finer curve of every step's loss too
    assert "rising-loss" not in diagnose(watcher.history).codes


# ---- the recording schedule -----------------------------------------------------------------
def test_default_schedule_is_the_documented_one():
    documented = [*range(50), *range(50, 5000, 50), *range(5000, 20000, 500)]
    schedule = RecordingSchedule()
    assert [s for s in range(20000) if schedule.records(s)] == documented
    every = RecordingSchedule(7)
    assert [s for s in range(50) if every.records(s)] == list(range(0, 50, 7))


def test_watch_records_the_default_schedule_and_every_1_every_step():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    X, y = torch.randn(8, 3), torch.randn(8, 1)
    sgd = torch.optim.SGD(net.parameters(), lr=0.01)
    with watch(net, optimizer=sgd) as default, watch(net, optimizer=sgd, every=1) as dense:
        for _ in range(260):
            sgd.zero_grad()
            nn.functional.mse_loss(net(X), y).backward()
            sgd.step()
    assert sorted({r.step for r in default.history}) == [*range(50), 50, 100, 150, 200, 250]
    assert sorted({r.step for r in dense.history}) == list(range(260))
    assert all(len([r for r in default.history if r.step == s]) == 3 for s in (49, 50, 250))


def test_watch_without_optimizer_follows_the_schedule_too():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    X, y = torch.randn(8, 3), torch.randn(8, 1)
    with watch(net) as watcher:
        for _ in range(120):
            net.zero_grad()
            nn.functional.mse_loss(net(X), y).backward()
    assert sorted({r.step for r in watcher.history}) == [*range(50), 50, 100]


# ---- the doctor's runner on a DataLoader ----------------------------------------------------
def test_torch_runner_gives_a_loader_factory_its_sizes():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(90, 20, generator=generator)
    y = torch.arange(90) % 3  # three classes; the first batch of 2 holds only 0 and 1
    loader = DataLoader(TensorDataset(X, y), batch_size=2)
    received = []

    def build(activation, init, n_inputs, n_outputs):
        received.append((n_inputs, n_outputs))
        return nn.Sequential(nn.Linear(n_inputs, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                             nn.Linear(8, n_outputs))

    runner = torch_runner(build, loader)
    outcome = runner({"activation": "relu", "init": "he_normal", "loss": "auto",
                      "optimizer": "sgd", "lr": 0.01, "epochs": 1, "batch_size": 2,
                      "seed": 0})
    assert received == [(20, 3)]  # before: n_inputs=None → TypeError inside nn.Linear
    assert math.isfinite(outcome.loss)


# ---- neuron states of a sequence model ------------------------------------------------------
class _TokenModel(nn.Module):
    """Token ids → embedding → Linear → ReLU → Linear: (B, T) → (B, T, V), or (N,) → (N, V)."""

    def __init__(self, vocab=11, width=16):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, width)
        self.hidden = nn.Linear(width, width)
        self.act = nn.ReLU()
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        return self.head(self.act(self.hidden(self.embed(ids))))


def test_classify_neurons_reads_token_outputs_token_by_token():
    model, generator = _TokenModel(), torch.Generator().manual_seed(1)
    ids = torch.randint(0, 11, (12, 7), generator=generator)
    targets = torch.roll(ids, -1, dims=1)  # next token
    with torch.no_grad():  # so that some tokens are right: bias the head toward the target
        model.head.bias[:] = 0.0
    sequence = classify_neurons_torch(model, DataLoader(TensorDataset(ids, targets),
                                                        batch_size=4))
    tokens = classify_neurons_torch(model, DataLoader(TensorDataset(ids.reshape(-1),
                                                                    targets.reshape(-1)),
                                                      batch_size=28))
    assert len(sequence) == len(tokens) == 16
    for a, b in zip(sequence, tokens, strict=True):
        assert (a.layer, a.unit, a.state) == (b.layer, b.unit, b.state)
        for name in ("active_fraction", "positive_fraction", "mean_derivative", "mean_z",
                     "accuracy_on_samples"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9), name
    assert any(n.accuracy_on_samples not in (None, 0.0) for n in sequence)


def test_classify_neurons_refuses_outputs_it_cannot_read():
    model = _TokenModel()
    ids = torch.randint(0, 11, (8, 5))
    one_label_per_sequence = torch.randint(0, 11, (8,))
    with pytest.raises(ShapeError, match=r"output has shape \(4, 5, 11\)") as error:
        classify_neurons_torch(model, DataLoader(TensorDataset(ids, one_label_per_sequence),
                                                 batch_size=4))
    assert "\n" not in str(error.value)


# ---- the GPU path: values copied without blocking, read at the next record ------------------
class _DeferredCopier:
    """Stands in for the CUDA copier on the CPU: the values are copied at the step (as the
    pinned copy is queued then) and handed over only when the watcher asks for them."""

    def __init__(self):
        self.started, self.read = 0, 0

    def wanted(self, device):
        return True

    def start(self, values):
        copier, snapshot = self, values.clone()
        self.started += 1

        class Copy:
            def values(self):
                copier.read += 1
                return snapshot.tolist()

        return Copy()


def test_deferred_copy_gives_the_same_records_as_the_immediate_read():
    def run(deferred):
        net, (X, y) = _net(), _data()
        X = X.clone()
        X[3, 0] = math.nan  # a NaN sample at step 2: exact non-finite counts needed
        sgd = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        copier = _DeferredCopier()
        with watch(net, optimizer=sgd, loss_fn=loss_fn, every=1) as watcher:
            if deferred:
                watcher._copier = copier
            for step in range(4):
                sgd.zero_grad(set_to_none=False)  # the gradients are zeroed in place
                inputs = X if step == 2 else X[:3]
                loss_fn(net(inputs), y[:len(inputs)]).backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                sgd.step()
                if deferred:  # each step's values wait until the next record
                    assert copier.started == step + 1 and copier.read == step
        return watcher, copier

    plain, _ = run(False)
    deferred, copier = run(True)
    assert copier.read == copier.started == 4  # the last one read when the watch ended
    assert len(deferred.history) == len(plain.history) == 20
    _same(deferred, plain)
    assert any(r.nonfinite > 0 for r in deferred.history if r.step == 2)


def _same(a, b):
    """Every field of every record equal (NaN equal to NaN)."""
    for x, y in zip(a.history, b.history, strict=True):
        for key, value in x.to_dict().items():
            other = y.to_dict()[key]
            if isinstance(value, float) and isinstance(other, float):
                assert value == other or (math.isnan(value) and math.isnan(other)), key
            else:
                assert value == other, key


def test_new_fields_survive_the_json_and_csv_round_trip(tmp_path):
    from gradsight.diagnostics.history import (
        history_from_csv,
        history_from_json,
        history_to_csv,
        history_to_json,
    )

    watcher, skipped = _fp16_run(8)
    history = watcher.history
    assert skipped and any(r.loss is not None for r in history)
    assert any(r.grad_norm_before_clip is not None for r in history)
    history_to_csv(history, tmp_path / "h.csv")
    for back in (history_from_json(history_to_json(history)),
                 history_from_csv(tmp_path / "h.csv")):
        for a, b in zip(history, back, strict=True):
            assert b.skipped is a.skipped and b.loss == a.loss
            assert (b.grad_norm_before_clip == a.grad_norm_before_clip
                    or math.isnan(a.grad_norm_before_clip)
                    and math.isnan(b.grad_norm_before_clip))
