"""Doctor: equal-budget runs, ranked by the measured held-out loss."""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest
from typer.testing import CliRunner

from gradsight import engine, fit, optim
from gradsight.cli import app
from gradsight.diagnostics.fixes import (
    CONFIG_KEYS,
    DoctorSetup,
    RunOutcome,
    doctor,
    parse_change,
    propose_candidates,
)
from gradsight.diagnostics.verdict import Finding
from gradsight.engine import data
from gradsight.errors import GradsightError, InvalidValueError
from gradsight.io import dumps

SETUP = {"hidden": [16, 16, 16, 16], "activation": "sigmoid", "init": "xavier_uniform",
         "loss": "quadratic", "optimizer": "sgd", "lr": 0.5, "epochs": 4, "batch_size": 32,
         "seed": 0}


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    ds = data.digits()
    return ds.X[:700], ds.y[:700]


@cache
def _deep_sigmoid_result():
    return doctor({**SETUP, "data": _digits()},
                  candidates=["activation=relu, init=he_normal", "loss=cross_entropy",
                              "init=normal", "lr=x0.01"])


def _independent_run(config: dict, loss: str, output_activation: str | None):
    """Train the same configuration without the doctor: split, scale, mlp, fit."""
    X, y = _digits()
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, 0.2, config["seed"])
    X_train, X_test, _, _ = data.standardize(X_train, X_test)
    model = engine.mlp([64, *config["hidden"], 10], activation=config["activation"],
                       output_activation=output_activation, init=config["init"],
                       seed=config["seed"])
    fit(model, X_train, y_train, loss=loss, optimizer=optim.SGD(lr=config["lr"]),
        epochs=config["epochs"], batch_size=config["batch_size"], seed=config["seed"],
        progress=False)
    return model.predict(X_test), y_test


def test_deep_sigmoid_quadratic_best_fix_really_lowers_the_loss():
    result = _deep_sigmoid_result()
    losses = [c.loss for c in result.candidates]
    assert losses == sorted(losses)  # the ranking is the order of the measured losses
    assert result.best != "no change"
    best = next(c for c in result.candidates if c.change == result.best)
    assert best is result.candidates[0]
    assert best.loss < result.baseline.loss * 0.99
    # a fix that lowers the loss is ranked above "no change": the baseline sits below it
    assert result.rows()[0]["change"] == "no change"
    assert result.rows()[1]["improvement"] == pytest.approx(result.baseline.loss - best.loss)


def test_baseline_loss_equals_an_independent_run():
    result = _deep_sigmoid_result()
    output, y_test = _independent_run(SETUP, "quadratic", "sigmoid")
    onehot = np.eye(10)[y_test]
    expected = float(np.sum((output - onehot) ** 2)) / (2 * len(y_test))
    assert result.baseline.loss == pytest.approx(expected, rel=1e-12)
    accuracy = float(np.mean(np.argmax(output, axis=1) == y_test))
    assert result.baseline.outcome.accuracy == pytest.approx(accuracy)


def test_cross_entropy_candidate_is_measured_in_the_baselines_cost():
    result = _deep_sigmoid_result()
    candidate = next(c for c in result.candidates if c.change == "loss=cross_entropy")
    assert candidate.config["eval_loss"] == "quadratic"
    logits, y_test = _independent_run({**SETUP, "loss": "cross_entropy"}, "cross_entropy", None)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = float(np.sum((p - np.eye(10)[y_test]) ** 2)) / (2 * len(y_test))
    assert candidate.loss == pytest.approx(expected, rel=1e-9)


def test_gradient_ratio_and_lr_factor_label():
    result = _deep_sigmoid_result()
    labels = [c.change for c in result.candidates]
    assert "lr=0.005 (×0.01)" in labels
    slow = next(c for c in result.candidates if c.change.startswith("lr="))
    assert slow.config["lr"] == pytest.approx(0.005)
    for row in result.rows():
        assert row["gradient_ratio"] is None or row["gradient_ratio"] > 0


def _scripted(losses: dict[str, float], seen: list[dict]):
    def runner(config: dict) -> RunOutcome:
        seen.append(dict(config))
        findings = [Finding("vanishing-gradients", "warning", "t",
                            changes=[{"activation": "relu", "init": "he_normal"}])]
        return RunOutcome(losses[config["activation"]], 0.5, 3.0, findings)

    return runner


def test_ranking_and_no_change_with_a_scripted_runner():
    seen: list[dict] = []
    runner = _scripted({"sigmoid": 1.0, "relu": 0.4, "tanh": 0.7, "elu": 2.0}, seen)
    result = doctor(SETUP, ["activation=tanh", "activation=relu", "activation=elu"],
                    runner=runner, epochs=3, seed=5)
    assert [c.change for c in result.candidates] == ["activation=relu", "activation=tanh",
                                                     "activation=elu"]
    assert result.best == "activation=relu"
    assert all(set(CONFIG_KEYS) <= set(c) and c["epochs"] == 3 and c["seed"] == 5
               and c["eval_loss"] == "quadratic" for c in seen)
    worse = doctor(SETUP, ["activation=elu"], runner=_scripted({"sigmoid": 1.0, "elu": 2.0},
                                                                []))
    assert worse.best == "no change"
    tiny_gain = doctor(SETUP, ["activation=tanh"],
                       runner=_scripted({"sigmoid": 1.0, "tanh": 0.995}, []))
    assert tiny_gain.best == "no change"  # under min_improvement (1%)
    document = json.loads(dumps(result.to_dict()))
    assert set(document) >= {"baseline", "candidates", "best"}
    assert set(document["candidates"][0]) >= {"change", "loss", "accuracy", "gradient_ratio",
                                              "verdicts"}
    assert document["candidates"][0]["verdicts"] == ["vanishing-gradients"]
    assert "activation=relu" in result._repr_html_() and "best" in str(result)


