"""TensorBoard and W&B sinks (being written)."""
from __future__ import annotations

from typing import Any


def history_to_tensorboard(history: Any, log_dir: Any) -> Any:
    raise NotImplementedError
