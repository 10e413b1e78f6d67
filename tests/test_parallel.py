"""Parallel runs (joblib's loky processes): the doctor and the sweep give the serial numbers.

The serial run is the reference (itself checked against independent engine runs in
test_doctor.py and test_experiments.py), and one parallel run is also recomputed here by
hand — split, network, fit — without the doctor. A worker process that dies is simulated by
a runner that calls ``os._exit(1)`` inside the worker: once (a marker file makes the retry
succeed) or every time.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from gradsight import engine, fit, optim
from gradsight.cli import app
from gradsight.cli.doctor_cmd import document as document_of
from gradsight.cli.doctor_cmd import render
from gradsight.diagnostics import parallel
from gradsight.diagnostics.fixes import doctor, engine_runner
from gradsight.diagnostics.numpy_runner import EngineRunner
from gradsight.engine import data
from gradsight.errors import GradsightError, InvalidValueError, MissingExtraError
from gradsight.io import dumps
from gradsight.lab import vanishing
from gradsight.lab.vanishing import SweepNetwork, sweep

SETUP = {"hidden": [8, 8, 8], "activation": "sigmoid", "init": "xavier_uniform",
         "loss": "quadratic", "optimizer": "sgd", "lr": 0.5, "epochs": 3, "batch_size": 32,
         "seed": 0}
CANDIDATES = ["activation=relu, init=he_normal", "activation=tanh", "loss=cross_entropy",
              "optimizer=adam, lr=0.01"]
SWEEP = {"depths": (2, 3), "activations": ("sigmoid", "relu"), "inits": ("he_normal",),
         "seeds": 2, "train_epochs": 1, "samples": 150}


@cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    dataset = data.digits()
    return dataset.X[:300], dataset.y[:300]


def setup() -> dict[str, Any]:
    return {**SETUP, "data": digits()}


@cache
def serial_doctor(given: bool) -> Any:
    return doctor(setup(), CANDIDATES if given else None)


@cache
def serial_sweep() -> Any:
    return sweep(**SWEEP)


def runs_of(result: Any) -> list[Any]:
    return [result.baseline, *result.candidates]


def assert_same_doctor(result: Any, reference: Any) -> None:
    """Every number, finding, rank and the best change are the reference's, bit for bit."""
    assert dumps(result.to_dict()) == dumps(reference.to_dict())
    assert result.best == reference.best
    assert [r.change for r in runs_of(result)] == [r.change for r in runs_of(reference)]
    for run, ref in zip(runs_of(result), runs_of(reference), strict=True):
        assert run.config == ref.config
        assert run.outcome.loss == ref.outcome.loss  # exactly, not approximately
        assert run.outcome.accuracy == ref.outcome.accuracy
        assert run.outcome.gradient_ratio == ref.outcome.gradient_ratio
        assert [f.to_dict() for f in run.outcome.findings] == \
            [f.to_dict() for f in ref.outcome.findings]
        assert [e["loss"] for e in run.outcome.history.epochs] == \
            [e["loss"] for e in ref.outcome.history.epochs]
        assert [r.grad_b_norm for r in run.outcome.layer_history] == \
            [r.grad_b_norm for r in ref.outcome.layer_history]


def independent_baseline_loss() -> float:
    """The original set-up trained without the doctor: split, scale, mlp, fit; its held-out
    quadratic cost on one-hot targets."""
    X, y = digits()
    X_train, X_test, y_train, y_test = data.train_test_split(X, y, 0.2, 0)
    X_train, X_test, _, _ = data.standardize(X_train, X_test)
    model = engine.mlp([64, 8, 8, 8, 10], activation="sigmoid", output_activation="sigmoid",
                       init="xavier_uniform", seed=0)
    fit(model, X_train, y_train, loss="quadratic", optimizer=optim.SGD(lr=0.5), epochs=3,
        batch_size=32, seed=0, progress=False)
    output = model.predict(X_test)
    return float(np.sum((output - np.eye(10)[y_test]) ** 2)) / (2 * len(y_test))


