"""Doctor: train a set-up and candidate fixes on an equal budget and show which really helps.

Verdicts say what *should* help; ``doctor`` measures it. It trains the original set-up (the
"no change" baseline) and each candidate — ReLU/leaky ReLU/tanh instead of sigmoid, He or
Xavier initialisation, cross-entropy instead of the quadratic cost, η ×0.1 or ×10 where the
findings call for it, Adam, and combinations — for the same number of epochs on the same
data split with the same seed, then ranks them by the held-out loss (then accuracy, then how
close the last/first hidden-layer gradient ratio is to 1).

Training goes through a *runner*, ``runner(config) -> RunOutcome`` (the contract is in
:mod:`.runner`), so the same ranking serves the NumPy engine (:func:`engine_runner`, the
default) and PyTorch models (the torch adapter supplies its runner). ``config`` has the
keys activation, init, bias_init, loss, optimizer, lr, epochs, batch_size, hidden, seed (and
momentum when the set-up gives one) and ``eval_loss``: the cost in which the held-out
``loss`` must be reported (the baseline's), so that a candidate trained with another cost is
still compared in the same units.

The runs are independent — each seeds its network, split and shuffling from its own
config — so ``jobs`` local processes or a Dask ``scheduler`` can train them side by side
(:mod:`.parallel`) with the same numbers, findings and ranking as one after the other.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import GradsightError, InvalidValueError
from ..io import jsonable
from .numpy_runner import EngineRunner
from .parallel import Outcome, ParallelRuns, check_parallel, parallel_runs
from .rules import median_hidden_ratio
from .runner import Runner, RunOutcome

__all__ = ["DoctorSetup", "RunOutcome", "Runner", "CandidateResult", "DoctorResult", "doctor",
           "engine_runner", "propose_candidates", "parse_change"]

CONFIG_KEYS = ("activation", "init", "bias_init", "loss", "optimizer", "lr", "epochs",
               "batch_size", "hidden", "seed")
#: settings a change may name besides CONFIG_KEYS
EXTRA_KEYS = ("momentum", "lr_factor")
NO_CHANGE = "no change"


@dataclass
class DoctorSetup:
    """A training set-up, with the same options as ``gradsight train``.

    The defaults differ from the CLI's on purpose: they describe the set-up the articles warn
    about (sigmoid hidden layers, plain SGD with η = 0.1), the one worth a diagnosis; the
    ``gradsight doctor`` command defaults to ``gradsight train``'s (ReLU, He, Adam 0.01).

    ``data`` is a data-set name or CSV path (:func:`gradsight.data.load`), a Dataset or an
    ``(X, y)`` pair; ``loss="auto"`` means cross-entropy for classes, quadratic otherwise.
    ``momentum`` (μ, as ``gradsight train --momentum``) applies to the optimizers that have
    one (sgd, momentum, nesterov, rmsprop); None keeps the optimizer's default.
    """

    data: Any = "moons"
    target: str | None = None
    hidden: Sequence[int] = (16, 16)
    activation: str = "sigmoid"
    init: str = "xavier_uniform"
    bias_init: str = "zeros"
    loss: str = "auto"
    optimizer: str = "sgd"
    lr: float = 0.1
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    test_size: float = 0.2
    momentum: float | None = None

    @classmethod
    def from_value(cls, value: DoctorSetup | dict[str, Any]) -> DoctorSetup:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise InvalidValueError(f"setup must be a dict or DoctorSetup, got "
                                    f"{type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise InvalidValueError(f"unknown setup option {unknown[0]!r}; known: "
                                    f"{', '.join(sorted(known))}")
        return cls(**value)

    def config(self) -> dict[str, Any]:
        """The runner configuration of this set-up (``momentum`` only when given)."""
        extra = {} if self.momentum is None else {"momentum": float(self.momentum)}
        return {"activation": self.activation, "init": self.init, "bias_init": self.bias_init,
                "loss": self.loss, "optimizer": self.optimizer, "lr": float(self.lr),
                "epochs": int(self.epochs), "batch_size": int(self.batch_size),
                "hidden": [int(h) for h in self.hidden], "seed": int(self.seed), **extra}


@dataclass
class CandidateResult:
    """One row of the doctor's table: a change, its overrides and what it measured.

    ``failed`` says why a run has no measurement (its worker process died, in parallel
    runs); its outcome then holds a NaN loss, so it ranks last.
    """

    change: str
    overrides: dict[str, Any]
    config: dict[str, Any]
    outcome: RunOutcome
    failed: str | None = None

    @classmethod
    def of(cls, change: str, overrides: dict[str, Any], config: dict[str, Any],
           outcome: Outcome) -> CandidateResult:
        """The result of a run that came back as ``outcome`` (a value or a failure)."""
        if outcome.failed is not None:
            return cls(change, overrides, config, RunOutcome(math.nan, None, None),
                       outcome.failed)
        return cls(change, overrides, config, outcome.value)

    @property
    def loss(self) -> float:
        return float(self.outcome.loss)

    @property
    def verdicts(self) -> list[str]:
        """Codes of the run's critical and warning findings (info findings left out)."""
        return [getattr(f, "code", str(f)) for f in self.outcome.findings
                if getattr(f, "severity", "warning") != "info"]

    def row(self, baseline_loss: float | None = None) -> dict[str, Any]:
        """One row: ``ratio_last_first`` is the number the vanishing-gradient finding shows
        (median over the recorded steps, :func:`~gradsight.diagnostics.rules.
        median_hidden_ratio`); ``gradient_ratio`` the runner's one pass after training."""
        row = {"change": self.change, "overrides": self.overrides, "loss": self.loss,
               "accuracy": self.outcome.accuracy, "gradient_ratio": self.outcome.gradient_ratio,
               "ratio_last_first": median_hidden_ratio(self.outcome.layer_history),
               "verdicts": self.verdicts}
        if self.failed is not None:
            row["failed"] = self.failed
        if baseline_loss is not None:
            row["improvement"] = baseline_loss - self.loss
        return row


