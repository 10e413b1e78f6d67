"""CLI ``gradsight diagnose HISTORY`` and ``gradsight report HISTORY --out``: the findings of a
saved history (the oracle: gradsight.diagnose on the in-memory original), its HTML report, and
a one-line error with exit code 2 for a bad file."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import gradsight
from gradsight.cli import app
from gradsight.diagnostics import history_to_csv, history_to_json, save_history
from test_cli_train import _assert_one_line_error
from test_history_files import BAD_FILES, make_bad_file, record_engine_run, record_torch_run

pytest.importorskip("pyarrow")

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs():
    """(name, in-memory history) of a watched torch run and an engine run."""
    return {"torch": record_torch_run(), "engine": record_engine_run().history}


def _findings(history):
    with np.errstate(all="ignore"):
        return gradsight.diagnose(history)


# ---- diagnose --------------------------------------------------------------------------------
@pytest.mark.parametrize("run,suffix", [("torch", ".parquet"), ("engine", ".jsonl"),
                                        ("torch", ".jsonl")])
def test_diagnose_prints_the_findings_of_the_original_run(runs, tmp_path, run, suffix) -> None:
    original = runs[run]
    path = save_history(original, tmp_path / f"run{suffix}")
    findings = _findings(original)
    assert len(findings) >= 1
    result = _run("diagnose", path)
    assert result.exit_code == 0, result.stderr  # findings do not change the exit code
    text = " ".join(result.stdout.split())
    assert "Diagnosis" in text
    for finding in findings:
        assert " ".join(finding.title.split()) in text
        assert finding.severity in text


@pytest.mark.parametrize("run", ["torch", "engine"])
def test_diagnose_json_is_the_original_diagnosis(runs, tmp_path, run) -> None:
    original = runs[run]
    path = save_history(original, tmp_path / "run.parquet")
    result = _run("diagnose", path, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    want = json.loads(json.dumps(_findings(original).to_dict()))  # its JSON, as printed
    assert doc["diagnosis"] == want
    assert doc["records"] == len(original) and doc["history"] == str(path)


def test_diagnose_reads_the_json_and_csv_exports(runs, tmp_path) -> None:
    original = runs["engine"]
    records_only = list(original)  # the exports carry no set-up: the oracle has none either
    titles = [f.title for f in _findings(records_only)]
    history_to_json(original, tmp_path / "run.json")
    history_to_csv(original, tmp_path / "run.csv")
    for path in (tmp_path / "run.json", tmp_path / "run.csv"):
        result = _run("diagnose", path, "--json")
        assert result.exit_code == 0, result.stderr
        assert [f["title"] for f in json.loads(result.stdout)["diagnosis"]["findings"]] == titles


def test_diagnose_of_an_empty_history_is_one_line(tmp_path) -> None:
    path = save_history([], tmp_path / "empty.jsonl")
    _assert_one_line_error(_run("diagnose", path), "empty")


# ---- report ----------------------------------------------------------------------------------
def test_report_writes_the_findings_and_the_layers(runs, tmp_path) -> None:
    original = runs["torch"]
    path = save_history(original, tmp_path / "run.parquet")
    out = tmp_path / "report.html"
    result = _run("report", path, "--out", out, "--title", "Cluster run <7>")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == f"wrote {out}"
    page = out.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    assert html.escape("Cluster run <7>") in page and "Cluster run <7>" not in page
    findings = _findings(original)
    assert len(findings) >= 3
    for finding in findings:
        assert html.escape(finding.title) in page
    for layer in {r.layer for r in original}:
        assert f">{layer}<" in page  # a table cell per layer


def test_report_title_defaults_to_the_file_name(runs, tmp_path) -> None:
    path = save_history(runs["engine"], tmp_path / "nightly.jsonl")
    out = tmp_path / "r.html"
    assert _run("report", path, "--out", out).exit_code == 0
    assert "nightly.jsonl" in out.read_text(encoding="utf-8")


def test_report_into_a_missing_folder_needs_mkdir(runs, tmp_path) -> None:
    path = save_history(runs["engine"], tmp_path / "run.jsonl")
    out = tmp_path / "new" / "folder" / "r.html"
    _assert_one_line_error(_run("report", path, "--out", out), "--mkdir")
    assert not (tmp_path / "new").exists()
    result = _run("report", path, "--out", out, "--mkdir")
    assert result.exit_code == 0, result.stderr
    assert out.is_file()


def test_report_refuses_an_out_path_that_is_not_html(runs, tmp_path) -> None:
    path = save_history(runs["engine"], tmp_path / "run.jsonl")
    _assert_one_line_error(_run("report", path, "--out", tmp_path / "r.pdf"), "--out", ".html")
    assert not (tmp_path / "r.pdf").exists()


def test_report_without_out_is_a_usage_error(runs, tmp_path) -> None:
    path = save_history(runs["engine"], tmp_path / "run.jsonl")
    result = _run("report", path)
    assert result.exit_code == 2 and "--out" in result.stderr


# ---- bad files -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["diagnose", "report"])
def test_a_bad_file_is_one_line_and_exit_2_with_nothing_written(tmp_path, name,
                                                                command) -> None:
    path = make_bad_file(name, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "report.html"
    args = ["--out", out] if command == "report" else []
    _assert_one_line_error(_run(command, path, *args), "cannot read history", path.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
