"""Independent training runs side by side: local processes or an existing Dask cluster.

The doctor's candidate fixes and the cells of the vanishing-gradient sweep are runs that
share nothing: each builds its network, splits and shuffles from the seed in its own
configuration (no global random state), so they can run in any order, anywhere, and give the
same numbers. This module hands such runs to joblib — its default ``loky`` backend for
``jobs`` local processes, or Dask's joblib backend on the cluster of ``scheduler`` — and gives
their results back **in the order of the tasks**, whatever the order they finished in. One
run (``jobs=1`` and no scheduler) never leaves the calling process.

A worker process can die under a run (killed for its memory, a crash in native code). The
run is not dropped: the runs that did not finish are run again; if a worker dies again, the
runs still left are run one at a time, and one whose worker dies even then comes back as a
failed :class:`Outcome` carrying the reason. (On Dask the scheduler first retries a task
itself, up to ``distributed.scheduler.allowed-failures`` times.) An exception raised *by* a
run is not a failure of this kind: it propagates, as it would in a serial loop.

Worker processes get one BLAS thread each when they share the cores: joblib's loky backend
limits the threads of its workers to ``cores // jobs``, and a Dask nanny starts its workers
with ``OMP_NUM_THREADS=1`` (``distributed.nanny.pre-spawn-environ``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import GradsightError, InvalidValueError, require_extra

__all__ = ["Outcome", "ParallelRuns", "check_jobs", "check_scheduler", "check_parallel",
           "parallel_runs", "CONNECT_TIMEOUT"]

#: how long to wait for a Dask scheduler to answer before giving up (dask's own default is
#: 30 s, too long to tell a user that an address is wrong)
CONNECT_TIMEOUT = "5s"


@dataclass
class Outcome:
    """What one task gave back: its ``value``, or ``failed``, why it has none."""

    value: Any = None
    failed: str | None = None


def check_jobs(jobs: object, name: str = "jobs") -> int:
    """``jobs`` if it is a positive integer or −1 (every core), else InvalidValueError
    naming ``name``.

    >>> check_jobs(-1)
    -1
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not (jobs >= 1 or jobs == -1):
        raise InvalidValueError(f"{name} must be a positive integer or -1 (every core), "
                                f"got {jobs!r}")
    return jobs


def check_scheduler(scheduler: object, name: str = "scheduler") -> str | None:
    """``scheduler`` if it is None or reads as a Dask scheduler address (``tcp://HOST:PORT``;
    another of Dask's protocols, or ``HOST:PORT`` for tcp), else InvalidValueError naming
    ``name``. Whether a scheduler answers there is only known on connecting
    (:class:`ParallelRuns`)."""
    if scheduler is None:
        return None
    message = f"{name} must be a Dask scheduler address like tcp://HOST:PORT, got {scheduler!r}"
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise InvalidValueError(message)
    require_extra("dask.distributed", "dask", name)
    from distributed.comm import registry  # late: dask is an optional extra
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        protocol, location = parse_address(scheduler.strip(), strict=False)
        registry.get_backend(protocol)
        if protocol in ("tcp", "tls"):
            parse_host_port(location)
    except (ValueError, TypeError):
        raise InvalidValueError(message) from None
    return scheduler.strip()


def check_parallel(jobs: object, scheduler: object, names: tuple[str, str] = (
        "jobs", "scheduler")) -> tuple[int, str | None]:
    """(jobs, scheduler) checked, each error naming its option in ``names``; both at once
    are refused: on a Dask cluster its workers set how many runs go at once."""
    checked = check_jobs(jobs, names[0]), check_scheduler(scheduler, names[1])
    if checked[1] is not None and checked[0] not in (1, -1):
        raise InvalidValueError(f"{names[0]} = {jobs!r} cannot go with {names[1]}: a Dask "
                                "cluster's workers set how many runs go at once")
    return checked


