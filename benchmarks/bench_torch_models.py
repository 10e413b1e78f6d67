"""Overhead of ``gradsight.watch`` on the models people train, measured in one run.

Five models train on random data on the CPU (2 threads):

* mlp: 784-256-256-10, sigmoid hidden layers, batch 128, SGD;
* resnet: a ResNet-18-shaped CNN written out by hand (a 3×3 stem, four stages of two basic
  blocks with BatchNorm and in-place ReLU, 64-128-256-512 channels), batch 8 of 3×32×32,
  SGD with momentum 0.9;
* transformer: a token embedding, a 4-layer ``nn.TransformerEncoder`` (d 256, 4 heads,
  feed-forward 1024, GELU, the default post-norm) and a head to 1,000 tokens, T = 64,
  batch 8, AdamW;
* lstm: a language model — embedding 128, a 2-layer ``nn.LSTM`` of 256 units, a head to
  1,000 tokens, T = 64, batch 16, AdamW;
* mlp-relu: the mlp with ReLU hidden layers, and compiled: the same under ``torch.compile``
  (inductor) — a compiled model is watched from its first step (its graph is traced with the
  watcher's hooks in it), which compiles and is not timed: its default-schedule runs cover
  steps 1 … N.

Each model is trained four ways, each on its own copy of the model (same initial weights):
plain (nothing added), watched with the default schedule (``every`` not given), with
``every=1`` and with ``every=10`` (all with ``optimizer=``), and "floor": the least any
every-step watcher of these statistics must do (:class:`FloorReader`), the bound for
``every=1``. The watchers are created once,
before the first timed run, and live through the whole benchmark, so their step counters run
on from one run to the next: the default-schedule watcher's runs together cover steps
0 … N−1 of its schedule (N = 1,000 by default: every recorded and unrecorded step of a
1,000-step run is timed once). Every timed run includes reading ``watcher.history`` (building
the records); each repeat starts after a 0.3 s pause (idle OpenMP threads spin ~0.1 s).

The ways alternate within each repeat in ten chunks (round-robin: a tenth of each way's steps
in turn), so the machine's load drifts evenly over all of them.
Reported per model: ms/step of the plain loop (median over the repeats) and each way's
overhead — for ``every=1``/``every=10`` the median over the repeats of (way / plain of the
same repeat); for the default schedule the whole N-step run, Σ default / Σ plain over the
repeats (each repeat times a different stretch of the schedule, so a median would mean
nothing). Targets: default ≤ 3% on every model, every=1 ≤ 10% on the resnet and the
transformer.

Run: ``python benchmarks/bench_torch_models.py [--models resnet,transformer] [--repeats 5]
[--schedule-steps 1000] [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import gradsight

WAYS = ("plain", "default", "every=1", "every=10", "floor")
ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU)
PAUSE = 0.3
CHUNKS = 10  # each repeat's steps of every way, interleaved in this many chunks


# ---- the models -----------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet's basic block: two 3×3 conv + BN, the shortcut (1×1 conv + BN when the shape
    changes) added before the last ReLU."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.relu2 = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False),
                                          nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32×32 images (the CIFAR stem: one 3×3 conv, no max-pool)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True))
        blocks, width = [], 64
        for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(width, outputs, stride), BasicBlock(outputs, outputs, 1)]
            width = outputs
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class TransformerLM(nn.Module):
    def __init__(self, vocab: int = 1000, d: int = 256, layers: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.1, activation="gelu",
                                           batch_first=True)
        with warnings.catch_warnings():  # "enable_nested_tensor is True, but ..."
            warnings.simplefilter("ignore")
            self.encoder = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)))


class LSTMLM(nn.Module):
    def __init__(self, vocab: int = 1000, embed: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(tokens))[0])


def mlp(activation: type[nn.Module] = nn.Sigmoid) -> nn.Module:
    return nn.Sequential(nn.Linear(784, 256), activation(), nn.Linear(256, 256), activation(),
                         nn.Linear(256, 10))


@dataclass
class Case:
    """A model to train: how to build it, its batches and loss, and its optimizer."""

    title: str
    build: Callable[[], nn.Module]
    batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    optimizer: Callable[[Any], torch.optim.Optimizer]
    compiled: bool = False


def _images(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randn(8, 3, 32, 32, generator=generator),
            torch.randint(0, 10, (8,), generator=generator))


def _digits(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randn(128, 784, generator=generator),
            torch.randint(0, 10, (128,), generator=generator))


def _tokens(batch: int) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    def make(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(0, 1000, (batch, 65), generator=generator)
        return tokens[:, :-1], tokens[:, 1:]  # next-token targets
    return make


def _sgd(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01)


def _momentum(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def _adamw(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


CASES = {
    "mlp": Case("MLP 784-256-256-10 (sigmoid), batch 128, SGD", mlp, _digits, _sgd),
    "resnet": Case("ResNet-18-shaped CNN, batch 8 × 3×32×32, SGD momentum 0.9", ResNet18,
                   _images, _momentum),
    "transformer": Case("Transformer encoder 4 × d 256, T 64, batch 8, AdamW", TransformerLM,
                        _tokens(8), _adamw),
    "lstm": Case("LSTM LM 2 × 256, T 64, batch 16, AdamW", LSTMLM, _tokens(16), _adamw),
    "mlp-relu": Case("MLP 784-256-256-10 (ReLU), batch 128, SGD — the compiled one, eager",
                     lambda: mlp(nn.ReLU), _digits, _sgd),
    "compiled": Case("torch.compile'd MLP 784-256-256-10 (ReLU, inductor), batch 128, SGD",
                     lambda: mlp(nn.ReLU), _digits, _sgd, compiled=True),
}


# ---- one way of training --------------------------------------------------------------------
class FloorReader:
    """The least an every-step watcher of these statistics must do: one read of every
    gradient and weight (t·t, one dot each), one of every activation module's output (a sum,
    in a forward hook) and one host transfer per step — no other statistic, no records."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sums: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules()
                        if isinstance(m, ACTIVATIONS)]
        self.handles.append(optimizer.register_step_pre_hook(self.read))
        self.values: list[float] = []

    def hook(self, module: nn.Module, args: object, output: object) -> None:
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor):
            self.sums.append(torch.sum(output.detach()))

    def read(self, *args: object) -> None:
        flats = [p.grad.reshape(-1) for p in self.params if p.grad is not None]
        flats += [p.detach().reshape(-1) for p in self.params]
        self.values = torch.stack([*(torch.dot(f, f) for f in flats), *self.sums]).tolist()
        self.sums.clear()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()



