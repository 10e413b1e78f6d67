"""The Hugging Face callback: gradsight inside a real ``transformers.Trainer`` on CPU.

Tiny models built from a config (a 2-layer BERT classifier, a 2-layer GPT-2) train on random
tokens for a few steps. The oracles are independent of gradsight:

* the gradients the optimizer steps with, ‖W‖ before and after the step — read from the
  parameters by a plain ``TrainerCallback`` at ``on_pre_optimizer_step`` / ``on_optimizer_step``;
* the total gradient norm before clipping and the step's loss — what the Trainer itself logs
  as ``grad_norm`` and ``loss`` (every step logged);
* the TensorBoard event files — read back with TensorBoard's own ``EventAccumulator``.
"""

from __future__ import annotations

import importlib
import math
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gradsight.diagnostics.sinks import by_step, scalars  # noqa: E402
from gradsight.errors import (  # noqa: E402
    GradsightError,
    InvalidValueError,
    MissingExtraError,
    OutputError,
)
from gradsight.integrations.transformers import GradsightCallback  # noqa: E402

VOCAB = 50
BERT_LAYERS = ["bert.encoder.layer.0.attention.self.query",
               "bert.encoder.layer.1.attention.self.query",
               "bert.encoder.layer.1.output.dense", "classifier"]
GPT2_LAYERS = ["transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_proj"]


# ---- models, data and the independent spy -----------------------------------------------------
class RandomTokens(torch.utils.data.Dataset):
    """Random token sequences; labels a random class each (classification) or the tokens
    themselves (language modelling)."""

    def __init__(self, n: int = 32, length: int = 8, lm: bool = False, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, length), generator=generator)
        self.classes = torch.randint(0, 2, (n,), generator=generator)
        self.lm = lm

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i] if self.lm else self.classes[i]}


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=32)
    return transformers.BertForSequenceClassification(config)


def gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB,
                                     n_positions=32)
    return transformers.GPT2LMHeadModel(config)


