"""Errors a user can cause.

Every error that bad input can trigger is a :class:`GradsightError`; its message is one line
that names the offending value and says what is allowed. The CLI prints that line on stderr
and exits with code 2 (never a traceback).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable
from numbers import Integral
from typing import Any


class GradsightError(ValueError):
    """Base class of every error caused by user input."""


class UnknownNameError(GradsightError, KeyError):
    """A name (activation, loss, initialiser, optimizer, dataset, ...) that is not known."""

    def __init__(self, kind: str, name: object, known: Iterable[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its three arguments: it travels pickled from a worker process."""
        return (type(self), (self.kind, self.name, self.known))


class ExpressionError(GradsightError):
    """Expression text that is malformed, unsafe or too large to parse."""


class InvalidValueError(GradsightError):
    """A number or option outside its allowed range (non-finite, negative, wrong length...)."""


class ShapeError(GradsightError):
    """Arrays whose shapes do not fit together."""


class DataError(GradsightError):
    """Data that cannot be used: empty, non-numeric, non-finite, labels out of range."""


class TrainingError(GradsightError):
    """Training that cannot go on (non-finite loss or gradients)."""


class OutputError(GradsightError):
    """A file that cannot be written where the user asked (a missing permission, a folder
    that is really a file, a full disk)."""


def require_finite(name: str, value: float) -> float:
    """Return ``float(value)`` or raise :class:`InvalidValueError` naming ``name``.

    >>> require_finite("lr", 0.1)
    0.1
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidValueError(f"{name} must be a finite number, got {value!r}")
    return number


def require_positive(name: str, value: float) -> float:
    """Return ``float(value)`` if it is finite and > 0, else raise :class:`InvalidValueError`.

    >>> require_positive("lr", 2)
    2.0
    """
    number = require_finite(name, value)
    if number <= 0:
        raise InvalidValueError(f"{name} must be > 0, got {value!r}")
    return number


def require_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``int(value)`` if it is an integer ≥ ``minimum``, else raise
    :class:`InvalidValueError` naming ``name``.

    A count (epochs, samples, units, ...) must be a real integer: ``True`` and ``2.0`` are
    refused, NumPy integers are accepted. ``minimum`` is 1 for a positive count; 0 for one
    that may be zero (``train_epochs``), 2 or more where fewer makes no sense (classes).

    >>> require_positive_int("epochs", 3)
    3
    >>> require_positive_int("epochs", 0)
    Traceback (most recent call last):
    ...
    gradsight.errors.InvalidValueError: epochs must be an integer ≥ 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise InvalidValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


class MissingExtraError(GradsightError, ImportError):
    """An optional dependency is not installed; the message names the install command."""


def require_extra(module: str, extra: str, purpose: str) -> Any:
    """Import the optional ``module`` that ``purpose`` needs, or raise
    :class:`MissingExtraError` with the one line that installs it (``pip install
    'gradsight[extra]'``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'gradsight[{extra}]'") from None