class DyingRunner(EngineRunner):
    """The engine's runner, whose worker process dies on the candidate ``victim`` — the
    first time only (``marker`` made then), or every time (``always``)."""

    def __init__(self, dataset: Any, marker: Path, victim: str, always: bool = False) -> None:
        super().__init__(dataset)
        self.marker, self.victim, self.always = str(marker), victim, always
        self.parent = os.getpid()  # the test process (pickled with the runner)

    def __call__(self, config: dict[str, Any]) -> Any:
        if config["activation"] == self.victim and (
                self.always or not os.path.exists(self.marker)):
            die(self.marker, self.parent)
        return super().__call__(config)


@dataclass
class DyingNetwork(SweepNetwork):
    """A sweep network whose worker process dies on the depth-3 ReLU network of seed 1."""

    marker: str = ""
    always: bool = False
    parent: int = 0  # the test process

    def __call__(self, task: tuple[int, str, str, int]) -> dict[str, Any]:
        if task[0] == 3 and task[1] == "relu" and task[3] == 1 and (
                self.always or not os.path.exists(self.marker)):
            die(self.marker, self.parent)
        return super().__call__(task)


def die(marker: str, parent: int) -> None:
    """Kill the worker process this runs in (never the test process, ``parent``)."""
    if os.getpid() == parent:
        raise RuntimeError("a dying runner ran in the test process")
    Path(marker).touch()
    os._exit(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- the doctor and the sweep in two processes -------------------------------------------------
def test_doctor_in_two_processes_equals_serial_and_an_independent_run():
    labels: list[str] = []
    result = doctor(setup(), jobs=2, progress=labels.append)
    reference = serial_doctor(False)
    assert_same_doctor(result, reference)
    assert len(reference.candidates) >= 4  # proposed from the baseline's findings
    assert result.baseline.loss == independent_baseline_loss()
    # every run reported once as it finished (the baseline first: the others wait for it)
    assert labels[0] == "no change"
    assert sorted(labels) == sorted(r.change for r in runs_of(reference))


def test_given_candidates_run_with_the_baseline_and_equal_serial():
    result = doctor(setup(), CANDIDATES, jobs=-1)
    assert_same_doctor(result, serial_doctor(True))
    losses = [c.loss for c in result.candidates]
    assert losses == sorted(losses)


def test_sweep_in_two_processes_equals_serial():
    seen: list[tuple[int, int]] = []
    result = sweep(**SWEEP, jobs=2, progress=lambda done, total: seen.append((done, total)))
    reference = serial_sweep()
    assert json.dumps(result.to_dict()) == json.dumps(reference.to_dict())
    assert [(r["depth"], r["activation"]) for r in result.rows] == [
        (2, "sigmoid"), (2, "relu"), (3, "sigmoid"), (3, "relu")]
    assert seen == [(k, 8) for k in range(1, 9)]  # 4 cells × 2 seeds, counted as they end
    # one row recomputed from its two networks, built and trained here one after the other
    dataset = data.digits()
    network = SweepNetwork(np.asarray(dataset.X[:150], dtype=np.float64),
                           np.asarray(dataset.y[:150]).astype(np.intp), 10, 30, "zeros",
                           "cross_entropy", 1, 0.1, 16)
    runs = [network((3, "relu", "he_normal", k)) for k in (0, 1)]
    assert result.rows[3]["loss"] == float(np.mean([r["loss"] for r in runs]))
    assert result.rows[3]["speeds_init"] == np.mean([r["init"] for r in runs], axis=0).tolist()


# ---- a worker process that dies ----------------------------------------------------------------
def test_doctor_worker_dying_once_is_run_again(tmp_path):
    runner = DyingRunner(digits(), tmp_path / "died", victim="tanh")
    result = doctor(setup(), CANDIDATES, runner=runner, jobs=2)
    assert (tmp_path / "died").exists()  # a worker did die
    assert_same_doctor(result, serial_doctor(True))
    assert not any(c.failed for c in result.candidates)


def test_doctor_worker_dying_every_time_is_reported_failed(tmp_path, capsys):
    runner = DyingRunner(digits(), tmp_path / "died", victim="tanh", always=True)
    result = doctor(setup(), CANDIDATES, runner=runner, jobs=2)
    reference = serial_doctor(True)
    failed = [c for c in result.candidates if c.failed]
    assert [c.change for c in failed] == ["activation=tanh"]
    assert result.candidates[-1] is failed[0]  # ranked last, not dropped
    assert "worker process died" in failed[0].failed
    survivors = [c for c in reference.candidates if c.change != "activation=tanh"]
    assert [(c.change, c.loss) for c in result.candidates[:-1]] == \
        [(c.change, c.loss) for c in survivors]
    document = result.to_dict()
    row = next(r for r in document["candidates"] if r["change"] == "activation=tanh")
    assert "worker process died" in row["failed"] and row["rank"] == len(CANDIDATES)
    assert "failed: its worker process died" in str(result)
    render(result)  # the command's table and JSON show it too
    assert "failed: its worker" in " ".join(capsys.readouterr().out.split())
    cli_row = next(r for r in document_of(result)["candidates"] if r.get("failed"))
    assert cli_row["change"] == "activation=tanh" and math.isnan(float(cli_row["loss"]))


def test_baseline_that_keeps_dying_is_one_line_error(tmp_path):
    runner = DyingRunner(digits(), tmp_path / "died", victim="sigmoid", always=True)
    with pytest.raises(GradsightError, match=r"original set-up \('no change'\) failed"):
        doctor(setup(), None, runner=runner, jobs=2)


def test_sweep_worker_dying_once_is_run_again_and_every_time_is_an_error(tmp_path,
                                                                        monkeypatch):
    marker = str(tmp_path / "died")
    monkeypatch.setattr(vanishing, "SweepNetwork", partial(DyingNetwork, marker=marker,
                                                           parent=os.getpid()))
    result = sweep(**SWEEP, jobs=2)
    assert os.path.exists(marker)
    assert result.rows == serial_sweep().rows
    monkeypatch.setattr(vanishing, "SweepNetwork",
                        partial(DyingNetwork, marker=marker, always=True,
                                parent=os.getpid()))
    with pytest.raises(GradsightError, match="depth=3, activation=relu, init=he_normal, "
                                             "seed=1 failed: its worker process died"):
        sweep(**SWEEP, jobs=2)


# ---- bad values, before anything runs ----------------------------------------------------------
@pytest.mark.parametrize("jobs", [0, -2, 1.5, True, "2"])
def test_jobs_must_be_a_positive_integer_or_minus_one(jobs):
    with pytest.raises(InvalidValueError, match="jobs must be a positive integer or -1"):
        doctor(setup(), CANDIDATES, jobs=jobs)
    with pytest.raises(InvalidValueError, match="jobs must be a positive integer or -1"):
        sweep(**SWEEP, jobs=jobs)


@pytest.mark.parametrize("address", ["foo", "tcp://127.0.0.1", "http://127.0.0.1:8786", "",
                                     "tcp://host:port"])
def test_malformed_scheduler_address_is_refused_at_once(address):
    with pytest.raises(InvalidValueError, match="Dask scheduler address like tcp://HOST:PORT"):
        doctor(setup(), CANDIDATES, scheduler=address)


def test_unreachable_scheduler_is_one_line_error_naming_it(monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", "1s")
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(GradsightError, match=f"cannot reach the Dask scheduler at "
                                             f"'{address}' within 1s"):
        sweep(**SWEEP, scheduler=address)
    done = CliRunner().invoke(app, ["doctor", "--data", "xor", "--hidden", "3,3", "--quiet",
                                    "--scheduler", address])
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0] and "Traceback" not in done.stderr


def test_missing_dask_is_the_install_line(monkeypatch):
    for name in ("distributed", "dask.distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'gradsight\[dask\]'"):
        doctor(setup(), CANDIDATES, scheduler="tcp://127.0.0.1:8786")
    done = CliRunner().invoke(app, ["vanish", "--sweep", "--scheduler", "tcp://127.0.0.1:8786"])
    assert done.exit_code == 2 and "gradsight[dask]" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_runner_that_cannot_be_pickled_is_one_line_error():
    import threading

    runner = engine_runner(digits())
    runner.lock = threading.Lock()  # type: ignore[attr-defined]
    with pytest.raises(GradsightError, match="EngineRunner.*cannot be pickled"):
        doctor(setup(), CANDIDATES, runner=runner, jobs=2)


@pytest.mark.parametrize("args", [
    ["doctor", "--jobs", "0"], ["doctor", "--jobs", "-3"],
    ["doctor", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786"],
    ["doctor", "--scheduler", "nonsense"],
    ["vanish", "--sweep", "--jobs", "0"], ["vanish", "--jobs", "2"],
    ["vanish", "--glorot", "--scheduler", "tcp://127.0.0.1:8786"],
])
def test_cli_bad_parallel_options_are_one_line_exit_2(args):
    done = CliRunner().invoke(app, [*args, "--quiet"])
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --") and "Traceback" not in \
        done.stderr


# ---- the command line --------------------------------------------------------------------------
DOCTOR_ARGS = ["doctor", "--data", "moons", "--hidden", "6,6", "--activation", "sigmoid",
               "--loss", "quadratic", "--optimizer", "sgd", "--lr", "0.5", "--epochs", "3",
               "--limit", "4", "--quiet"]
VANISH_ARGS = ["vanish", "--sweep", "--depths", "2,3", "--activations", "sigmoid,relu",
               "--inits", "he_normal", "--seeds", "2", "--train-epochs", "1", "--samples",
               "100", "--quiet"]


@cache
def serial_cli(*args: str) -> str:
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, done.output
    return done.stdout


def test_cli_jobs_prints_what_the_serial_command_prints():
    for args in (DOCTOR_ARGS, [*DOCTOR_ARGS, "--json"], VANISH_ARGS, [*VANISH_ARGS, "--json"]):
        done = CliRunner().invoke(app, [*args, "--jobs", "2"])
        assert done.exit_code == 0, done.output
        assert done.stdout == serial_cli(*args)
    assert "Best fix" in serial_cli(*DOCTOR_ARGS) or "No candidate" in serial_cli(*DOCTOR_ARGS)


FACTORY_MODULE = '''
from torch import nn

def build(activation, init, n_inputs, n_outputs):
    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh,
           "leaky_relu": nn.LeakyReLU}[activation]
    return nn.Sequential(nn.Linear(n_inputs, 8), act(), nn.Linear(8, 8), act(),
                         nn.Linear(8, n_outputs))
'''


@pytest.mark.slow  # each worker process imports torch
def test_cli_factory_is_rebuilt_in_each_worker_and_equals_serial(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "gs_parallel_models.py").write_text(FACTORY_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    args = ["doctor", "--factory", "gs_parallel_models:build", "--data", "moons",
            "--activation", "sigmoid", "--init", "xavier_uniform", "--epochs", "2", "--try",
            "activation=relu, init=he_normal", "--try", "activation=tanh", "--json", "--quiet"]
    serial = CliRunner().invoke(app, args)
    assert serial.exit_code == 0, serial.output
    done = CliRunner().invoke(app, [*args, "--jobs", "2"])
    assert done.exit_code == 0, done.output
    assert done.stdout == serial.stdout
    assert len(json.loads(done.stdout)["candidates"]) == 2


def test_an_error_raised_in_a_worker_is_the_serial_one_line_error():
    args = ["doctor", "--data", "xor", "--hidden", "3,3", "--epochs", "1", "--try",
            "activation=nope", "--quiet"]
    serial = CliRunner().invoke(app, args)
    done = CliRunner().invoke(app, [*args, "--jobs", "2"])
    assert serial.exit_code == done.exit_code == 2
    assert done.stderr == serial.stderr
    assert done.stderr.startswith("error: unknown activation 'nope'; known:")
    assert len(done.stderr.strip().splitlines()) == 1
