"""Objects users meet in Jupyter render as HTML (``_repr_html_``) that shows their key
numbers — each checked against the object's own values (formatted as its table formats them)
and, where cheap, against an analytic value (the seeds' descent iterates, σ′ of the neuron)."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from gradsight import nn, optim


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
    from gradsight.descent import compare, minimize

    run = minimize("x^2 - 4*x + 6", 8, lr=0.1)
    text = rendered(run)
    for k in (1, 2, 3):
        assert f"{2 + 6 * 0.8**k:.6g}" in text  # the seeds' 6.8, 5.84, 5.072
    assert run.verdict in text
    table = rendered(compare("x^2 - 4*x + 6", 8, lrs=[0.1, 1.1]))
    assert "converged" in table and "diverged" in table


def test_history_shows_every_epoch_loss() -> None:
    from gradsight.train import fit

    X, y = _data()
    model = nn.mlp("4-8-2", activation="tanh", seed=0)
    history = fit(model, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.5), epochs=3,
                  batch_size=20, progress=False)
    text = rendered(history)
    for row in history.epochs:
        assert f"{row['loss']:.4g}" in text and f"{row['accuracy']:.4g}" in text


def _monitored_deep_sigmoid() -> tuple:
    from gradsight.diagnostics import Monitor
    from gradsight.train import fit

    X, y = _data(80)
    model = nn.mlp("4-16-16-16-16-16-2", activation="sigmoid", output_activation="sigmoid",
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
    from gradsight.data import moons
    from gradsight.diagnostics.fixes import doctor
    from gradsight.report import build_report

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
    from gradsight.experiments import activation_trajectory, nielsen_speeds, sweep

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
    from gradsight.explain import explain_network, explain_neuron
    from gradsight.gradient_check import gradcheck

    walk = explain_neuron()
    text = rendered(walk)
    y_hat = 1 / (1 + np.exp(-walk.z))
    assert f"{y_hat:.4g}" in text and f"{y_hat * (1 - y_hat):.4g}" in text
    assert "2-2-1" in rendered(explain_network("2-2-1"))
    X, y = _data(10)
    model = nn.mlp("4-3-2", activation="tanh", seed=0)
    check = gradcheck(model, X, y, "cross_entropy")
    check_text = rendered(check)
    for parameter in check.parameters:
        assert f"{parameter.max_relative_error:.2e}" in check_text
    assert f"total parameters: {model.n_parameters}" in rendered(model)


def test_tour_result(tmp_path) -> None:
    from gradsight.tour import run_tour

    result = run_tour(tmp_path, quick=True, progress=False, sections=["descent"])
    text = rendered(result)
    assert result.sections[0].headline in text and str(result.index_path) in text


def test_torch_diagnosis_renders_its_findings() -> None:
    torch = pytest.importorskip("torch")
    from gradsight.torch_adapter import diagnose_torch

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
