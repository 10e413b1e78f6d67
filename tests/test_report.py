"""HTML/JSON reports: one self-contained page, findings first, figures as PNG data URIs."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from markupsafe import Markup
from PIL import Image

from gradsight import fit
from gradsight.diagnostics import LayerStats, Monitor, diagnose
from gradsight.engine import mlp
from gradsight.engine.data import digits
from gradsight.errors import InvalidValueError
from gradsight.optim import SGD
from gradsight.present.plots.diagnostics import plot_vanish
from gradsight.present.report import (
    Report,
    Section,
    Table,
    build_report,
    embed_figure,
    layer_summary,
    render_html,
    write_html,
    write_json,
)


class _Page(HTMLParser):
    """Collects <img src>, <h2> headings and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        self._in_h2 = False if tag == "h2" else self._in_h2

    def handle_data(self, data):
        self.text.append(data)
        if self._in_h2:
            self.headings.append(data.strip())


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def run():
    """A 6-layer sigmoid net with N(0, 1) weights: the diagnosis finds vanishing gradients."""
    ds = digits()
    X, y = ds.X[:300], ds.y[:300]
    model = mlp([64] + [30] * 6 + [10], activation="sigmoid", init="normal", seed=0)
    monitor = Monitor(every=5)
    history = fit(model, X, y, loss="cross_entropy", optimizer=SGD(lr=0.1), epochs=2,
                  batch_size=30, callbacks=[monitor], progress=False)
    findings = diagnose(monitor, model=model, data=(X, y), train_history=history)
    assert any(f.code == "vanishing-gradients" for f in findings)
    return monitor, history, findings


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    monitor, history, findings = run
    report = build_report(
        "Why does my network not learn?", findings=findings, layer_history=monitor,
        train_history=history,
        figures={"speeds": plot_vanish({"layers": [
            {"layer": 1, "speed_at_init": 0.01}, {"layer": 2, "speed_at_init": 0.1}]})},
        sections=[("What vanishes", "σ′ ≤ 0.25 per layer.\n\n<script>alert(1)</script>",
                   None)],
        data={"command": "gradsight train --activation sigmoid"},
    )
    path = write_html(report, tmp_path_factory.mktemp("r") / "sub" / "report.html")
    return report, path.read_text(encoding="utf-8")


def test_findings_text_is_on_the_page_before_the_evidence(run, page) -> None:
    _, _, findings = run
    report, text = page
    parsed = _parse(text)
    body = " ".join(parsed.text)
    for finding in findings:
        assert finding.title in body
        assert finding.explanation[:60] in body
        assert finding.fixes[0] in body
    assert parsed.headings[0] == "Findings"
    assert parsed.headings.index("Findings") < parsed.headings.index("Gradient flow per layer")
    assert "Training" in parsed.headings


def test_every_image_is_an_embedded_valid_png(page) -> None:
    _, text = page
    images = _parse(text).images
    assert len(images) == 4  # layer norms, heatmap, saturation, the extra figure
    for src in images:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            assert image.format == "PNG"
    assert "http://" not in text.replace("http://www.w3.org", "") and "<link" not in text


def test_text_is_escaped_not_injected(page) -> None:
    _, text = page
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_layer_table_numbers_come_from_the_history(run, page) -> None:
    monitor, _, _ = run
    rows = {row["layer"]: row for row in layer_summary(monitor.history)}
    norms = [r.grad_W_norm for r in monitor.history if r.layer == "dense0"]
    assert rows["dense0"]["first_grad_W_norm"] == norms[0]
    assert rows["dense0"]["min_grad_W_norm"] == min(norms)
    assert rows["dense0"]["records"] == len(norms)
    _, text = page
    assert f"{min(norms):.4g}" in text


def test_layer_summary_counts_nonfinite_norms() -> None:
    history = [LayerStats("d", 0, s, grad_W_norm=v, nonfinite=int(not np.isfinite(v)))
               for s, v in enumerate([2.0, float("nan"), 0.5])]
    (row,) = layer_summary(history)
    assert row["min_grad_W_norm"] == 0.5 and row["max_grad_W_norm"] == 2.0
    assert row["nonfinite_norms"] == 1 and row["nonfinite"] == 1
    assert row["last_grad_W_norm"] == 0.5


def test_json_twin(run, page, tmp_path) -> None:
    report, _ = page
    path = write_json(report, tmp_path / "report.json")
    document = json.loads(path.read_text())
    assert document["title"] == "Why does my network not learn?"
    assert [f["title"] for f in document["findings"]] == [f.title for f in run[2]]
    assert document["data"]["command"].startswith("gradsight train")
    assert len(document["data"]["layer_history"]) == len(run[0].history)
    headings = [s["heading"] for s in document["sections"]]
    assert headings[0] == "What vanishes"
    assert {"name": "layer_norms"}.items() <= document["sections"][1]["figures"][0].items()


def test_generic_sections_for_the_tour(tmp_path) -> None:
    section = Section(
        "Gradient descent", ["x ← x − η f′(x)"], [embed_figure(_svg(), "curve")],
        [Table([{"step": 0, "x": 8.0}, {"step": 1, "x": 6.8}], "path")],
        code="gradsight descend 'x^2-4x+6' --x0 8 --lr 0.1",
    )
    report = build_report("Tour", sections=[
        section, {"heading": "Raw", "html": "<b>bold</b>", "tables": [[{"a": 1}]]},
        ("Just text", "one\n\ntwo"),
    ])
    text = render_html(report)
    assert "data:image/svg+xml;base64," in text and "<b>bold</b>" in text
    assert "gradsight descend &#39;x^2-4x+6&#39; --x0 8 --lr 0.1" in text
    assert "6.8" in text and "Findings" not in text  # no findings given: no findings block
    assert report.sections[2].paragraphs == ["one", "two"]
    fragment = report._repr_html_()
    assert "<html" not in fragment and "Gradient descent" in fragment
    assert build_report("x", findings=[])._repr_html_().count("No problems found") == 1


def test_finding_objects_of_any_shape() -> None:
    report = build_report("f", findings=[{"severity": "warning", "title": "dicts work",
                                          "evidence": {"ratio": 12.5}, "fixes": ["use relu"]}])
    text = render_html(report)
    assert "dicts work" in text and "12.5" in text and "use relu" in text


def _svg() -> str:
    return '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect/></svg>'


def test_bad_figures_and_sections_are_clear_errors(tmp_path) -> None:
    with pytest.raises(InvalidValueError, match="PNG"):
        embed_figure(b"GIF89a", "x")
    with pytest.raises(InvalidValueError, match="matplotlib"):
        embed_figure(42, "x")
    with pytest.raises(InvalidValueError, match="heading"):
        build_report("x", sections=[{"title": "no heading"}])
    with pytest.raises(InvalidValueError, match="section 0"):
        build_report("x", sections=[42])
    assert isinstance(build_report("x", sections=[("h", Markup("<i>ok</i>"))]), Report)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    import gradsight.present.report as report_module

    def broken(*args, **kwargs):
        raise RuntimeError("render failed")

    target = tmp_path / "report.html"
    monkeypatch.setattr(report_module, "render_html", broken)
    with pytest.raises(RuntimeError):
        write_html(build_report("x"), target)
    assert list(tmp_path.iterdir()) == []
