"""Time the whole tour and the quick tour in one run and compare them with their budgets.

Budgets (issue 7): ``gradsight tour`` ≤ 60 s and ``gradsight tour --quick`` ≤ 15 s on 2 cores,
once installed. Each run writes into a fresh temporary folder; the seconds include the page
(figures embedded) and every JSON file. Printed per section too, to see where time goes.

    .venv/bin/python benchmarks/bench_tour.py [--only full|quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

BUDGETS = {"full": 60.0, "quick": 15.0}


def time_tour(quick: bool) -> tuple[float, list[tuple[str, float]]]:
    """Seconds of one ``run_tour`` into a fresh folder, and the seconds of each section."""
    from gradsight.tour import run_tour

    with tempfile.TemporaryDirectory(prefix="bench-tour-") as folder:
        started = time.perf_counter()
        result = run_tour(Path(folder) / "tour", quick=quick, progress=False)
        seconds = time.perf_counter() - started
    return seconds, [(s.id, s.seconds) for s in result.sections]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BUDGETS), default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    import gradsight.tour  # noqa: F401  (import cost reported separately)

    print(f"import gradsight.tour: {time.perf_counter() - started:.2f} s  (cpus: {os.cpu_count()})")
    modes = [args.only] if args.only else ["full", "quick"]
    rows = []
    for mode in modes:
        seconds, per_section = time_tour(quick=mode == "quick")
        rows.append((mode, seconds))
        detail = ", ".join(f"{name} {s:.1f}" for name, s in per_section)
        print(f"{mode:>5}: {seconds:6.1f} s   sections: {detail}")
    print()
    print(f"{'mode':>5}  {'seconds':>8}  {'budget':>7}  {'ratio':>6}")
    for mode, seconds in rows:
        budget = BUDGETS[mode]
        verdict = "ok" if seconds <= budget else "OVER BUDGET"
        print(f"{mode:>5}  {seconds:8.1f}  {budget:7.0f}  {seconds / budget:6.2f}  {verdict}")


if __name__ == "__main__":
    main()
