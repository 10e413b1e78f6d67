"""CLI commands ``gradsight diagnose`` and ``gradsight report`` (see gradsight.cli): the
diagnosis and the HTML report of a saved history — a run recorded elsewhere (a cluster, a
notebook, a Lightning job) and saved with ``save_history`` / ``history.save(path)``.

Heavy libraries (NumPy, pyarrow, matplotlib) are imported inside the functions so that
``gradsight --help`` stays fast; each such import says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidValueError
from ._common import MKDIR_HELP, check_output_folder, command, print_json, wrote

HistoryArg = Annotated[str, typer.Argument(
    metavar="HISTORY", help="A saved history: .parquet or .jsonl (save_history), or a .json / "
    ".csv export (history_to_json, history_to_csv: the records only, without the run's "
    "set-up, loss curve and coverage).", show_default=False)]


def _load(path: str) -> Any:
    """The history at ``path`` (one-line error for a missing, corrupt or foreign file)."""
    from ..diagnostics.history import load_history  # late: NumPy, not needed for --help

    return load_history(path)


def _diagnose(history: Any) -> Any:
    """:func:`gradsight.diagnose` of a loaded history, as on the machine it was recorded on."""
    import numpy as np

    from ..diagnostics import diagnose  # late: NumPy, not needed for --help

    with np.errstate(all="ignore"):  # a diverged run: NaN is a finding, not a warning
        return diagnose(history)


def register(app: typer.Typer) -> None:
    """Add ``diagnose`` and ``report`` to ``app``."""

    @command(app, "diagnose")
    def diagnose(
        history: HistoryArg,
        json_out: bool = typer.Option(False, "--json", help="print one JSON document"),
    ) -> None:
        """Diagnose a saved history: the findings gradsight.diagnose gives for it, printed as
        train prints its diagnosis. Findings do not change the exit code (0, as train); a
        missing, corrupt or foreign file is a one-line error with exit code 2."""
        records = _load(history)
        findings = _diagnose(records)
        if json_out:
            print_json({"history": history, "records": len(records),
                        "diagnosis": findings.to_dict()})
            return
        typer.echo(f"{history}: {records!r}")
        from ..present.console import print_findings  # late: rich, not needed for --help

        print_findings(findings)

    @command(app, "report")
    def report(
        history: HistoryArg,
        out: str = typer.Option(..., "--out", help="the HTML page to write (.html)",
                                show_default=False),
        title: str | None = typer.Option(None, "--title",
                                         help="the page's title (default: the history's "
                                              "file name)"),
        mkdir: bool = typer.Option(False, "--mkdir", help=MKDIR_HELP),
    ) -> None:
        """Write the self-contained HTML report of a saved history: its diagnosis first, then
        the per-layer evidence (gradient norms, update ratios, activations over the steps)."""
        if Path(out).suffix.lower() not in (".html", ".htm"):
            raise InvalidValueError(f"--out must be an .html path, got {out!r}")
        check_output_folder(out, mkdir)
        records = _load(history)
        findings = _diagnose(records)
        from ..present.report import (  # late: matplotlib, not needed for --help
            history_report,
            write_html,
        )

        page = history_report(records, title or f"gradsight report — {Path(history).name}",
                              findings=findings)
        wrote(write_html(page, out))
