"""CLI command ``descend``: gradient descent on a typed function, in the articles' style.

``gradsight descend "x^2 - 4*x + 6" --x0 8 --lr 0.1`` prints every update as
``x_new = x_old − η·dy/dx`` with the numbers (``6.8 = 8 − 0.1·(12)``) and the verdict.
Numbers are taken as text and parsed here, so a bad value is one line on stderr (exit 2),
like every other bad input. Heavy modules are imported inside the command (each such import
of gradsight's says so).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InvalidValueError, require_finite
from ..io import atomic_path
from ..present.plots import save_figure
from ._common import (
    MKDIR_HELP,
    check_output_folder,
    check_plot_option,
    command,
    markup_safe,
    parse_floats,
    parse_number,
    print_json,
    wrote,
)

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


def _rate(text: str, option: str) -> float:
    """A learning rate η typed for ``option``: a finite number > 0."""
    rate = require_finite(option, parse_number(text, option))
    if rate <= 0:
        raise InvalidValueError(f"{option} (the learning rate η) must be > 0, got {text!r}")
    return rate


def parse_start(text: str) -> list[float] | dict[str, float]:
    """``--x0``: numbers in the alphabetical order of the variables (``"1,2"``), or named
    (``"w=1,b=2"``: a dict, checked against the expression's variables by ``minimize``)."""
    parts = [p.strip() for p in text.split(",")]
    if not any("=" in p for p in parts):
        return parse_floats(text, "--x0")
    named: dict[str, float] = {}
    for part in parts:
        name, equals, value = (p.strip() for p in part.partition("="))
        if not equals:
            raise InvalidValueError(f"--x0 mixes numbers and names in {text!r}; name every "
                                    "value (--x0 w=1,b=2) or none (--x0 1,2)")
        if not name.isidentifier() or not value:
            raise InvalidValueError(f"--x0 needs name=number pairs like w=1,b=2, got "
                                    f"{part!r} in {text!r}")
        if name in named:
            raise InvalidValueError(f"--x0 gives {name} twice in {text!r}; give each "
                                    "variable once")
        named[name] = require_finite(f"--x0 {name}", parse_number(value, f"--x0 {name}"))
    return named


def _start_line(traj: Any, named: bool) -> str:
    """``x0: b = 1, w = 2 (variables in alphabetical order)``: which value went where."""
    values = ", ".join(f"{v} = {_num(c, 10)}" for v, c in zip(traj.variables,
                                                               traj.iterations[0].x,
                                                               strict=True))
    if named or len(traj.variables) == 1:
        return f"x0: {values}"
    return f"x0: {values} (variables in alphabetical order)"


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
    rule = (f"{lhs} = {rhs} − η·{'dy/dx' if one else '∇f'}" if _is_plain_sgd(traj)
            else f"{lhs} = {rhs} + Δ ({traj.optimizer} update)")
    table = Table(title=markup_safe(f"f({names}) = {traj.expression}   ·   {traj.optimizer}, "
                                    f"η = {_num(traj.lr)}"))
    table.add_column("k", justify="right")
    table.add_column(markup_safe(rule))
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
        table.add_row(str(k), markup_safe(equation), _num(its[k].f), _vector(its[k].grad))
    return table


def _print_run(traj: Any, named: bool) -> None:
    from rich.console import Console

    console = Console()
    console.print(markup_safe(_start_line(traj, named)), highlight=False, soft_wrap=True)
    console.print(_table(traj))
    style = VERDICT_STYLE.get(traj.verdict, "bold")
    console.print(f"[{style}]{markup_safe(traj.verdict_label)}[/]: "
                  f"{markup_safe(traj.verdict_reason)}", highlight=False, soft_wrap=True)
    console.print(markup_safe(f"final {', '.join(traj.variables)} = {_point(traj.x_final)}, "
                              f"f = {_num(traj.f_final, 10)}"), highlight=False, soft_wrap=True)


def _print_comparison(comparison: Any, named: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    first = comparison.runs[0]
    table = Table(title=markup_safe(f"f({', '.join(first.variables)}) = {first.expression}: "
                                    "learning rates compared"))
    for column in ("optimizer", "η", "verdict", "steps", "final " + ", ".join(first.variables),
                   "f"):
        table.add_column(markup_safe(column), overflow="fold")
    for run in comparison.runs:
        style = VERDICT_STYLE.get(run.verdict, "")
        table.add_row(markup_safe(run.optimizer), _num(run.lr),
                      f"[{style}]{markup_safe(run.verdict_label)}[/]", str(run.n_steps),
                      _vector(run.x_final), _num(run.f_final))
    console = Console()
    console.print(markup_safe(_start_line(first, named)), highlight=False, soft_wrap=True)
    console.print(table)
    for run in comparison.runs:
        console.print(markup_safe(f"η = {_num(run.lr)} ({run.optimizer}): "
                                  f"{run.verdict_reason}"), highlight=False, soft_wrap=True)


def _descend(expression: str, x0: str | None, lr: str, optimizer: str, momentum: str | None,
             max_iter: str, tol: str, compare_lr: str | None, plot: Path | None,
             animate: Path | None, json_output: bool, mkdir: bool = False) -> None:
    from ..calculus.descent import compare, minimize  # late: SymPy, not needed for --help

    if x0 is None:
        raise InvalidValueError("--x0 is required, e.g. --x0 8 (two variables: --x0=-1.5,2 "
                                "in alphabetical order, or by name: --x0 x=-1.5,y=2)")
    start = parse_start(x0)
    options: dict[str, Any] = {
        "optimizer": optimizer.strip().lower(),
        "momentum": _number(momentum, "--momentum", None),
        "max_iter": _count(max_iter, "--max-iter"), "tol": _number(tol, "--tol", 1e-6)}
    rate = _rate(lr, "--lr")      # checked even when --compare-lr replaces it
    rates = None if compare_lr is None else [
        _rate(text, "--compare-lr") for text in compare_lr.split(",")]
    _check_outputs(plot, animate, compare_lr is not None, mkdir)
    named = isinstance(start, dict)
    if rates is not None:
        result = compare(expression, start, lrs=rates, **options)
        _save_plots(result, plot, None)
        if json_output:
            print_json(result.to_dict())
        else:
            _print_comparison(result, named)
        return
    run = minimize(expression, start, lr=rate, **options)
    _save_plots(run, plot, animate)
    if json_output:
        print_json(run.to_dict())
    else:
        _print_run(run, named)


def _check_outputs(plot: Path | None, animate: Path | None, comparing: bool,
                   mkdir: bool) -> None:
    """Reject output paths before any work: a wrong format, --animate with several runs, a
    folder that does not exist (unless --mkdir)."""
    check_plot_option(plot)
    if animate is not None and Path(animate).suffix.lower() != ".gif":
        raise InvalidValueError(f"--animate needs a .gif path, got {str(animate)!r}")
    if animate is not None and comparing:
        raise InvalidValueError("--animate shows one run; leave out --compare-lr")
    check_output_folder(plot, mkdir)
    check_output_folder(animate, mkdir)


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
    for path in (plot, animate):
        if path is not None:
            wrote(path)


ExprArg = Annotated[str, typer.Argument(metavar="EXPR", help="The function to minimise, "
                                        "e.g. 'x^2 - 4*x + 6' or '(1-x)^2 + 100*(y-x^2)^2'.")]
X0Opt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--x0", metavar="VALUES",
    help="Start point: one number per variable, in the alphabetical order of the names "
         "(--x0=-1.5,2 sets x = -1.5, y = 2), or by name (--x0 w=1,b=2).")]
