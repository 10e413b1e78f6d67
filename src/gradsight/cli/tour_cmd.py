"""``gradsight tour``: run the articles' whole story and write one self-contained page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ._common import MKDIR_HELP, check_output_folder, command, print_json, show_progress, wrote

if TYPE_CHECKING:
    from ..present.tour import TourResult


def register(app: typer.Typer) -> None:
    """Add ``tour`` to ``app``."""

    @command(app, "tour")
    def tour(
        out: str = typer.Option("tour", "--out", help="Folder for index.html, figures/ and "
                                "json/ (created if needed; the folder it is in must exist "
                                "unless --mkdir)."),
        open_page: bool = typer.Option(False, "--open", help="Open the page in a browser."),
        quick: bool = typer.Option(False, "--quick", help="Smaller runs (about half the time); "
                                   "the page says so."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON document "
                                     "(sections, numbers, files) instead of the summary."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        mkdir: bool = typer.Option(False, "--mkdir", help=MKDIR_HELP),
    ) -> None:
        """Run the tour: σ′ = σ(1−σ), numeric derivatives, gradient descent, one neuron's
        chain rule, the vanishing gradient, neuron states and the doctor — into one page."""
        from ..present.tour import run_tour  # late: matplotlib and SymPy, not for --help

        check_output_folder(out, mkdir)  # --out itself may be new, not the folder it is in
        result = run_tour(out, quick=quick, progress=show_progress(quiet))
        wrote(result.index_path.resolve())
        if as_json:
            print_json(result.to_dict())
        else:
            _print_summary(result)
        if open_page:
            _open(result.index_path)


def _print_summary(result: TourResult) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    mode = "quick" if result.quick else "full"
    console.print(f"[bold]gradsight tour[/bold] ({mode}, {result.seconds:.1f} s)")
    for number, section in enumerate(result.sections, 1):
        console.print(f"  {number}. {section.title}: {section.headline}", markup=False)


def _open(path: Path) -> None:
    """Open the page with the default browser; silently nothing where there is none."""
    import webbrowser

    try:
        webbrowser.open(path.resolve().as_uri())
    except webbrowser.Error:
        pass
