"""Monitor cost: time per training step of ``gradsight.fit`` with and without a Monitor.

The engine benchmark's MLP — 784-256-256-10, sigmoid hidden layers, softmax cross-entropy,
plain SGD, float32, batch 128, on random data — trained by ``fit`` (``progress=False``,
``shuffle=False``) three ways in one run: no callback, ``Monitor(every=1)`` and
``Monitor(every=10)``. The runs alternate (plain, every=1, every=10, plain, ...) so that load
from other processes hits them alike; each figure is the median of ``--repeats`` timed runs
after one warm-up run of each. Target: overhead ≤ 10% with every=1.

    .venv/bin/python benchmarks/bench_monitor.py            # table
    .venv/bin/python benchmarks/bench_monitor.py --json     # one JSON document
"""

from __future__ import annotations

import argparse
import os


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=128)
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
from threadpoolctl import threadpool_limits  # noqa: E402

import gradsight  # noqa: E402
from gradsight import nn, optim  # noqa: E402
from gradsight.diagnostics.monitor import Monitor  # noqa: E402

SIZES = "784-256-256-10"
EPOCHS = 2
SAMPLES = 128 * 32


def _runner(X: np.ndarray, y: np.ndarray, every: int | None) -> tuple[Callable[[], None], list]:
    model = nn.mlp(SIZES, activation="sigmoid", dtype="float32", seed=0)
    optimizer = optim.SGD(lr=0.01)
    records: list = []

    def run() -> None:
        callbacks = [] if every is None else [Monitor(every)]
        gradsight.fit(model, X, y, loss="cross_entropy", optimizer=optimizer, epochs=EPOCHS,
                      batch_size=ARGS.batch_size, shuffle=False, progress=False,
                      callbacks=callbacks)
        if callbacks:
            records[:] = [len(callbacks[0].history)]

    return run, records


def main() -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((SAMPLES, 784)).astype(np.float32)
    y = rng.integers(0, 10, SAMPLES)
    steps = EPOCHS * (SAMPLES // ARGS.batch_size)
    variants = {"plain": None, "every=1": 1, "every=10": 10}
    runs = {name: _runner(X, y, every) for name, every in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with threadpool_limits(limits=ARGS.threads, user_api="blas"):
        for run, _ in runs.values():
            run()  # warm-up: buffers, page faults, BLAS threads
        for _ in range(ARGS.repeats):
            for name, (run, _) in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    per_step = {name: statistics.median(t) / steps * 1e3 for name, t in times.items()}
    base = per_step["plain"]
    return {
        "model": f"{SIZES} sigmoid, cross_entropy, SGD, float32", "threads": ARGS.threads,
        "batch_size": ARGS.batch_size, "steps_per_run": steps, "repeats": ARGS.repeats,
        "ms_per_step": per_step,
        "overhead_percent": {name: 100 * (ms / base - 1) for name, ms in per_step.items()
                             if name != "plain"},
        "records_per_run": {name: runs[name][1][0] for name in variants if variants[name]},
    }


if __name__ == "__main__":
    result = main()
    if ARGS.json:
        from gradsight._io import dumps

        print(dumps(result))
    else:
        print(f"MLP {result['model']}, batch {result['batch_size']}, {ARGS.threads} threads, "
              f"median of {ARGS.repeats} runs of {result['steps_per_run']} steps")
        for name, ms in result["ms_per_step"].items():
            extra = result["overhead_percent"].get(name)
            shown = "" if extra is None else f"  overhead {extra:+.1f}%"
            print(f"{name:>9}: {ms:.3f} ms/step{shown}")
        met = result["overhead_percent"]["every=1"] <= 10
        print(f"target overhead(every=1) <= 10%: {'met' if met else 'MISSED'}")
