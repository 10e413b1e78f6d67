"""Findings on a terminal: the one way gradsight prints a diagnosis — ``gradsight train``,
``gradsight diagnose`` and the Lightning and Hugging Face callbacks at the end of a run.

A heading, then one line per finding (severity, title) and, for a warning or a critical
finding, its first fix. User text (layer names) is escaped, so ``[b]`` in a name prints as it
is; a title is one line, never cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["print_findings"]

_COLOUR = {"critical": "bold red", "warning": "yellow", "info": "blue"}


def print_findings(findings: Iterable[Any] | None, heading: str = "Diagnosis",
                   empty: str = "no problem found", console: Any = None) -> None:
    """Print ``findings`` (Finding objects or their dicts) under ``heading``; ``findings=None``
    prints ``empty`` (nothing to judge), an empty list "no problem found"."""
    from rich.console import Console  # late: rich only when something is printed
    from rich.markup import escape

    console = console or Console(soft_wrap=True)
    console.print(f"[bold]{escape(heading)}[/]", highlight=False)
    if findings is None:
        console.print(f"  {escape(empty)}", highlight=False)
        return
    items = [f if isinstance(f, Mapping) else f.to_dict() for f in findings]
    if not items:
        console.print("  no problem found", highlight=False)
        return
    for finding in items:
        severity = finding["severity"]
        console.print(f"  [{_COLOUR.get(severity, 'bold')}]{escape(severity):<8}[/] "
                      f"{escape(finding['title'])}", highlight=False)
        if severity in ("critical", "warning") and finding["fixes"]:
            console.print(f"           fix: {escape(finding['fixes'][0])}", highlight=False)
