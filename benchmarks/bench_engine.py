"""Engine speed: time per training step of gradsight ``fit`` vs an equivalent PyTorch loop.

MLP 784-256-256-10, sigmoid hidden layers, softmax cross-entropy, plain SGD, float32, batch
sizes 16, 128 and 1024, both libraries on the same number of threads (default 2). Printed
per batch size, from one run:

* gradsight — ``gradsight.fit`` itself (epochs over random data, ``progress=False``,
  ``shuffle=False``), time per step = total time of the call / number of steps;
* plain — ``gradsight.fit(..., fast=False)``: the readable step of ``gradsight.engine.step``
  (the reference the fast step is tested against), what the fast path buys;
* torch — ``nn.Sequential`` + ``CrossEntropyLoss`` + ``torch.optim.SGD`` with
  ``zero_grad()/backward()/step()`` over the same batches (``--optimizer momentum`` or
  ``adam``: that optimizer in both loops, with the same hyperparameters);
* floor — the step's matrix products alone in NumPy (3 forward, 5 backward: the first
  layer's ∂C/∂X is not needed), with preallocated outputs: what no NumPy engine can beat;
* minimal — the whole step written as straight-line NumPy with nothing but its arithmetic:
  the products, bias adds, the sigmoid (tanh form) forward and σ(1−σ) backward passes, the
  softmax cross-entropy cost and gradient, and the SGD update as fit applies it (one
  accumulating BLAS product per array, gradsight's kernel) — no NaN guard, no callbacks, no
  checks, no layers. How far the floor is from a complete step.

Each timed run makes at least 256 optimizer steps (``STEPS``; fit's one-off input checks are
spread over them) and starts after a 0.3 s pause, so that no library's idle threads still
spin on the cores when the next one starts (see ``SETTLE``); each figure is the median of
``--repeats`` such runs, taken in turns, after one warm-up run each. Targets: gradsight/torch
≤ 0.8 at batch 128 and ≤ 1.0 at batch 1024; gradsight/floor ≤ 1.3 at 128.

    .venv/bin/python benchmarks/bench_engine.py            # table
    .venv/bin/python benchmarks/bench_engine.py --json     # one JSON document
"""

from __future__ import annotations

import argparse
import os
import sys

LR = 0.01  # plain SGD's rate, in both loops and in the minimal step
# optimizer name: (hyperparameters of gradsight.optim.<class> and of torch.optim.<class>)
OPTIMIZERS = {"sgd": ("SGD", {"lr": LR}), "momentum": ("SGD", {"lr": LR, "momentum": 0.9}),
              "adam": ("Adam", {"lr": 0.001})}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-sizes", default="16,128,1024")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd",
                        help="the optimizer of both loops (the targets are for sgd; the "
                        "minimal step exists for sgd only)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser.parse_args()


ARGS = _arguments()
# BLAS reads its thread count when it is loaded: set it before NumPy is imported.
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import gradsight  # noqa: E402
from gradsight import nn, optim  # noqa: E402

SIZES = (784, 256, 256, 10)
Runner = tuple[Callable[[], None], int]  # (one timed run, optimizer steps it makes)
# After a call, OpenBLAS' worker threads spin for about 2^28 cycles (~0.1 s) before they
# sleep; PyTorch's OpenMP threads do the same after theirs. A run that starts while the other
# library's threads still spin shares the two cores with them: PyTorch measured 2.5 ms a step
# right after a NumPy run against 1.05 ms on its own. Every timed run starts after a pause
# in which both pools have gone to sleep.
SETTLE = 0.3
STEPS = 256  # at least this many optimizer steps per timed run


