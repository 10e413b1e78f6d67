"""Coverage: which of a model's parameters a watched run looked at, and why not the others.

A diagnosis is only as good as what it saw: a third of a model never looked at must not pass
for "no problem found". The PyTorch adapter's ``watcher.coverage`` is a :class:`Coverage`;
:func:`~gradsight.diagnostics.diagnose` puts it in its output (``findings.coverage``) and adds
an info finding when it is under 100% (:func:`coverage_findings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .findings import Finding

__all__ = ["Coverage", "coverage_findings"]


@dataclass
class Coverage:
    """The parameters a run watched, counted by elements (a weight matrix counts n_in·n_out).

    watched, total : parameter elements watched, and in the whole model (each tied tensor
        counted once).
    left_out : parameter name → why it is not watched.
    shared : record name → the other names (modules) that use its weights: a tied weight is
        recorded once, under that record's name.

    >>> c = Coverage(watched=90, total=100, left_out={"prelu.weight": "an activation"})
    >>> c.fraction
    0.9
    """

    watched: int
    total: int
    left_out: dict[str, str] = field(default_factory=dict)
    shared: dict[str, list[str]] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Watched elements / all elements (1.0 for a model without parameters)."""
        return self.watched / self.total if self.total else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "watched": self.watched, "total": self.total,
                "left_out": dict(self.left_out),
                "shared": {k: list(v) for k, v in self.shared.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Coverage:
        return cls(int(data["watched"]), int(data["total"]), dict(data.get("left_out", {})),
                   {k: list(v) for k, v in data.get("shared", {}).items()})

    def __str__(self) -> str:
        text = f"{self.fraction:.1%} of the parameters watched ({self.watched}/{self.total})"
        if self.left_out:
            text += "; not watched: " + ", ".join(
                f"{name} ({reason})" for name, reason in self.left_out.items())
        for name, others in self.shared.items():
            text += f"; {name} is shared with {', '.join(others)} (recorded once)"
        return text


def coverage_findings(coverage: Coverage | None) -> list[Finding]:
    """An info finding when parameters were left out: the numbers the other findings rest on
    do not include them."""
    if coverage is None or not coverage.left_out:
        return []
    names = ", ".join(coverage.left_out)
    explanation = (f"Only {coverage.fraction:.1%} of the model's parameters (by count) were "
                   "watched; the findings say nothing about the others: "
                   + "; ".join(f"{name}: {reason}" for name, reason in coverage.left_out.items())
                   + ".")
    return [Finding("coverage", "info", f"Not watched: {names}", list(coverage.left_out),
                    {"coverage": coverage.fraction, "left_out": dict(coverage.left_out)},
                    explanation, [])]