def test_proposed_candidates_follow_the_findings_and_the_setup():
    config = {**SETUP, "eval_loss": "quadratic"}
    findings = [Finding("large-updates", "warning", "t", changes=[{"lr_factor": 0.1}])]
    changes = propose_candidates(config, findings, limit=20)
    assert changes[0] == {"lr_factor": 0.1}
    assert {"activation": "relu", "init": "he_normal"} in changes
    assert {"loss": "cross_entropy"} in changes
    assert {"optimizer": "adam", "lr": 0.001} in changes
    assert {"init": "xavier_uniform"} not in changes  # the set-up already uses it
    assert not any("lr_factor" in c and c["lr_factor"] > 1 for c in changes)
    regression = propose_candidates(config, [], classification=False, limit=20)
    assert all(c.get("loss") != "cross_entropy" for c in regression)
    assert len(propose_candidates(config, findings, limit=3)) == 3


def test_parse_change_and_bad_input():
    assert parse_change("activation=relu, init=he_normal") == {"activation": "relu",
                                                               "init": "he_normal"}
    assert parse_change("lr=x0.1") == {"lr_factor": 0.1}
    assert parse_change("lr=0.05, epochs=3") == {"lr": 0.05, "epochs": 3}
    for bad in ("relu", "colour=red", "lr=-1", "epochs=two"):
        with pytest.raises(InvalidValueError):
            parse_change(bad)
    with pytest.raises(InvalidValueError):
        DoctorSetup.from_value({"no_such": 1})
    with pytest.raises(GradsightError):
        doctor({**SETUP, "data": _digits(), "activation": "nope"}, candidates=[])


def test_cli_doctor_json_and_errors():
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "--data", "moons", "--hidden", "6,6", "--activation",
                                 "sigmoid", "--loss", "quadratic", "--optimizer", "sgd",
                                 "--lr", "0.5", "--epochs", "2", "--limit", "2", "--json",
                                 "--quiet"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["baseline"]["change"] == "no change" and len(document["candidates"]) == 2
    losses = [c["loss"] for c in document["candidates"]]
    assert losses == sorted(losses) and not any(math.isnan(v) for v in losses)
    table = runner.invoke(app, ["doctor", "--data", "xor", "--hidden", "3,3", "--epochs", "2",
                                "--try", "activation=tanh", "--quiet"])
    assert table.exit_code == 0 and "activation=tanh" in table.stdout
    for bad in (["--try", "nonsense"], ["--activation", "nope"], ["--epochs", "0"]):
        failed = runner.invoke(app, ["doctor", "--data", "xor", "--quiet", *bad])
        assert failed.exit_code == 2
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in \
            failed.stderr


def test_cli_doctor_report(tmp_path):
    import base64
    import re

    runner = CliRunner()
    page = tmp_path / "doctor.html"
    args = ["doctor", "--data", "moons", "--hidden", "6,6", "--activation", "sigmoid", "--loss",
            "quadratic", "--optimizer", "sgd", "--lr", "0.5", "--epochs", "2", "--limit", "2",
            "--quiet"]
    result = runner.invoke(app, [*args, "--json", "--report", str(page)])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    html = page.read_text()
    assert "Before and after" in html and f"Best change: {document['best']}" in html
    for candidate in document["candidates"]:  # every row of the table is on the page
        assert candidate["change"] in html
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)
    assert images and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    for bad in ("doctor.txt", str(tmp_path)):  # wrong suffix, a folder: refused before training
        failed = runner.invoke(app, [*args, "--report", bad])
        assert failed.exit_code == 2 and failed.stderr.startswith("error: --report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doctor.html"]


def test_doctor_takes_momentum_like_train():
    setup = {"data": "moons", "hidden": [8], "activation": "relu", "init": "he_normal",
             "optimizer": "sgd", "lr": 0.05, "epochs": 2, "momentum": 0.9}
    result = doctor(setup, candidates=["init=xavier_uniform"])
    dataset = data.load("moons")
    X_tr, X_te, y_tr, y_te = data.train_test_split(dataset.X, dataset.y, 0.2, 0)
    X_tr, X_te, _, _ = data.standardize(X_tr, X_te)
    model = engine.mlp([2, 8, 2], activation="relu", init="he_normal", seed=0)
    fit(model, X_tr, y_tr, loss="cross_entropy", optimizer=optim.SGD(lr=0.05, momentum=0.9),
        epochs=2, batch_size=32, seed=0, progress=False)
    expected = engine.loss("cross_entropy").value(model.predict(X_te), y_te)
    assert result.baseline.loss == pytest.approx(expected, rel=1e-12)
    assert result.baseline.config["momentum"] == 0.9
    with pytest.raises(InvalidValueError, match="momentum"):
        doctor({**setup, "momentum": 1.5})
    with pytest.raises(InvalidValueError, match="hidden"):
        doctor({**setup, "hidden": []})


def test_cli_doctor_without_hidden_layers_is_one_line_exit_2():
    result = CliRunner().invoke(app, ["doctor", "--hidden", "0", "--epochs", "1", "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "hidden" in lines[0]
