"""Which training steps are recorded: the default schedule, cheap over a long run.

Recording a step costs a few dozen small reductions (the PyTorch watcher: +35% on a 1 ms MLP
step when every step is recorded; the NumPy Monitor: its norms and fractions), so the
default records densely where things change fast and sparsely after:

* **every step for the first 50** — the GradScaler's scale search (its skipped steps come at
  the very start), NaN blow-ups of a too large η, and the units that die or saturate at
  initialisation all show in the first tens of steps;
* **every 50th step up to step 5,000** — gradient norms, update ratios and fractions drift
  over hundreds of steps, so twenty points per 1,000 steps draw their trend;
* **every 500th step after** — a long run still gets two points per 1,000 steps.

A 1,000-step run records 69 steps (6.9% of them), a 10,000-step run 159 (1.6%), so the
watcher's cost over a run is a few percent of its every-step cost. ``every=k`` records steps
0, k, 2k, … instead (``every=1``: every step).
"""

from __future__ import annotations

from ..errors import require_positive_int

__all__ = ["DEFAULT_SCHEDULE", "LossCurve", "RecordingSchedule", "loss_span"]

#: (first step, interval) of each phase of the default schedule, in order
DEFAULT_SCHEDULE: tuple[tuple[int, int], ...] = ((0, 1), (50, 50), (5000, 500))


class RecordingSchedule:
    """``schedule.records(step)``: whether a step is recorded.

    every : record steps 0, every, 2·every, …; None: the default schedule
        (:data:`DEFAULT_SCHEDULE`: every step for the first 50, then every 50th up to 5,000,
        then every 500th).

    >>> s = RecordingSchedule()
    >>> [step for step in range(6000) if s.records(step)][48:54]
    [48, 49, 50, 100, 150, 200]
    >>> RecordingSchedule(3).records(6), RecordingSchedule(3).records(7)
    (True, False)
    """

    __slots__ = ("every", "phases")

    def __init__(self, every: int | None = None) -> None:
        self.every = None if every is None else require_positive_int("every", every)
        self.phases: tuple[tuple[int, int], ...] = (
            DEFAULT_SCHEDULE if self.every is None else ((0, self.every),))

    def records(self, step: int) -> bool:
        start, interval = self.phases[0]
        for phase_start, phase_interval in self.phases[1:]:
            if step < phase_start:
                break
            start, interval = phase_start, phase_interval
        return (step - start) % interval == 0

    def __repr__(self) -> str:
        return "default schedule" if self.every is None else f"every={self.every}"


def loss_span(step: int) -> int:
    """How many steps one point of the loss curve averages at ``step``: 10 up to step 10,000,
    100 up to 100,000, 1,000 after — about 1,000 points per decade of a run. The loss of
    every step is known for free (it was computed anyway); this keeps the curve fine where
    training changes fast and its memory small over a long run."""
    return 10 if step < 10_000 else 100 if step < 100_000 else 1000


class LossCurve:
    """The loss of every step, averaged over spans of :func:`loss_span` steps: a point ends
    where a span is full and where a step is recorded (a record closes its window, see
    ``LayerStats.loss_window``). ``points`` is the list of (last step, mean loss)."""

    __slots__ = ("points", "_sum", "_count", "_first")

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []
        self._sum, self._count = 0.0, 0
        self._first: int | None = None

    def add(self, step: int, loss: float, close: bool = False) -> None:
        """Add one loss of ``step``; ``close`` ends the point here (a recorded step)."""
        if self._count == 0:
            self._first = step
        self._sum += loss
        self._count += 1
        if close or step - (self._first or 0) + 1 >= loss_span(step):
            self.points.append((step, self._sum / self._count))
            self._sum, self._count = 0.0, 0