class _Indexed:
    """``function(task)`` that also returns the task's index, so that results arriving in
    the order they finish can be put back in the order of the tasks."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function

    def __call__(self, index: int, task: Any) -> tuple[int, Any]:
        try:
            return index, self.function(task)
        except Exception as error:
            raise _portable(error) from None


def _portable(error: Exception) -> Exception:
    """``error``, or one with its message that survives the trip back to the caller.

    An exception travels pickled, and one whose ``__init__`` takes other arguments than its
    message (``UnknownNameError(kind, name, known)``) cannot be rebuilt: joblib would report
    a broken pool instead of the user's one-line error. Such an error comes back as a
    GradsightError (or a RuntimeError) with the same text.
    """
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        kind = GradsightError if isinstance(error, GradsightError) else RuntimeError
        return kind(str(error))
    return error


class ParallelRuns:
    """Runs tasks through joblib (``jobs`` loky processes or a Dask cluster); see the module.

    Use it through :func:`parallel_runs`, which connects to the scheduler and closes the
    connection; :meth:`map` may be called several times in between.
    """

    def __init__(self, jobs: int = 1, scheduler: str | None = None) -> None:
        self.jobs, self.scheduler = check_parallel(jobs, scheduler)
        self.client: Any = None
        self._deaths: tuple[type[BaseException], ...] = ()

    @property
    def serial(self) -> bool:
        """Whether the tasks run one after the other in this process."""
        return self.jobs == 1 and self.scheduler is None

    def connect(self) -> None:
        """Reach the scheduler (if any) and find the exceptions that mean a worker died."""
        if self.serial:
            return
        from joblib.externals.loky.process_executor import (  # late: only in parallel runs
            TerminatedWorkerError,
        )

        self._deaths = (TerminatedWorkerError,)
        if self.scheduler is None:
            return
        distributed = require_extra("dask.distributed", "dask", "--scheduler")
        from distributed.scheduler import KilledWorker  # late: dask is an optional extra

        self._deaths += (KilledWorker,)
        try:
            self.client = distributed.Client(self.scheduler, timeout=CONNECT_TIMEOUT,
                                             set_as_default=False)
        except Exception as error:  # a refused, silent or foreign endpoint fails in many ways
            reason = " ".join(str(error).split()) or type(error).__name__
            raise GradsightError(f"cannot reach the Dask scheduler at {self.scheduler!r} "
                                 f"within {CONNECT_TIMEOUT}: {reason}") from None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def map(self, function: Callable[[Any], Any], tasks: Sequence[Any],
            started: Callable[[int], None] | None = None,
            finished: Callable[[int], None] | None = None) -> list[Outcome]:
        """``function(task)`` for every task, as Outcomes in the order of ``tasks``.

        ``finished(index)`` is called as task ``index`` finishes — in the order they finish
        when parallel; ``started(index)`` as it starts, only when serial (a pool does not
        say when a task starts).
        """
        tasks = list(tasks)
        if self.serial:
            outcomes = []
            for index, task in enumerate(tasks):
                if started is not None:
                    started(index)
                outcomes.append(Outcome(function(task)))
                if finished is not None:
                    finished(index)
            return outcomes
        _check_picklable(function)
        results: dict[int, Outcome] = {}
        pending = list(range(len(tasks)))
        for _attempt in range(2):  # the first round, then once again what a death cut short
            if not pending:
                break
            self._round(function, tasks, pending, results, finished)
            pending = [i for i in pending if i not in results]
        for index in pending:  # died twice: one at a time, to find the run that kills
            death = self._round(function, tasks, [index], results, finished)
            if death is not None:
                results[index] = Outcome(failed=_reason(death))
        return [results[index] for index in range(len(tasks))]

    def _round(self, function: Callable[[Any], Any], tasks: list[Any], indices: list[int],
               results: dict[int, Outcome], finished: Callable[[int], None] | None
               ) -> BaseException | None:
        """Run ``tasks[i]`` for i in ``indices``, storing each result as it comes; the
        exception of a worker's death that ended the round early, or None."""
        import joblib  # late: joblib only for parallel runs

        call = _Indexed(function)
        try:
            with self._backend() as (backend, n_jobs):
                parallel = joblib.Parallel(n_jobs=n_jobs, backend=backend,
                                           return_as="generator_unordered")
                for index, value in parallel(joblib.delayed(call)(i, tasks[i])
                                             for i in indices):
                    results[index] = Outcome(value)
                    if finished is not None:
                        finished(index)
        except self._deaths as death:
            return death
        return None

    @contextmanager
    def _backend(self) -> Iterator[tuple[Any, int]]:
        if self.client is None:
            yield "loky", self.jobs
            return
        yield _dask_backend(self.client), -1  # the cluster's workers set the pace


