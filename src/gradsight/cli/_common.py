"""Shared plumbing of the CLI commands: error handling, JSON output, progress display, and
the option parsers more than one command uses."""

from __future__ import annotations

import functools
import inspect
import shlex
import sys
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from ..errors import GradsightError, InvalidValueError, require_finite
from ..io import dumps, require_folder
from ..present.plots import check_figure_path

F = TypeVar("F", bound=Callable[..., Any])

#: the help of ``--data`` (train, doctor)
DATA_HELP = ("moons, xor, circles, spirals, gauss, digits, or a PATH.csv of your own (header, "
             "delimiter and decimal mark detected; the target is the last column)")


#: the help of ``--mkdir`` (every command that writes a file)
MKDIR_HELP = "Create the folder of an output path when it does not exist (else: an error)."


def jobs_option(runs: str, only: str = "") -> Any:
    """``--jobs``: train ``runs`` (e.g. "the runs") in local processes (``only``: the mode
    the option applies to, e.g. "--sweep: ")."""
    return typer.Option(1, "--jobs", help=f"{only}train {runs} in this many local processes "
                        "(-1: one per core); the results are those of one process")


def scheduler_option(runs: str, only: str = "") -> Any:
    """``--scheduler``: train ``runs`` on the workers of an existing Dask cluster."""
    return typer.Option(None, "--scheduler", help=f"{only}train {runs} on the workers of the "
                        "Dask scheduler at this address (tcp://HOST:PORT; needs "
                        "gradsight[dask])")


def _hide_flag_types(params: Sequence[Any]) -> None:
    """No ``<bool>`` after a flag in ``--help``.

    typer ≥ 0.2x labels every option with its type, flags too (``--json <bool>``), where
    click printed nothing: a flag takes no value, so the label only misleads. The label is
    the option's metavar when it has one, so flags get an empty one."""
    for param in params:
        if getattr(param, "is_flag", False) and not getattr(param, "metavar", None):
            param.metavar = ""


class Command(TyperCommand):
    """A gradsight command: clean help, and an expression that starts with ``-``.

    An expression such as ``-x^2 + x^4`` looks like an option to click, which stops at
    ``No such option: -x``. POSIX's ``--`` ends the options, but click also takes everything
    after it as positional, so ``descend -- "-x^2 + x^4" --x0 1`` failed with "unexpected
    extra argument (--x0 1)". Here the arguments right after ``--`` are the command's
    positional ones and what follows them is read as options again; the bare form gets a
    one-line error saying how to write it."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _hide_flag_types(params)
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        positional = [p for p in self.params if getattr(p, "param_type_name", "") == "argument"]
        if positional:
            dashed = _dashed_expression(self.params, args)
            if dashed is not None:
                ctx.fail(_dash_hint(ctx.command_path, args, dashed))
            args = _options_after_double_dash(args, len(positional))
        return super().parse_args(ctx, args)


class Group(TyperGroup):
    """The ``gradsight`` group: its ``--help`` and ``--version`` without ``<bool>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _hide_flag_types(params)
        return params


def _options_after_double_dash(args: list[str], n_positional: int) -> list[str]:
    """``[…, "--", EXPR, "--x0", "1"]`` → ``[…, "--x0", "1", "--", EXPR]``: the first
    ``n_positional`` arguments after ``--`` stay positional, the rest are options again."""
    if "--" not in args:
        return args
    cut = args.index("--")
    before, after = args[:cut], args[cut + 1:]
    return [*before, *after[n_positional:], "--", *after[:n_positional]]


def _dashed_expression(params: Sequence[Any], args: list[str]) -> str | None:
    """The first argument before ``--`` that starts with a single ``-`` and is neither an
    option nor an option's value: an expression such as ``-x^2 + x^4`` (gradsight's options
    are all long, so ``-x`` is no option either)."""
    takes_value = {}
    for param in params:
        for name in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if name.startswith("-"):
                takes_value[name] = not getattr(param, "is_flag", False)
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--":
            return None
        name = token.split("=", 1)[0]
        if name in takes_value:
            index += 2 if takes_value[name] and "=" not in token else 1
            continue
        if token.startswith("-") and not token.startswith("--") and len(token) > 1:
            return token
        index += 1
    return None


