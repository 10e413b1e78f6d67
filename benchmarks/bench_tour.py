"""Time ``gradsight tour`` and ``gradsight tour --quick`` in one run against their budgets.

Budgets (issue 7): the whole tour ≤ 60 s and the quick tour ≤ 15 s on 2 cores, once
installed. Each mode runs as a fresh ``gradsight tour --json --quiet`` process writing into a
fresh temporary folder, so the seconds include starting Python and importing NumPy, SymPy,
matplotlib and scikit-learn — what a user waits for. The per-section seconds come from the
command's own JSON.

    .venv/bin/python benchmarks/bench_tour.py [--only full|quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGETS = {"full": 60.0, "quick": 15.0}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_tour(quick: bool) -> tuple[float, float, float, list[tuple[str, float]]]:
    """(wall seconds of the process, its CPU seconds, seconds inside run_tour, per section).

    CPU seconds (user + system) hardly depend on what else runs on the machine: on an idle
    2-core machine the wall time is about the CPU time (BLAS may use both cores)."""
    with tempfile.TemporaryDirectory(prefix="bench-tour-") as folder:
        command = [sys.executable, "-c", "from gradsight.cli import main; main()", "tour",
                   "--out", str(Path(folder) / "tour"), "--json", "--quiet",
                   *(["--quick"] if quick else [])]
        env = {**os.environ, "MPLBACKEND": "Agg"}
        cpu, started = _child_cpu(), time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        wall, cpu = time.perf_counter() - started, _child_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"gradsight tour failed ({done.returncode}):\n{done.stderr}")
    doc = json.loads(done.stdout)
    return wall, cpu, doc["seconds"], [(s["id"], s["seconds"]) for s in doc["sections"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BUDGETS), default=None)
    args = parser.parse_args()
    modes = [args.only] if args.only else ["full", "quick"]
    print(f"cpus: {os.cpu_count()}, load average: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    rows = []
    for mode in modes:
        wall, cpu, inside, per_section = time_tour(quick=mode == "quick")
        rows.append((mode, wall, cpu))
        detail = ", ".join(f"{name} {s:.1f}" for name, s in per_section)
        print(f"{mode:>5}: {wall:6.1f} s wall, {cpu:5.1f} s CPU   (run_tour {inside:.1f} s: "
              f"{detail})")
    print()
    print(f"{'mode':>5}  {'wall s':>7}  {'CPU s':>6}  {'budget':>6}  {'wall/budget':>11}  "
          f"{'CPU/budget':>10}")
    for mode, wall, cpu in rows:
        budget = BUDGETS[mode]
        verdict = "ok" if wall <= budget else "OVER BUDGET (wall)"
        print(f"{mode:>5}  {wall:7.1f}  {cpu:6.1f}  {budget:6.0f}  {wall / budget:11.2f}  "
              f"{cpu / budget:10.2f}  {verdict}")


if __name__ == "__main__":
    main()
