"""Reports: one self-contained HTML page (and a JSON twin) that puts the findings first and the
evidence after them — per-layer gradient numbers, training curves, figures, tables.

A report is a list of generic :class:`Section` s (heading, paragraphs, figures, tables, a code
block with the command that reproduces it), so the diagnostics report, the vanishing-gradient
lab and the tour all use the same machinery. Figures are embedded as ``data:`` URIs (PNG, or
SVG text), so the HTML file needs nothing else; the template is rendered by Jinja2 with
autoescaping, so text from a user or a model's layer names can never inject markup.

>>> report = build_report("demo", sections=[("Why", "σ′ ≤ 0.25 in every layer.", None)])
>>> "σ′ ≤ 0.25" in render_html(report)
True
"""

from __future__ import annotations

import base64
import functools
import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment
from markupsafe import Markup

from ..diagnostics.history import history_records
from ..diagnostics.neurons import classify_neurons, neuron_derivative_map
from ..diagnostics.verdict import diagnose
from ..errors import InvalidValueError
from ..io import atomic_write_text, dumps, jsonable
from .plots.diagnostics import (
    plot_activation_distributions,
    plot_layer_norms,
    plot_neuron_map,
    plot_norm_heatmap,
    plot_saturation,
)

__all__ = [
    "EmbeddedFigure", "Table", "Section", "Report", "build_report", "embed_figure",
    "hidden_units_section", "history_report", "layer_summary", "render_html", "write_html",
    "write_json",
]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class EmbeddedFigure:
    """A figure already rendered to bytes: ``mime`` is ``image/png`` or ``image/svg+xml``."""

    name: str
    data: bytes = field(repr=False)
    mime: str = "image/png"
    caption: str = ""

    @property
    def data_uri(self) -> str:
        """``data:<mime>;base64,...`` — what the ``<img src>`` of the page holds."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass
class Table:
    """Rows of a table (dicts with the same keys); ``columns`` fixes the order shown."""

    rows: list[dict[str, Any]]
    title: str = ""
    columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rows = [dict(row) for row in self.rows]
        if not self.columns:
            seen: dict[str, None] = {}
            for row in self.rows:
                seen.update(dict.fromkeys(row))
            self.columns = list(seen)


@dataclass
class Section:
    """One block of the page: a heading, paragraphs, figures, tables and a code block.

    ``html`` is trusted markup (a :class:`markupsafe.Markup`) shown as is; plain strings in
    ``paragraphs`` are escaped. ``code`` is typically the command that reproduces the section.
    """

    heading: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[EmbeddedFigure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    code: str | None = None
    html: Markup | None = None

    def to_dict(self) -> dict[str, Any]:
        """The section without the figure bytes (figures by name and caption)."""
        return {
            "heading": self.heading,
            "paragraphs": list(self.paragraphs),
            "figures": [{"name": f.name, "caption": f.caption, "mime": f.mime}
                        for f in self.figures],
            "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows}
                       for t in self.tables],
            "code": self.code,
        }


@dataclass
class Report:
    """A titled list of findings and sections; render with :func:`write_html`/:func:`write_json`."""

    title: str
    findings: list[dict[str, Any]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    findings_given: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: findings, sections (figures by name), data."""
        return jsonable({
            "title": self.title,
            "findings": self.findings,
            "sections": [s.to_dict() for s in self.sections],
            "data": self.data,
        })

    def _repr_html_(self) -> str:
        return render_html(self, standalone=False)


def embed_figure(figure: Any, name: str = "figure", caption: str = "",
                 dpi: int = 100) -> EmbeddedFigure:
    """Render a matplotlib ``Figure`` to PNG (or take PNG bytes / SVG text as they are)."""
    if isinstance(figure, EmbeddedFigure):
        return figure
    if isinstance(figure, (bytes, bytearray)):
        if not bytes(figure).startswith(_PNG_MAGIC):
            raise InvalidValueError(f"figure {name!r}: bytes are not a PNG image")
        return EmbeddedFigure(name, bytes(figure), "image/png", caption)
    if isinstance(figure, str):
        if "<svg" not in figure[:2000]:
            raise InvalidValueError(f"figure {name!r}: text is not an SVG image")
        return EmbeddedFigure(name, figure.encode("utf-8"), "image/svg+xml", caption)
    if not hasattr(figure, "savefig"):
        raise InvalidValueError(
            f"figure {name!r} must be a matplotlib Figure, PNG bytes or SVG text, "
            f"got {type(figure).__name__}"
        )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return EmbeddedFigure(name, buffer.getvalue(), "image/png", caption)


