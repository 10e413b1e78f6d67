"""Shared plumbing of the CLI commands: error handling, JSON output, progress display."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from ..errors import GradsightError

F = TypeVar("F", bound=Callable[..., Any])


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
    from ..io import dumps

    typer.echo(dumps(value))


def show_progress(quiet: bool = False) -> bool:
    """Whether to draw a progress bar: on stderr, only when it is a terminal and not quiet."""
    return not quiet and sys.stderr.isatty()


def parse_floats(text: str, option: str) -> list[float]:
    """Parse ``"1.5,-2"`` into floats; one-line error naming the option otherwise."""
    from ..errors import InvalidValueError, require_finite

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
    from ..errors import InvalidValueError

    try:
        return float(text.strip())
    except ValueError:
        raise InvalidValueError(f"{option} must be {kind}, got {text!r}") from None


def check_plot_option(plot: Any) -> None:
    """Refuse a ``--plot`` path with an unknown suffix before any work is done (None: no
    figure asked for)."""
    if plot is not None:
        from ..present.plots import check_figure_path

        check_figure_path(plot, "--plot figure")
