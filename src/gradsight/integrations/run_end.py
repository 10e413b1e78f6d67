"""The end of a watched run, as both trainer callbacks close it: the diagnosis of what was
recorded, the findings printed, the HTML report written (by the main process only — the
callbacks decide which process that is)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..diagnostics.verdict import diagnose
from ..present.console import print_findings
from ..present.report import history_report, write_html

__all__ = ["judge", "conclude"]


def judge(history: Any) -> Any:
    """``diagnose(history)``, or None when nothing was recorded."""
    if not history:
        return None
    with np.errstate(all="ignore"):  # NaN readings are a finding, not a warning
        return diagnose(history)


def conclude(history: Any, findings: Any, heading: str, show: bool,
             report: str | os.PathLike[str] | None, title: str) -> str | None:
    """Print the findings under ``heading`` (``show``) and write the report to ``report``
    when something was recorded; the report's path, or None."""
    if show:
        print_findings(findings, heading, empty="nothing was recorded")
    if report is None or not history:
        return None
    return str(write_html(history_report(history, title, findings), report))
