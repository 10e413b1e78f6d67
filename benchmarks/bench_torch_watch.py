"""Overhead of ``gradsight.watch`` on a PyTorch training loop, measured in one run.

An MLP 784-256-256-10 (sigmoid or ReLU hidden layers) trains on random data, batch 128, on
the CPU with 2 threads, in three ways:

* plain: the user's loop, nothing added;
* watch: the same loop inside ``gradsight.watch(model, every=1, optimizer=optimizer)`` —
  every statistic, including the update ratios ‖ΔW‖/‖W‖ (a copy of W before each step);
* watch, no optimizer: ``gradsight.watch(model, every=1)`` — the same without update ratios;
* watch every=10: as "watch", recording one step in ten (what a long run would use);
* floor: the least any every-step watcher of these statistics must do — read each gradient
  and each weight once (t·t, one BLAS dot each: cheaper here than ``torch._foreach_norm``,
  which measured +24%), each activation output once (a sum in a forward hook) and bring the
  numbers to the host in one transfer; no other statistic, no records. Its overhead is a
  lower bound for ``watch(every=1)``;
* histograms: for reference, what common experiment trackers do when they log
  per-parameter gradient histograms every step — ``torch.histc`` over each parameter's
  gradient and a ``.cpu()`` per parameter.

Each way runs ``--steps`` steps per repeat after a warm-up; the ways are interleaved in every
repeat so that the machine's load drifts evenly over all three, and the median ms/step over
the repeats is reported with the overhead in % relative to the plain loop (target for watch:
≤ 10%). Run: ``python benchmarks/bench_torch_watch.py [--activation relu] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

import gradsight


def build(activation: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}[activation]
    return nn.Sequential(nn.Linear(784, 256), act(), nn.Linear(256, 256), act(),
                         nn.Linear(256, 10))


class FloorReader:
    """One read of every gradient, weight and activation per step, one host transfer."""

    def __init__(self, model: nn.Module) -> None:
        self.params = list(model.parameters())
        self.sums: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules()
                        if isinstance(m, (nn.Sigmoid, nn.ReLU))]

    def hook(self, module: nn.Module, args: object, output: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            self.sums.append(torch.sum(output.detach()))

    def __call__(self, model: nn.Module) -> list[float]:
        tensors = [p.grad for p in self.params if p.grad is not None]
        tensors += [p.detach() for p in self.params]
        flats = [t.reshape(-1) for t in tensors]  # t·t by BLAS: the cheapest read on the CPU
        values = torch.stack([*(torch.dot(f, f) for f in flats), *self.sums]).tolist()
        self.sums.clear()
        return values

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def log_histograms(model: nn.Module) -> list[list[float]]:
    """What trackers do per step: a 64-bin histogram of every gradient, moved to the host."""
    logged = []
    for param in model.parameters():
        if param.grad is not None:
            grad = param.grad.detach()
            hist = torch.histc(grad, bins=64, min=float(grad.min()), max=float(grad.max()))
            logged.append(hist.cpu().tolist())
    return logged


def run(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[tuple[torch.Tensor,
        torch.Tensor]], after_backward: Callable[[nn.Module], object] | None = None) -> float:
    """Train over the batches; seconds per step."""
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        if after_backward is not None:
            after_backward(model)
        optimizer.step()
    return (time.perf_counter() - start) / len(batches)


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activation", choices=["sigmoid", "relu"], default="sigmoid")
    parser.add_argument("--steps", type=int, default=30, help="steps per repeat and way")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(128, 784, generator=generator),
                torch.randint(0, 10, (128,), generator=generator)) for _ in range(args.steps)]
    model = build(args.activation)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ways: dict[str, Callable[[], float]] = {
        "plain": lambda: run(model, optimizer, batches),
        "watch": lambda: _watched(model, optimizer, batches, optimizer),
        "watch, no optimizer": lambda: _watched(model, optimizer, batches, None),
        "watch every=10": lambda: _watched(model, optimizer, batches, optimizer, every=10),
        "floor": lambda: _floor(model, optimizer, batches),
        "histograms": lambda: run(model, optimizer, batches, log_histograms),
    }
    for way in ways.values():  # warm-up: allocator, thread pool, first-call costs
        for _ in range(max(1, args.warmup // args.steps + 1)):
            way()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            times[name].append(way())
    plain = statistics.median(times["plain"])
    print(f"MLP 784-256-256-10 ({args.activation}), batch 128, CPU, {args.threads} threads, "
          f"{args.repeats} repeats × {args.steps} steps (median; a shared machine is noisy)")
    for name, samples in times.items():
        median = statistics.median(samples)
        spread = f"min {min(samples) * 1e3:.2f} – max {max(samples) * 1e3:.2f}"
        overhead = f"{(median / plain - 1) * 100:+.1f}%" if name != "plain" else "—"
        print(f"  {name:<20} {median * 1e3:7.2f} ms/step  ({spread})  overhead {overhead}")
    return 0


def _floor(model: nn.Module, optimizer: torch.optim.Optimizer,
           batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    reader = FloorReader(model)
    try:
        return run(model, optimizer, batches, reader)
    finally:
        reader.remove()


def _watched(model: nn.Module, optimizer: torch.optim.Optimizer,
             batches: list[tuple[torch.Tensor, torch.Tensor]], given: object,
             every: int = 1) -> float:
    with gradsight.watch(model, every=every, optimizer=given) as watcher:
        seconds = run(model, optimizer, batches)
    expected = 5 * len(range(0, len(batches), every))  # 3 Linear + 2 activations per step
    if len(watcher.history) != expected:
        raise SystemExit(f"watch recorded {len(watcher.history)} records, expected {expected}")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
