"""``gradsight tour``: the whole story of the articles, run and explained on one page.

Six sections, each computed with the library's own tested functions and written to
``DIR/json/<id>.json`` and ``DIR/figures/*.png``, then drawn into one self-contained
``DIR/index.html``. The page is built in a hidden folder beside DIR and moved into place at
the end, so an interrupted tour (Ctrl-C) leaves DIR as it was and nothing else behind:

1. ``sigmoid``   — σ and σ′ = σ(1−σ), its two derivations, the other activations' derivatives;
2. ``numeric``   — why the forward difference with h = 1e-13 fails; the step-size study;
3. ``descent``   — gradient descent on y = x² − 4x + 6 from x = 8 with η = 0.1, and the rates;
4. ``neuron``    — one sigmoid neuron: the chain rule with numbers, then its training curve;
5. ``vanishing`` — Nielsen's protocol on digits; sigmoid versus ReLU, leaky ReLU, He/Xavier;
6. ``neurons``   — neuron states of a trained network, and the doctor's before/after table.

>>> [s for s in SECTION_IDS]
['sigmoid', 'numeric', 'descent', 'neuron', 'vanishing', 'neurons']
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from ...errors import InvalidValueError, OutputError, UnknownNameError
from ...io import atomic_write_text, dumps
from ._base import FigureFile, Section, Table, TourContext
from ._page import render_page

__all__ = ["SECTION_IDS", "FigureFile", "Section", "Table", "TourResult", "run_tour"]

# section id → module of this package whose ``build(ctx)`` makes it (in page order)
_BUILDERS = {
    "sigmoid": "sigmoid",
    "numeric": "numeric",
    "descent": "descent",
    "neuron": "neuron",
    "vanishing": "vanishing",
    "neurons": "neurons",
}
SECTION_IDS = list(_BUILDERS)


@dataclass
class TourResult:
    """What :func:`run_tour` made: the sections (with their numbers) and the files."""

    out_dir: Path
    index_path: Path
    sections: list[Section]
    quick: bool
    seconds: float
    files: list[Path] = field(default_factory=list)

    def section(self, section_id: str) -> Section:
        """The section with id ``section_id``."""
        for section in self.sections:
            if section.id == section_id:
                return section
        raise UnknownNameError("tour section", section_id, [s.id for s in self.sections])

    def to_dict(self) -> dict[str, Any]:
        """The ``gradsight tour --json`` document."""
        return {
            "out_dir": str(self.out_dir), "index": str(self.index_path), "quick": self.quick,
            "seconds": round(self.seconds, 3),
            "sections": [s.summary() for s in self.sections],
        }

    def _repr_html_(self) -> str:
        from markupsafe import escape

        rows = "".join(
            f"<tr><td>{i}</td><td>{escape(s.title)}</td><td>{escape(s.headline)}</td></tr>"
            for i, s in enumerate(self.sections, 1)
        )
        return (
            f"<p>gradsight tour ({'quick' if self.quick else 'full'}, {self.seconds:.1f} s): "
            f"<code>{escape(str(self.index_path))}</code></p>"
            f"<table><tr><th>#</th><th>section</th><th>headline</th></tr>{rows}</table>"
        )


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """The output folder as a Path, checked before any work: not an existing file, and its
    parent folder (created if needed) writable — the tour is built beside it."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise InvalidValueError(
            f"--out must be a folder, but {str(path)!r} is an existing file; "
            "choose a new or existing folder"
        )
    parent = path.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidValueError(
            f"cannot create the output folder {str(path)!r}: {error.strerror or error}"
        ) from None
    for folder in (parent, path) if path.is_dir() else (parent,):
        if not os.access(folder, os.W_OK):
            raise InvalidValueError(f"the output folder {str(folder)!r} is not writable")
    return path


#: what a tour writes into its folder; a folder holding only these is the tour's own
_TOUR_ENTRIES = {"index.html", "figures", "json"}


def _tour_only(path: Path) -> bool:
    """Whether the existing folder ``path`` holds nothing but a tour's files."""
    return all(entry.name in _TOUR_ENTRIES or entry.name.startswith(".")
               for entry in path.iterdir())