@contextmanager
def parallel_runs(jobs: int = 1, scheduler: str | None = None) -> Iterator[ParallelRuns]:
    """A :class:`ParallelRuns`, connected to ``scheduler`` for the time of the block.

    ``jobs`` : local processes (−1: one per core); 1 runs serially in this process.
    ``scheduler`` : the address of an existing Dask scheduler (``tcp://HOST:PORT``); the
    runs go to its workers, as many at once as they have threads (``jobs`` stays 1). Bad values
    raise before anything runs; a scheduler that does not answer within
    :data:`CONNECT_TIMEOUT` raises a GradsightError naming its address.
    """
    runs = ParallelRuns(jobs, scheduler)
    runs.connect()
    try:
        yield runs
    finally:
        runs.close()


def _check_picklable(function: Callable[[Any], Any]) -> None:
    """Refuse, in one line, a runner that cannot be sent to another process."""
    try:  # late: what joblib pickles with (its own dependency since 1.5, vendored before)
        import cloudpickle
    except ImportError:  # pragma: no cover - joblib < 1.5
        from joblib.externals import cloudpickle
    try:
        cloudpickle.dumps(function)
    except Exception as error:
        raise GradsightError(f"parallel runs send {type(function).__name__} to other "
                             f"processes, but it cannot be pickled: "
                             f"{' '.join(str(error).split())}") from None


def _reason(death: BaseException) -> str:
    return (f"its worker process died ({type(death).__name__}), also when run alone after "
            "a retry")


def _dask_backend(client: Any) -> Any:
    """joblib's Dask backend on ``client``, completed where a task is lost with its worker.

    When Dask gives up on a task (``KilledWorker``: its workers died
    ``allowed-failures`` + 1 times) the backend of joblib (1.6) sets the error on its
    future but never calls joblib's completion callback, so ``Parallel`` waits forever. The
    subclass calls the callback with the error, which joblib then raises like any failure.
    And joblib runs the tasks in the calling process when the backend counts one worker
    (a cluster of one, or one left while a nanny restarts the other): the subclass counts
    at least two, so that the runs always go to the cluster.
    """
    from joblib._dask import DaskDistributedBackend  # late: dask is an optional extra

    class _Lost:
        def __init__(self, error: BaseException) -> None:
            self.error = error

    class Backend(DaskDistributedBackend):
        def submit(self, func: Any, callback: Any = None) -> Any:
            future = super().submit(func, callback)

            def lost(done: Any) -> None:
                error = done.exception()
                if error is not None and callback is not None:
                    callback(_Lost(error))

            future.add_done_callback(lost)
            return future

        def effective_n_jobs(self, n_jobs: int) -> int:
            # joblib runs the tasks in this process when this is 1 (a cluster with one
            # worker, or one left while the nanny restarts another): never on a cluster
            return max(2, super().effective_n_jobs(n_jobs))

        def retrieve_result_callback(self, out: Any) -> Any:
            if isinstance(out, _Lost):
                raise out.error
            return super().retrieve_result_callback(out)

    return Backend(client=client)

