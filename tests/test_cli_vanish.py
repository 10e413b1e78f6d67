"""``gradsight vanish``: JSON shapes, the table beside Nielsen's figures, plots, exit 2."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from gradsight.cli import app
from gradsight.lab import nielsen_speeds

runner = CliRunner()


def _json(args: list[str]) -> dict:
    result = runner.invoke(app, ["vanish", *args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_protocol_json_shape_and_numbers() -> None:
    document = _json(["--hidden", "30,30,30", "--seeds", "2", "--samples", "300"])
    assert {"config", "layers", "ratio_last_first", "nielsen", "files"} <= set(document)
    assert [row["layer"] for row in document["layers"]] == [1, 2, 3]
    assert all(set(row) >= {"layer", "speed_at_init", "speed_trained"}
               for row in document["layers"])
    assert document["nielsen"] == [0.012, 0.060, 0.283]
    direct = nielsen_speeds(hidden=(30, 30, 30), seeds=2, samples=300)
    assert [r["speed_at_init"] for r in document["layers"]] == pytest.approx(
        [r["speed_at_init"] for r in direct.layers], rel=1e-12)
    assert document["ratio_last_first"] > 10
    assert document["config"]["loss"] == "cross_entropy"


def test_training_fills_the_trained_speeds() -> None:
    document = _json(["--hidden", "10,10", "--seeds", "1", "--samples", "100",
                      "--train-epochs", "1"])
    assert all(row["speed_trained"] > 0 for row in document["layers"])
    assert document["config"]["train_epochs"] == 1


def test_sweep_json_rows() -> None:
    document = _json(["--sweep", "--depths", "2,3", "--activations", "sigmoid,relu",
                      "--inits", "he_normal", "--seeds", "1", "--train-epochs", "1",
                      "--samples", "100"])
    rows = document["rows"]
    assert [(r["depth"], r["activation"]) for r in rows] == [
        (2, "sigmoid"), (2, "relu"), (3, "sigmoid"), (3, "relu")]
    assert all(r["init"] == "he_normal" for r in rows)
    assert document["config"]["bias_init"] == "zeros"


def test_table_shows_nielsens_figures_beside_ours() -> None:
    result = runner.invoke(app, ["vanish", "--hidden", "30,30", "--seeds", "1",
                                 "--samples", "200"])
    assert result.exit_code == 0, result.output
    assert "Nielsen" in result.stdout and "0.309" in result.stdout and "0.066" in result.stdout
    assert "last/first" in result.stdout


def test_plot_dir_gets_png_figures(tmp_path) -> None:
    document = _json(["--hidden", "30,30", "--seeds", "1", "--samples", "100",
                      "--plot", str(tmp_path / "figs")])
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["sigmoid_bound.png", "vanish.png"]
    assert sorted(document["files"]) == sorted(str(tmp_path / "figs" / n) for n in names)
    for name in names:
        with Image.open(tmp_path / "figs" / name) as image:
            assert image.format == "PNG"


def test_plots_speeds_while_training(tmp_path) -> None:
    result = runner.invoke(app, ["vanish", "--hidden", "10,10", "--seeds", "1", "--samples",
                                 "100", "--train-epochs", "2", "--plot", str(tmp_path),
                                 "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["speeds_by_epoch"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sigmoid_bound.png", "speeds_by_epoch.png", "vanish.png"]


def test_relu_has_no_sigmoid_bound_figure_and_a_report_page(tmp_path) -> None:
    report = tmp_path / "lab.html"
    document = _json(["--hidden", "10,10", "--activation", "relu", "--init", "he_normal",
                      "--seeds", "1", "--samples", "50", "--plot", str(tmp_path),
                      "--report", str(report)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.html", "vanish.png"]
    assert document["files"][-1] == str(report) and document["nielsen"] is None
    text = report.read_text(encoding="utf-8")
    assert text.count('<img src="data:image/png;base64,') == 1 and "relu" in text


def test_glorot_trajectory_json() -> None:
    document = _json(["--glorot", "--hidden", "20,20,20", "--train-epochs", "1",
                      "--batch-size", "30"])
    assert document["layers"] == ["sigmoid0", "sigmoid1", "sigmoid2"]
    assert document["config"]["init"] == "glorot_standard"
    assert document["config"]["loss"] == "softmax"
    assert len(document["mean"]) == len(document["steps"]) and document["steps"][0] == 0
    assert document["top_layer"]["start"] == document["mean"][0][-1]


@pytest.mark.parametrize("args, word", [
    (["--hidden", "30,x"], "--hidden"),
    (["--hidden", "30,0"], "--hidden"),
    (["--activation", "swishy"], "swishy"),
    (["--loss", "hinge"], "hinge"),
    (["--init", "magic"], "magic"),
    (["--data", "nope"], "nope"),
    (["--seeds", "0"], "seeds"),
    (["--lr", "-1"], "lr"),
    (["--sweep", "--depths", "2,-1"], "--depths"),
    (["--sweep", "--activations", ","], "--activations"),
    (["--sweep", "--glorot"], "--glorot"),
    (["--report", "out.txt"], "--report"),
    (["--plot", __file__], "--plot"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], word: str, tmp_path) -> None:
    if "--plot" not in args:
        args = [*args, "--plot", str(tmp_path / "out")]
    result = runner.invoke(app, ["vanish", *args, "--samples", "20"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and word in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
