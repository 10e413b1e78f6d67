"""Doctor in parallel: wall-clock time of ``gradsight.doctor`` serially, in two local
processes (``jobs=2``, joblib's loky backend) and on a two-worker Dask ``LocalCluster``
(``scheduler=``), one run each, interleaved, with the speed-up ratios.

The set-up is the article's troubled one on the full ``digits`` data (1,797 samples): three
sigmoid hidden layers of 64 units, the quadratic cost, SGD η = 0.5, 100 epochs, and seven
given candidate fixes — eight runs of about the same length, so two workers can share
them evenly (given candidates run together with the baseline; ``--proposed`` lets the doctor
propose them instead, and then the baseline runs alone first). Each result is checked to be
the serial one, number for number.

BLAS threads: the serial run uses ``--threads`` (default 2 = the cores; threadpoolctl, in
this process only); joblib's loky backend gives each of its ``jobs`` workers cores // jobs =
1 thread, and a Dask nanny starts its workers with one (``distributed.nanny.pre-spawn-environ``)
— so two workers never use more than the two cores. Neither overrides a thread count set in
the environment, which the workers would inherit: the script refuses to start with one. The
thread counts read inside the workers (threadpoolctl) are printed. Before the timed runs
every way runs a one-epoch doctor once (untimed): the worker processes are started and have
imported gradsight, as on a cluster that already exists; the timed runs still include
pickling the data to the workers and joblib's dispatch. Runs are ~0.2 s apart.

    .venv/bin/python benchmarks/bench_doctor_parallel.py            # table
    .venv/bin/python benchmarks/bench_doctor_parallel.py --json     # one JSON document
    .venv/bin/python benchmarks/bench_doctor_parallel.py --quick    # 10 epochs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from contextlib import nullcontext
from typing import Any

from threadpoolctl import threadpool_info, threadpool_limits

from gradsight.diagnostics.fixes import doctor
from gradsight.io import dumps


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads of the serial run")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1,
                        help="interleaved rounds (the issue asks for one run each)")
    parser.add_argument("--proposed", action="store_true",
                        help="let the doctor propose the candidates (baseline first)")
    parser.add_argument("--quick", action="store_true", help="10 epochs")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser.parse_args()



SETUP = {"data": "digits", "hidden": [64, 64, 64], "activation": "sigmoid",
         "init": "xavier_uniform", "loss": "quadratic", "optimizer": "sgd", "lr": 0.5,
         "batch_size": 32, "seed": 0}
CANDIDATES = ["activation=relu, init=he_normal", "activation=leaky_relu, init=he_normal",
              "activation=tanh", "loss=cross_entropy",
              "activation=relu, init=he_normal, loss=cross_entropy", "init=he_normal",
              "optimizer=adam, lr=0.001"]
PAUSE = 0.2


def blas_threads(_: Any = None) -> list[int]:
    """The thread counts of the BLAS pools of the process this runs in."""
    return [int(pool["num_threads"]) for pool in threadpool_info()
            if pool.get("user_api") == "blas"]


def run(args: argparse.Namespace, epochs: int, **parallel: Any) -> tuple[float, str]:
    """(seconds, the result's JSON) of one doctor call."""
    candidates = None if args.proposed else CANDIDATES
    limit = nullcontext() if parallel else threadpool_limits(args.threads, user_api="blas")
    with limit:
        start = time.perf_counter()
        result = doctor({**SETUP, "epochs": epochs}, candidates, **parallel)
        return time.perf_counter() - start, dumps(result.to_dict())


def worker_threads(**parallel: Any) -> list[list[int]]:
    from gradsight.diagnostics.parallel import parallel_runs

    with parallel_runs(**parallel) as runs:
        return [o.value for o in runs.map(blas_threads, range(4))]


def main(args: argparse.Namespace) -> dict[str, Any]:
    from distributed import LocalCluster

    # No BLAS variable is set here: the workers inherit this process's environment, and
    # neither joblib nor Dask overrides a thread count the user set. The serial run is
    # limited with threadpoolctl instead, in this process only.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if variable in os.environ:
            raise SystemExit(f"unset {variable}: the workers would inherit it")
    epochs = 10 if args.quick else args.epochs
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    ways = {"serial": {}, "jobs=2 (loky)": {"jobs": 2},
            "LocalCluster 2 workers (dask)": {"scheduler": cluster.scheduler_address}}
    with threadpool_limits(args.threads, user_api="blas"):
        serial_threads = [blas_threads()]
    threads = {"serial": serial_threads,
               "jobs=2 (loky)": worker_threads(jobs=2),
               "LocalCluster 2 workers (dask)": worker_threads(
                   scheduler=cluster.scheduler_address)}
    for parallel in ways.values():  # warm-up: workers started, gradsight imported
        run(args, 1, **parallel)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    identical = True
    try:
        for _ in range(args.rounds):
            reference = None
            for name, parallel in ways.items():
                time.sleep(PAUSE)
                elapsed, document = run(args, epochs, **parallel)
                seconds[name].append(elapsed)
                reference = reference or document
                identical = identical and document == reference
    finally:
        cluster.close()
    best = {name: min(values) for name, values in seconds.items()}
    runs = 1 + len(json.loads(reference or "{}").get("candidates", []))
    return {"epochs": epochs, "runs": runs, "proposed": args.proposed,
            "cores": os.cpu_count(), "serial_blas_threads": args.threads,
            "worker_blas_threads": threads, "seconds": seconds,
            "speed_up": {name: best["serial"] / value for name, value in best.items()},
            "identical_results": identical}


def _print(report: dict[str, Any]) -> None:
    print(f"doctor on digits, {report['runs']} runs of {report['epochs']} epochs "
          f"({'proposed' if report['proposed'] else 'given'} candidates), "
          f"{report['cores']} cores")
    for name, values in report["seconds"].items():
        times = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<32} {times:>8} s   speed-up ×{report['speed_up'][name]:.2f}   "
              f"BLAS threads per process {report['worker_blas_threads'][name]}")
    print(f"  results identical to the serial run: {report['identical_results']}")


if __name__ == "__main__":
    ARGS = _arguments()
    REPORT = main(ARGS)
    if ARGS.json:
        print(json.dumps(REPORT, indent=2))
    else:
        _print(REPORT)
