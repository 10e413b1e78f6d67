"""Two versions of gradsight timed against each other: is a change a slow-down?

Give the ``src`` folder of another checkout (for instance ``git worktree add /tmp/before
HEAD~3``); each case below is timed for both versions in turns — before, after, before,
after, ... — each timed run in a fresh Python process whose ``PYTHONPATH`` picks the version,
after a 0.3 s pause (idle BLAS threads of the previous run spin ~0.1 s). The figure is the
median over ``--repeats`` turns of the time per optimizer step measured inside the process
(start-up and imports excluded), and the ratio after/before.

Cases, on the network of ``bench_engine.py`` and ``bench_monitor.py`` (MLP 784-256-256-10,
sigmoid, float32, softmax cross-entropy, batch 128, 2 threads):

* ``sgd`` — ``fit`` with plain SGD (the fused step);
* ``momentum``, ``adam`` — the same with SGD momentum 0.9 and Adam;
* ``monitor-1``, ``monitor-10`` — plain SGD with ``Monitor(every=1)`` / ``Monitor(every=10)``.

    .venv/bin/python benchmarks/compare_versions.py --before /tmp/before/src
    .venv/bin/python benchmarks/compare_versions.py --before /tmp/before/src --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = ("sgd", "momentum", "adam", "monitor-1", "monitor-10")
SETTLE = 0.3

# One timed run, in its own process: only the public API that every version has.
RUN = """
import os, sys, time
import numpy as np
import gradsight
from gradsight import nn, optim
case, batch = sys.argv[1], 128
rng = np.random.default_rng(0)
X = rng.standard_normal((4096, 784)).astype(np.float32)
y = rng.integers(0, 10, size=4096)
model = nn.mlp("784-256-256-10", activation="sigmoid", dtype="float32", seed=0)
optimizer = {"momentum": lambda: optim.SGD(lr=0.01, momentum=0.9),
             "adam": lambda: optim.Adam(lr=0.001)}.get(case, lambda: optim.SGD(lr=0.01))()
callbacks = ([gradsight.Monitor(every=int(case.split("-")[1]))] if case.startswith("monitor")
             else [])
def run(epochs):
    gradsight.fit(model, X, y, loss="cross_entropy", optimizer=optimizer, epochs=epochs,
                  batch_size=batch, shuffle=False, progress=False, callbacks=callbacks)
run(1)  # warm-up: kernels found, buffers made
time.sleep(0.3)
start = time.perf_counter()
run(8)
print((time.perf_counter() - start) / (8 * 4096 // batch) * 1e3)
"""


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the src folder of the other version")
    parser.add_argument("--after", default=str(Path(__file__).resolve().parents[1] / "src"),
                        help="the src folder of this version (default: this checkout's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser.parse_args()


def _time(src: str, case: str, threads: int) -> float:
    """ms per step of one run of ``case`` with the gradsight found in ``src``."""
    environment = dict(os.environ, PYTHONPATH=src)
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environment[variable] = str(threads)
    time.sleep(SETTLE)
    done = subprocess.run([sys.executable, "-c", RUN, case], env=environment,
                          capture_output=True, text=True, check=True, timeout=600)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = _arguments()
    for src in (args.before, args.after):
        if not (Path(src) / "gradsight" / "__init__.py").is_file():
            sys.exit(f"error: {src!r} has no gradsight package (give a src folder)")
    cases = [case for case in args.cases.split(",") if case]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        sys.exit(f"error: unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    times: dict[str, dict[str, list[float]]] = {c: {"before": [], "after": []} for c in cases}
    for _ in range(args.repeats):  # turns: every case, both versions, alternating
        for case in cases:
            for version, src in (("before", args.before), ("after", args.after)):
                times[case][version].append(_time(src, case, args.threads))
    rows = []
    for case in cases:
        before = statistics.median(times[case]["before"])
        after = statistics.median(times[case]["after"])
        rows.append({"case": case, "before_ms": before, "after_ms": after,
                     "ratio": after / before, "runs": times[case]})
    if args.json:
        print(json.dumps({"repeats": args.repeats, "threads": args.threads, "rows": rows}))
        return
    print(f"ms per step, median of {args.repeats} turns (before / after interleaved)")
    print(f"{'case':<12}{'before':>10}{'after':>10}{'after/before':>14}")
    for row in rows:
        print(f"{row['case']:<12}{row['before_ms']:>10.3f}{row['after_ms']:>10.3f}"
              f"{row['ratio']:>14.3f}")


if __name__ == "__main__":
    main()