def _plan(batch: int) -> tuple[int, int]:
    """(samples, epochs) for ≥ STEPS steps per timed run (fit's one-off input checks are part
    of the measured time, spread over those steps)."""
    samples = max(4 * batch, 4096)
    epochs = max(2, min(64, STEPS * batch // samples))
    return samples, epochs


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def gradsight_runner(X: np.ndarray, y: np.ndarray, batch: int, epochs: int,
                     fast: bool = True) -> Runner:
    """A run of ``gradsight.fit`` (the fast step, or the plain one) and its number of
    optimizer steps."""
    model = nn.mlp("-".join(map(str, SIZES)), activation="sigmoid", dtype="float32", seed=0)
    name, hyper = OPTIMIZERS[ARGS.optimizer]
    optimizer = getattr(optim, name)(**hyper)

    def run() -> None:
        gradsight.fit(model, X, y, loss="cross_entropy", optimizer=optimizer, epochs=epochs,
                      batch_size=batch, shuffle=False, progress=False, fast=fast)

    return run, epochs * (X.shape[0] // batch)


def torch_runner(X: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> Runner:
    """The same training in PyTorch: nn.Sequential, CrossEntropyLoss, optim.SGD."""
    import torch

    torch.manual_seed(0)
    layers: list = []
    for index, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:], strict=False)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if index < len(SIZES) - 2:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    name, hyper = OPTIMIZERS[ARGS.optimizer]
    optimizer = getattr(torch.optim, name)(model.parameters(), **hyper)
    criterion = torch.nn.CrossEntropyLoss()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

    def run() -> None:
        for _ in range(epochs):
            for start in range(0, X_t.shape[0], batch):
                optimizer.zero_grad()
                loss = criterion(model(X_t[start:start + batch]), y_t[start:start + batch])
                loss.backward()
                optimizer.step()

    return run, epochs * (X.shape[0] // batch)


def floor_runner(X: np.ndarray, batch: int, epochs: int) -> Runner:
    """The 8 matrix products of each step (3 forward, 5 backward), on the same batches of X,
    outputs preallocated — everything else a step does (activations, cost, update) left out."""
    rng = np.random.default_rng(0)

    def array(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    W = [array(a, b) for a, b in zip(SIZES, SIZES[1:], strict=False)]
    a = [np.empty(0, np.float32)] + [array(batch, n) for n in SIZES[1:]]  # a[1], a[2], logits
    d = [array(batch, n) for n in SIZES]  # δ of each layer's output
    gW = [np.empty_like(w) for w in W]

    def run() -> None:
        for _ in range(epochs):
            for start in range(0, X.shape[0], batch):
                a[0] = X[start:start + batch]
                for i in range(3):
                    np.matmul(a[i], W[i], out=a[i + 1])
                for i in (2, 1, 0):
                    np.matmul(a[i].T, d[i + 1], out=gW[i])
                    if i > 0:
                        np.matmul(d[i + 1], W[i].T, out=d[i])

    return run, epochs * (X.shape[0] // batch)


def minimal_runner(X: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> Runner:
    """One complete SGD step per batch as straight-line NumPy (see the module docstring)."""
    from gradsight.engine.fast.blas import product_kernel

    rng = np.random.default_rng(0)
    W = [(0.05 * rng.standard_normal((m, n))).astype(np.float32)
         for m, n in zip(SIZES, SIZES[1:], strict=False)]
    B = [np.zeros(n, np.float32) for n in SIZES[1:]]
    a = [np.empty(0, np.float32)] + [np.empty((batch, n), np.float32) for n in SIZES[1:]]
    d = [np.empty((batch, n), np.float32) for n in SIZES]
    f1 = [np.empty((batch, n), np.float32) for n in SIZES]  # σ′ = a(1 − a)
    ones, rows = np.ones(batch, np.float32), np.arange(batch)
    costs: list[float] = []  # the batch costs, as fit records them
    # W ← W − η·aᵀδ, b ← b − η·δᵀ·1 as one accumulating product each (as fit does); the
    # first layer's a is the batch itself, a new view each step
    bias_updates = [product_kernel(B[i], d[i + 1], ones) for i in range(3)]
    weight_updates = [product_kernel(W[i], a[i], d[i + 1]) for i in (1, 2)]

    def step(X_b: np.ndarray, y_b: np.ndarray) -> None:
        a[0] = X_b
        for i in range(3):
            z = a[i + 1]
            np.matmul(a[i], W[i], out=z)
            z += B[i]
            if i < 2:  # σ(z) = ½(1 + tanh(z/2)), in place
                z *= 0.5
                np.tanh(z, out=z)
                z += 1.0
                z *= 0.5
        e = d[3]  # C = mean(log Σ exp(s) − s_y) with s = z − max z; ∂C/∂z = (softmax − onehot)/N
        np.subtract(a[3], a[3].max(axis=1, keepdims=True), out=e)
        picked = e[rows, y_b]
        np.exp(e, out=e)
        total = e.sum(axis=1, keepdims=True)
        costs.append(float(np.mean(np.log(total[:, 0]) - picked)))
        e /= total
        e[rows, y_b] -= 1.0
        e *= 1.0 / batch
        for i in (2, 1):  # δ of the hidden layers, through the weights before the update
            np.matmul(d[i + 1], W[i].T, out=d[i])
            np.subtract(1.0, a[i], out=f1[i])
            f1[i] *= a[i]
            d[i] *= f1[i]
        first = product_kernel(W[0], X_b, d[1])
        for update in [first, *weight_updates, *bias_updates]:
            update(-LR)  # type: ignore[misc]

    def run() -> None:
        for _ in range(epochs):
            for start in range(0, X.shape[0] - batch + 1, batch):
                step(X[start:start + batch], y[start:start + batch])

    return run, epochs * (X.shape[0] // batch)


def measure(batch: int, repeats: int) -> dict[str, float]:
    """Seconds per step of each runner: median of ``repeats`` runs taken in turns (so that
    load from other processes hits them all alike), after one warm-up run each."""
    samples, epochs = _plan(batch)
    rng = np.random.default_rng(batch)
    X = rng.standard_normal((samples, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], samples)
    runners = {
        "gradsight": gradsight_runner(X, y, batch, epochs),
        "plain": gradsight_runner(X, y, batch, epochs, fast=False),
        "torch": torch_runner(X, y, batch, epochs),
        "floor": floor_runner(X, batch, epochs),
    }
    if ARGS.optimizer == "sgd":  # the minimal step is written for plain SGD
        runners["minimal"] = minimal_runner(X, y, batch, epochs)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run, _ in runners.values():
        run()  # warm-up: buffers, page faults, BLAS threads
    for _ in range(repeats):
        for name, (run, steps) in runners.items():
            time.sleep(SETTLE)
            times[name].append(_timed(run) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    import torch

    torch.set_num_threads(ARGS.threads)
    rows = []
    with threadpool_limits(limits=ARGS.threads, user_api="blas"):
        for batch in (int(b) for b in ARGS.batch_sizes.split(",")):
            seconds = measure(batch, ARGS.repeats)
            ours, theirs, floor = seconds["gradsight"], seconds["torch"], seconds["floor"]
            rows.append({
                "batch_size": batch, "gradsight_ms": ours * 1e3, "torch_ms": theirs * 1e3,
                "plain_ms": seconds["plain"] * 1e3, "plain_over_fast": seconds["plain"] / ours,
                "ratio": ours / theirs, "floor_ms": floor * 1e3, "over_floor": ours / floor,
                "minimal_ms": seconds["minimal"] * 1e3 if "minimal" in seconds else None,
                "minimal_over_floor": seconds["minimal"] / floor if "minimal" in seconds else None,
                "minimal_over_torch": seconds["minimal"] / theirs if "minimal" in seconds else None,
            })
            if not ARGS.json:
                print(f"batch {batch}: done", file=sys.stderr)
    report(rows, torch.__version__)


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def report(rows: list[dict], torch_version: str) -> None:
    by_batch = {row["batch_size"]: row for row in rows}
    targets = {
        "ratio@128 <= 0.8": by_batch.get(128, {}).get("ratio"),
        "ratio@1024 <= 1.0": by_batch.get(1024, {}).get("ratio"),
        "over_floor@128 <= 1.3": by_batch.get(128, {}).get("over_floor"),
    }
    limits = {"ratio@128 <= 0.8": 0.8, "ratio@1024 <= 1.0": 1.0, "over_floor@128 <= 1.3": 1.3}
    met = {k: (None if v is None else v <= limits[k]) for k, v in targets.items()}
    blas = [  # NumPy's BLAS (SciPy loads a second OpenBLAS, unused by the engine's products)
        f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
        for i in threadpool_info()
        if i.get("user_api") == "blas" and "numpy" in str(i.get("filepath", ""))
    ]
    if ARGS.json:
        from gradsight.io import dumps

        print(dumps({
            "model": f"784-256-256-10 sigmoid, cross_entropy, {ARGS.optimizer}, float32",
            "threads": ARGS.threads, "repeats": ARGS.repeats, "numpy": np.__version__,
            "torch": torch_version, "blas": blas, "rows": rows, "targets": targets, "met": met,
        }))
        return
    print(f"MLP 784-256-256-10 sigmoid, softmax cross-entropy, {ARGS.optimizer}, float32, "
          f"{ARGS.threads} "
          f"threads; numpy {np.__version__} ({', '.join(blas)}), torch {torch_version}")
    print(f"{'batch':>6} {'gradsight ms':>13} {'plain ms':>9} {'torch ms':>9} {'ratio':>6} "
          f"{'matmul floor ms':>16} {'gradsight/floor':>16} {'minimal/floor':>14} "
          f"{'minimal/torch':>14}")
    for r in rows:
        print(f"{r['batch_size']:>6} {r['gradsight_ms']:>13.3f} {r['plain_ms']:>9.3f} "
              f"{r['torch_ms']:>9.3f} "
              f"{r['ratio']:>6.2f} {r['floor_ms']:>16.3f} {r['over_floor']:>16.2f} "
              f"{_cell(r['minimal_over_floor']):>14} {_cell(r['minimal_over_torch']):>14}")
    if ARGS.optimizer != "sgd":
        print("(the targets are for plain SGD)")
        return
    for name, value in targets.items():
        state = "n/a" if value is None else ("met" if met[name] else "MISSED")
        shown = "" if value is None else f"{value:.2f}"
        print(f"target {name}: {shown} {state}")


if __name__ == "__main__":
    main()
