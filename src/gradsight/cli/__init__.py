"""The ``gradsight`` command. Thin: each command parses its options, calls the library and
renders the result. Command modules import heavy libraries inside the command functions so
``gradsight --help`` stays fast.

Command modules (one per area, each with a ``register(app)`` function):
calculus_cmds (activations, derive, diffcheck), descent_cmds (descend), train_cmds (train),
explain_cmds (explain), doctor_cmd, vanish_cmd, tour_cmd, play_cmd, history_cmds (diagnose,
report: a saved history).
"""

from __future__ import annotations

import sys
from importlib import import_module, metadata

import typer

from ._common import Group

app = typer.Typer(
    name="gradsight",
    help="Derive, check, see and fix how gradients flow through a neural network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)


def version_text() -> str:
    """``gradsight X.Y.Z``: the installed distribution's version (the package's own when it
    runs from a source tree that was never installed)."""
    try:
        number = metadata.version("gradsight")
    except metadata.PackageNotFoundError:
        from .. import __version__  # late: only for an uninstalled source tree

        number = __version__
    return f"gradsight {number}"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version,
        help="Print gradsight's version and exit.")) -> None:
    """Derive, check, see and fix how gradients flow through a neural network."""

_COMMAND_MODULES = (
    "calculus_cmds", "descent_cmds", "train_cmds", "explain_cmds", "doctor_cmd", "vanish_cmd",
    "tour_cmd", "play_cmd", "history_cmds",
)

for _module in _COMMAND_MODULES:
    import_module(f".{_module}", __name__).register(app)


def main() -> None:
    """Console-script entry point.

    Usage errors (a missing option, a value typer cannot convert, an unknown option) are
    reported like every other bad input: one line on stderr, exit code 2 — not a box.
    """
    try:
        result = app(standalone_mode=False)
    except typer.Abort:  # Ctrl-C outside a command's own handling
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as error:
        if not _is_usage_error(error):
            raise
        context = getattr(error, "ctx", None)
        command = getattr(context, "command_path", None) or "gradsight"
        message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
        if message:  # empty when no command was given: the help has been printed
            typer.echo(f"error: {message} (see '{command} --help')", err=True)
        sys.exit(2)
    if result == 130:  # Ctrl-C: typer has turned the KeyboardInterrupt into exit code 130
        typer.echo("error: interrupted", err=True)
    sys.exit(result if isinstance(result, int) else 0)


def _is_usage_error(error: Exception) -> bool:
    """Click's UsageError and its subclasses (typer vendors click; BadParameter is public)."""
    usage = [base for base in type(typer.BadParameter("")).__mro__
             if base.__name__ == "UsageError"]
    return bool(usage) and isinstance(error, usage[0])
