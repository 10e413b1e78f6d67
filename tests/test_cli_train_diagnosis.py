"""CLI ``gradsight train`` ends with the diagnosis of its run.

Oracle: the same run rebuilt by the test from its parts — scikit-learn's moons and stratified
split, the training part's own standardisation, ``mlp``/``optim``/``fit`` with a Monitor on
the default schedule — and :func:`gradsight.diagnose` called by the test on it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from gradsight import optim
from gradsight.cli import app
from gradsight.cli.train_cmds import _diagnosis_section
from gradsight.diagnostics import Monitor, diagnose
from gradsight.engine import mlp
from gradsight.engine.train import fit
from gradsight.io import dumps

runner = CliRunner()

DEEP_SIGMOID = {"hidden": "8,8,8,8", "activation": "sigmoid", "init": "xavier_uniform",
                "optimizer": "sgd", "lr": 0.5, "epochs": 30}


def _run(*args):
    result = runner.invoke(app, ["train", *(str(a) for a in args)])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def _options(settings):
    return [part for key, value in settings.items() for part in (f"--{key}", value)]


def _same_run_by_hand(settings):
    """The CLI's run rebuilt: moons (200, noise 0.1), 40 held out (stratified, seed 0),
    standardised with the training part's mean and std, batch 32, seed 0."""
    X, y = make_moons(n_samples=200, noise=0.1, random_state=0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=40, random_state=0, stratify=y)
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    X_tr, X_te = (X_tr - mean) / std, (X_te - mean) / std
    hidden = [int(width) for width in settings["hidden"].split(",")]
    spec = "-".join(str(n) for n in (2, *hidden, 2))
    model = mlp(spec, activation=settings["activation"], init=settings["init"], seed=0)
    monitor = Monitor()
    history = fit(model, X_tr, y_tr, loss="cross_entropy",
                  optimizer=optim.SGD(lr=settings["lr"]), epochs=settings["epochs"],
                  batch_size=32, seed=0, validation=(X_te, y_te), callbacks=[monitor],
                  progress=False)
    with np.errstate(all="ignore"):
        return diagnose(monitor, model, (X_tr, y_tr), history, loss="cross_entropy")


def _diagnosis_lines(stdout):
    lines = stdout.splitlines()
    return lines[lines.index("Diagnosis") + 1:]


def test_a_deep_sigmoid_net_trained_by_sgd_prints_its_vanishing_gradient():
    oracle = _same_run_by_hand(DEEP_SIGMOID)
    vanishing = oracle.get("vanishing-gradients")
    assert vanishing is not None and vanishing.severity in ("warning", "critical")
    text = _run(*_options(DEEP_SIGMOID), "--quiet").stdout
    section = " ".join(" ".join(_diagnosis_lines(text)).split())  # rich wraps long lines
    line = f"{vanishing.severity} {vanishing.title}"
    assert line in section
    printed = re.search(r"gradient ratio ([0-9.e+]+)", section)
    assert printed is not None
    assert float(printed.group(1)) == pytest.approx(vanishing.evidence["ratio_last_first"],
                                                    rel=5e-3)  # as printed, 3 digits
    assert f"fix: {' '.join(vanishing.fixes[0].split())}" in section
    # one line per finding, in the order diagnose gives them
    heads = [re.match(r"  (critical|warning|info) ", line) for line in _diagnosis_lines(text)]
    assert [head.group(1) for head in heads if head] == [f.severity for f in oracle]
    # --json: the same findings as data, every number as the test's own diagnose has it
    doc = json.loads(_run(*_options(DEEP_SIGMOID), "--quiet", "--json").stdout)
    assert doc["diagnosis"] == json.loads(dumps(oracle.to_dict()))
    measured = doc["diagnosis"]["findings"][oracle.codes.index("vanishing-gradients")]
    assert measured["evidence"]["ratio_last_first"] == vanishing.evidence["ratio_last_first"]


HEALTHY = ("--data", "moons", "--hidden", "16,16", "--activation", "relu", "--epochs", 30)


def test_a_healthy_small_relu_run_on_moons_has_no_warning():
    doc = json.loads(_run(*HEALTHY, "--quiet", "--json").stdout)
    assert doc["final"]["test_accuracy"] >= 0.95  # it did learn: nothing should be wrong
    counts = doc["diagnosis"]["counts"]
    alarms = [(f["code"], f["evidence"]) for f in doc["diagnosis"]["findings"]
              if f["severity"] != "info"]
    assert counts["critical"] == counts["warning"] == 0, alarms
    lines = _diagnosis_lines(_run(*HEALTHY, "--quiet").stdout)
    assert lines, "no Diagnosis section"
    assert lines == ["  no problem found"] or all(
        line.lstrip().startswith("info") for line in lines if not line.startswith("   ")), lines


def test_without_a_hidden_layer_the_diagnosis_says_why():
    result = _run("--hidden", "0", "--epochs", 2, "--quiet")
    section = " ".join(" ".join(_diagnosis_lines(result.stdout)).split())
    assert "no hidden layer" in section and "--hidden 16,16" in section
    doc = json.loads(_run("--hidden", "0", "--epochs", 2, "--quiet", "--json").stdout)
    assert doc["diagnosis"] is None


def test_the_diagnosis_text_is_printed_literally(capsys):
    diagnosis = {"findings": [
        {"severity": "warning", "title": "[bold]not markup[/bold] in dense[0]",
         "fixes": ["Use [red]no[/red] colour", "a second fix, not printed"]},
        {"severity": "info", "title": "an info [link=x]line[/link]", "fixes": ["not printed"]},
    ]}
    _diagnosis_section(diagnosis)
    out = capsys.readouterr().out
    assert "[bold]not markup[/bold] in dense[0]" in out
    assert "fix: Use [red]no[/red] colour" in out
    assert "an info [link=x]line[/link]" in out
    assert "not printed" not in out
    _diagnosis_section({"findings": []})
    assert capsys.readouterr().out.splitlines() == ["Diagnosis", "  no problem found"]


def test_a_deep_sigmoid_net_learns_with_adam_because_adam_rescales_and_sgd_is_vanishing():
    """The learner's question: why does a deep sigmoid net reach 90%+ on digits with the
    default optimizer (Adam) while the tour says it barely moves? The diagnosis says that
    Adam compensated for the vanishing gradient; the same net with SGD is called vanishing."""
    common = ["--data", "digits", "--hidden", "30,30,30,30", "--activation", "sigmoid",
              "--epochs", "30"]
    adam = _diagnosis_lines(_run(*common).stdout)
    sgd = _diagnosis_lines(_run(*common, "--optimizer", "sgd").stdout)
    adam_text, sgd_text = " ".join(adam), " ".join(sgd)
    assert re.search(r"info\s+Vanishing gradients.*compensated", adam_text), adam_text
    assert "warning" not in adam_text and "critical" not in adam_text
    assert re.search(r"(warning|critical)\s+Vanishing gradients", sgd_text), sgd_text
