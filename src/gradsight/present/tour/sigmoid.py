"""Tour section 1: the sigmoid, its derivative σ′ = σ(1−σ), and the other activations."""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import activations
from ...calculus.symbolic import activation_table, derive
from ..plots.calculus import plot_activation, plot_activations
from ._base import Section, Table, TourContext, fmt

_SAMPLE_Z = (-10.0, -4.0, -2.0, 0.0, 2.0, 4.0, 10.0)
_COMPARED = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu")


def build(ctx: TourContext) -> Section:
    sigmoid = activations.get("sigmoid")
    z = np.linspace(-10.0, 10.0, 2001)
    from_output_gap = float(np.max(np.abs(sigmoid.derivative(z) - _from_output(sigmoid(z)))))
    values = [{"z": v, "sigma": float(sigmoid(v)), "sigma_prime": float(sigmoid.derivative(v)),
               "from_output": float(_from_output(sigmoid(v)))} for v in _SAMPLE_Z]
    derivation = derive("sigmoid")
    routes = [{"route": route, "steps": [s.to_dict() for s in steps]}
              for route, steps in derivation.routes().items()]
    table = activation_table(list(_COMPARED))
    maxima = {row["name"]: row["max_derivative"]["value"] for row in table}
    numbers = {"sigma_prime_0": float(sigmoid.derivative(0.0)),
               "sigma_prime_10": float(sigmoid.derivative(10.0)),
               "from_output_max_abs_diff": from_output_gap, "max_derivative": maxima}
    figures = [
        ctx.figure(plot_activation("sigmoid"), "sigmoid",
                   "The figure of the article on the derivative in training: σ(z) (left) "
                   "and σ′(z) = σ(z)(1 − σ(z)) (right), largest at z = 0 where it is 0.25."),
        ctx.figure(plot_activations(), "activations",
                   "Every activation gradsight knows, one panel each: a = f(z) (blue) and "
                   "f′(z) (red) against the line 0.25 (dashed) — σ′ never exceeds it; tanh′ "
                   "and the ReLU family reach 1."),
    ]
    return Section(
        id="sigmoid", title="The sigmoid and its derivative σ′ = σ(1 − σ)",
        headline=(f"σ′(0) = {fmt(numbers['sigma_prime_0'])} is the sigmoid's steepest slope; "
                  f"tanh′ and relu′ reach {fmt(maxima['tanh'])}"),
        paragraphs=_paragraphs(numbers),
        figures=figures,
        tables=[_values_table(values), *[_route_table(r) for r in routes], _compare_table(table)],
        commands=[["activations", "--plot", "activations.png"], ["derive", "sigmoid", "--steps"]],
        numbers=numbers,
        data={"values": values, "derivations": routes, "activations": table,
              "derivative": derivation.to_dict()},
    )


def _from_output(a: Any) -> Any:
    """σ′ as the engine computes it, from the output a = σ(z): a(1 − a)."""
    derivative = activations.get("sigmoid").derivative_from_output(a)
    assert derivative is not None  # the sigmoid's derivative is a function of its output
    return derivative


def _paragraphs(numbers: dict[str, Any]) -> list[str]:
    return [
        "A neuron computes z = w·x + b and passes it through an activation. The sigmoid "
        "σ(z) = 1/(1 + e^(−z)) squashes any z into (0, 1), which is why it is read as a "
        "probability. Backpropagation multiplies the error arriving at a sigmoid unit by the "
        "unit's derivative σ′(z), so this one number decides how much the unit can learn "
        "from a sample.",
        "σ′ can be derived two ways, the routes the article on the sigmoid's derivative "
        "calls Approach 1 (write σ as "
        "(1 + e^(−z))^(−1) and use the chain rule) and Approach 2 (write σ as e^z/(1 + e^z) "
        "and use the quotient rule). Both end in the same short form, σ′(z) = σ(z)(1 − σ(z)); "
        "the tables below show every step, as gradsight's symbolic engine derives it.",
        "Why that form? The forward pass has already computed a = σ(z) and keeps it. The "
        "backward pass then needs only a(1 − a): one multiplication, no exponential. "
        "gradsight's engine does exactly that for sigmoid layers (and 1 − a² for tanh). "
        "Computed from the output, σ′ agrees with the direct formula to "
        f"{fmt(numbers['from_output_max_abs_diff'], 2)} over z in [−10, 10].",
        f"σ′ peaks at z = 0 with the value {fmt(numbers['sigma_prime_0'])} and falls to "
        f"{fmt(numbers['sigma_prime_10'], 3)} at z = 10: a unit whose z is far from 0 barely "
        "learns — it is saturated. tanh′ and relu′ reach 1. That factor of 0.25, met again "
        "in every layer, is where section 5's vanishing gradient comes from.",
    ]


def _values_table(values: list[dict[str, float]]) -> Table:
    return Table(
        caption="σ, σ′ from z, and σ′ from the output a = σ(z)",
        columns=["z", "σ(z)", "σ′(z)", "a(1 − a)"],
        rows=[[fmt(v["z"]), fmt(v["sigma"], 6), fmt(v["sigma_prime"], 6),
               fmt(v["from_output"], 6)] for v in values],
        note="a(1 − a) loses precision in the far tails (1 − a rounds when a ≈ 1); the engine "
             "uses it where it matters — on outputs it already holds.",
    )


def _route_table(route: dict[str, Any]) -> Table:
    return Table(
        caption=f"σ′ by {route['route']}",
        columns=["step", "rule", "result"],
        rows=[[str(i), s["rule"], s["detail"] or s["result"]]
              for i, s in enumerate(route["steps"], 1)],
    )


def _compare_table(table: list[dict[str, Any]]) -> Table:
    rows = []
    for row in table:
        peak = row["max_derivative"]
        act = activations.get(row["name"])
        # where the largest slope is reached: one z, every z > 0 (ReLU family), or only in
        # the limit z → ∞ (softplus) — as the activation itself states it
        where = (act.max_derivative_where if not np.isfinite(peak["at"])
                 else f"at z = {fmt(peak['at'], 3)}")
        formula = act.derivative_formula
        rows.append([row["name"], formula, fmt(peak["value"]), where,
                     "yes" if row["saturating"] else "no",
                     row["derivative_from_output"] or "— (not a function of a)"])
    return Table(
        caption="Derivatives compared: the largest slope each activation can pass back",
        columns=["activation", "f′(z)", "max f′", "reached", "saturating",
                 "f′ from the output a"],
        rows=rows,
    )
