"""CLI command ``gradsight doctor``: train a set-up and candidate fixes, show which helps.

The options describe the set-up exactly as ``gradsight train`` does; the work is done by
:func:`gradsight.diagnostics.fixes` and this module only parses and renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidValueError, require_positive_int
from ._common import (
    DATA_HELP,
    MKDIR_HELP,
    check_output_folder,
    command,
    jobs_option,
    markup_safe,
    parse_hidden,
    print_json,
    scheduler_option,
    show_progress,
    wrote,
)

#: what the table's columns measure, said under it (one definition per number)
RATIO_HEADER = "‖∂C/∂b‖ last/first hidden"
ACCURACY_HEADER = "held-out accuracy"

_LOSS_HELP = ("cross_entropy, bce_with_logits, quadratic or auto (cross_entropy for classes, "
              "quadratic for a numeric target)")


def run_doctor(options: dict[str, Any]) -> Any:
    """Everything ``gradsight doctor`` computes, minus the printing: a DoctorResult.

    ``options`` are the command's parameters; an optional ``"runner"`` entry (a
    ``runner(config) -> RunOutcome``, e.g. a torch runner) replaces the engine runner.
    """
    from ..diagnostics.fixes import DoctorSetup, doctor  # late: NumPy, not needed for --help
    from ..diagnostics.parallel import (  # late: with fixes, for the same reason
        ParallelRuns,
        check_parallel,
    )

    o = options
    for option in ("epochs", "batch_size", "limit"):
        require_positive_int(f"--{option.replace('_', '-')}", o[option])
    pool = ParallelRuns(*check_parallel(o.get("jobs", 1), o.get("scheduler"),
                                        ("--jobs", "--scheduler")))
    setup = DoctorSetup(
        data=o["data"], target=o["target"], hidden=parse_hidden(o["hidden"]),
        activation=o["activation"], init=o["init"], bias_init=o["bias_init"], loss=o["loss"],
        optimizer=o["optimizer"], lr=o["lr"], epochs=o["epochs"], batch_size=o["batch_size"],
        seed=o["seed"], test_size=o["test_size"], momentum=o.get("momentum"))
    candidates = list(o["try_changes"] or []) or None
    if o.get("factory"):  # the user's PyTorch model (torch imported only here)
        from ..adapters.torch.runner import runner_from_spec  # late: torch is optional

        runner: Any = runner_from_spec(o["factory"], o["data"], target=o["target"],
                                  test_size=o["test_size"])
        if not pool.serial:  # the workers import the factory themselves
            runner = FactoryRunner(o["factory"], runner, o["test_size"])
        o = {**o, "runner": runner}
    parallel: dict[str, Any] = {"jobs": pool.jobs, "scheduler": pool.scheduler}
    if not show_progress(o["quiet"]):
        return doctor(setup, candidates, runner=o.get("runner"), limit=o["limit"], **parallel)
    from rich.console import Console

    console = Console(stderr=True)
    verb = "training" if pool.serial else "finished"  # parallel runs report as they end
    with console.status("training…") as status:
        return doctor(setup, candidates, runner=o.get("runner"), limit=o["limit"],
                      progress=lambda change: status.update(f"{verb}: {change}"), **parallel)


class FactoryRunner:
    """``--factory`` in parallel runs: the torch runner, rebuilt in each worker process.

    A worker cannot unpickle the user's factory unless it can import the user's module; so
    what travels is the ``MODULE:FUNCTION`` text, the loaded data and the folder the module
    was found in (put on the worker's import path, as :func:`load_factory` does here). The
    runner answers ``resolve`` and ``classification`` as the one built here does.
    """

    def __init__(self, spec: str, runner: Any, test_size: float) -> None:
        import os

        self.spec, self.test_size, self.folder = spec, test_size, os.getcwd()
        self.dataset = runner.data.dataset
        self.classification = runner.classification
        self._runner: Any = runner

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_runner": None}

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]:
        return self._built().resolve(config)

    def __call__(self, config: dict[str, Any]) -> Any:
        return self._built()(config)

    def _built(self) -> Any:
        if self._runner is None:
            import sys

            from ..adapters.torch.runner import runner_from_spec  # late: torch is optional

            if self.folder not in sys.path:
                sys.path.insert(0, self.folder)
            self._runner = runner_from_spec(self.spec, self.dataset, test_size=self.test_size)
        return self._runner


def check_report_path(report: str | None, mkdir: bool = False) -> None:
    """Refuse a bad --report path before any training (nothing is written on error): a wrong
    suffix, a folder, a folder that does not exist (unless --mkdir)."""
    if report is None:
        return
    path = Path(report)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InvalidValueError(f"--report must be an .html path, got {report!r}")
    if path.is_dir():
        raise InvalidValueError(f"--report {report!r} is a folder, not a file path")
    check_output_folder(path, mkdir)


def median_speed_ratio(layer_history: Any) -> float | None:
    """The vanishing-gradient finding's number for one run (its ``ratio_last_first``): the
    median over the recorded training steps of ‖∂C/∂b‖(last hidden) / ‖∂C/∂b‖(first hidden).
    The runner's own ``gradient_ratio`` is another quantity (one pass over ≤ 1000 training
    samples after the last epoch): the doctor's table shows this one, the finding's."""
    from ..diagnostics.rules import median_hidden_ratio  # late: NumPy, not for --help

    return median_hidden_ratio(layer_history)


def document(result: Any) -> dict[str, Any]:
    """``--json``: the DoctorResult's document, each row with ``ratio_last_first``: the
    number the table shows (:func:`median_speed_ratio`)."""
    doc = result.to_dict()
    doc["baseline"]["ratio_last_first"] = median_speed_ratio(
        result.baseline.outcome.layer_history)
    for row, candidate in zip(doc["candidates"], result.candidates, strict=True):
        row["ratio_last_first"] = median_speed_ratio(candidate.outcome.layer_history)
    return doc


def write_report(result: Any, path: str) -> None:
    """The original set-up's findings first, then the before/after table and the evidence:
    its hidden units (engine runs) and per-layer gradient flow."""
    from ..present.report import (  # late: matplotlib, not needed for --help
        build_report,
        hidden_units_section,
        write_html,
    )

    base = result.baseline.outcome
    sections: list[Any] = [{
        "heading": "Before and after: every change on an equal budget",
        "text": (f"Held-out {result.eval_loss} cost of the original set-up and of each "
                 f"candidate fix, trained with the same data, seed and number of epochs. "
                 f"Best change: {result.best}."),
        "tables": [_report_rows(result)]}]
    trained = base.info.get("trained_model")
    if trained is not None and base.info.get("training_data") is not None:
        import numpy as np

        X, y = base.info["training_data"]
        with np.errstate(all="ignore"):  # a diverged baseline: NaN is shown, not warned
            sections.append(hidden_units_section(trained, X, y, result.baseline.config["loss"]))
    report = build_report("gradsight doctor", findings=base.findings,
                          layer_history=base.layer_history, train_history=base.history,
                          sections=sections, data={"doctor": result.to_dict()})
    write_html(report, path)


def _table(result: Any) -> Any:
    """The before/after table: each number is one quantity, named in its header and defined
    in the caption — the ratio is the vanishing-gradient finding's, the accuracy held-out."""
    import math

    from rich.table import Table

    def number(value: Any) -> str:
        return "—" if value is None or math.isnan(value) else f"{float(value):.4g}"

    table = Table(title="gradsight doctor — same data, seed and budget for every run",
                  caption=(f"held-out: the --test-size share of the data, never trained on, "
                           f"after the last epoch; loss in the {result.eval_loss} cost. "
                           f"{RATIO_HEADER}: median over the recorded training steps, the "
                           "number of the vanishing-gradient finding (‖∂C/∂W‖ where a bias "
                           f"is zero by construction). Best: {result.best}."))
    for name, justify in (("#", "right"), ("change", "left"), ("held-out loss", "right"),
                          (ACCURACY_HEADER, "right"), (RATIO_HEADER, "right"),
                          ("verdicts", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    runs = [result.baseline, *result.candidates]
    for i, run in enumerate(runs):
        style = "bold green" if run.change == result.best and i else None
        accuracy = run.outcome.accuracy
        table.add_row("–" if i == 0 else str(i), markup_safe(run.change), number(run.loss),
                      "—" if accuracy is None else f"{accuracy:.1%}",
                      number(median_speed_ratio(run.outcome.layer_history)),
                      markup_safe(_verdicts(run)), style=style)
    return table


def _report_rows(result: Any) -> list[dict[str, Any]]:
    """The report's before/after table: the same quantities, under the same names, as the
    table on the terminal."""
    rows = []
    for run, row in zip([result.baseline, *result.candidates], result.rows(), strict=True):
        rows.append({"change": row["change"], "held-out loss": row["loss"],
                     ACCURACY_HEADER: row["accuracy"],
                     RATIO_HEADER + " (median over steps)": median_speed_ratio(
                         run.outcome.layer_history),
                     "verdicts": _verdicts(run)})
    return rows


def _verdicts(run: Any) -> str:
    """The verdicts cell: the run's finding codes, or why it has none (its worker died)."""
    if run.failed:
        return f"failed: {run.failed}"
    return ", ".join(run.verdicts) or "—"


def render(result: Any) -> None:
    """The before/after table and the best change, on stdout."""
    import sys

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(_table(result))
    if result.best == "no change":
        console.print("[bold]No candidate beat the original set-up on the held-out loss.[/]")
    else:
        gain = result.baseline.loss - next(c.loss for c in result.candidates
                                           if c.change == result.best)
        console.print(f"[bold green]Best fix:[/] {result.best} (held-out {result.eval_loss} "
                      f"cost {result.baseline.loss:.4g} → "
                      f"{result.baseline.loss - gain:.4g})")
    for finding in result.baseline.outcome.findings:
        console.print(f"[{finding.severity}] {finding.title}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to ``app``."""

    @command(app, "doctor")
    def doctor_command(
        data: str = typer.Option("moons", "--data", help=DATA_HELP),
        target: str | None = typer.Option(None, "--target", help="target column of a CSV"),
        hidden: str = typer.Option("16,16", "--hidden", help="hidden layer widths, e.g. 16,16"),
        activation: str = typer.Option("relu", "--activation", help="hidden activation"),
        init: str = typer.Option("he_normal", "--init", help="weight initialiser"),
        bias_init: str = typer.Option("zeros", "--bias-init", help="zeros or normal"),
        loss: str = typer.Option("auto", "--loss", help=_LOSS_HELP),
        optimizer: str = typer.Option("adam", "--optimizer",
                                      help="sgd, momentum, nesterov, adagrad, rmsprop, adam"),
        lr: float = typer.Option(0.01, "--lr", help="the learning rate η"),
        epochs: int = typer.Option(50, "--epochs", help="epochs of every run (equal budget)"),
        batch_size: int = typer.Option(32, "--batch-size"),
        seed: int = typer.Option(0, "--seed", help="seed of weights, split and shuffling"),
        momentum: float | None = typer.Option(
            None, "--momentum", help="momentum μ (sgd, momentum, nesterov, rmsprop)"),
        test_size: float = typer.Option(0.2, "--test-size", help="held-out fraction"),
        try_changes: Annotated[list[str] | None, typer.Option(
            "--try", help="a change to try instead of the proposed ones, e.g. "
                          "'activation=relu,init=he_normal' or 'lr=x0.1' (repeatable)")] = None,
        limit: int = typer.Option(8, "--limit", help="at most this many proposed candidates"),
        factory: str | None = typer.Option(
            None, "--factory", help="MODULE:FUNCTION of your own code (imported from the "
            "current directory) building a torch.nn.Module for (activation, init): the runs "
            "train that model with PyTorch"),
        report: str | None = typer.Option(
            None, "--report", help="write a self-contained HTML report (PATH.html): the "
            "before/after table, the original set-up's findings and its per-layer evidence"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress display"),
        mkdir: bool = typer.Option(False, "--mkdir", help=MKDIR_HELP),
        jobs: int = jobs_option("the runs"),
        scheduler: str | None = scheduler_option("the runs"),
    ) -> None:
        """Train the set-up and candidate fixes on an equal budget; rank what really helps."""
        check_report_path(report, mkdir)
        result = run_doctor(dict(locals()))
        if report is not None:
            write_report(result, report)
            wrote(report)
        if json_out:
            print_json(document(result))
        else:
            render(result)