#: whether the watchers get ``loss_fn=`` (``--loss-fn``)
WATCH_LOSS = False


class Way:
    """One copy of the model, its optimizer and (unless plain) its watcher, kept for the
    whole benchmark so that the watcher's step counter runs on between timed runs."""

    def __init__(self, case: Case, model: nn.Module, name: str, batches: list[Any]) -> None:
        self.name, self.batches = name, batches
        if case.compiled:
            # dynamo does not guard on hooks: instances of one class would share one graph
            # (the first compiled, with or without the watcher's hooks); a class per way
            # gives each way its own graph
            model.__class__ = type(f"{type(model).__name__}_{name}", (type(model),), {})
        self.model = torch.compile(model) if case.compiled else model
        self.optimizer = case.optimizer(self.model.parameters())
        self.loss = nn.CrossEntropyLoss()
        self.watcher: Any = None
        self.records = 0
        self.steps = 0

    def watch(self) -> None:
        if self.name == "plain":
            return
        if self.name == "floor":
            self.watcher = FloorReader(self.model, self.optimizer)
            return
        every = {"default": None, "every=1": 1, "every=10": 10}[self.name]
        # --loss-fn: the watcher also hooks the loss (its value at records, the mean of every
        # step since the last record and the loss curve: one addition per step)
        extra = {"loss_fn": self.loss} if WATCH_LOSS else {}
        self.watcher = gradsight.watch(self.model, optimizer=self.optimizer, every=every,
                                       **extra) \
            if every is not None else gradsight.watch(self.model, optimizer=self.optimizer,
                                                      **extra)

    def run(self, steps: int) -> float:
        """Train ``steps`` steps (and read the history); seconds."""
        batches, loss_fn, model, optimizer = self.batches, self.loss, self.model, self.optimizer
        start = time.perf_counter()
        for i in range(steps):
            x, y = batches[i % len(batches)]
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
            optimizer.step()
        if self.watcher is not None and self.name != "floor":
            self.records = len(self.watcher.history)
        seconds = time.perf_counter() - start
        self.steps += steps
        return seconds