def _as_figures(value: Any, name: str) -> list[EmbeddedFigure]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [embed_figure(f, str(k)) for k, f in value.items()]
    if isinstance(value, (list, tuple)):
        return [embed_figure(f, f"{name}-{i}") for i, f in enumerate(value)]
    return [embed_figure(value, name)]


def _as_section(item: Any, position: int) -> Section:
    """Accept a Section, a dict of Section fields, or a tuple (heading, html_or_text, figure)."""
    if isinstance(item, Section):
        return item
    if isinstance(item, Mapping):
        known = {"heading", "paragraphs", "figures", "tables", "code", "html", "text"}
        unknown = set(item) - known
        if unknown or "heading" not in item:
            raise InvalidValueError(
                f"section {position} needs a 'heading' and only keys {sorted(known)}, "
                f"got {sorted(item)}"
            )
        section = _as_section((item["heading"], item.get("text"), item.get("figures")),
                              position)
        section.paragraphs += list(item.get("paragraphs") or [])
        section.tables = [t if isinstance(t, Table) else Table(list(t))
                          for t in item.get("tables") or []]
        section.code = item.get("code")
        if item.get("html") is not None:
            section.html = Markup(item["html"])
        return section
    if not isinstance(item, (tuple, list)) or not 1 <= len(item) <= 3:
        raise InvalidValueError(
            f"section {position} must be a Section, a dict or (heading, text, figure), "
            f"got {type(item).__name__}"
        )
    heading, body, figure = (*item, None, None)[:3]
    section = Section(str(heading), figures=_as_figures(figure, f"section{position}"))
    if isinstance(body, Markup):
        section.html = body
    elif body:
        section.paragraphs = [p.strip() for p in str(body).split("\n\n") if p.strip()]
    return section


def _finding_dict(finding: Any) -> dict[str, Any]:
    """A Finding (object with attributes, ``to_dict``, or a dict) as a plain dict."""
    if isinstance(finding, Mapping):
        raw = dict(finding)
    elif hasattr(finding, "to_dict"):
        raw = dict(finding.to_dict())
    else:
        keys = ("severity", "title", "layers", "evidence", "explanation", "fixes", "kind")
        raw = {k: getattr(finding, k) for k in keys if hasattr(finding, k)}
    fixes = raw.get("fixes") or []
    raw["fixes"] = [f if isinstance(f, str) else str(_fix_text(f)) for f in fixes]
    raw["layers"] = [str(x) for x in raw.get("layers") or []]
    raw["evidence"] = dict(raw.get("evidence") or {})
    raw.setdefault("severity", "info")
    raw.setdefault("title", "finding")
    raw.setdefault("explanation", "")
    return raw


def _fix_text(fix: Any) -> str:
    if isinstance(fix, Mapping):
        return str(fix.get("text") or fix.get("fix") or fix.get("change") or dict(fix))
    for attribute in ("text", "description", "change"):
        if hasattr(fix, attribute):
            return str(getattr(fix, attribute))
    return str(fix)


