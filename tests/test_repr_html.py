"""Objects users meet in Jupyter render as HTML (``_repr_html_``) that shows their key
numbers — each checked against the object's own values (formatted as its table formats them)
and, where cheap, against an analytic value (the articles' descent iterates, σ′ of the neuron)."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from gradsight import engine, fit, optim


class _Checker(HTMLParser):
    """Collects the text of an HTML fragment and fails on unbalanced table tags."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("table", "tr", "td", "th", "caption"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("table", "tr", "td", "th", "caption"):
            assert self.open and self.open[-1] == tag, f"unbalanced </{tag}>"
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def rendered(obj: object) -> str:
    """The object's HTML, parsed: well formed, non-empty; returns its visible text."""
    markup = obj._repr_html_()  # type: ignore[attr-defined]
    assert isinstance(markup, str) and markup.strip().startswith("<")
    checker = _Checker()
    checker.feed(markup)
    checker.close()
    assert checker.open == [], f"unclosed tags: {checker.open}"
    return html.unescape(" ".join(checker.text))


def _data(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def test_trajectory_and_comparison() -> None:
    from gradsight.calculus.descent import compare, minimize

    run = minimize("x^2 - 4*x + 6", 8, lr=0.1)
    text = rendered(run)
    for k in (1, 2, 3):
        assert f"{2 + 6 * 0.8**k:.6g}" in text  # the articles' 6.8, 5.84, 5.072
    assert run.verdict in text
    table = rendered(compare("x^2 - 4*x + 6", 8, lrs=[0.1, 1.1]))
    assert "converged" in table and "diverged" in table


def test_history_shows_every_epoch_loss() -> None:
    X, y = _data()
    model = engine.mlp("4-8-2", activation="tanh", seed=0)
    history = fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.5), epochs=3,
                  batch_size=20, progress=False)
    text = rendered(history)
    for row in history.epochs:
        assert f"{row['loss']:.4g}" in text and f"{row['accuracy']:.4g}" in text


def _monitored_deep_sigmoid() -> tuple:
    from gradsight.diagnostics import Monitor

    X, y = _data(80)
    model = engine.mlp("4-16-16-16-16-16-2", activation="sigmoid", output_activation="sigmoid",
                       init="normal", seed=0)
    monitor = Monitor(every=1)
    history = fit(model, X, y, loss="quadratic", optimizer=optim.SGD(lr=0.1), epochs=5,
                  batch_size=20, callbacks=[monitor], progress=False)
    return model, X, y, monitor, history


def test_findings_monitor_and_layer_history() -> None:
    from gradsight.diagnostics import diagnose

    model, X, y, monitor, history = _monitored_deep_sigmoid()
    findings = diagnose(monitor, model=model, data=(X, y), train_history=history,
                        loss="quadratic")
    assert "vanishing-gradients" in findings.codes
    text = rendered(findings)
    for finding in findings:
        assert finding.title in text
        assert finding.title in rendered(finding)
    last = monitor.history[-1]
    layer_text = rendered(monitor)
    assert last.layer in layer_text
    first_dense = [r for r in monitor.history if r.kind == "param"][-len(model.dense_layers)]
    assert f"{first_dense.grad_W_norm:.3g}" in layer_text
    assert rendered(monitor.layer_history()) == layer_text


def test_neuron_states_counts() -> None:
    from gradsight.diagnostics import classify_neurons

    model, X, y, *_ = _monitored_deep_sigmoid()
    states = classify_neurons(model, X, y)
    text = rendered(states)
    assert f"({len(states)} hidden units)" in text
    for layer, counts in states.counts().items():
        row = re.search(rf"{layer}((?:\s+\d+)+)", text)
        assert row and [int(v) for v in row.group(1).split()] == list(counts.values())


