"""The ``gradsight`` command. Thin: each command parses its options, calls the library and
renders the result. Command modules import heavy libraries inside the command functions so
``gradsight --help`` stays fast.

Command modules (one per area, each with a ``register(app)`` function):
calculus_cmds (activations, derive, diffcheck), descent_cmds (descend), train_cmds (train),
explain_cmds (explain), doctor_cmd, vanish_cmd, tour_cmd.
"""

from __future__ import annotations

import sys
from importlib import import_module

import typer

app = typer.Typer(
    name="gradsight",
    help="Derive, check, see and fix how gradients flow through a neural network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = (
    "calculus_cmds", "descent_cmds", "train_cmds", "explain_cmds", "doctor_cmd", "vanish_cmd",
    "tour_cmd",
)

for _module in _COMMAND_MODULES:
    import_module(f".{_module}", __name__).register(app)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
