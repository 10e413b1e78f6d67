"""One quantity, one number: the doctor's table shows the vanishing-gradient finding's ratio
and says which accuracy it shows; a descent that zig-zags to its minimum says so."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from gradsight.calculus.descent import minimize
from gradsight.cli import app

runner = CliRunner()

# a deep sigmoid network with the quadratic cost and plain SGD: the vanishing-gradient finding
# fires (its ratio 182 against the runner's after-training ratio 189 on these seeds)
SETUP = {"data": "moons", "hidden": [16, 16, 16, 16], "activation": "sigmoid",
         "init": "scaled_normal", "loss": "quadratic", "optimizer": "sgd", "lr": 0.1,
         "epochs": 5, "batch_size": 32, "seed": 0}
ARGS = ["doctor", "--data", "moons", "--hidden", "16,16,16,16", "--activation", "sigmoid",
        "--init", "scaled_normal", "--loss", "quadratic", "--optimizer", "sgd", "--lr", "0.1",
        "--epochs", "5", "--try", "activation=relu,init=he_normal", "--quiet"]


def median_ratio_by_hand(layer_history, first: str, last: str) -> float:
    """median over the recorded steps of ‖∂C/∂b‖(last) / ‖∂C/∂b‖(first), from the records."""
    def speeds(layer: str) -> dict[int, float]:
        return {r.step: r.grad_b_norm for r in layer_history
                if r.layer == layer and r.kind == "param"}

    low, high = speeds(first), speeds(last)
    return float(np.median([high[step] / low[step] for step in sorted(low)]))


@pytest.fixture(scope="module")
def doctor_runs():
    import gradsight

    result = gradsight.doctor(dict(SETUP), candidates=["activation=relu,init=he_normal"])
    document = json.loads(runner.invoke(app, [*ARGS, "--json"]).stdout)
    table = runner.invoke(app, ARGS, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    return result, document, table.stdout


def test_doctor_table_shows_the_findings_ratio(doctor_runs):
    result, document, table = doctor_runs
    base = result.baseline.outcome
    by_hand = median_ratio_by_hand(base.layer_history, "dense0", "dense3")
    (finding,) = [f for f in base.findings if f.code == "vanishing-gradients"]
    assert finding.evidence["ratio_last_first"] == pytest.approx(by_hand, rel=1e-12)
    assert not math.isclose(base.gradient_ratio, by_hand, rel_tol=0.01)  # two quantities
    assert document["baseline"]["ratio_last_first"] == pytest.approx(by_hand, rel=1e-12)
    row = next(line for line in table.splitlines() if "no change" in line)
    assert f"{by_hand:.4g}" in row and f"{base.gradient_ratio:.4g}" not in row
    relu = result.candidates[0].outcome
    relu_ratio = median_ratio_by_hand(relu.layer_history, "dense0", "dense3")
    assert document["candidates"][0]["ratio_last_first"] == pytest.approx(relu_ratio,
                                                                         rel=1e-12)
    text = " ".join(table.split())
    assert "‖∂C/∂b‖ last/first hidden" in text and "median over the recorded training steps" \
        in text and "grad ratio" not in text


def test_doctor_table_says_its_accuracy_is_held_out(doctor_runs):
    result, document, table = doctor_runs
    text = " ".join(table.split())
    assert "held-out accuracy" in text and "never trained on" in text
    row = next(line for line in table.splitlines() if "no change" in line)
    assert f"{document['baseline']['accuracy']:.1%}" in row
    assert document["baseline"]["accuracy"] == pytest.approx(result.baseline.outcome.accuracy)


def test_doctor_report_uses_the_same_names_and_numbers(tmp_path):
    page = tmp_path / "doctor.html"
    result = runner.invoke(app, [*ARGS, "--json", "--report", str(page)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    html = page.read_text(encoding="utf-8")
    assert "held-out accuracy" in html and "‖∂C/∂b‖ last/first hidden" in html
    assert "gradient_ratio" not in html.split("Before and after")[1].split("</table>")[0]
    assert f"<td>{document['baseline']['ratio_last_first']:.4g}</td>" in html
    assert f"<td>{document['baseline']['gradient_ratio']:.4g}</td>" not in html


# ---- a descent that zig-zags ------------------------------------------------------------------
def test_x_squared_at_eta_0_9_converges_oscillating():
    # x² with η = 0.9: x_{k+1} = x_k − 0.9·2x_k = −0.8·x_k, so x_k = (−0.8)^k (by hand)
    run = minimize("x^2", 1.0, lr=0.9)
    xs = [it.x[0] for it in run.iterations]
    assert xs == pytest.approx([(-0.8) ** k for k in range(len(xs))], rel=1e-12, abs=1e-15)
    assert run.verdict == "converged" and run.verdict_label == "converged, oscillating"
    assert f"reversed direction at {len(xs) - 2} of {len(xs) - 2} updates" in run.verdict_reason


def test_x_squared_at_eta_0_1_converges_monotone():
    # η = 0.1: x_{k+1} = 0.8·x_k, every step has the same sign (by hand)
    run = minimize("x^2", 1.0, lr=0.1)
    xs = [it.x[0] for it in run.iterations]
    assert xs == pytest.approx([0.8 ** k for k in range(len(xs))], rel=1e-12, abs=1e-15)
    assert run.verdict == run.verdict_label == "converged"
    assert "oscillating" not in run.verdict_reason


def test_descend_prints_converged_oscillating():
    result = runner.invoke(app, ["descend", "x^2", "--x0", "1", "--lr", "0.9"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "converged, oscillating: converged at iteration" in result.stdout
    doc = json.loads(runner.invoke(app, ["descend", "x^2", "--x0", "1", "--lr", "0.9",
                                         "--json"]).stdout)
    assert doc["verdict"] == "converged"  # the machine-readable verdict is unchanged
    rates = runner.invoke(app, ["descend", "x^2", "--x0", "1", "--compare-lr", "0.1,0.9"],
                          env={"COLUMNS": "200"})
    assert "converged, oscillating" in rates.stdout
