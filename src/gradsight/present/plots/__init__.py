"""Figures (matplotlib). Pure functions: data in, ``Figure`` out; saving is separate.

Functions live in submodules by area — ``calculus`` (activations, step study), ``descent``
(paths, contours, comparisons, animation), ``training`` (loss curves, decision boundaries) and
``diagnostics`` (gradient norms, heatmaps, saturation, neuron maps) — and are re-exported here on
first use, so ``from gradsight.plots import plot_activation`` works without importing the others.
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import InvalidValueError
from ...io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_SUBMODULES = ("calculus", "descent", "training", "diagnostics")


#: the formats :func:`save_figure` writes, by file suffix
FIGURE_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")


def check_figure_path(path: str | os.PathLike[str], option: str = "figure") -> str:
    """The format of a figure path (its suffix), or a one-line error naming ``option``.

    Commands call it before any work, so that a wrong path fails at once.

    >>> check_figure_path("loss.PNG")
    'png'
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise InvalidValueError(
            f"cannot save the {option} as {str(path)!r}: use a .png, .svg, .pdf or .jpg path"
        )
    return suffix


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save ``fig`` to ``path`` atomically (format from the suffix: .png, .svg, .pdf)."""
    suffix = check_figure_path(path)
    # A figure with a layout engine (constrained layout) is already tight; "tight" bounding
    # boxes would draw it a second time.
    bbox = None if fig.get_layout_engine() is not None else "tight"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches=bbox, format=suffix)
    return Path(path)


def _exported() -> list[str]:
    """The names each submodule exports (its ``__all__``), imported to read them."""
    names: list[str] = []
    for sub in _SUBMODULES:
        try:
            module = import_module(f".{sub}", __name__)
        except ModuleNotFoundError as error:  # a submodule not written yet
            if error.name == f"{__name__}.{sub}":
                continue
            raise
        names.extend(getattr(module, "__all__", ()))
    return names


def __dir__() -> list[str]:
    """The module's own names and every plot function of the submodules, so that tab
    completion (``dir(gradsight.plots)``) lists what the lazy ``__getattr__`` can return."""
    return sorted({*globals(), *_exported()})


def __getattr__(name: str) -> Any:
    for sub in _SUBMODULES:
        try:
            module = import_module(f".{sub}", __name__)
        except ModuleNotFoundError as error:  # a submodule not written yet
            if error.name == f"{__name__}.{sub}":
                continue
            raise
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