def layer_summary(history: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per layer of a LayerStats history (a Monitor, LayerStats or their dicts):
    first, last, min and max recorded gradient norm ‖∂C/∂W‖ (param layers), last
    saturated/dead fraction (activation layers), the total count of non-finite values, and
    how many records the layer has.

    Non-finite norms count in ``nonfinite_norms`` and are left out of min/max (shown as they
    are in ``first``/``last``), never silently dropped.
    """
    rows: dict[str, dict[str, Any]] = {}
    for record in history_records(history):
        row = rows.setdefault(record["layer"], {
            "layer": record["layer"], "kind": record["kind"], "records": 0,
            "first_grad_W_norm": None,
            "last_grad_W_norm": None, "min_grad_W_norm": None, "max_grad_W_norm": None,
            "last_saturated_fraction": None, "last_dead_fraction": None, "nonfinite": 0,
            "nonfinite_norms": 0,
        })
        row["records"] += 1
        row["nonfinite"] += int(record["nonfinite"] or 0)
        norm = record["grad_W_norm"]
        if norm is not None:
            if row["first_grad_W_norm"] is None:
                row["first_grad_W_norm"] = norm
            row["last_grad_W_norm"] = norm
            if math.isfinite(norm):
                row["min_grad_W_norm"] = min(norm, row["min_grad_W_norm"] or math.inf)
                row["max_grad_W_norm"] = max(norm, row["max_grad_W_norm"] or -math.inf)
            else:
                row["nonfinite_norms"] += 1
        if record["saturated_fraction"] is not None:
            row["last_saturated_fraction"] = record["saturated_fraction"]
        if record["dead_fraction"] is not None:
            row["last_dead_fraction"] = record["dead_fraction"]
        for name in _OVER_TIME_AND_HEADS:  # recurrent layers' and attention heads' records
            if record.get(name) is not None:
                row[f"last_{name}"] = record[name]
    return list(rows.values())


_OVER_TIME_AND_HEADS = ("time_grad_ratio", "attention_entropy", "attention_entropy_uniform")


def _layer_section(history: list[dict[str, Any]], dpi: int) -> Section:
    """The figures and summary of a history given as :func:`history_records` (dicts)."""

    figures = [
        embed_figure(plot_layer_norms(history), "layer_norms",
                     "‖∂C/∂W‖ per layer over training (log axis; non-finite values marked)", dpi),
        embed_figure(plot_norm_heatmap(history), "norm_heatmap",
                     "log10 ‖∂C/∂W‖, layer × step", dpi),
    ]
    if any(r["saturated_fraction"] is not None or r["dead_fraction"] is not None
           for r in history):
        figures.append(embed_figure(plot_saturation(history), "saturation",
                                    "saturated / dead fractions over training", dpi))
    return Section(
        "Gradient flow per layer",
        ["Per-layer statistics recorded during training: ‖∂C/∂W‖ is how fast a layer's "
         "weights can move; a first hidden layer whose gradient is orders of magnitude below "
         "the last one's learns that much more slowly (the vanishing gradient)."],
        figures, _summary_tables(layer_summary(history)),
    )


def hidden_units_section(model: Any, X: Any, y: Any = None, loss: Any = None,
                         samples: int = 200, dpi: int = 100,
                         counts: dict[str, dict[str, int]] | None = None) -> Section:
    """The hidden units of an engine model on (up to ``samples`` rows of) X: the units ×
    samples map of local derivatives f′(z) (the "learning ability" of the article on the
    derivative in training), the distribution of every layer's activations and, with ``y``,
    each layer's count of units per state
    (:func:`~gradsight.diagnostics.classify_neurons`: dead, saturated-wrong/right, learning;
    ``counts``, its ``counts()`` where the caller has already classified the units)."""
    rows = np.asarray(X)[:samples]
    order = np.argsort(np.asarray(y)[:samples], kind="stable") if y is not None else None
    probe = rows if order is None or np.asarray(y).ndim != 1 else rows[order]
    figures = [
        embed_figure(plot_neuron_map(neuron_derivative_map(model, probe)), "neuron_map",
                     "f′(z) per hidden unit (rows) and sample (columns, sorted by class); "
                     "dark = the unit cannot learn from that sample", dpi),
        embed_figure(plot_activation_distributions(model, rows), "activation_distributions",
                     "distribution of each layer's activations a", dpi)]
    tables = []
    if counts is None and y is not None:
        counts = classify_neurons(model, X, y, loss=loss).counts()
    if counts is not None:
        tables.append(Table([{"layer": layer, **per_state}
                             for layer, per_state in counts.items()],
                            "hidden units per state (training samples)"))
    return Section("Hidden units", [f"Local derivatives and activations on {len(rows)} "
                                    "training samples."], figures, tables)


def _summary_tables(rows: list[dict[str, Any]]) -> list[Table]:
    """The summary split by kind: gradient columns for param layers, fractions for the rest."""
    grads = ["layer", "records", "first_grad_W_norm", "last_grad_W_norm", "min_grad_W_norm",
             "max_grad_W_norm", "nonfinite", "nonfinite_norms"]
    fractions = ["layer", "records", "last_saturated_fraction", "last_dead_fraction",
                 "nonfinite"]
    own = ("param", "sequence", "attention")
    tables = [Table([r for r in rows if r["kind"] == "param"], "layers with weights", grads),
              Table([r for r in rows if r["kind"] not in own], "activation layers",
                    fractions),
              Table([r for r in rows if r["kind"] == "sequence"],
                    "recurrent layers: ‖∂C/∂x_first‖/‖∂C/∂x_last‖ (gradient over time)",
                    ["layer", "records", "last_time_grad_ratio"]),
              Table([r for r in rows if r["kind"] == "attention"],
                    "attention heads: entropy (nats) against uniform attention (ln T)",
                    ["layer", "records", "last_attention_entropy",
                     "last_attention_entropy_uniform"])]
    return [t for t in tables if t.rows]


def _train_rows(train_history: Any) -> list[dict[str, Any]]:
    if hasattr(train_history, "epochs"):
        return [dict(e) for e in train_history.epochs]
    if isinstance(train_history, Mapping) and "epochs" in train_history:
        return [dict(e) for e in train_history["epochs"]]
    return [dict(e) for e in train_history]


def build_report(title: str, findings: Iterable[Any] | None = None,
                 layer_history: Any = None, train_history: Any = None,
                 figures: Mapping[str, Any] | None = None, sections: Iterable[Any] | None = None,
                 data: Mapping[str, Any] | None = None, dpi: int = 100) -> Report:
    """Assemble a :class:`Report`: findings first, then the given sections, then the evidence —
    per-layer gradient figures and summary (``layer_history``: a Monitor or LayerStats list),
    the epochs table (from a ``train_history``: History or list of epoch dicts), the extra
    ``figures`` (name → Figure) and ``data`` (kept in the JSON, shown folded in the HTML)."""
    report = Report(str(title), findings_given=findings is not None)
    report.findings = [_finding_dict(f) for f in findings or []]
    report.sections = [_as_section(s, i) for i, s in enumerate(sections or [])]
    if layer_history is not None:
        records = history_records(layer_history)  # a Monitor, LayerStats or their dicts
        if records:
            report.sections.append(_layer_section(records, dpi))
            report.data["layer_history"] = records
    if train_history is not None:
        rows = _train_rows(train_history)
        report.sections.append(Section("Training", tables=[Table(rows, "per epoch")]))
        report.data["train_history"] = rows
    if figures:
        report.sections.append(Section("Figures", figures=_as_figures(dict(figures), "fig")))
    report.data.update(dict(data or {}))
    return report


def history_report(history: Any, title: str = "gradsight report",
                   findings: Iterable[Any] | None = None, dpi: int = 100) -> Report:
    """The report of a recorded run: its diagnosis (``diagnose(history)`` unless ``findings``
    are given) and the per-layer evidence — what the training callbacks write at the end of a
    run and ``gradsight report HISTORY`` writes from a saved history."""
    if findings is None:
        findings = diagnose(history)
    return build_report(title, findings=findings, layer_history=history, dpi=dpi)


def _fmt(value: Any) -> str:
    """Numbers as 4 significant digits; None as an em dash; non-finite spelled out."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


@functools.lru_cache(maxsize=1)
def _template() -> str:
    """The page: ``templates/report.html.j2``, shipped in the package. Rendered autoescaped:
    every {{ value }} is escaped unless it is Markup (Section.html)."""
    page = resources.files("gradsight.present").joinpath("templates").joinpath("report.html.j2")
    return page.read_text(encoding="utf-8")


def render_html(report: Report, standalone: bool = True) -> str:
    """The page as HTML text (``standalone=False``: a fragment for Jupyter)."""
    environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters["fmt"] = _fmt
    environment.globals["json_text"] = lambda value: dumps(value)
    template = environment.from_string(_template())
    # The raw per-step records can be thousands of rows: they stay in the JSON report only.
    shown = {k: v for k, v in report.data.items() if k != "layer_history"}
    return template.render(report=report, standalone=standalone, shown_data=shown)


def write_html(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write the self-contained HTML page atomically; returns the path."""
    return atomic_write_text(path, render_html(report))


def write_json(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write :meth:`Report.to_dict` as JSON atomically (non-finite numbers as strings)."""
    return atomic_write_text(path, dumps(report.to_dict()) + "\n")
