"""What a page may ask of the playground server: every refusal names the limit it hit.

The limits keep one browser tab from taking the machine (a 10-layer net of 128 units on a
few thousand points still steps in milliseconds) and keep the messages small enough to
parse without thinking about them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """The bounds the server enforces; ``Limits()`` holds the defaults of ``gradsight play``.

    >>> Limits().max_sessions, Limits().max_hidden_layers, Limits().max_units
    (20, 10, 128)
    """

    max_sessions: int = 20
    max_hidden_layers: int = 10
    max_units: int = 128
    min_batch_size: int = 1
    max_batch_size: int = 1000
    max_lr: float = 10.0  # η must be in (0, max_lr]
    min_points: int = 20  # a data set smaller than this has no test split (as in `train`)
    max_points: int = 2000
    max_seed: int = 2**32 - 1
    max_message_bytes: int = 64 * 1024
    max_expression_chars: int = 200
    max_descent_steps: int = 1000
    max_descent_rates: int = 8  # several η side by side
    max_start: float = 1e6  # |x₀| of the descent view
    max_steps_per_frame: int = 1000
    max_steps: int = 10_000_000  # optimizer steps of one session before it stops itself
    max_upload_bytes: int = 5 * 1024 * 1024  # a CSV upload: 5 MB at most ...
    max_upload_rows: int = 100_000  # ... and 100,000 rows