# ---- candidates ------------------------------------------------------------------------------
def parse_change(text: str) -> dict[str, Any]:
    """``"activation=relu, init=he_normal"`` → {"activation": "relu", "init": "he_normal"};
    ``lr=x0.1`` (or ``lr_factor=0.1``) scales the learning rate.

    >>> parse_change("activation=relu, lr=x0.1")
    {'activation': 'relu', 'lr_factor': 0.1}
    """
    change: dict[str, Any] = {}
    for part in str(text).split(","):
        key, sep, value = (p.strip() for p in part.partition("="))
        if not sep or not key or not value:
            raise InvalidValueError(f"a change is 'key=value[, key=value]', got {text!r}")
        if key == "lr" and value[:1] in "x×*":
            key, value = "lr_factor", value[1:]
        if key not in (*CONFIG_KEYS, *EXTRA_KEYS):
            raise InvalidValueError(f"unknown setting {key!r} in change {text!r}; known: "
                                    f"{', '.join((*CONFIG_KEYS, *EXTRA_KEYS))}")
        change[key] = _change_value(key, value, text)
    return change


def _change_value(key: str, value: str, text: str) -> Any:
    if key in ("lr", "lr_factor"):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise InvalidValueError(f"{key} must be a number > 0, got {value!r} in {text!r}")
        return number
    if key == "momentum":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not 0 <= number < 1:
            raise InvalidValueError(f"momentum must be a number in [0, 1), got {value!r} in "
                                    f"{text!r}")
        return number
    if key in ("epochs", "batch_size", "seed"):
        if not value.isdigit():
            raise InvalidValueError(f"{key} must be an integer, got {value!r} in {text!r}")
        return int(value)
    if key == "hidden":
        return [int(v) for v in value.replace("-", " ").split()]
    return value


def _apply(config: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    new = dict(config)
    for key, value in change.items():
        if key == "lr_factor":
            new["lr"] = config["lr"] * value
        else:
            new[key] = value
    return new


def _label(config: dict[str, Any], change: dict[str, Any]) -> str:
    parts = []
    for key, value in change.items():
        if key == "lr_factor":
            parts.append(f"lr={config['lr'] * value:g} (×{value:g})")
        else:
            parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts)


