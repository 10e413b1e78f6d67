"""Parallel runs on a real Dask cluster (a LocalCluster of two worker processes this module
starts): the doctor and the sweep give the serial numbers, through the library and the CLI;
a worker that dies is retried by Dask, and a run that keeps killing its worker is reported
as failed — without hanging.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from typer.testing import CliRunner

from gradsight.cli import app
from gradsight.diagnostics.fixes import doctor
from gradsight.lab.vanishing import sweep
from test_parallel import (
    CANDIDATES,
    DOCTOR_ARGS,
    SWEEP,
    VANISH_ARGS,
    DyingRunner,
    assert_same_doctor,
    digits,
    serial_cli,
    serial_doctor,
    serial_sweep,
    setup,
)

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # a cluster of two processes, and workers that are killed


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    import dask

    # the scheduler (in this process) reads it when it starts: a task is given up after its
    # worker died twice, so a run that always kills its worker ends quickly
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None,
                                           silence_logs=logging.CRITICAL)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def without_hanging(work: Callable[[], Any], seconds: float = 240) -> Any:
    """``work()``, or a failed test if it has not returned after ``seconds``."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result(timeout=seconds)


def test_doctor_on_the_cluster_equals_serial(scheduler):
    labels: list[str] = []
    result = doctor(setup(), scheduler=scheduler, progress=labels.append)
    assert_same_doctor(result, serial_doctor(False))
    assert labels[0] == "no change" and len(labels) == 1 + len(result.candidates)
    given = doctor(setup(), CANDIDATES, scheduler=scheduler)
    assert_same_doctor(given, serial_doctor(True))


def test_sweep_on_the_cluster_equals_serial(scheduler):
    result = sweep(**SWEEP, scheduler=scheduler)
    assert result.rows == serial_sweep().rows
    assert result.config == serial_sweep().config


def test_cli_scheduler_prints_what_the_serial_command_prints(scheduler):
    for args in (DOCTOR_ARGS, [*DOCTOR_ARGS, "--json"], VANISH_ARGS):
        done = CliRunner().invoke(app, [*args, "--scheduler", scheduler])
        assert done.exit_code == 0, done.output
        assert done.stdout == serial_cli(*args)


def test_worker_dying_once_is_retried_by_dask(scheduler, tmp_path):
    runner = DyingRunner(digits(), tmp_path / "died", victim="tanh")
    result = without_hanging(lambda: doctor(setup(), CANDIDATES, runner=runner,
                                            scheduler=scheduler))
    assert (tmp_path / "died").exists()  # a worker did die
    assert_same_doctor(result, serial_doctor(True))


def test_run_that_keeps_killing_its_worker_is_reported_failed(scheduler, tmp_path):
    runner = DyingRunner(digits(), tmp_path / "died", victim="tanh", always=True)
    result = without_hanging(lambda: doctor(setup(), CANDIDATES, runner=runner,
                                            scheduler=scheduler))
    failed = [c for c in result.candidates if c.failed]
    assert [c.change for c in failed] == ["activation=tanh"]
    assert "KilledWorker" in failed[0].failed and result.candidates[-1] is failed[0]
    survivors = [c for c in serial_doctor(True).candidates if c.change != "activation=tanh"]
    assert [(c.change, c.loss) for c in result.candidates[:-1]] == \
        [(c.change, c.loss) for c in survivors]
    # the cluster still works afterwards: the nannies restarted the workers
    assert sweep(**SWEEP, scheduler=scheduler).rows == serial_sweep().rows
