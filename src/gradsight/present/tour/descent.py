"""Tour section 3: gradient descent on y = x² − 4x + 6 from x = 8 with η = 0.1, and the rates."""

from __future__ import annotations

from typing import Any

from ...calculus.descent import compare, minimize
from ..plots.descent import plot_loss, plot_path_1d
from ._base import Section, Table, TourContext, fixed, fmt

FUNCTION = "x^2 - 4*x + 6"
X0, LR = 8.0, 0.1
#: too small, right, too large (overshoots, zig-zags), divergent
RATES = (0.01, 0.1, 0.9, 1.1)
_RATE_WORDS = {0.01: "too small", 0.1: "right", 0.9: "too large", 1.1: "divergent"}
_ARTICLE_ROWS = 36  # the articles print about this many iterations


def build(ctx: TourContext) -> Section:
    run = minimize(FUNCTION, X0, lr=LR)
    comparison = compare(FUNCTION, X0, lrs=list(RATES), max_iter=1000)
    rows = comparison.table()
    xs = [it.x[0] for it in run.iterations]
    numbers = {"x1": xs[1], "x2": xs[2], "x3": xs[3], "iterations": run.n_steps,
               "x_final": run.x_final[0], "f_final": run.f_final, "verdict": run.verdict,
               "rates": {str(r["lr"]): {"verdict": r["verdict"], "iterations": r["iterations"]}
                         for r in rows}}
    figures = [
        ctx.figure(plot_path_1d(run), "descent-path",
                   "y = x² − 4x + 6 with the first iterates from x = 8 (η = 0.1): the tangent "
                   "at each point and the step x_new = x_old − η·dy/dx."),
        ctx.figure(plot_loss(comparison), "descent-rates",
                   "The same start with four learning rates η — too small (0.01), right (0.1), "
                   "too large (0.9, zig-zags around 2) and divergent (1.1): the distance "
                   "y − y_min to the minimum per iteration, log scale. The curves of 0.1 "
                   "(dashed, squares) and 0.9 (dotted, triangles) run together: both multiply "
                   "x − 2 by |1 − 2η| = 0.8 per step (0.9 with a change of sign), so "
                   "y − y_min falls alike."),
    ]
    return Section(
        id="descent", title="Gradient descent on y = x² − 4x + 6",
        headline=(f"from x = 8 with η = 0.1: 6.8, 5.84, 5.07, … → x = "
                  f"{fixed(run.x_final[0], 6)} after {run.n_steps} steps ({run.verdict})"),
        paragraphs=_paragraphs(run, rows),
        figures=figures,
        tables=[_iteration_table(run), _rates_table(rows)],
        commands=[["descend", FUNCTION, "--x0", "8", "--lr", "0.1", "--plot", "descent.png"],
                  ["descend", FUNCTION, "--x0", "8", "--compare-lr",
                   ",".join(f"{r:g}" for r in RATES), "--plot", "descent-rates.png"]],
        numbers=numbers,
        data={"run": run.to_dict(), "comparison": rows,
              "rate_words": {str(k): v for k, v in _RATE_WORDS.items()}},
    )


def _paragraphs(run: Any, rows: list[dict[str, Any]]) -> list[str]:
    by_rate = {r["lr"]: r for r in rows}
    return [
        "Training a network means minimising its cost. The articles start with a function small "
        "enough to see: y = x² − 4x + 6. Its derivative dy/dx = 2x − 4 is zero at x = 2, the "
        "minimum — but a network cannot solve for its minimum, it has to walk downhill. "
        "Gradient descent does that: x_new = x_old − η·dy/dx, a step against the slope, "
        "scaled by the learning rate η (the article on the derivative in training writes it "
        "ν here and η later; gradsight writes η throughout).",
        "From x = 8 with η = 0.1 the first step is 8 − 0.1·(2·8 − 4) = 6.8, then 5.84, "
        "5.07, 4.45, … exactly the articles' column. Each step removes 20% of the distance to "
        "the minimum, so x_k = 2 + 6·0.8^k: the run stops after "
        f"{run.n_steps} steps at x = {fixed(run.x_final[0], 6)}, "
        f"{fmt(abs(run.x_final[0] - 2.0), 2)} from the minimum ({run.verdict_reason}).",
        "The rate matters, as the articles warn. With 0.01 the same walk takes "
        f"{by_rate[0.01]['iterations']} steps; with 0.9 every step overshoots the minimum and "
        "the iterates zig-zag around 2 — the distance to 2 shrinks by the same factor 0.8 as "
        "with 0.1, but each step is 9 times longer, so the steps fall below the tolerance "
        f"only after {by_rate[0.9]['iterations']} of them; above 1 each overshoot is larger "
        f"than the last and the run diverges (verdict: {by_rate[1.1]['verdict']}). For this "
        "parabola any rate below 1 converges and 0.5 would land on 2 in one step — on a "
        "network's cost nobody knows that number in advance, which is why gradsight reports "
        "a verdict for every run.",
    ]


def _iteration_table(run: Any) -> Table:
    rows = []
    for before, after in zip(run.iterations[:_ARTICLE_ROWS], run.iterations[1:_ARTICLE_ROWS + 1],
                             strict=False):
        x_old, slope = before.x[0], before.grad[0]
        rows.append([str(after.step),
                     f"x_new = {fixed(x_old)} − {LR:g}·(2·{fixed(x_old)} − 4) = "
                     f"{fixed(after.x[0])}",
                     fmt(slope, 6), fmt(after.x[0], 8), fmt(after.f, 8)])
    return Table(
        caption="The iterations, as the articles print them (x rounded to 2 decimals in the "
                "formula; full precision beside it)",
        columns=["k", "x_new = x_old − η·dy/dx", "dy/dx at x_old", "x_k", "y(x_k)"],
        rows=rows,
        note=f"The run goes on to step {run.n_steps}; every iterate is in this step's JSON. "
             "The articles cut their values to 2 decimals (4.45 for 4.4576); here they are "
             "rounded.",
    )


def _rates_table(rows: list[dict[str, Any]]) -> Table:
    return Table(
        caption="Learning rates compared (same function, same start, at most 1000 steps)",
        columns=["rate η", "", "verdict", "steps", "final x", "final y"],
        rows=[[fmt(r["lr"]), _RATE_WORDS.get(r["lr"], ""), r["verdict"], str(r["iterations"]),
               fmt(r["x_final"][0], 7), fmt(r["f_final"], 6)] for r in rows],
    )