def measure(case: Case, repeats: int, schedule_steps: int, steps: int,
            warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = case.build()
    generator = torch.Generator().manual_seed(0)
    batches = [case.batch(generator) for _ in range(8)]
    # no floor for a compiled model: its list appends in a traced hook would recompile
    ways = {name: Way(case, copy.deepcopy(model), name, batches) for name in WAYS
            if not (case.compiled and name == "floor")}
    for way in ways.values():  # warm-up before watching: allocator, threads, first calls
        if case.compiled:  # ... but a compiled graph must be traced with the hooks in it:
            way.watch()  # watched from the first (compiling) step, which is not timed
            way.run(1)
        else:
            way.run(warmup)
            way.watch()
        way.steps = 0
    stretch = schedule_steps // repeats  # the default way's share of the schedule per repeat
    times: dict[str, list[float]] = {name: [] for name in ways}
    plain_for_default: list[float] = []
    try:
        for r in range(repeats):
            default_steps = stretch if r < repeats - 1 else schedule_steps - stretch * r
            counts = {name: default_steps if name == "default" else steps for name in ways}
            spent = dict.fromkeys(ways, 0.0)
            time.sleep(PAUSE)
            for chunk in range(CHUNKS):  # round-robin in small chunks: load drifts evenly
                for name, way in ways.items():
                    n = counts[name] * (chunk + 1) // CHUNKS - counts[name] * chunk // CHUNKS
                    if n:
                        spent[name] += way.run(n)
            for name in ways:
                times[name].append(spent[name] / counts[name])
            plain_for_default.append(times["plain"][-1] * default_steps)
    finally:
        for way in ways.values():
            if way.watcher is not None:
                way.watcher.remove()
    default_total = sum(t * n for t, n in zip(
        times["default"], [stretch] * (repeats - 1) + [schedule_steps - stretch * (repeats - 1)],
        strict=True))
    result = {"plain_ms": statistics.median(times["plain"]) * 1e3,
              "default": default_total / sum(plain_for_default) - 1,
              "default_steps": ways["default"].steps,
              "default_first": 1 if case.compiled else 0,
              "default_recorded": len({r.step for r in ways["default"].watcher.history
                                       if r.step >= (1 if case.compiled else 0)})}
    result["floor"] = math.nan
    for name in ("every=1", "every=10", "floor"):
        if name not in times:
            continue
        result[name] = statistics.median(
            t / p for t, p in zip(times[name], times["plain"], strict=True)) - 1
        result[f"{name}_spread"] = (min(times[name]) / statistics.median(times["plain"]) - 1,
                                    max(times[name]) / statistics.median(times["plain"]) - 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CASES),
                        help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=5, help="alternations (≥ 5)")
    parser.add_argument("--schedule-steps", type=int, default=1000,
                        help="steps of the default schedule covered, over all repeats")
    parser.add_argument("--steps", type=int, default=20,
                        help="steps per repeat of plain, every=1 and every=10")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--loss-fn", action="store_true",
                        help="watch with loss_fn= (the loss hooked at every step)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 3 repeats, 10 steps, 150 schedule steps (the dense "
                             "start of the schedule only: a pessimistic 'default')")
    args = parser.parse_args(argv)
    global WATCH_LOSS
    WATCH_LOSS = args.loss_fn
    if args.quick:
        args.repeats, args.steps, args.schedule_steps = 3, 10, 150
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(CASES)}")
    print(f"watch overhead, CPU, {args.threads} threads, {args.repeats} alternations; default "
          f"schedule over steps 0..{args.schedule_steps - 1}, every=1/10 over "
          f"{args.steps} steps per alternation (a shared machine is noisy)")
    print(f"{'model':<12} {'plain ms':>9} {'default':>9} {'every=1':>9} {'every=10':>9} "
          f"{'floor':>9}  default recorded")
    for name in names:
        case = CASES[name]
        result = measure(case, args.repeats, args.schedule_steps, args.steps, args.warmup)
        print(f"{name:<12} {result['plain_ms']:9.2f} {result['default'] * 100:+8.1f}% "
              f"{result['every=1'] * 100:+8.1f}% {result['every=10'] * 100:+8.1f}% "
              f"{result['floor'] * 100:+8.1f}%  "
              f"{result['default_recorded']}/{result['default_steps']} steps from step "
              f"{result['default_first']}   ({case.title})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