LrOpt = Annotated[str, typer.Option("--lr", metavar="NUMBER",
                                    help="The learning rate η (> 0).")]
OptimizerOpt = Annotated[str, typer.Option(
    "--optimizer", help="sgd, momentum, nesterov, adagrad, rmsprop or adam.")]
MomentumOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--momentum", metavar="NUMBER", help="Momentum μ (sgd, momentum, nesterov, rmsprop).")]
MaxIterOpt = Annotated[str, typer.Option("--max-iter", metavar="N",
                                         help="At most this many updates.")]
TolOpt = Annotated[str, typer.Option("--tol", metavar="NUMBER",
                                     help="Stop when |grad| or the step is below.")]
CompareOpt = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--compare-lr", metavar="RATES",
    help="Run several learning rates η, e.g. 0.01,0.1,0.9,1.1.")]
PlotOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--plot", help="Save the path (curve or contour); with --compare-lr, f − f_min per "
    "iteration of every rate on a log scale (.png, .svg, .pdf).")]
AnimateOpt = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--animate", help="Save a GIF of the descent.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
MkdirOpt = Annotated[bool, typer.Option("--mkdir", help=MKDIR_HELP)]


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @command(app, "descend")
    def descend_command(expression: ExprArg, x0: X0Opt = None, lr: LrOpt = "0.1",
                        optimizer: OptimizerOpt = "sgd", momentum: MomentumOpt = None,
                        max_iter: MaxIterOpt = "1000", tol: TolOpt = "1e-6",
                        compare_lr: CompareOpt = None, plot: PlotOpt = None,
                        animate: AnimateOpt = None, json_output: JsonOpt = False,
                        mkdir: MkdirOpt = False) -> None:
        """Minimise EXPR by gradient descent: every step x_new = x_old − η·dy/dx, and a
        verdict (converged, diverged, oscillating, stalled, max_iter). An EXPR that starts
        with '-' goes after '--': gradsight descend -- "-x^2 + x^4" --x0 1."""
        _descend(expression, x0, lr, optimizer, momentum, max_iter, tol, compare_lr, plot,
                 animate, json_output, mkdir)
