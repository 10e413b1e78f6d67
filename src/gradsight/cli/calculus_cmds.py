"""CLI commands ``activations``, ``derive`` and ``diffcheck`` (see gradsight.cli).

Heavy modules (NumPy, SymPy, matplotlib, rich) are imported inside the commands so that
``gradsight --help`` stays fast; each such import of gradsight's says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import require_finite
from ..present.plots import save_figure
from ._common import (
    MKDIR_HELP,
    check_output_folder,
    check_plot_option,
    command,
    markup_safe,
    parse_number,
    print_json,
    wrote,
)

PLOT_HELP = "Also save a figure (.png, .svg or .pdf)."
JSON_HELP = "Print one JSON document on stdout."


def _console() -> Any:
    from rich.console import Console

    return Console()


def _number(value: float, digits: int = 6) -> str:
    if not math.isfinite(value):
        return "∞" if value > 0 else ("−∞" if value < 0 else "nan")
    return f"{value:.{digits}g}"


def _point(text: str) -> float:
    """``--at`` as a finite number; text is parsed here so that a typo is one line too."""
    return require_finite("--at", parse_number(text, "--at", "a finite number"))


def _activations(plot: Path | None, json_output: bool, mkdir: bool = False) -> None:
    from .. import activations  # late: NumPy, not needed for --help
    from ..calculus.symbolic import activation_table  # late: SymPy, not needed for --help

    check_plot_option(plot)
    check_output_folder(plot, mkdir)
    records = activation_table()
    if plot is not None:
        from ..present.plots.calculus import plot_activations  # late: matplotlib, not --help

        save_figure(plot_activations(), plot)
    if json_output:
        print_json(records)
        return
    from rich.table import Table

    table = Table(title="Activations a = f(z) and their derivatives")
    table.add_column("name", no_wrap=True)
    for column in ("f(z)", "f′(z)", "range of a", "max f′", "saturates", "f′ from a"):
        table.add_column(column, overflow="fold", no_wrap=column == "saturates")
    for record in records:
        act = activations.get(record["name"])
        low, high = act.output_range
        peak = record["max_derivative"]
        table.add_row(*(markup_safe(cell) for cell in (
            act.name, act.formula, act.derivative_formula,
            f"({_number(low, 4)}, {_number(high, 4)})",
            f"{_number(peak['value'], 4)} {act.max_derivative_where}",
            "yes" if act.saturating else "no",
            record["derivative_from_output"] or "—",
        )))
    _console().print(table)
    if plot is not None:
        wrote(plot)


def _derive(expression: str, wrt: str | None, steps: bool, json_output: bool) -> None:
    """``--json`` prints {expression, wrt, derivative, simplified, derivative_from_output
    (activation names only, else null), steps: [{rule, result}]}, all parseable text."""
    from ..calculus.symbolic import derive  # late: SymPy, not needed for --help

    result = derive(expression, wrt)
    record = result.to_dict()
    if json_output:
        print_json(record)
        return
    from rich.table import Table

    summary = Table(show_header=False, box=None)
    summary.add_row("expression", markup_safe(record["expression"]))
    summary.add_row(markup_safe(f"d/d{result.wrt}"), markup_safe(record["derivative"]))
    summary.add_row("simplified", markup_safe(record["simplified"]))
    if record["derivative_from_output"] is not None:
        summary.add_row("from output a", markup_safe(record["derivative_from_output"]))
    console = _console()
    console.print(summary)
    if not steps:
        return
    for route, route_steps in result.routes().items():
        table = Table(title=markup_safe(route or "Steps (children first)"))
        for column in ("#", "rule", "result", "detail"):
            table.add_column(column)
        for number, step in enumerate(route_steps, 1):
            table.add_row(str(number), markup_safe(step.rule), markup_safe(step.result),
                          markup_safe(step.detail))
        console.print(table)


def _diffcheck(expression: str, at: str, plot: Path | None, json_output: bool,
               mkdir: bool = False) -> None:
    from ..calculus.symbolic import step_study  # late: SymPy, not needed for --help

    x = _point(at)
    check_plot_option(plot)
    check_output_folder(plot, mkdir)
    study = step_study(expression, x)  # --json: {at, exact, rows, recommended}
    if plot is not None:
        from ..present.plots.calculus import plot_step_study  # late: matplotlib, not --help

        save_figure(plot_step_study(study), plot)
    if json_output:
        print_json(study.to_dict())
        return
    from rich.table import Table

    table = Table(title=markup_safe(f"f′({_number(study.x)}) of {study.function}: exact "
                                    f"{study.exact!r} ({study.exact_source})"))
    for column in ("method", "h", "estimate", "abs error", "rel error"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for row in study.rows:
        best = study.best(row.method).h == row.h
        style = "bold green" if best else ("yellow" if row.h == 1e-13 else None)
        relative = "—" if row.rel_error is None else f"{row.rel_error:.2e}"
        table.add_row(row.method, f"{row.h:.0e}", f"{row.estimate:.16g}",
                      f"{row.abs_error:.2e}", relative, style=style)
    console = _console()
    console.print(table)
    console.print("green: smallest error per method; yellow: h = 1e-13, the step of the "
                  "article on the derivative in training")
    for method, h in study.recommended.items():
        error = study.recommended_error[method]
        if h is None or error is None:
            console.print(f"recommended {method}: not applicable")
        else:
            console.print(f"recommended {method} h = {h:.2e} (abs error {error:.2e})")
    for note in study.notes:
        console.print(f"note: {markup_safe(note)}")
    if plot is not None:
        wrote(plot)


ExpressionArg = Annotated[str, typer.Argument(
    metavar="EXPR_OR_NAME",
    help="An expression such as 'x**2 - 4*x + 6' or an activation name such as sigmoid.",
)]
PlotOpt = Annotated[Optional[Path], typer.Option("--plot", help=PLOT_HELP)]  # noqa: UP045
JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
MkdirOpt = Annotated[bool, typer.Option("--mkdir", help=MKDIR_HELP)]
WrtOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--wrt", help="Variable to differentiate by (for an activation: its input name, z).")]
StepsOpt = Annotated[bool, typer.Option("--steps", help="Show the rule used at each step.")]
AtOpt = Annotated[str, typer.Option(
    "--at", metavar="X", help="The point x (a finite number) where f′(x) is estimated.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @command(app, "activations")
    def activations_command(plot: PlotOpt = None, json_output: JsonOpt = False,
                            mkdir: MkdirOpt = False) -> None:
        """Every activation: formula, derivative, output range, maximum derivative."""
        _activations(plot, json_output, mkdir)

    @command(app, "derive")
    def derive_command(expression: ExpressionArg, wrt: WrtOpt = None, steps: StepsOpt = False,
                       json_output: JsonOpt = False) -> None:
        """Symbolic derivative with its steps; sigmoid shows both routes to σ(1−σ). An
        expression that starts with '-' goes after '--': gradsight derive -- "-x^2"."""
        _derive(expression, wrt, steps, json_output)

    @command(app, "diffcheck")
    def diffcheck_command(expression: ExpressionArg, at: AtOpt, plot: PlotOpt = None,
                          json_output: JsonOpt = False, mkdir: MkdirOpt = False) -> None:
        """Finite differences against the exact derivative for h = 1e-1 … 1e-15."""
        _diffcheck(expression, at, plot, json_output, mkdir)
