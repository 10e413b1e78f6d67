"""CLI command ``descend``: gradient descent on a typed function, in the articles' style.

``gradsight descend "x^2 - 4*x + 6" --x0 8 --lr 0.1`` prints every update as
``x_new = x_old − ν·dy/dx`` with the numbers (``6.8 = 8 − 0.1·(12)``) and the verdict.
Numbers are taken as text and parsed here, so a bad value is one line on stderr (exit 2),
like every other bad input. Heavy modules are imported inside the command (each such import
of gradsight's says so).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InvalidValueError
from ..io import atomic_path
from ..present.plots import save_figure
from ._common import check_plot_option, command, parse_floats, parse_number, print_json

HEAD_ROWS, TAIL_ROWS = 15, 5
VERDICT_STYLE = {"converged": "bold green", "diverged": "bold red", "oscillating": "bold yellow",
                 "stalled": "bold magenta", "max_iter": "bold cyan"}


def _num(value: float, digits: int = 6) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def _vector(values: tuple[float, ...], digits: int = 6) -> str:
    parts = [_num(v, digits) for v in values]
    return parts[0] if len(parts) == 1 else f"({', '.join(parts)})"


def _point(values: tuple[float, ...]) -> str:
    """x with 10 significant digits: late iterates still differ in print (2.000014719)."""
    return _vector(values, 10)


def _number(text: str | None, option: str, default: float | None) -> float | None:
    return default if text is None else parse_number(text, option)


def _count(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidValueError(f"{option} must be a whole number, got {text!r}") from None


def _is_plain_sgd(traj: Any) -> bool:
    h = traj.hyperparameters
    return traj.optimizer == "sgd" and not h.get("weight_decay") and not h.get("momentum")


def _equation(traj: Any, k: int) -> str:
    """Row k of the table: how x_k came from x_{k−1} (``6.8 = 8 − 0.1·(12)``)."""
    old, new = traj.iterations[k - 1], traj.iterations[k]
    if not _is_plain_sgd(traj):
        return f"{_point(new.x)} = {_point(old.x)} + {_vector(new.update)}"
    slope = ", ".join(map(_num, old.grad))
    return f"{_point(new.x)} = {_point(old.x)} − {_num(traj.lr)}·({slope})"


def _table(traj: Any) -> Any:
    from rich.table import Table

    names = ", ".join(traj.variables)
    one = len(traj.variables) == 1
    lhs = f"{names}_new" if one else f"({names})_new"
    rhs = f"{names}_old" if one else f"({names})_old"
    rule = (f"{lhs} = {rhs} − ν·{'dy/dx' if one else '∇f'}" if _is_plain_sgd(traj)
            else f"{lhs} = {rhs} + Δ ({traj.optimizer} update)")
    table = Table(title=f"f({names}) = {traj.expression}   ·   {traj.optimizer}, "
                        f"ν = {_num(traj.lr)}")
    table.add_column("k", justify="right")
    table.add_column(rule)
    table.add_column("f", justify="right")
    table.add_column("dy/dx" if one else "∇f", justify="right")
    its = traj.iterations
    shown = list(range(len(its)))
    if len(its) > HEAD_ROWS + TAIL_ROWS + 1:
        shown = shown[:HEAD_ROWS] + [-1] + shown[-TAIL_ROWS:]
    for k in shown:
        if k == -1:
            hidden = len(its) - HEAD_ROWS - TAIL_ROWS
            table.add_row("⋮", f"… {hidden} iterations not shown …", "", "")
            continue
        equation = f"{names} = {_point(its[0].x)} (start)" if k == 0 else _equation(traj, k)
        table.add_row(str(k), equation, _num(its[k].f), _vector(its[k].grad))
    return table


def _print_run(traj: Any) -> None:
    from rich.console import Console

    console = Console()
    console.print(_table(traj))
    console.print(f"variables: {', '.join(traj.variables)} (the order of --x0)")
    style = VERDICT_STYLE.get(traj.verdict, "bold")
    console.print(f"[{style}]{traj.verdict}[/]: {traj.verdict_reason}", highlight=False,
                  soft_wrap=True)
    console.print(f"final {', '.join(traj.variables)} = {_point(traj.x_final)}, "
                  f"f = {_num(traj.f_final, 10)}", highlight=False, soft_wrap=True)


def _print_comparison(comparison: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    first = comparison.runs[0]
    table = Table(title=f"f({', '.join(first.variables)}) = {first.expression}: "
                        "learning rates compared")
    for column in ("optimizer", "ν", "verdict", "steps", "final " + ", ".join(first.variables),
                   "f"):
        table.add_column(column)
    for row in comparison.table():
        style = VERDICT_STYLE.get(row["verdict"], "")
        table.add_row(row["optimizer"], _num(row["lr"]), f"[{style}]{row['verdict']}[/]",
                      str(row["iterations"]), _vector(tuple(row["x_final"])),
                      _num(row["f_final"]))
    console = Console()
    console.print(table)
    for run in comparison.runs:
        console.print(f"ν = {_num(run.lr)} ({run.optimizer}): {run.verdict_reason}",
                      highlight=False, soft_wrap=True)


def _descend(expression: str, x0: str | None, lr: str, optimizer: str, momentum: str | None,
             max_iter: str, tol: str, compare_lr: str | None, plot: Path | None,
             animate: Path | None, json_output: bool) -> None:
    from ..calculus.descent import compare, minimize  # late: SymPy, not needed for --help

    if x0 is None:
        raise InvalidValueError("--x0 is required, e.g. --x0 8 (two variables: --x0=-1.5,2)")
    options: dict[str, Any] = {
        "x0": parse_floats(x0, "--x0"), "optimizer": optimizer.strip().lower(),
        "momentum": _number(momentum, "--momentum", None),
        "max_iter": _count(max_iter, "--max-iter"), "tol": _number(tol, "--tol", 1e-6)}
    rate = _number(lr, "--lr", 0.1)      # checked even when --compare-lr replaces it
    assert rate is not None
    _check_outputs(plot, animate, compare_lr is not None)
    if compare_lr is not None:
        rates = parse_floats(compare_lr, "--compare-lr")
        result = compare(expression, options.pop("x0"), lrs=rates, **options)
        _save_plots(result, plot, None)
        if json_output:
            print_json(result.to_dict())
        else:
            _print_comparison(result)
        return
    run = minimize(expression, options.pop("x0"), lr=rate, **options)
    _save_plots(run, plot, animate)
    if json_output:
        print_json(run.to_dict())
    else:
        _print_run(run)


def _check_outputs(plot: Path | None, animate: Path | None, comparing: bool) -> None:
    """Reject output paths before any work: a wrong format, --animate with several runs."""
    check_plot_option(plot)
    if animate is not None and Path(animate).suffix.lower() != ".gif":
        raise InvalidValueError(f"--animate needs a .gif path, got {str(animate)!r}")
    if animate is not None and comparing:
        raise InvalidValueError("--animate shows one run; leave out --compare-lr")


def _save_plots(result: Any, plot: Path | None, animate: Path | None) -> None:
    """Draw the figure and/or the GIF into temp files and rename them only when both are
    done: an error leaves no file behind, half-written or alone (``atomic_path`` turns a
    write failure into a one-line OutputError)."""
    if plot is None and animate is None:
        return
    from contextlib import ExitStack

    from ..present.plots import descent as figures  # late: matplotlib, not needed for --help

    with ExitStack() as stack:
        plot_temp = None if plot is None else stack.enter_context(atomic_path(plot))
        animate_temp = None if animate is None else stack.enter_context(atomic_path(animate))
        if plot_temp is not None:
            # several rates: f − f_min per iteration on a log scale, which stays readable
            # when one run diverges (plot_comparison's linear f axis is swamped by it)
            figure = (figures.plot_loss(result) if hasattr(result, "runs")
                      else figures.plot_trajectory(result))
            save_figure(figure, plot_temp)
        if animate_temp is not None:
            figures.animate(result, animate_temp)
    if plot is not None:
        typer.echo(f"figure saved to {plot}", err=True)
    if animate is not None:
        typer.echo(f"animation saved to {animate}", err=True)


ExprArg = Annotated[str, typer.Argument(metavar="EXPR", help="The function to minimise, "
                                        "e.g. 'x^2 - 4*x + 6' or '(1-x)^2 + 100*(y-x^2)^2'.")]
X0Opt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--x0", help="Start point; two variables: --x0=-1.5,2 (order = sorted variable names).")]
LrOpt = Annotated[str, typer.Option("--lr", help="Learning rate ν (> 0).")]
OptimizerOpt = Annotated[str, typer.Option(
    "--optimizer", help="sgd, momentum, nesterov, adagrad, rmsprop or adam.")]
MomentumOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--momentum", help="Momentum μ (sgd, momentum, nesterov, rmsprop).")]
MaxIterOpt = Annotated[str, typer.Option("--max-iter", help="At most this many updates.")]
TolOpt = Annotated[str, typer.Option("--tol", help="Stop when |grad| or the step is below.")]
CompareOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--compare-lr", help="Run several learning rates, e.g. 0.01,0.1,0.9,1.1.")]
PlotOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--plot", help="Save the path (curve or contour); with --compare-lr, f − f_min per "
    "iteration of every rate on a log scale (.png, .svg, .pdf).")]
AnimateOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--animate", help="Save a GIF of the descent.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @command(app, "descend")
    def descend_command(expression: ExprArg, x0: X0Opt = None, lr: LrOpt = "0.1",
                        optimizer: OptimizerOpt = "sgd", momentum: MomentumOpt = None,
                        max_iter: MaxIterOpt = "1000", tol: TolOpt = "1e-6",
                        compare_lr: CompareOpt = None, plot: PlotOpt = None,
                        animate: AnimateOpt = None, json_output: JsonOpt = False) -> None:
        """Minimise EXPR by gradient descent: every step x_new = x_old − ν·dy/dx, and a
        verdict (converged, diverged, oscillating, stalled, max_iter)."""
        _descend(expression, x0, lr, optimizer, momentum, max_iter, tol, compare_lr, plot,
                 animate, json_output)
