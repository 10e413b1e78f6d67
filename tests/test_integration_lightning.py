"""gradsight's Lightning callback with a real ``lightning.Trainer`` on CPU.

The oracles are measured by hand inside the same run: the LightningModule's own
``on_before_optimizer_step`` (Lightning calls it right after the callbacks' hook, before
clipping) keeps ‖p.grad‖ and W, its ``on_train_batch_end`` keeps W after the step, and the
training step keeps its loss; the logged values are read back from the CSV logger's file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")
pd = pytest.importorskip("pandas")

from gradsight.diagnostics.history import history_from_json  # noqa: E402
from gradsight.errors import MissingExtraError  # noqa: E402
from gradsight.integrations.lightning import GradsightCallback  # noqa: E402

nn = torch.nn


class Module(L.LightningModule):
    """A small classifier that measures, by hand, what the callback should record."""

    def __init__(self, hidden: int = 16, depth: int = 1, activation: type = nn.ReLU,
                 lr: float = 1e-2, bias: float | None = None, optimizer: str = "adam") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 4
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), activation()]
            width = hidden
        layers.append(nn.Linear(width, 3))
        self.net = nn.Sequential(*layers)
        if bias is not None:
            for layer in self.net[:-1]:
                if isinstance(layer, nn.Linear):
                    nn.init.constant_(layer.bias, bias)
        self.lr, self.optimizer_name = lr, optimizer
        self.grads: list[dict[str, float]] = []  # ‖∂C/∂W‖ per Linear, per optimizer step
        self.totals: list[float] = []  # ‖∂C/∂θ‖ before clipping
        self.before: list[dict[str, torch.Tensor]] = []
        self.ratios: list[dict[str, float]] = []  # ‖ΔW‖/‖W‖
        self.losses: list[float] = []  # every training_step's loss
        self.act_means: list[float] = []  # mean output of the first activation, per forward

    def linears(self) -> dict[str, nn.Linear]:
        return {f"net.{i}": m for i, m in enumerate(self.net) if isinstance(m, nn.Linear)}

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        x, y = batch
        hidden = self.net[1](self.net[0](x))
        self.act_means.append(float(hidden.detach().double().mean()))
        out = self.net[2:](hidden)
        loss = nn.functional.cross_entropy(out, y)
        self.losses.append(float(loss.detach()))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:  # noqa: ANN001
        linears = self.linears()
        self.grads.append({n: float(torch.linalg.vector_norm(m.weight.grad.double()))
                           for n, m in linears.items()})
        self.totals.append(float(torch.linalg.vector_norm(torch.cat(
            [p.grad.double().reshape(-1) for p in self.parameters() if p.grad is not None]))))
        self.before.append({n: m.weight.detach().clone() for n, m in linears.items()})

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if len(self.before) > len(self.ratios):
            old = self.before[-1]
            self.ratios.append({n: float(torch.linalg.vector_norm((m.weight.detach() - old[n])
                                                                  .double())
                                         / torch.linalg.vector_norm(old[n].double()))
                                for n, m in self.linears().items()})

    def configure_optimizers(self):  # noqa: ANN201
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def _loader(n: int = 64, batch: int = 16, seed: int = 0, scale: float = 1.0):  # noqa: ANN202
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=generator) * scale
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=batch)


def _fit(module: Module, tmp_path: Path, callback: GradsightCallback, epochs: int = 2,
         **trainer: object) -> Path:
    torch.manual_seed(0)
    logger = L.pytorch.loggers.CSVLogger(tmp_path / "logs", name="run")
    options = {"max_epochs": epochs, "accelerator": "cpu", "devices": 1, "logger": logger,
               "enable_progress_bar": False, "enable_model_summary": False,
               "enable_checkpointing": False, "log_every_n_steps": 1,
               "default_root_dir": str(tmp_path), **trainer}
    L.Trainer(callbacks=[callback], **options).fit(module, _loader())
    return Path(logger.log_dir) / "metrics.csv"


def _param(history, layer: str) -> list:  # noqa: ANN001
    return sorted((r for r in history if r.layer == layer), key=lambda r: r.step)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_readings_equal_the_gradients_and_updates_measured_by_hand(tmp_path: Path,
                                                                   precision: str) -> None:
    """Gradients read in on_before_optimizer_step — before clipping, which is active here
    (clip value 0.05 ≪ the gradient norms) — and ‖ΔW‖/‖W‖ of the optimizer's step."""
    module = Module()
    callback = GradsightCallback(every=1, print_findings=False)
    _fit(module, tmp_path, callback, gradient_clip_val=0.05, precision=precision)
    steps = len(module.grads)
    assert steps == 8  # 64 samples / 16 per batch × 2 epochs
    assert min(module.totals) > 0.05 * 5  # clipping really changes the gradients
    for name in ("net.0", "net.2"):
        records = _param(callback.history, name)
        assert [r.step for r in records] == list(range(steps))
        for record, grads, ratios in zip(records, module.grads, module.ratios, strict=True):
            assert record.grad_W_norm == pytest.approx(grads[name], rel=1e-5)
            assert record.update_ratio == pytest.approx(ratios[name], rel=1e-4)
    first = _param(callback.history, "net.0")
    for record, total, loss in zip(first, module.totals, module.losses, strict=True):
        assert record.grad_norm_before_clip == pytest.approx(total, rel=1e-5)
        assert record.loss == pytest.approx(loss, rel=1e-6)
    acts = _param(callback.history, "net.1")
    assert [r.act_mean for r in acts] == pytest.approx(module.act_means, rel=1e-4)


