"""Findings: what :func:`~gradsight.diagnostics.diagnose` says about a run, and where a
measurement becomes one.

A :class:`Finding` names the layers concerned, shows the numbers it rests on, explains the
mechanism in the articles' notation (δ, z, σ′) and ranks fixes, with the configuration
``changes`` that ``doctor`` can try; :class:`Findings` is the list of them, most severe first;
:class:`Thresholds` holds the limits the rules of :mod:`.rules` judge by. These are the
vocabulary both the rules and :mod:`.verdict` speak, so they live below both.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import InvalidValueError
from ..io import jsonable

__all__ = ["Finding", "Findings", "Thresholds", "SEVERITIES"]

SEVERITIES = ("critical", "warning", "info")


@dataclass
class Finding:
    """One diagnosis.

    code : stable identifier (``"vanishing-gradients"``, ``"dead-units"``, ...).
    severity : ``"critical"`` (training cannot work), ``"warning"`` (it works badly) or
        ``"info"`` (worth knowing).
    title : one line; ``layers`` the layers or units concerned.
    evidence : the numbers the finding rests on (per-layer values as {layer: number}).
    explanation : why it happens, in plain words and the notation of the articles (δ, z, σ′).
    fixes : recommended fixes, best first; ``changes`` the training-configuration changes
        behind them ({"activation": "relu", "init": "he_normal"}) that ``doctor`` can try.
    """

    code: str
    severity: str
    title: str
    layers: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    explanation: str = ""
    fixes: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise InvalidValueError(f"severity must be one of {', '.join(SEVERITIES)}, "
                                    f"got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    def _repr_html_(self) -> str:
        return Findings([self])._repr_html_()

    def __str__(self) -> str:
        lines = [f"[{self.severity}] {self.title}"]
        if self.layers:
            lines.append(f"  layers: {', '.join(self.layers)}")
        lines.append(f"  {self.explanation}")
        lines += [f"  fix {i}: {fix}" for i, fix in enumerate(self.fixes, 1)]
        return "\n".join(lines)


class Findings(list[Finding]):
    """The findings of :func:`diagnose`, most severe first (a list of :class:`Finding`).

    ``coverage`` : which parameters of the model the history watched
    (:class:`~gradsight.diagnostics.coverage.Coverage`), when the history says so (a watched
    PyTorch run); None otherwise.
    """

    coverage: Any = None

    @property
    def codes(self) -> list[str]:
        return [finding.code for finding in self]

    @property
    def worst(self) -> str | None:
        """The highest severity present, or None when nothing was found."""
        present = {finding.severity for finding in self}
        return next((s for s in SEVERITIES if s in present), None)

    def get(self, code: str) -> Finding | None:
        return next((finding for finding in self if finding.code == code), None)

    def fixes(self) -> list[str]:
        """All recommended fixes, most severe finding first, without repeats."""
        seen: dict[str, None] = {}
        for finding in self:
            seen.update(dict.fromkeys(finding.fixes))
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        counts = {s: sum(f.severity == s for f in self) for s in SEVERITIES}
        result = {"worst": self.worst, "counts": counts,
                  "findings": [finding.to_dict() for finding in self]}
        if self.coverage is not None:
            result["coverage"] = jsonable(self.coverage.to_dict())
        return result

    def __str__(self) -> str:
        if not self:
            return "no problem found"
        return "\n\n".join(str(finding) for finding in self)

    def _repr_html_(self) -> str:
        if not self:
            return "<p>gradsight: no problem found in this run.</p>"
        colour = {"critical": "#b00020", "warning": "#b26a00", "info": "#1f5fa8"}
        parts = []
        for f in self:
            fixes = "".join(f"<li>{html.escape(x)}</li>" for x in f.fixes)
            evidence = html.escape(", ".join(f"{k}={_short(v)}" for k, v in f.evidence.items()))
            layers = f" — {html.escape(', '.join(f.layers))}" if f.layers else ""
            parts.append(
                f"<div><b style='color:{colour[f.severity]}'>{f.severity}</b> "
                f"<b>{html.escape(f.title)}</b>{layers}<br>{html.escape(f.explanation)}"
                f"<br><small>evidence: {evidence}</small><ol>{fixes}</ol></div>")
        return "".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


@dataclass(frozen=True)
class Thresholds:
    """Where a measurement becomes a finding (every value is documented by its rule).

    vanishing_warning, vanishing_critical : last/first hidden-layer ‖∂C/∂b‖ ratio.
    exploding_growth : growth of the total gradient norm from the first to the last
        recorded steps; huge_gradient : a gradient norm beyond this is exploding outright;
        gradient_spike : a recorded total gradient norm this many times the median of the
        recorded norms before it is a spike (a transient explosion, seen mid-run).
    update_high, update_critical, update_low : median ‖ΔW‖/‖W‖ of a layer (≈1e-3 is healthy).
    saturated_warning, saturated_critical : share of a hidden layer's values with f′ < 1% of
        max f′. dead_info : share of a ReLU layer's units dead on a batch worth an info (a
        ReLU network normally carries some); dead_warning, dead_critical : shares that make
        a warning / critical; dead_growth : a rise of the dead share by this much from the
        first to the last fifth of training makes a warning too (units keep dying), and so
        does a share ≥ dead_info while the loss does not fall.
    stall_tolerance : the loss's drop over the last half of training, relative to its first
        value, under which it is flat; stall_level : it is "stalled" only while it is still
        above this share of its first value (the drop from the first loss); converged_accuracy
        : or accuracy is below this.
    oscillation_share, oscillation_swing : the loss oscillates when at least this share of
        its consecutive windows rise, each rise by more than ``oscillation_swing`` of the
        first loss.
    initial_loss_factor : a first cross-entropy loss above this many times the chance level
        ln C (C classes) means the output starts confidently wrong.
    attention_collapse : a head whose mean attention entropy stays below this share of the
        uniform ln T has collapsed onto one key.
    saturated_wrong_share : share of hidden units saturated-wrong worth a warning.
    time_vanishing_warning, time_vanishing_critical : a recurrent layer whose gradient at
        the first time step is this many times smaller than at the last (‖∂C/∂x_last‖ /
        ‖∂C/∂x_first‖); time_exploding : this many times larger.
    skipped_run : consecutive recorded steps skipped by the mixed-precision GradScaler after
        its initial scale search that make a warning; skipped_search : skips of that search
        that make one; skipped_share : share of the recorded steps after the search that it
        skipped, beyond which the skips are a warning (two at least).
    """

    vanishing_warning: float = 10.0
    vanishing_critical: float = 100.0
    exploding_growth: float = 100.0
    huge_gradient: float = 1e6
    gradient_spike: float = 100.0
    update_high: float = 0.1
    update_critical: float = 1.0
    update_low: float = 1e-5
    saturated_warning: float = 0.5
    saturated_critical: float = 0.9
    dead_info: float = 0.1
    dead_warning: float = 0.5
    dead_critical: float = 0.9
    dead_growth: float = 0.2
    stall_tolerance: float = 0.01
    stall_level: float = 0.9
    converged_accuracy: float = 0.95
    saturated_wrong_share: float = 0.05
    time_vanishing_warning: float = 1e3
    time_vanishing_critical: float = 1e6
    time_exploding: float = 1e3
    skipped_run: float = 5
    skipped_search: float = 16
    skipped_share: float = 0.01
    oscillation_share: float = 0.2
    oscillation_swing: float = 0.05
    initial_loss_factor: float = 3.0
    attention_collapse: float = 0.05

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise InvalidValueError(f"threshold {f.name} must be a finite number > 0, "
                                        f"got {value!r}")
        for name in ("saturated_warning", "saturated_critical", "dead_info", "dead_warning",
                     "dead_critical", "dead_growth", "stall_tolerance", "stall_level",
                     "converged_accuracy", "saturated_wrong_share", "skipped_share",
                     "oscillation_share", "attention_collapse"):
            if getattr(self, name) > 1:
                raise InvalidValueError(f"threshold {name} is a fraction in (0, 1], "
                                        f"got {getattr(self, name)!r}")
        for low, high in (("vanishing_warning", "vanishing_critical"),
                          ("update_high", "update_critical"),
                          ("saturated_warning", "saturated_critical"),
                          ("dead_info", "dead_warning"), ("dead_warning", "dead_critical")):
            if getattr(self, low) > getattr(self, high):
                raise InvalidValueError(f"threshold {low} ({getattr(self, low)!r}) must not "
                                        f"exceed {high} ({getattr(self, high)!r})")
        if self.vanishing_warning <= 1:
            raise InvalidValueError(f"threshold vanishing_warning must be > 1, got "
                                    f"{self.vanishing_warning!r}")

    def with_overrides(self, **overrides: float) -> Thresholds:
        known = {f.name for f in fields(self)}
        for name in overrides:
            if name not in known:
                raise InvalidValueError(f"unknown threshold {name!r}; known: "
                                        f"{', '.join(sorted(known))}")
        return replace(self, **overrides)
