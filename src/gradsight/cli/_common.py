"""Shared plumbing of the CLI commands: error handling, JSON output, progress display, and
the option parsers more than one command uses."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from ..errors import GradsightError, InvalidValueError, require_finite
from ..io import dumps
from ..present.plots import check_figure_path

F = TypeVar("F", bound=Callable[..., Any])

#: the help of ``--data`` (train, doctor)
DATA_HELP = ("moons, xor, circles, spirals, gauss, digits, or a PATH.csv (header row; the "
             "target is the last column unless --target)")


def command(app: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register ``fn`` as a command whose :class:`GradsightError` becomes one line on stderr
    and exit code 2 — never a traceback."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except GradsightError as error:
                fail(str(error))

        app.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` (one line) on stderr and exit with ``code``."""
    first_line = " ".join(str(message).split())
    typer.echo(f"error: {first_line}", err=True)
    raise typer.Exit(code)


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