def test_doctor_result_and_report() -> None:
    from gradsight.diagnostics.fixes import doctor
    from gradsight.engine.data import moons
    from gradsight.present.report import build_report

    result = doctor({"data": moons(n=120), "hidden": (8, 8), "activation": "sigmoid",
                     "init": "normal", "loss": "auto", "optimizer": "sgd", "lr": 0.1,
                     "epochs": 2}, candidates=["activation=relu, init=he_normal"])
    text = rendered(result)
    assert result.best in text
    for row in result.rows():
        assert row["change"] in text and f"{row['loss']:.4g}" in text
    report = build_report("tour check", findings=result.baseline.outcome.findings,
                          data={"best": result.best})
    report_text = rendered(report)
    assert "tour check" in report_text
    for finding in result.baseline.outcome.findings:
        assert finding.title in report_text


def test_vanish_sweep_and_activation_trajectory() -> None:
    from gradsight.lab import activation_trajectory, nielsen_speeds, sweep

    vanish = nielsen_speeds(hidden=(30, 30, 30), samples=200, seeds=1)
    text = rendered(vanish)
    assert f"{vanish.ratio_last_first:.3g}" in text
    for row in vanish.layers:
        assert f"{row['speed_at_init']:.4g}" in text
    result = sweep(depths=(2,), activations=("sigmoid",), inits=("scaled_normal",), seeds=1,
                   train_epochs=0, samples=100)
    assert f"{result.rows[0]['ratio_last_first_init']:.4g}" in rendered(result)
    trajectory = activation_trajectory(hidden=(10, 10), epochs=1, probe=50, every=20)
    assert f"{trajectory.mean[0][0]:.3f}" in rendered(trajectory)


def test_walkthroughs_and_gradcheck() -> None:
    from gradsight.engine.gradcheck import gradcheck
    from gradsight.present.explain import explain_network, explain_neuron

    walk = explain_neuron()
    text = rendered(walk)
    y_hat = 1 / (1 + np.exp(-walk.z))
    assert f"{y_hat:.4g}" in text and f"{y_hat * (1 - y_hat):.4g}" in text
    assert "2-2-1" in rendered(explain_network("2-2-1"))
    X, y = _data(10)
    model = engine.mlp("4-3-2", activation="tanh", seed=0)
    check = gradcheck(model, X, y, "cross_entropy")
    check_text = rendered(check)
    for parameter in check.parameters:
        assert f"{parameter.max_relative_error:.2e}" in check_text
    assert f"total parameters: {model.n_parameters}" in rendered(model)


def test_tour_result(tmp_path) -> None:
    from gradsight.present.tour import run_tour

    result = run_tour(tmp_path, quick=True, progress=False, sections=["descent"])
    text = rendered(result)
    assert result.sections[0].headline in text and str(result.index_path) in text


