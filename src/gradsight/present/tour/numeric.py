"""Tour section 2: why the forward difference with h = 1e-13 of the article on the derivative in
training fails; the step study.

The keys ``article_h``, ``article_forward_error``, ``article_curve``, ... of the section's JSON
name that article's step and curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import activations
from ...calculus.symbolic import numeric_derivative, step_study
from ..plots.calculus import plot_step_study
from ._base import FigureFile, Section, Table, TourContext, fmt
from ._figures import plot_article_curve

ARTICLE_STEP = 1e-13  # the step of the article on the derivative in training
STUDY_AT = 1.0


def article_sigmoid(x: Any) -> Any:
    """The ``sigmoid`` of the article on the derivative in training — ``1 / (1 + np.exp(-x))``
    — reproduced as written."""
    return 1 / (1 + np.exp(-x))


def build(ctx: TourContext) -> Section:
    article_study = step_study("sigmoid", 0.0)
    article_row = next(r for r in article_study.method_rows("forward") if r.h == ARTICLE_STEP)
    # σ″(0) = 0 makes the forward difference as good as the central one at 0 (the error
    # terms in h cancel), so the study of the methods is shown at z = 1
    study = step_study("sigmoid", STUDY_AT)
    x, estimate, exact = _article_curve(ctx.size(1000, 400))
    curve_error = float(np.max(np.abs(estimate - exact)))
    rec, rec_err = study.recommended, study.recommended_error
    numbers = {
        "article_h": ARTICLE_STEP, "article_forward_estimate": article_row.estimate,
        "article_forward_error": article_row.abs_error, "article_curve_max_error": curve_error,
        "article_curve_points": int(x.size), "study_at": STUDY_AT, "exact_at_study": study.exact,
        "study_forward_error_at_article_h": next(
            r.abs_error for r in study.method_rows("forward") if r.h == ARTICLE_STEP),
        "recommended_forward_h": rec["forward"], "recommended_central_h": rec["central"],
        "forward_error_at_recommended_h": rec_err["forward"],
        "central_error_at_recommended_h": rec_err["central"],
        "complex_error_at_recommended_h": rec_err["complex"],
    }
    return Section(
        id="numeric", title="Numeric derivatives: why h = 1e-13 fails",
        headline=(f"forward difference with h = 1e-13: off by {fmt(article_row.abs_error, 2)} "
                  f"at 0 and up to {fmt(curve_error, 2)} on the article's curve; central with "
                  f"h ≈ {fmt(rec['central'], 2)}: {fmt(rec_err['central'], 2)}"),
        paragraphs=_paragraphs(numbers),
        figures=_figures(ctx, study, x, estimate, exact),
        tables=[_study_table(study), _recommended_table(study)],
        commands=[["diffcheck", "sigmoid", "--at", "0"],
                  ["diffcheck", "sigmoid", "--at", f"{STUDY_AT:g}", "--plot", "step-study.png"]],
        numbers=numbers,
        data={"study": study.to_dict(), "article_study": article_study.to_dict(), "article_curve": {
            "x": x.tolist(), "forward_estimate": estimate.tolist(), "exact": exact.tolist()}},
    )


def _article_curve(points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The experiment of the article on the derivative in training: x over [−10, 10], its
    forward-difference estimate of σ′ with h = 1e-13 (``gradsight.calculus.numeric_derivative``
    on the article's own sigmoid) and the exact σ′ (``gradsight.activations``)."""
    x = np.linspace(-10.0, 10.0, points)
    estimate = np.array([numeric_derivative(article_sigmoid, float(v), h=ARTICLE_STEP,
                                            method="forward") for v in x])
    return x, estimate, activations.get("sigmoid").derivative(x)