class Spy(transformers.TrainerCallback):
    """Reads the parameters around each optimizer step, by hand: ‖∂C/∂W‖ of the gradients the
    optimizer is given (clipped by then), their total norm, and W before and after."""

    def __init__(self, model: torch.nn.Module, layers: list[str]) -> None:
        self.params = {name: dict(model.named_parameters())[f"{name}.weight"] for name in layers}
        self.all = [p for p in model.parameters() if p.requires_grad]
        self.grad: dict[int, dict[str, float]] = {}
        self.total: dict[int, float] = {}
        self.before: dict[int, dict[str, torch.Tensor]] = {}
        self.ratio: dict[int, dict[str, float]] = {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        step = state.global_step  # optimizer steps done: the record's step number
        self.grad[step] = {name: p.grad.double().norm().item() for name, p in self.params.items()}
        self.total[step] = math.sqrt(sum(p.grad.double().pow(2).sum().item() for p in self.all
                                         if p.grad is not None))
        self.before[step] = {name: p.detach().clone() for name, p in self.params.items()}

    def on_optimizer_step(self, args, state, control, **kwargs):
        step = state.global_step
        self.ratio[step] = {
            name: ((p.detach() - self.before[step][name]).double().norm()
                   / self.before[step][name].double().norm()).item()
            for name, p in self.params.items()}


def arguments(tmp_path, **overrides):
    settings = {"output_dir": str(tmp_path / "out"), "use_cpu": True, "report_to": [],
                "save_strategy": "no", "disable_tqdm": True, "per_device_train_batch_size": 4,
                "max_steps": 4, "logging_steps": 1, "seed": 0, "learning_rate": 1e-3}
    settings.update(overrides)
    return transformers.TrainingArguments(**settings)


def trainer_logs(trainer) -> dict[int, dict[str, float]]:
    """The Trainer's own log of each step (``loss``, ``grad_norm``) by global step."""
    return {entry["step"]: entry for entry in trainer.state.log_history if "grad_norm" in entry}


def gradsight_logs(trainer) -> dict[int, dict[str, float]]:
    """What the callback logged through ``trainer.log``, by global step, without the keys the
    Trainer adds to every log (epoch, step)."""
    return {entry["step"]: {k: v for k, v in entry.items() if k not in ("step", "epoch")}
            for entry in trainer.state.log_history if "gradsight/loss" in entry}


def record(history, layer: str, step: int):
    return next(r for r in history if r.layer == layer and r.step == step and r.kind == "param")


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# ---- a BERT classifier: the readings against the parameters and the Trainer's own log ----------
@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16"])
def test_bert_readings_match_the_parameters_and_the_trainers_log(tmp_path, capsys, bf16):
    """max_grad_norm is far below the gradient norm, so clipping is active: the per-layer
    norms are those of the clipped gradients the optimizer gets (the spy's), and
    grad_norm_before_clip is the unclipped total the Trainer logs as grad_norm. bf16=True is
    allowed on CPU (autocast; float32 weights and gradients) and changes none of this."""
    model, max_norm = bert(), 0.05
    spy = Spy(model, BERT_LAYERS)
    report = tmp_path / "report.html"
    callback = GradsightCallback(report=report)
    trainer = transformers.Trainer(model=model, train_dataset=RandomTokens(),
                                   args=arguments(tmp_path, max_grad_norm=max_norm, bf16=bf16),
                                   callbacks=[spy, callback])
    if bf16:
        assert trainer.accelerator.mixed_precision == "bf16"
    trainer.train()

    history = callback.history
    assert sorted({r.step for r in history}) == [0, 1, 2, 3]  # every = logging_steps = 1
    own, logged = trainer_logs(trainer), gradsight_logs(trainer)
    assert sorted(own) == sorted(logged) == [1, 2, 3, 4]  # the Trainer's own log is intact
    for step in range(4):
        for layer in BERT_LAYERS:
            r = record(history, layer, step)
            assert r.grad_W_norm == pytest.approx(spy.grad[step][layer], rel=1e-5)
            assert r.update_ratio == pytest.approx(spy.ratio[step][layer], rel=1e-4)
            assert r.grad_norm_before_clip == pytest.approx(own[step + 1]["grad_norm"],
                                                            rel=1e-6)
            assert logged[step + 1][f"grad_norm/{layer}"] == pytest.approx(
                spy.grad[step][layer], rel=1e-5)
        assert own[step + 1]["grad_norm"] > 5 * max_norm  # clipping was active ...
        assert spy.total[step] == pytest.approx(max_norm, rel=1e-4)  # ... on what was read
        assert r.loss == pytest.approx(own[step + 1]["loss"], rel=1e-6)
    for step, group in by_step(history):  # the log holds exactly the history's readings
        expected, got = scalars(group), logged[step + 1]
        assert got.keys() == expected.keys()
        assert all(same(got[tag], value) for tag, value in expected.items())

    printed = capsys.readouterr().out
    assert "gradsight — diagnosis of the Trainer's run (4 steps recorded)" in printed
    assert callback.findings is not None
    for finding in callback.findings:
        assert finding.title in printed
    page = report.read_text(encoding="utf-8")
    assert callback.report_path == str(report)
    assert all(layer in page for layer in BERT_LAYERS)


# ---- GPT-2 with gradient accumulation: the loss the Trainer backpropagates ----------------------
@pytest.mark.parametrize("items_to_model", [True, False], ids=["num_items", "divided"])
def test_gpt2_gradient_accumulation_loss_is_the_steps_loss(tmp_path, items_to_model):
    """Two micro-batches per step. With num_items_in_batch given to the model (GPT-2 takes it)
    each micro-batch loss is already normalised over the step's tokens; without it the Trainer
    divides each by 2. Either way a record's loss is the step's loss the Trainer logs."""
    model = gpt2()
    spy = Spy(model, GPT2_LAYERS)
    callback = GradsightCallback(print_findings=False, log=False)
    trainer = transformers.Trainer(
        model=model, train_dataset=RandomTokens(lm=True), callbacks=[spy, callback],
        args=arguments(tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                       max_steps=3))
    trainer.model_accepts_loss_kwargs = items_to_model
    trainer.train()

    history, own = callback.history, trainer_logs(trainer)
    for step in range(3):
        for layer in GPT2_LAYERS:
            r = record(history, layer, step)
            assert r.grad_W_norm == pytest.approx(spy.grad[step][layer], rel=1e-5)
        assert r.loss == pytest.approx(own[step + 1]["loss"], rel=1e-6)
        assert r.grad_norm_before_clip == pytest.approx(own[step + 1]["grad_norm"], rel=1e-6)
    assert 0.5 * math.log(VOCAB) < r.loss < 2 * math.log(VOCAB)  # one step's loss, not half
    assert gradsight_logs(trainer) == {}  # log=False: watched, not logged


# ---- TensorBoard: the Trainer's own reporting integration writes the readings ------------------
def test_tensorboard_event_files_hold_the_readings(tmp_path):
    """report_to="tensorboard": the Trainer's TensorBoard callback writes what the callback
    logs (under ``train/``). logging_steps=2 and no ``every``: records at steps 0 and 2,
    logged at global steps 1 and 3."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = bert()
    callback = GradsightCallback(print_findings=False)
    trainer = transformers.Trainer(
        model=model, train_dataset=RandomTokens(), callbacks=[callback],
        args=arguments(tmp_path, report_to="tensorboard", logging_steps=2))
    trainer.train()

    history = callback.history
    assert sorted({r.step for r in history}) == [0, 2]
    runs = list((tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 1
    events = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {}
    for step, group in by_step(history):
        for tag, value in scalars(group).items():
            expected.setdefault(f"train/{tag}", []).append((step + 1, value))
    assert set(expected) <= tags
    assert f"train/grad_norm/{BERT_LAYERS[0]}" in expected
    for tag, points in expected.items():
        read = [(event.step, event.value) for event in events.Scalars(tag)]
        assert [s for s, _ in read] == [s for s, _ in points]
        for (_, got), (_, value) in zip(read, points, strict=True):
            assert got == pytest.approx(value, rel=1e-6, abs=1e-30)  # stored as float32
    assert [event.step for event in events.Scalars("train/loss")] == [2, 4]


# ---- a run that goes non-finite -----------------------------------------------------------------
def test_nonfinite_run_is_logged_as_nan_and_diagnosed(tmp_path, capsys):
    """An inf in the word embeddings: the loss and the gradients are NaN from the first step.
    Nothing raises; gradsight logs NaN where the Trainer's own loss (logging_nan_inf_filter)
    shows a finite number; the non-finite finding is printed and the report is written."""
    model = bert()
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[:] = math.inf
    report = tmp_path / "diverged.html"
    callback = GradsightCallback(report=report)
    trainer = transformers.Trainer(model=model, train_dataset=RandomTokens(),
                                   args=arguments(tmp_path, max_steps=3),
                                   callbacks=[callback])
    trainer.train()

    logged, own = gradsight_logs(trainer), trainer_logs(trainer)
    assert sorted(logged) == [1, 2, 3]
    for step in (1, 2, 3):
        assert math.isnan(logged[step]["gradsight/loss"])
        assert math.isnan(logged[step][f"grad_norm/{BERT_LAYERS[0]}"])
        assert logged[step][f"nonfinite/{BERT_LAYERS[0]}"] > 0
        assert math.isfinite(own[step]["loss"])  # the Trainer filters NaN losses out
    finding = callback.findings.get("nonfinite")
    assert finding is not None and finding.severity == "critical"
    assert finding.title in capsys.readouterr().out
    assert BERT_LAYERS[0] in report.read_text(encoding="utf-8")


# ---- finding the Trainer ------------------------------------------------------------------------
def test_bind_adds_the_callback_to_a_trainer(tmp_path):
    """Bound by hand; 8 samples in batches of 4 make two steps an epoch: the records carry
    the epoch each step ran in."""
    model = bert()
    trainer = transformers.Trainer(model=model, train_dataset=RandomTokens(n=8),
                                   args=arguments(tmp_path, max_steps=4))
    callback = GradsightCallback(print_findings=False).bind(trainer)
    assert callback.trainer is trainer
    assert sum(item is callback for item in trainer.callback_handler.callbacks) == 1
    callback.bind(trainer)  # binding again does not add it twice
    assert sum(item is callback for item in trainer.callback_handler.callbacks) == 1
    trainer.train()
    assert sorted(gradsight_logs(trainer)) == [1, 2, 3, 4]
    assert {(r.step, r.epoch) for r in callback.history} == {(0, 0), (1, 0), (2, 1), (3, 1)}


def test_outside_a_trainer_it_watches_and_warns_that_nothing_is_logged(tmp_path, capsys):
    """Events called by hand (no Trainer up the stack): the callback still watches the model
    and diagnoses the run, with a warning that the readings go to no Trainer log."""
    model = bert()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    callback = GradsightCallback(every=1)
    args = arguments(tmp_path)
    state, control = transformers.TrainerState(), transformers.TrainerControl()
    with pytest.warns(UserWarning, match=r"bind\(trainer\)"):
        callback.on_train_begin(args, state, control, model=model, optimizer=optimizer)
    batch = RandomTokens()[0]
    output = model(input_ids=batch["input_ids"][None], labels=batch["labels"][None])
    output.loss.backward()
    grad = model.bert.encoder.layer[0].attention.self.query.weight.grad.double().norm().item()
    optimizer.step()
    callback.on_step_end(args, state, control)
    callback.on_train_end(args, state, control)
    r = record(callback.history, BERT_LAYERS[0], 0)
    assert r.grad_W_norm == pytest.approx(grad, rel=1e-6)
    assert r.loss == pytest.approx(output.loss.item(), rel=1e-6)
    assert "gradsight — diagnosis" in capsys.readouterr().out


# ---- bad input and the missing extra ------------------------------------------------------------
def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(InvalidValueError, match="every"):
        GradsightCallback(every=0)
    with pytest.raises(OutputError, match="it is a folder"):
        GradsightCallback(report=tmp_path)
    with pytest.raises(InvalidValueError, match="a sink must have"):
        GradsightCallback(sinks=[42])
    with pytest.raises(GradsightError, match="trainer must be a transformers.Trainer, got str"):
        GradsightCallback().bind("trainer")


def test_without_transformers_the_import_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "gradsight.integrations.transformers")
    with pytest.raises(MissingExtraError) as error:
        importlib.import_module("gradsight.integrations.transformers")
    message = str(error.value)
    assert "\n" not in message
    assert "GradsightCallback needs transformers" in message
    assert "pip install 'gradsight[transformers]'" in message


@pytest.mark.parametrize("disable_tqdm", [True, False])
def test_the_console_shows_the_trainers_rows_not_gradsights(tmp_path, capsys, disable_tqdm):
    """The Trainer prints every dict it logs (PrinterCallback, or its progress bar): by
    default gradsight's rows stay off the console — they are in log_history all the same —
    and the Trainer's own rows print as before; console=True prints them too."""
    printed = {}
    for console in (False, True):
        trainer = transformers.Trainer(
            model=bert(), train_dataset=RandomTokens(n=16),
            args=arguments(tmp_path / str(console), disable_tqdm=disable_tqdm),
            callbacks=[GradsightCallback(print_findings=False, console=console)])
        trainer.train()
        out = capsys.readouterr()
        printed[console] = out.out + out.err
        assert sorted(gradsight_logs(trainer)) == [1, 2, 3, 4]
        assert printed[console].count("'grad_norm':") == 4  # the Trainer's own four rows
    assert "gradsight/loss" not in printed[False] and "grad_norm/bert" not in printed[False]
    assert printed[True].count("'gradsight/loss'") == 4


DDP_SCRIPT = """
import json, sys, torch, transformers
sys.path.insert(0, {tests!r})
from test_integration_transformers import RandomTokens, bert
from gradsight.diagnostics.history import history_to_json
from gradsight.integrations.transformers import GradsightCallback

out = {out!r}


class Spy(transformers.TrainerCallback):
    # the gradients DDP averaged, read by hand before each optimizer step
    def __init__(self):
        self.grads, self.losses = [], []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        inner = model.module if hasattr(model, "module") else model
        self.grads.append({{n: float(torch.linalg.vector_norm(p.grad.double()))
                           for n, p in inner.named_parameters() if p.grad is not None}})


spy = Spy()
args = transformers.TrainingArguments(
    output_dir=out + "/out", use_cpu=True, report_to=[], save_strategy="no",
    disable_tqdm=True, per_device_train_batch_size=4, max_steps=4, logging_steps=1, seed=0,
    learning_rate=1e-3, ddp_backend="gloo")
callback = GradsightCallback(every=1, report=out + "/report.html", print_findings=False)
torch.manual_seed(0)
model = bert()
model.register_forward_hook(lambda m, a, o: spy.losses.append(float(o.loss))
                            if m.training and torch.is_grad_enabled() else None)
trainer = transformers.Trainer(model=model, train_dataset=RandomTokens(n=32), args=args,
                               callbacks=[callback, spy])
trainer.train()
rank = trainer.args.process_index
history_to_json(callback.history, f"{{out}}/history{{rank}}.json")
with open(f"{{out}}/oracle{{rank}}.json", "w") as f:
    json.dump({{"grads": spy.grads, "losses": spy.losses, "report": callback.report_path,
               "world": trainer.args.world_size,
               "own": [e for e in trainer.state.log_history if "grad_norm" in e]}}, f)
"""


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    """torchrun with 2 CPU processes (gloo): both ranks record the same readings — the
    gradients DDP averaged (p.grad read by hand on each rank), the Trainer's own grad_norm
    before clipping, and the loss it backpropagates and logs — each rank's output.loss times
    the 2 processes, averaged — and only the main process writes the report."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from gradsight.diagnostics.history import history_from_json

    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)),
                      encoding="utf-8")
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    histories = [history_from_json(tmp_path / f"history{r}.json") for r in (0, 1)]
    oracles = [json.loads((tmp_path / f"oracle{r}.json").read_text()) for r in (0, 1)]
    assert [o["world"] for o in oracles] == [2, 2]
    assert [r.to_dict() for r in histories[0]] == [r.to_dict() for r in histories[1]]
    for layer in BERT_LAYERS:
        records = sorted((r for r in histories[0] if r.layer == layer), key=lambda r: r.step)
        assert [r.step for r in records] == [0, 1, 2, 3]
        for step, r in enumerate(records):
            by_hand = [o["grads"][step][f"{layer}.weight"] for o in oracles]
            assert by_hand[0] == pytest.approx(by_hand[1], rel=1e-12)  # averaged by DDP
            assert r.grad_W_norm == pytest.approx(by_hand[0], rel=1e-5)
            assert r.grad_norm_before_clip == pytest.approx(oracles[0]["own"][step]["grad_norm"],
                                                            rel=1e-6)
            # the Trainer multiplies each rank's loss by the 2 processes before backward (the
            # model got num_items_in_batch over both): the loss backpropagated and logged
            ranks_losses = [o["losses"][step] for o in oracles]
            assert r.loss == pytest.approx(2 * sum(ranks_losses) / 2, rel=1e-6)
            assert r.loss == pytest.approx(oracles[0]["own"][step]["loss"], rel=1e-6)
    assert oracles[0]["report"] == str(tmp_path / "report.html")
    assert oracles[1]["report"] is None and (tmp_path / "report.html").exists()