@contextlib.contextmanager
def building_folder(target: Path) -> Iterator[Path]:
    """Yield a new hidden folder beside ``target`` to build the tour in; on success move it
    into place, on any exit by error or interrupt remove it and leave ``target`` untouched.

    The move: a missing target is the renamed build folder; a target that holds only a
    tour's files (``index.html``, ``figures/``, ``json/``) is swapped for it whole (renamed
    aside, then deleted); a folder holding other files too keeps them — only the tour's
    three entries are replaced, ``index.html`` last."""
    parent = target.absolute().parent
    try:
        build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".building",
                                      dir=parent))
    except OSError as error:
        raise OutputError(f"cannot write the tour beside {str(target)!r}: "
                          f"{error.strerror or error}") from None
    try:
        (build / "figures").mkdir()
        (build / "json").mkdir()
        yield build
        os.chmod(build, 0o777 & ~_umask())  # mkdtemp makes it 0700
        _move_into_place(build, target)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(build: Path, target: Path) -> None:
    try:
        if not target.exists():
            os.replace(build, target)
        elif _tour_only(target) and not target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                        dir=target.absolute().parent))
            os.replace(target, old / target.name)
            os.replace(build, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            for name in ("figures", "json"):
                if (target / name).is_dir() and not (target / name).is_symlink():
                    aside = build / f".{name}.old"
                    os.replace(target / name, aside)
                os.replace(build / name, target / name)
            os.replace(build / "index.html", target / "index.html")
    except OSError as error:
        raise OutputError(f"cannot move the tour into {str(target)!r}: "
                          f"{error.strerror or error}") from None


def tour_argv(out_dir: Path, quick: bool) -> list[str]:
    """The ``gradsight tour`` arguments that remake this page."""
    return ["tour", "--out", str(out_dir), *(["--quick"] if quick else [])]


def run_tour(
    out_dir: str | os.PathLike[str] = "tour",
    quick: bool = False,
    progress: bool = True,
    sections: Iterable[str] | None = None,
    seed: int = 0,
) -> TourResult:
    """Run the tour's sections and write ``out_dir/index.html``, figures and JSON.

    ``quick`` uses smaller sample counts, epochs and random seeds (the page says so); ``progress``
    draws a rich progress bar on stderr; ``sections`` picks a subset of :data:`SECTION_IDS`
    (in page order). Every number shown comes from gradsight's own functions, run now.
    """
    wanted = SECTION_IDS if sections is None else list(sections)
    for section_id in wanted:
        if section_id not in _BUILDERS:
            raise UnknownNameError("tour section", section_id, SECTION_IDS)
    wanted = [s for s in SECTION_IDS if s in wanted]
    path = check_out_dir(out_dir)
    started = time.perf_counter()
    built: list[Section] = []
    with building_folder(path) as build:
        ctx = TourContext(out_dir=build, quick=quick, seed=seed)
        with _Progress(progress, len(wanted)) as bar:
            for section_id in wanted:
                bar.describe(section_id)
                built.append(_build_section(ctx, section_id))
                bar.advance()
        seconds = time.perf_counter() - started
        html = render_page(built, build, quick=quick, seconds=seconds,
                           tour_command=shlex.join(["gradsight", *tour_argv(path, quick)]))
        atomic_write_text(build / "index.html", html)
    index = path / "index.html"
    files = [index, *(path / s.json_path for s in built),
             *(path / f.path for s in built for f in s.figures)]
    return TourResult(out_dir=path, index_path=index, sections=built, quick=quick,
                      seconds=seconds, files=files)


def _build_section(ctx: TourContext, section_id: str) -> Section:
    """Run one section's builder and write its JSON (``json/<id>.json``)."""
    started = time.perf_counter()
    section: Section = import_module(f".{_BUILDERS[section_id]}", __name__).build(ctx)
    section.seconds = time.perf_counter() - started
    section.json_path = f"json/{section.id}.json"
    payload = {"id": section.id, "title": section.title, "headline": section.headline,
               "quick": ctx.quick, "numbers": section.numbers, "data": section.data,
               "figures": [f.to_dict() for f in section.figures],
               "tables": [t.to_dict() for t in section.tables],
               "commands": section.command_lines}
    atomic_write_text(ctx.out_dir / section.json_path, dumps(payload) + "\n")
    return section


class _Progress:
    """A rich progress bar on stderr over the sections (nothing when ``enabled`` is false)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("tour: {task.description:<10}"), BarColumn(),
                TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("start", total=self.total)
        return self

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description="done")
            self._bar.__exit__(*exc)