def _dash_hint(command_path: str, args: list[str], dashed: str) -> str:
    rest = [a for a in args if a is not dashed]
    example = shlex.join([*command_path.split(), "--", dashed, *rest])
    return f"an expression starting with '-' must come after '--': {example}"


def command(app: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register ``fn`` as a command whose :class:`GradsightError` becomes one line on stderr
    and exit code 2 — never a traceback.

    Its help is the docstring with each paragraph on one line: typer's rich help keeps the
    docstring's line breaks in the list of commands, which broke sentences in the middle."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except GradsightError as error:
                fail(str(error))

        kwargs.setdefault("cls", Command)
        kwargs.setdefault("help", one_line_paragraphs(inspect.getdoc(fn) or ""))
        app.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def one_line_paragraphs(text: str) -> str:
    """Each paragraph of ``text`` (separated by a blank line) joined into one line."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` (one line) on stderr and exit with ``code``."""
    first_line = " ".join(str(message).split())
    typer.echo(f"error: {first_line}", err=True)
    raise typer.Exit(code)


def wrote(path: str | PathLike[str]) -> None:
    """The one message of every command that wrote a file: ``wrote PATH``, on stderr."""
    typer.echo(f"wrote {path}", err=True)


def markup_safe(text: Any) -> str:
    """``text`` with rich markup escaped: a user's ``[b]`` or a step's ``d/dx [exp(-x)]``
    is printed as typed, not swallowed as a style tag."""
    from rich.markup import escape

    return escape(str(text))


def check_output_folder(path: str | PathLike[str] | None, mkdir: bool) -> None:
    """An output path whose folder does not exist is a one-line error before any work,
    unless ``--mkdir`` (then the folder is made). None: no output asked for."""
    if path is not None:
        require_folder(path, mkdir)


def print_json(value: Any) -> None:
    """Print one JSON document on stdout (non-finite floats as strings, never bare NaN)."""
    typer.echo(dumps(value))


def show_progress(quiet: bool = False) -> bool:
    """Whether to draw a progress bar: on stderr, only when it is a terminal and not quiet."""
    return not quiet and sys.stderr.isatty()


def parse_floats(text: str, option: str) -> list[float]:
    """Parse ``"1.5,-2"`` into floats; one-line error naming the option otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(p == "" for p in parts):
        raise InvalidValueError(f"{option} must be comma-separated numbers, got {text!r}")
    values = []
    for part in parts:
        try:
            values.append(float(part))
        except ValueError:
            raise InvalidValueError(
                f"{option} must be comma-separated numbers, got {part!r} in {text!r}"
            ) from None
        require_finite(option, values[-1])
    return values


def parse_number(text: str, option: str, kind: str = "a number") -> float:
    """The number typed for ``option``; else a one-line error naming it and what is allowed."""
    try:
        return float(text.strip())
    except ValueError:
        raise InvalidValueError(f"{option} must be {kind}, got {text!r}") from None


def check_plot_option(plot: Any) -> None:
    """Refuse a ``--plot`` path with an unknown suffix before any work is done (None: no
    figure asked for)."""
    if plot is not None:
        check_figure_path(plot, "--plot figure")


def parse_hidden(text: str) -> list[int]:
    """``--hidden``: ``"16,16"`` → [16, 16]; ``""``, ``"0"`` or ``"none"`` → no hidden layer."""
    cleaned = text.strip().lower()
    if cleaned in ("", "0", "none"):
        return []
    sizes = []
    for part in cleaned.replace("-", ",").split(","):
        if not part.strip().isdigit() or int(part) < 1:
            raise InvalidValueError(f"--hidden must be positive integers like '16,16', got "
                                    f"{part.strip()!r} in {text!r}")
        sizes.append(int(part))
    return sizes


def check_output_paths(save: Path | None, plot: Path | None, report: Path | None) -> None:
    """Fail before training, not after it, when an output path cannot be written."""
    if save is not None and save.suffix.lower() != ".npz":
        raise InvalidValueError(f"--save must be a .npz path, got {str(save)!r}")
    check_plot_option(plot)
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise InvalidValueError(f"--report must be an .html path, got {str(report)!r}")
    for path in (save, plot, report):
        if path is not None and path.is_dir():
            raise InvalidValueError(f"{str(path)!r} is a directory, not a file path")
