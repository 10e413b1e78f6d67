"""The pieces a tour section is made of, and the context every section builder receives.

A section is *data*: a heading, a few paragraphs, figures (saved PNG files), tables of
numbers, the JSON of the step and the ``gradsight`` commands that reproduce it. Builders only
compute (through the library's tested functions) and fill these records; the page template
(:mod:`._page`) only draws them.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...engine.data import load
from ..plots import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Table:
    """A table of numbers: ``rows`` hold already-formatted cells (strings)."""

    caption: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"caption": self.caption, "columns": self.columns, "rows": self.rows,
                "note": self.note}


@dataclass
class FigureFile:
    """A figure saved as a PNG file under ``DIR/figures``; ``path`` is relative to DIR."""

    path: str
    caption: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "caption": self.caption}


@dataclass
class Section:
    """One step of the tour.

    ``paragraphs`` are plain text; a span between backticks is shown as code.
    ``numbers`` are the headline values (also in the console summary and ``--json``);
    ``data`` is the full JSON of the step (written to ``DIR/json/<id>.json``);
    ``commands`` are argument lists of ``gradsight`` commands that reproduce the step.
    """

    id: str
    title: str
    headline: str = ""
    paragraphs: list[str] = field(default_factory=list)
    figures: list[FigureFile] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    json_path: str = ""
    seconds: float = 0.0

    @property
    def command_lines(self) -> list[str]:
        """The commands as shell lines (quoted so they can be pasted)."""
        return [shlex.join(["gradsight", *argv]) for argv in self.commands]

    def summary(self) -> dict[str, Any]:
        """What ``gradsight tour --json`` prints for this section."""
        return {
            "id": self.id, "title": self.title, "headline": self.headline,
            "numbers": self.numbers, "figures": [f.path for f in self.figures],
            "json": self.json_path, "commands": self.command_lines,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class TourContext:
    """What a section builder needs: where to write, how big the runs are, a figure saver."""

    out_dir: Path
    quick: bool = False
    seed: int = 0
    _datasets: dict[str, Any] = field(default_factory=dict, repr=False)

    def dataset(self, name: str) -> Any:
        """``gradsight.data.load(name)``, loaded once per tour (sections share it)."""
        if name not in self._datasets:
            self._datasets[name] = load(name)
        return self._datasets[name]

    @property
    def dpi(self) -> int:
        """Figure resolution: a little lower in quick mode (drawing is most of its time)."""
        return 80 if self.quick else 96

    @property
    def figures_dir(self) -> Path:
        return self.out_dir / "figures"

    def size(self, full: Any, quick: Any) -> Any:
        """``quick`` in quick mode, else ``full`` (sample counts, epochs, random seeds)."""
        return quick if self.quick else full

    def figure(self, fig: Figure, name: str, caption: str) -> FigureFile:
        """Save ``fig`` atomically as ``figures/<name>.png`` and close it."""
        path = self.figures_dir / f"{name}.png"
        save_figure(fig, path, dpi=self.dpi)
        _close(fig)
        return FigureFile(path=path.relative_to(self.out_dir).as_posix(), caption=caption)


def _close(fig: Figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


SectionBuilder = Callable[[TourContext], Section]


# ---- formatting (display only: the numbers themselves come from the library) ------------
def fmt(value: Any, digits: int = 4) -> str:
    """A number as short text: ``0.25``, ``1.2e-05``, ``nan``; other values via ``str``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "−inf"
    return f"{number:.{digits}g}"


def fixed(value: Any, decimals: int = 2) -> str:
    """A number with a fixed count of decimals, as the articles print iterates (``5.84``)."""
    if value is None:
        return "—"
    number = float(value)
    if not math.isfinite(number):
        return fmt(number)
    return f"{number:.{decimals}f}"