def propose_candidates(config: dict[str, Any], findings: Iterable[Any] = (),
                       classification: bool = True, limit: int = 8) -> list[dict[str, Any]]:
    """Configuration changes worth trying for ``config``, most promising first.

    First the changes the findings recommend (η ×0.1 / ×10 only from findings), then the
    standard fixes of the article on the vanishing gradient and of Nielsen: ReLU + He and
    leaky ReLU + He instead of a saturating activation, cross-entropy instead of the
    quadratic cost (classes only), ReLU + He + cross-entropy, tanh instead of sigmoid,
    Xavier/He initialisation, Adam. Changes that would not change the set-up are dropped.
    """
    saturating = config["activation"].split(":")[0] in ("sigmoid", "tanh")
    relu_init = "he_normal"
    wanted: list[dict[str, Any]] = [dict(c) for f in findings for c in getattr(f, "changes", [])]
    if saturating:
        wanted += [{"activation": "relu", "init": relu_init},
                   {"activation": "leaky_relu", "init": relu_init}]
    if config["loss"] == "quadratic" and classification:
        wanted.append({"loss": "cross_entropy"})
        if saturating:
            wanted.append({"activation": "relu", "init": relu_init, "loss": "cross_entropy"})
    if config["activation"] == "sigmoid":
        wanted.append({"activation": "tanh", "init": "xavier_uniform"})
    wanted.append({"init": "xavier_uniform" if saturating else relu_init})
    if config["optimizer"] != "adam":
        wanted.append({"optimizer": "adam", "lr": 0.001})
    result, seen = [], {_key(config)}
    for change in wanted:
        if change.get("loss") == "cross_entropy" and not classification:
            continue
        key = _key(_apply(config, change))
        if key not in seen:
            seen.add(key)
            result.append(change)
    return result[:limit]


def _key(config: dict[str, Any]) -> str:
    return repr(sorted((k, str(v)) for k, v in config.items()))


# ---- the result --------------------------------------------------------------------------------
def _rank_key(result: CandidateResult) -> tuple[Any, ...]:
    loss = result.loss
    ratio = result.outcome.gradient_ratio
    closeness = abs(math.log10(ratio)) if ratio and ratio > 0 and math.isfinite(ratio) \
        else math.inf
    accuracy = result.outcome.accuracy
    return (not math.isfinite(loss), loss if math.isfinite(loss) else 0.0,
            -(accuracy if accuracy is not None else 0.0), closeness)


@dataclass
class DoctorResult:
    """The baseline run, the candidates ranked best first, and the best change."""

    baseline: CandidateResult
    candidates: list[CandidateResult]
    best: str
    min_improvement: float = 0.01

    @property
    def eval_loss(self) -> str:
        """The cost in which every held-out loss is measured (the baseline's)."""
        return str(self.baseline.config.get("eval_loss", self.baseline.config.get("loss")))

    def rows(self) -> list[dict[str, Any]]:
        """The table's rows: the baseline first, then the ranked candidates."""
        base = self.baseline.loss
        return [self.baseline.row(base), *(c.row(base) for c in self.candidates)]

    def to_dict(self) -> dict[str, Any]:
        base = self.baseline
        baseline = {**base.row(), "config": base.config,
                    "findings": [f.to_dict() if hasattr(f, "to_dict") else str(f)
                                 for f in base.outcome.findings]}
        return jsonable({"eval_loss": self.eval_loss, "baseline": baseline,
                         "candidates": [{**c.row(base.loss), "rank": i + 1}
                                        for i, c in enumerate(self.candidates)],
                         "best": self.best})

    def table(self) -> Any:
        """A rich Table: change, loss, accuracy, gradient ratio, verdicts (before/after)."""
        from rich.table import Table

        table = Table(title="gradsight doctor — same data, seed and budget for every run",
                      caption=f"held-out loss: {self.eval_loss} cost; best: {self.best}")
        for name, justify in (("#", "right"), ("change", "left"), ("held-out loss", "right"),
                              ("held-out accuracy", "right"), (RATIO_LABEL, "right"),
                              ("verdicts", "left")):
            table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for i, row in enumerate(self.rows()):
            style = "bold green" if row["change"] == self.best and i else None
            table.add_row("–" if i == 0 else str(i), row["change"], _num(row["loss"]),
                          _pct(row["accuracy"]), _num(row["ratio_last_first"]),
                          _verdicts(row), style=style)
        return table

    def __str__(self) -> str:
        lines = [f"{'change':<44}{'loss':>10}{'accuracy':>10}{'ratio':>10}  verdicts",
                 f"(held-out loss and accuracy; ratio: {RATIO_LABEL})"]
        for row in self.rows():
            lines.append(f"{row['change'][:43]:<44}{_num(row['loss']):>10}"
                         f"{_pct(row['accuracy']):>10}{_num(row['ratio_last_first']):>10}  "
                         f"{_verdicts(row)}")
        lines.append(f"best: {self.best}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("change", "held-out loss",
                                                 "held-out accuracy", RATIO_LABEL, "verdicts"))
        bold = " style='font-weight:bold'"
        body = "".join(
            f"<tr{bold if r['change'] == self.best else ''}>"
            f"<td>{html.escape(r['change'])}</td><td>{_num(r['loss'])}</td>"
            f"<td>{_pct(r['accuracy'])}</td><td>{_num(r['ratio_last_first'])}</td>"
            f"<td>{html.escape(_verdicts(r))}</td></tr>" for r in self.rows())
        return (f"<table><caption>gradsight doctor — best: {html.escape(self.best)}</caption>"
                f"<tr>{head}</tr>{body}</table>")