def _figures(ctx: TourContext, study: Any, x: np.ndarray, estimate: np.ndarray,
             exact: np.ndarray) -> list[FigureFile]:
    error = float(np.max(np.abs(estimate - exact)))
    return [
        ctx.figure(plot_article_curve(x, article_sigmoid(x), estimate, exact, ARTICLE_STEP),
                   "article-curve",
                   f"The plot of the article on the derivative in training, redone: the "
                   f"forward difference with h = 1e-13 over "
                   f"[−10, 10] ({x.size} points) against the exact σ′; its error (right) is "
                   f"round-off, up to {fmt(error, 2)}."),
        ctx.figure(plot_step_study(study), "step-study",
                   f"The step-size study at z = {STUDY_AT:g}: error of each difference "
                   "against h. Truncation error falls with h until round-off (≈ ε/h) takes "
                   "over. An error of exactly 0 (the complex step, see the table) is drawn "
                   "at 1e-17, the bottom of the log axis."),
    ]


def _paragraphs(n: dict[str, Any]) -> list[str]:
    return [
        "The article on the derivative in training plots the sigmoid's derivative with a "
        "forward difference, "
        "(σ(x + h) − σ(x))/h, and h = 1e-13 — on paper, the smaller h the better. In floating "
        "point it is not: σ(x + h) and σ(x) are stored with about 16 significant digits and "
        "agree in almost all of them, so their difference is mostly round-off (≈ 1e-16), and "
        f"dividing by 1e-13 magnifies it a thousandfold. At x = 0 the estimate is "
        f"{fmt(n['article_forward_estimate'], 8)} instead of 0.25, an error of "
        f"{fmt(n['article_forward_error'], 2)}; over the article's whole curve the error reaches "
        f"{fmt(n['article_curve_max_error'], 2)}.",
        f"The step study at z = {n['study_at']:g} (exact σ′ = {fmt(n['exact_at_study'], 8)}) "
        "shows the trade-off. Truncation error shrinks like h (forward, backward) or h² "
        "(central) while round-off grows like ε/h (ε = 2.2e-16), so the best step balances "
        f"the two: h ≈ √ε ≈ {fmt(n['recommended_forward_h'], 2)} for forward "
        f"differences (error {fmt(n['forward_error_at_recommended_h'], 2)}) and "
        f"h ≈ ε^(1/3) ≈ {fmt(n['recommended_central_h'], 2)} for central ones (error "
        f"{fmt(n['central_error_at_recommended_h'], 2)}). The complex step, Im f(x + ih)/h, "
        "subtracts nothing, so it is exact to machine precision for any tiny h (error "
        f"{fmt(n['complex_error_at_recommended_h'], 2)}).",
        f"(At z = 0 itself the forward difference happens to be as good as the central one, "
        "because σ″(0) = 0 cancels its first error term; that is why the study is shown at "
        f"z = {n['study_at']:g}.) This is also how a backpropagation implementation is "
        "checked: compare its gradients with central differences at a sensible h "
        "(`gradsight.gradcheck` does it for whole networks).",
    ]


def _study_table(study: Any) -> Table:
    by_key = {(r.method, r.h): r for r in study.rows}
    hs = sorted({r.h for r in study.rows}, reverse=True)
    methods = [m for m in ("forward", "backward", "central", "complex")
               if study.method_rows(m)]
    rows = [[f"{h:.0e}", *[fmt(by_key[(m, h)].abs_error, 2) for m in methods]] for h in hs]
    return Table(caption=f"Absolute error of σ′({study.x:g}) = {study.exact:.10g} by step h",
                 columns=["h", *methods], rows=rows,
                 note="The article's step is the row h = 1e-13.")


def _recommended_table(study: Any) -> Table:
    rows = []
    for method in ("forward", "backward", "central", "complex"):
        h = study.recommended.get(method)
        error = study.recommended_error.get(method)
        if h is not None and error is not None:
            rows.append([method, f"{h:.2g}", fmt(error, 2)])
    return Table(caption=f"Recommended step per method and its error at z = {study.x:g}",
                 columns=["method", "recommended h", "absolute error"], rows=rows)
