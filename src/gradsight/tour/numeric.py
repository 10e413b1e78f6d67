"""Tour section 2: why seed 002's forward difference with h = 1e-13 fails; the step study."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import Section, Table, TourContext, fmt

SEED_STEP = 1e-13


def seed_sigmoid(x: Any) -> Any:
    """Seed 002's own ``sigmoid`` — ``1 / (1 + np.exp(-x))`` — reproduced as written."""
    return 1 / (1 + np.exp(-x))


def build(ctx: TourContext) -> Section:
    from .. import activations
    from ..calculus import numeric_derivative, step_study
    from ..plots.calculus import plot_step_study
    from ._figures import plot_seed_curve

    study = step_study("sigmoid", 0.0)
    seed_row = next(r for r in study.method_rows("forward") if r.h == SEED_STEP)
    x = np.linspace(-10.0, 10.0, ctx.size(1000, 400))
    estimate = np.array([numeric_derivative(seed_sigmoid, float(v), h=SEED_STEP,
                                            method="forward") for v in x])
    exact = activations.get("sigmoid").derivative(x)
    curve_error = float(np.max(np.abs(estimate - exact)))
    rec, rec_err = study.recommended, study.recommended_error
    numbers = {
        "seed_h": SEED_STEP, "seed_forward_estimate": seed_row.estimate,
        "seed_forward_error": seed_row.abs_error, "seed_curve_max_error": curve_error,
        "seed_curve_points": int(x.size),
        "recommended_forward_h": rec["forward"], "recommended_central_h": rec["central"],
        "forward_error_at_recommended_h": rec_err["forward"],
        "central_error_at_recommended_h": rec_err["central"],
        "complex_error_at_recommended_h": rec_err["complex"],
    }
    figures = [
        ctx.figure(plot_seed_curve(x, seed_sigmoid(x), estimate, exact, SEED_STEP), "seed-curve",
                   f"Seed 002's plot redone: the forward difference with h = 1e-13 over "
                   f"[−10, 10] ({x.size} points) against the exact σ′; its error (right) is "
                   f"round-off, up to {fmt(curve_error, 2)}."),
        ctx.figure(plot_step_study(study), "step-study",
                   "The step-size study at z = 0: error of each difference against h. "
                   "Truncation error falls with h until round-off (≈ ε/h) takes over."),
    ]
    return Section(
        id="numeric", title="Numeric derivatives: why h = 1e-13 fails",
        headline=(f"forward difference with h = 1e-13 is off by "
                  f"{fmt(seed_row.abs_error, 2)}; central with h ≈ {fmt(rec['central'], 2)} "
                  f"by {fmt(rec_err['central'], 2)}"),
        paragraphs=_paragraphs(numbers),
        figures=figures,
        tables=[_study_table(study), _recommended_table(study)],
        commands=[["diffcheck", "sigmoid", "--at", "0", "--plot", "step-study.png"]],
        numbers=numbers,
        data={"study": study.to_dict(), "seed_curve": {
            "x": x.tolist(), "forward_estimate": estimate.tolist(), "exact": exact.tolist()}},
    )


def _paragraphs(n: dict[str, Any]) -> list[str]:
    return [
        "Seed 002 plots the sigmoid's derivative with a forward difference, "
        "(σ(x + h) − σ(x))/h, and h = 1e-13 — on paper, the smaller h the better. In floating "
        "point it is not: σ(x + h) and σ(x) are stored with about 16 significant digits and "
        "agree in almost all of them, so their difference is mostly round-off (≈ 1e-16), and "
        f"dividing by 1e-13 magnifies it a thousandfold. At x = 0 the estimate is "
        f"{fmt(n['seed_forward_estimate'], 8)} instead of 0.25, an error of "
        f"{fmt(n['seed_forward_error'], 2)}; over the seed's whole curve the error reaches "
        f"{fmt(n['seed_curve_max_error'], 2)}.",
        "The step study shows the trade-off. Truncation error shrinks like h (forward, "
        "backward) or h² (central) while round-off grows like ε/h (ε = 2.2e-16), so the best "
        f"step balances the two: h ≈ √ε ≈ {fmt(n['recommended_forward_h'], 2)} for forward "
        f"differences (error {fmt(n['forward_error_at_recommended_h'], 2)}) and "
        f"h ≈ ε^(1/3) ≈ {fmt(n['recommended_central_h'], 2)} for central ones (error "
        f"{fmt(n['central_error_at_recommended_h'], 2)}). The complex step, Im f(x + ih)/h, "
        "subtracts nothing, so it is exact to machine precision for any tiny h (error "
        f"{fmt(n['complex_error_at_recommended_h'], 2)}).",
        "This is also how a backpropagation implementation is checked: compare its gradients "
        "with central differences at a sensible h (`gradsight.gradcheck` does it for whole "
        "networks).",
    ]


def _study_table(study: Any) -> Table:
    by_key = {(r.method, r.h): r for r in study.rows}
    hs = sorted({r.h for r in study.rows}, reverse=True)
    methods = [m for m in ("forward", "backward", "central", "complex")
               if study.method_rows(m)]
    rows = [[f"{h:.0e}", *[fmt(by_key[(m, h)].abs_error, 2) for m in methods]] for h in hs]
    return Table(caption="Absolute error of f′(0) for the sigmoid (exact 0.25), by step h",
                 columns=["h", *methods], rows=rows,
                 note="Seed 002's step is the row h = 1e-13.")


def _recommended_table(study: Any) -> Table:
    rows = []
    for method in ("forward", "backward", "central", "complex"):
        h = study.recommended.get(method)
        error = study.recommended_error.get(method)
        if h is not None and error is not None:
            rows.append([method, f"{h:.2g}", fmt(error, 2)])
    return Table(caption="Recommended step per method and its error at z = 0",
                 columns=["method", "recommended h", "absolute error"], rows=rows)