class PoisonedModule(Module):
    """Its second batch's loss is multiplied by inf: every gradient of that step is inf/NaN."""

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        loss = super().training_step(batch, batch_idx)
        return loss * float("inf") if batch_idx == 1 else loss


def test_fp16_with_a_grad_scaler_reads_unscaled_gradients_and_flags_the_skipped_step(
        tmp_path: Path) -> None:
    """Lightning maps "16-mixed" to bf16 on a CPU; its MixedPrecision plugin given a
    GradScaler runs fp16 autocast with loss scaling all the same. The readings are the
    unscaled gradients (the module's own hook runs after Lightning's unscale_), and the step
    whose gradients are inf — the scaler skips it, and lowers its scale — is flagged."""
    from lightning.pytorch.plugins import MixedPrecision

    torch.manual_seed(0)
    module = PoisonedModule()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    callback = GradsightCallback(every=1, print_findings=False)
    _fit(module, tmp_path, callback, epochs=1,
         plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    records = _param(callback.history, "net.0")
    assert [r.skipped for r in records] == [False, True, False, False]
    assert scaler.get_scale() == 2.0 ** 15  # halved once, at the skipped step
    assert not math.isfinite(module.grads[1]["net.0"]) and records[1].nonfinite > 0
    assert records[1].update_ratio == 0.0  # the optimizer did not step
    for k in (0, 2, 3):
        assert records[k].grad_W_norm == pytest.approx(module.grads[k]["net.0"], rel=1e-5)
        assert records[k].grad_W_norm < 10  # unscaled: the scaled norms are ~65,536× larger
    # the loss Lightning hands to on_before_backward is the scaled one: recorded unscaled
    assert [r.loss for r in records if not r.skipped] == pytest.approx(
        [module.losses[k] for k in (0, 2, 3)], rel=1e-6)
    assert "bad-initial-loss" not in {f.code for f in callback.findings}


def test_the_logger_gets_every_reading_under_per_layer_tags(tmp_path: Path) -> None:
    module = Module()
    callback = GradsightCallback(every=2, print_findings=False)
    csv = _fit(module, tmp_path, callback)
    table = pd.read_csv(csv)
    for name, prefix, field in [("net.0", "grad_norm", "grad_W_norm"),
                                ("net.2", "update_ratio", "update_ratio"),
                                ("net.1", "dead", "dead_fraction"),
                                ("net.1", "act_mean", "act_mean")]:
        logged = table[["step", f"{prefix}/{name}"]].dropna()
        recorded = _param(callback.history, name)
        assert [r.step for r in recorded] == [0, 2, 4, 6]
        # only the recorded steps, at the optimizer step they were read at
        assert logged["step"].tolist() == [r.step for r in recorded]
        assert logged[f"{prefix}/{name}"].tolist() == pytest.approx(
            [getattr(r, field) for r in recorded], rel=1e-6)


def test_accumulated_batches_give_the_mean_of_their_undivided_losses(tmp_path: Path) -> None:
    """Lightning divides each loss by accumulate_grad_batches before backward; the records
    carry the batch losses' mean, and the gradients of the accumulated step."""
    module = Module()
    callback = GradsightCallback(every=1, print_findings=False)
    _fit(module, tmp_path, callback, epochs=1, accumulate_grad_batches=2)
    records = _param(callback.history, "net.0")
    assert len(records) == len(module.grads) == 2
    for k, record in enumerate(records):
        assert record.loss == pytest.approx(sum(module.losses[2 * k:2 * k + 2]) / 2, rel=1e-6)
        assert record.grad_W_norm == pytest.approx(module.grads[k]["net.0"], rel=1e-5)


def test_dead_units_are_found_printed_and_reported(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A hidden layer whose biases start at −20: its own measurement (a plain forward over
    the data) shows every unit dead; the callback prints the finding and writes the report
    with it."""
    module = Module(hidden=16, bias=-20.0, optimizer="sgd", lr=0.05)
    with torch.no_grad():
        X = torch.cat([x for x, _ in _loader()])
        dead = float((module.net[1](module.net[0](X)) <= 0).all(dim=0).double().mean())
    assert dead == 1.0
    report = tmp_path / "run.html"
    callback = GradsightCallback(report=report)
    _fit(module, tmp_path, callback)
    printed = capsys.readouterr().out
    codes = [f.code for f in callback.findings]
    assert "dead-units" in codes, codes
    assert "gradsight — diagnosis of the Lightning run" in printed
    assert all(f.title in printed for f in callback.findings)
    page = report.read_text(encoding="utf-8")
    dead_finding = next(f for f in callback.findings if f.code == "dead-units")
    assert dead_finding.title in page and "net.0" in page
    assert callback.report_path == str(report)


def test_a_run_that_turns_nan_is_logged_as_nan_and_diagnosed(tmp_path: Path) -> None:
    """η = 1e8 with SGD on inputs of scale 1e3: the loss and gradients overflow. Logging
    does not fail, NaN reaches the logger as NaN, and the findings say so."""
    torch.manual_seed(0)
    module = Module(lr=1e8, optimizer="sgd")
    callback = GradsightCallback(every=1, print_findings=False)
    logger = L.pytorch.loggers.CSVLogger(tmp_path / "logs", name="run")
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=logger, callbacks=[callback],
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, log_every_n_steps=1)
    trainer.fit(module, _loader(scale=1e3))
    losses = [r.loss for r in _param(callback.history, "net.0")]
    assert any(not math.isfinite(v) for v in losses)  # the run's own loss went non-finite
    assert not all(math.isfinite(v) for v in module.losses)
    # read as text: an empty cell is a step where nothing was logged, "nan" a logged NaN
    table = pd.read_csv(Path(logger.log_dir) / "metrics.csv", dtype=str, keep_default_na=False)
    logged = [float(v) for v in table["gradsight/loss"] if v != ""]
    assert len(logged) == len(losses)
    assert [str(v) for v in logged] == [str(v) for v in losses]  # nan where the run had nan
    assert {"nonfinite", "exploding-gradients"} & {f.code for f in callback.findings}


def test_hooks_are_removed_after_fit(tmp_path: Path) -> None:
    module = Module()
    callback = GradsightCallback(every=1, print_findings=False)
    _fit(module, tmp_path, callback, epochs=1)
    assert callback.watcher is None
    assert all(not m._forward_hooks for m in module.modules())


def test_without_lightning_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "gradsight.integrations.lightning")
    with pytest.raises(MissingExtraError) as raised:
        import gradsight.integrations.lightning  # noqa: F401
    message = str(raised.value)
    assert "\n" not in message and "pip install 'gradsight[lightning]'" in message


DDP_SCRIPT = """
import json, sys, torch, lightning as L
sys.path.insert(0, {tests!r})
from test_integration_lightning import Module, _loader
from gradsight.diagnostics.history import history_to_json
from gradsight.integrations.lightning import GradsightCallback

out = {out!r}
module = Module()
callback = GradsightCallback(every=1, report=out + "/report.html", print_findings=False)
torch.manual_seed(0)
trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp",
                    precision={precision!r}, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False,
                    callbacks=[callback])
trainer.fit(module, _loader(n=64, batch=8))
rank = trainer.global_rank
history_to_json(callback.history, f"{{out}}/history{{rank}}.json")
with open(f"{{out}}/oracle{{rank}}.json", "w") as f:
    json.dump({{"grads": module.grads, "act_means": module.act_means,
               "losses": module.losses, "report": callback.report_path,
               "world": trainer.world_size}}, f)
"""


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_ddp_with_two_cpu_processes(tmp_path: Path, precision: str) -> None:
    """strategy="ddp" on 2 CPU processes (gloo): every rank records the same, averaged
    readings — the gradients DDP averaged (measured by hand on each rank), the activation
    mean of the global batch (the mean of the ranks' means, batches of equal size) and the
    mean loss — and only rank 0 writes the report."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path),
                                        precision=precision), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    histories = [history_from_json(tmp_path / f"history{r}.json") for r in (0, 1)]
    oracles = [json.loads((tmp_path / f"oracle{r}.json").read_text()) for r in (0, 1)]
    assert [o["world"] for o in oracles] == [2, 2]
    assert [r.to_dict() for r in histories[0]] == [r.to_dict() for r in histories[1]]
    records = _param(histories[0], "net.0")
    assert len(records) == len(oracles[0]["grads"]) == 4  # 64 samples / (8 × 2 ranks)
    for k, record in enumerate(records):
        assert oracles[0]["grads"][k]["net.0"] == pytest.approx(oracles[1]["grads"][k]["net.0"])
        assert record.grad_W_norm == pytest.approx(oracles[0]["grads"][k]["net.0"], rel=1e-5)
        losses = [o["losses"][k] for o in oracles]
        assert record.loss == pytest.approx(sum(losses) / 2, rel=1e-5)
    acts = _param(histories[0], "net.1")
    for k, record in enumerate(acts):
        means = [o["act_means"][k] for o in oracles]
        assert record.act_mean == pytest.approx(sum(means) / 2, rel=1e-4)
    assert oracles[0]["report"] == str(tmp_path / "report.html")
    assert oracles[1]["report"] is None
    assert (tmp_path / "report.html").exists()



class FailingModule(Module):
    """Its fourth training step raises."""

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        if batch_idx == 3:
            raise RuntimeError("a bug in the training step")
        return super().training_step(batch, batch_idx)


def test_an_exception_in_fit_removes_the_hooks_and_keeps_the_records(tmp_path: Path) -> None:
    module = FailingModule()
    callback = GradsightCallback(every=1, report=tmp_path / "run.html")
    with pytest.raises(RuntimeError, match="a bug in the training step"):
        _fit(module, tmp_path, callback, epochs=1)
    assert callback.watcher is None
    assert all(not m._forward_hooks for m in module.modules())
    assert sorted({r.step for r in callback.history}) == [0, 1, 2]
    assert [r.grad_W_norm for r in _param(callback.history, "net.0")] == pytest.approx(
        [g["net.0"] for g in module.grads], rel=1e-5)
    assert not (tmp_path / "run.html").exists()  # fit did not end: no report


class ManualModule(Module):
    """Manual optimization: the step calls manual_backward and the optimizer itself."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = super().training_step(batch, batch_idx)
        self.manual_backward(loss)
        optimizer.step()
        return loss


def test_manual_optimization_is_read_at_the_optimizers_step(tmp_path: Path) -> None:
    """With automatic_optimization off, Lightning still calls on_before_backward (through
    manual_backward) and on_before_optimizer_step (through the optimizer's step): the same
    readings, checked against the module's own measurements."""
    module = ManualModule()
    callback = GradsightCallback(every=1, print_findings=False)
    _fit(module, tmp_path, callback, epochs=1)
    records = _param(callback.history, "net.0")
    assert len(records) == len(module.grads) == 4
    for record, grads, ratios, loss in zip(records, module.grads, module.ratios,
                                           module.losses, strict=True):
        assert record.grad_W_norm == pytest.approx(grads["net.0"], rel=1e-5)
        assert record.update_ratio == pytest.approx(ratios["net.0"], rel=1e-4)
        assert record.loss == pytest.approx(loss, rel=1e-6)