def test_torch_diagnosis_renders_its_findings() -> None:
    torch = pytest.importorskip("torch")
    from gradsight.adapters.torch import diagnose_torch

    generator = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=generator, dtype=torch.float64)
    y = (X[:, 0] > 0).long()
    layers = [torch.nn.Linear(4, 16, dtype=torch.float64), torch.nn.Sigmoid()]
    for _ in range(4):
        layers += [torch.nn.Linear(16, 16, dtype=torch.float64), torch.nn.Sigmoid()]
    torch.manual_seed(0)
    model = torch.nn.Sequential(*layers, torch.nn.Linear(16, 2, dtype=torch.float64))
    loader = [(X[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    diagnosis = diagnose_torch(model, loader, torch.nn.CrossEntropyLoss(), steps=8)
    assert "vanishing-gradients" in diagnosis.findings.codes  # 5 sigmoid layers, torch init
    text = rendered(diagnosis)
    for finding in diagnosis.findings:
        assert finding.title in text


def _code(markup: str, role: str) -> str:
    found = re.search(rf'<code class="{role}">(.*?)</code>', markup)
    assert found, role
    return html.unescape(found.group(1))


def test_derivation_shows_steps_derivative_and_sigma_form() -> None:
    import sympy

    from gradsight.calculus import derive
    from gradsight.calculus.expr import parse_expression

    d = derive("sigmoid")
    markup = d._repr_html_()
    text = rendered(d)
    assert "Approach 1 (chain rule)" in text and "Approach 2 (quotient rule)" in text
    assert markup.count('<tr class="step">') == len(d.steps) == 15
    for step in d.steps:
        assert step.rule in text and step.result in text
    # the derivative shown is SymPy's d/dz 1/(1 + e^−z); the σ(1−σ) form equals it
    z = sympy.Symbol("z")
    exact = sympy.diff(1 / (1 + sympy.exp(-z)), z)
    shown = parse_expression(_code(markup, "derivative"))
    form = parse_expression(_code(markup, "simplified"))
    assert "σ(1 − σ) form" in text
    assert {"sigmoid"} <= {f.func.__name__ for f in form.atoms(sympy.Function)}
    for value in (-3.0, 0.0, 0.5, 4.0):
        s = 1 / (1 + np.exp(-value))
        for expr in (shown, form):
            number = float(expr.subs(next(iter(expr.free_symbols)), value).evalf()
                           .rewrite(sympy.exp))
            assert number == pytest.approx(s * (1 - s), rel=1e-12)
        assert float(exact.subs(z, value)) == pytest.approx(s * (1 - s), rel=1e-12)
    output = parse_expression(_code(markup, "from-output"))
    a = next(iter(output.free_symbols))
    assert float(output.subs(a, 0.3)) == pytest.approx(0.3 * 0.7)  # σ′ = a(1 − a)

    poly = derive("x**2 - 4*x + 6")
    poly_markup = poly._repr_html_()
    poly_shown = parse_expression(_code(poly_markup, "derivative"))
    for value in (-1.5, 2.0, 8.0):  # d/dx (x² − 4x + 6) = 2x − 4
        assert float(poly_shown.subs(next(iter(poly_shown.free_symbols)), value)) == \
            2 * value - 4
    assert "power rule" in rendered(poly) and "from-output" not in poly_markup


def test_step_study_rows_with_the_recommended_h_highlighted() -> None:
    import math

    from gradsight.calculus import step_study

    study = step_study("sigmoid(x)", 0.0)
    markup = study._repr_html_()
    text = rendered(study)
    assert "exact 0.25" in text
    # the question-and-answer thread's forward difference with h = 1e-13, recomputed: its
    # error in the h = 1e-13 row
    h = 1e-13
    article_error = abs((1 / (1 + math.exp(-h)) - 0.5) / h - 0.25)
    row = re.search(r"<tr><td>1e-13</td><td[^>]*>([^<]+)</td>", markup)
    assert row and float(row.group(1)) == pytest.approx(article_error, rel=5e-3)
    assert article_error > 1e-5
    # one highlighted row per recommended h: √ε (forward, backward), ε^(1/3) (central)
    highlighted = re.findall(r'<tr class="recommended"[^>]*><td>([^<]*)</td>(.*?)</tr>', markup)
    eps = np.finfo(float).eps
    labels = {label.split(" ")[0]: label for label, _ in highlighted}
    assert f"{math.sqrt(eps):.3g}" in labels and "forward, backward" in labels[
        f"{math.sqrt(eps):.3g}"]
    central = [cells for label, cells in highlighted if label.startswith(f"{eps ** (1/3):.3g}")]
    assert len(central) == 1 and "central" in labels[f"{eps ** (1/3):.3g}"]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", central[0])
    assert cells[2] == f"{study.recommended_error['central']:.3g}"
    # and that error is tiny next to the article's: truncation h²|σ‴(0)|/6 plus round-off
    assert float(cells[2]) < 1e-10 < article_error
    assert len(re.findall(r"<tr>", markup)) == 1 + len({r.h for r in study.rows})
    # the smallest error of each method is bold
    for method in ("forward", "central"):
        assert f"<b>{study.best(method).abs_error:.3g}</b>" in markup

    relu = step_study("relu(x)", 1.0)
    relu_text = rendered(relu)
    assert "complex-step skipped" in relu_text and "recommended: complex" not in relu_text