#: the ratio column of the tables: the vanishing-gradient finding's own number
RATIO_LABEL = "‖∂C/∂b‖ last/first hidden (median over steps)"


def _verdicts(row: dict[str, Any]) -> str:
    """The verdicts cell: the run's finding codes, or why it failed."""
    if row.get("failed"):
        return f"failed: {row['failed']}"
    return ", ".join(row["verdicts"]) or "—"


def _num(value: Any) -> str:
    return "—" if value is None else f"{float(value):.4g}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1%}"


# ---- the doctor ----------------------------------------------------------------------------
def _checked_setup(setup: DoctorSetup | dict[str, Any], epochs: int | None, seed: int | None,
                   engine: bool) -> DoctorSetup:
    """The set-up with the overrides applied; its momentum checked, and hidden layers
    required for the engine runner (its candidates change the hidden layers)."""
    setup = DoctorSetup.from_value(setup)
    if epochs is not None:
        setup = DoctorSetup(**{**asdict(setup), "data": setup.data, "epochs": epochs})
    if seed is not None:
        setup = DoctorSetup(**{**asdict(setup), "data": setup.data, "seed": seed})
    if setup.momentum is not None:
        _change_value("momentum", str(setup.momentum), f"momentum={setup.momentum}")
    if engine and not list(setup.hidden):
        raise InvalidValueError("doctor compares fixes of the hidden layers, but the set-up "
                                "has none (hidden = []); give e.g. hidden 16,16")
    return setup


def doctor(setup: DoctorSetup | dict[str, Any], candidates: Iterable[Any] | None = None,
           epochs: int | None = None, runner: Runner | None = None, seed: int | None = None,
           *, limit: int = 8, min_improvement: float = 0.01,
           progress: Callable[[str], None] | None = None, jobs: int = 1,
           scheduler: str | None = None) -> DoctorResult:
    """Train ``setup`` and each candidate fix with the same data, seed and epochs; rank them.

    candidates : changes to try — dicts ({"activation": "relu"}), strings
        ("activation=relu, init=he_normal", "lr=x0.1") — or None for
        :func:`propose_candidates` from the baseline's findings (at most ``limit``).
    epochs, seed : override the set-up's budget and seed (the same for every run).
    runner : ``runner(config) -> RunOutcome``; default :func:`engine_runner` on setup.data.
    min_improvement : ``best`` names the top candidate only if its held-out loss is lower
        than the baseline's by more than this fraction; otherwise ``best`` is "no change".
    jobs, scheduler : train the runs in ``jobs`` local processes (−1: one per core) or on
        the workers of the Dask scheduler at ``scheduler`` (``tcp://HOST:PORT``) — see
        :func:`~gradsight.diagnostics.parallel.parallel_runs`; the runner must then pickle.
        Proposed candidates wait for the baseline (they come from its findings); given ones
        run together with it. The result is the serial one, number for number. A run whose
        worker process dies is run again, and reported as ``failed`` if it keeps dying.
    progress : called with each run's change label — as the run starts when serial, as
        it finishes (in the order they finish) when parallel.
    """
    setup = _checked_setup(setup, epochs, seed, runner is None)
    if not (0 <= min_improvement < 1):
        raise InvalidValueError(f"min_improvement must be in [0, 1), got {min_improvement!r}")
    check_parallel(jobs, scheduler)  # bad values refused before any training
    run = runner or engine_runner(setup.data, target=setup.target, test_size=setup.test_size)
    config = setup.config()
    resolve = getattr(run, "resolve", None)
    if resolve is not None:
        config = resolve(config)
    config["eval_loss"] = config["loss"]
    given = None if candidates is None else [
        parse_change(c) if isinstance(c, str) else dict(c) for c in candidates]
    with parallel_runs(jobs, scheduler) as runs:
        if given is None:
            baseline = _baseline(runs, run, config, progress)
            changes = propose_candidates(config, baseline.outcome.findings,
                                         getattr(run, "classification", True), limit)
            results = _candidates(runs, run, config, _labelled(config, changes), progress)
        else:
            baseline, *results = _candidates(runs, run, config,
                                             [(NO_CHANGE, {}), *_labelled(config, given)],
                                             progress)
            if baseline.failed is not None:
                raise _baseline_failed(baseline.failed)
    results.sort(key=_rank_key)
    best = NO_CHANGE
    base = baseline.loss
    if results and math.isfinite(results[0].loss) and (
            not math.isfinite(base) or results[0].loss < base - min_improvement * abs(base)):
        best = results[0].change
    return DoctorResult(baseline, results, best, min_improvement)


def _baseline(runs: ParallelRuns, run: Runner, config: dict[str, Any],
              progress: Callable[[str], None] | None) -> CandidateResult:
    """The original set-up's run (alone: the candidates are proposed from its findings)."""
    [baseline] = _candidates(runs, run, config, [(NO_CHANGE, {})], progress)
    if baseline.failed is not None:
        raise _baseline_failed(baseline.failed)
    return baseline


def _labelled(config: dict[str, Any], changes: list[dict[str, Any]]
              ) -> list[tuple[str, dict[str, Any]]]:
    return [(_label(config, change), change) for change in changes]


def _candidates(runs: ParallelRuns, run: Runner, config: dict[str, Any],
                changes: list[tuple[str, dict[str, Any]]],
                progress: Callable[[str], None] | None) -> list[CandidateResult]:
    """The runs of the (label, change) pairs ``changes``, in the order given."""
    labels = [label for label, _ in changes]
    changes_only = [change for _, change in changes]
    configs = [{**_apply(config, change), "eval_loss": config["eval_loss"]}
               for change in changes_only]
    say = None if progress is None else (lambda index: progress(labels[index]))
    outcomes = runs.map(run, configs, started=say) if runs.serial \
        else runs.map(run, configs, finished=say)
    return [CandidateResult.of(label, change, candidate_config, outcome) for
            label, change, candidate_config, outcome in zip(labels, changes_only, configs,
                                                            outcomes, strict=True)]


def _baseline_failed(reason: str) -> GradsightError:
    return GradsightError(f"the run of the original set-up ('no change') failed: {reason}; "
                          "without it nothing can be compared")


def engine_runner(dataset: Any, *, target: str | None = None, test_size: float = 0.2,
                  monitor_every: int = 1, dtype: str = "float64") -> Runner:
    """A runner that trains gradsight's NumPy engine on ``dataset`` (see :mod:`.numpy_runner`)."""
    return EngineRunner(dataset, target=target, test_size=test_size,
                        monitor_every=monitor_every, dtype=dtype)
