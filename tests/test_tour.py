"""The tour: one quick run (through the CLI, as users run it) checked against independent
oracles — analytic values (σ′(0) = 1/4, x_k = 2 + 6·0.8^k), the articles' printed iterates, NumPy
recomputations of the round-off error and of the neuron's chain rule — and every command the
page shows really runs."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gradsight.cli import app
from gradsight.present.tour import SECTION_IDS, run_tour

# The articles' printed iterates of x_new = x_old − 0.1·(2x_old − 4) from x = 8 (cut to 2
# decimals, not rounded: 4.4576 is printed 4.45).
ARTICLE_ITERATES = [6.8, 5.84, 5.07, 4.45, 3.96, 3.57, 3.25, 3.00, 2.80, 2.64, 2.51, 2.41, 2.32]


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``gradsight tour --quick --out DIR --json`` once; its JSON, folder and page text."""
    out = tmp_path_factory.mktemp("tour") / "page"
    result = CliRunner().invoke(app, ["tour", "--quick", "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    sections = {s["id"]: json.loads((out / s["json"]).read_text("utf-8"))
                for s in doc["sections"]}
    return {"doc": doc, "out": out, "html": (out / "index.html").read_text("utf-8"),
            "sections": sections}


def numbers(tour: dict, section: str) -> dict:
    return tour["sections"][section]["numbers"]


def data(tour: dict, section: str) -> dict:
    return tour["sections"][section]["data"]


# ---- the page ---------------------------------------------------------------------------
def test_cli_json_lists_every_section_with_its_files(tour: dict) -> None:
    doc = tour["doc"]
    assert doc["quick"] is True
    assert [s["id"] for s in doc["sections"]] == SECTION_IDS
    assert Path(doc["index"]) == tour["out"] / "index.html"
    for section in doc["sections"]:
        assert section["headline"] and section["commands"] and section["figures"]
        for figure in section["figures"]:
            assert (tour["out"] / figure).is_file()
        assert (tour["out"] / section["json"]).is_file()


def test_page_has_every_section_and_says_quick_mode(tour: dict) -> None:
    text = tour["html"]
    for section_id in SECTION_IDS:
        assert f'<section id="{section_id}">' in text
    assert "Quick mode" in text
    assert text.count("<section ") == len(SECTION_IDS)
    body = text[text.index("<main>"):]
    prose = re.findall(r"<(?:p|h2|figcaption|caption|td)\b[^>]*>(.*?)</", body, re.S)
    assert prose and not [p for p in prose if "{" in p or "}" in p]  # every f-string filled


def test_page_is_self_contained(tour: dict) -> None:
    text = tour["html"]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link rel=\"stylesheet\"" not in text and "@import" not in text
    assert re.search(r"<script\s+src", text) is None


def test_every_image_is_an_embedded_png_equal_to_its_file(tour: dict) -> None:
    images = re.findall(r'<img src="([^"]+)"[^>]*data-file="([^"]+)"', tour["html"])
    assert len(images) == len(re.findall(r"<img\b", tour["html"])) >= len(SECTION_IDS)
    for src, file in images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:40]
        raw = base64.b64decode(src[len(prefix):], validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
        with Image.open(io.BytesIO(raw)) as image:
            assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
        assert raw == (tour["out"] / file).read_bytes()


# ---- numbers against oracles ---------------------------------------------------------------
def test_sigmoid_numbers(tour: dict) -> None:
    n = numbers(tour, "sigmoid")
    assert n["sigma_prime_0"] == pytest.approx(0.25, abs=1e-15)
    z = 10.0
    s = 1 / (1 + math.exp(-z))
    assert n["sigma_prime_10"] == pytest.approx(s * (1 - s), rel=1e-12)
    assert n["max_derivative"]["sigmoid"] == pytest.approx(0.25)
    assert n["max_derivative"]["tanh"] == pytest.approx(1.0)
    assert n["max_derivative"]["relu"] == pytest.approx(1.0)
    # σ′ read off the output a(1−a) equals σ′(z) to round-off on the whole grid
    assert 0 <= n["from_output_max_abs_diff"] < 1e-15
    for row in data(tour, "sigmoid")["values"]:
        s = 1 / (1 + math.exp(-row["z"]))
        assert row["sigma"] == pytest.approx(s, rel=1e-12)
        assert row["sigma_prime"] == pytest.approx(s * (1 - s), rel=1e-9, abs=1e-300)
        assert row["from_output"] == pytest.approx(s * (1 - s), rel=1e-6, abs=1e-18)


def test_sigmoid_derivations_end_in_sigma_times_one_minus_sigma(tour: dict) -> None:
    routes = data(tour, "sigmoid")["derivations"]
    assert len(routes) == 2
    for route in routes:
        assert route["steps"]
        final = route["steps"][-1]["result"].replace(" ", "")
        assert final in {"sigmoid(z)*(1-sigmoid(z))", "(1-sigmoid(z))*sigmoid(z)"}


def test_forward_difference_with_the_articles_step_is_off_by_round_off(tour: dict) -> None:
    n = numbers(tour, "numeric")
    # independent recomputation of the article's estimate at x = 0
    h = 1e-13
    estimate = (1 / (1 + math.exp(-h)) - 0.5) / h
    assert n["article_h"] == h
    assert n["article_forward_error"] == pytest.approx(abs(estimate - 0.25), rel=1e-9)
    assert n["article_forward_error"] > 1e-5
    assert n["recommended_forward_h"] == pytest.approx(math.sqrt(np.finfo(float).eps), rel=0.5)
    assert n["recommended_central_h"] == pytest.approx(np.finfo(float).eps ** (1 / 3), rel=0.5)
    assert n["central_error_at_recommended_h"] < 1e-9
    # the article's whole curve: forward difference over linspace(−10, 10, n) with h = 1e-13
    # (n = 1000 as in the article; fewer points in quick mode)
    x = np.linspace(-10, 10, n["article_curve_points"])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    article_curve = (sig(x + h) - sig(x)) / h
    worst = float(np.max(np.abs(article_curve - sig(x) * (1 - sig(x)))))
    assert n["article_curve_max_error"] == pytest.approx(worst, rel=1e-6)


def test_descent_iterates_are_2_plus_6_times_0_8_to_the_k(tour: dict) -> None:
    run = data(tour, "descent")["run"]
    xs = [it["x"][0] for it in run["iterations"]]
    assert xs[0] == 8.0
    for k, x in enumerate(xs):
        assert x == pytest.approx(2 + 6 * 0.8**k, rel=1e-12, abs=1e-12)
    for x, printed in zip(xs[1:], ARTICLE_ITERATES, strict=False):
        assert printed - 1e-9 <= x < printed + 0.01  # the articles cut to 2 decimals
    assert run["verdict"] == "converged"
    assert numbers(tour, "descent")["x_final"] == pytest.approx(2.0, abs=1e-4)


def test_descent_rates_compared(tour: dict) -> None:
    rows = {r["lr"]: r for r in data(tour, "descent")["comparison"]}
    assert rows[0.1]["verdict"] == "converged"
    assert rows[1.1]["verdict"] == "diverged"
    # too small: converges, but needs many more steps than the right rate
    assert rows[0.01]["iterations"] > 5 * rows[0.1]["iterations"]


def test_neuron_chain_rule_numbers(tour: dict) -> None:
    walk = data(tour, "neuron")["walkthrough"]
    x, w, b, y = np.array(walk["x"]), np.array(walk["w"]), walk["b"], walk["y"]
    z = float(w @ x + b)
    y_hat = 1 / (1 + math.exp(-z))
    assert walk["y_hat"] == pytest.approx(y_hat, rel=1e-12)
    expected = (y_hat - y) * y_hat * (1 - y_hat) * x
    assert walk["dC_dw"] == pytest.approx(expected.tolist(), rel=1e-12)
    assert walk["w_new"] == pytest.approx((w - walk["lr"] * expected).tolist(), rel=1e-12)
    assert walk["check"]["agree"] is True
    curve = data(tour, "neuron")["training"]["loss"]
    assert curve[-1] < curve[0]


def test_vanishing_gradient_shape_and_nielsen_reference(tour: dict) -> None:
    vanish = data(tour, "vanishing")
    reference = vanish["nielsen_reference"]
    assert reference["4"] == [0.0030, 0.017, 0.070, 0.285]
    for depth, speeds in vanish["nielsen_ours"].items():
        assert len(speeds) == int(depth)
        assert speeds[-1] > speeds[0]     # sigmoid: the last hidden layer learns fastest
    ratios = numbers(tour, "vanishing")["ratio_last_first"]
    assert ratios["sigmoid"] > 10 * ratios["relu+he"]


def test_neuron_states_and_doctor(tour: dict) -> None:
    states = data(tour, "neurons")
    for run, counts in states["counts"].items():
        assert sum(counts.values()) == states["hidden_units"] > 0, run
    assert states["counts"]["ReLU, η = 1"]["dead"] > 0
    too_large = states["counts"]["sigmoid, η = 15"]
    assert too_large["saturated-right"] + too_large["saturated-wrong"] > 0
    assert states["counts"]["sigmoid, η = 40"]["saturated-wrong"] > 0
    assert states["counts"]["sigmoid, η = 0.1"]["learning"] == states["hidden_units"]
    doctor = states["doctor"]
    best = [c for c in doctor["candidates"] if c["change"] == doctor["best"]][0]
    assert best["loss"] < doctor["baseline"]["loss"]


# ---- the commands shown reproduce the steps --------------------------------------------
def _reproduced(section: dict, argv: list[str], index: int, out: dict) -> None:
    """The JSON ``out`` of the command ``argv`` (the ``index``-th of its kind in the section)
    holds the numbers the tour shows for it."""
    d, n, name = section["data"], section["numbers"], argv[0]
    if name == "activations":  # the "derivatives compared" table: max f′ of every activation
        listed = {a["name"]: a for a in out}
        assert [listed[a["name"]] for a in d["activations"]] == d["activations"]
        assert {a["name"]: a["max_derivative"]["value"] for a in out
                if a["name"] in n["max_derivative"]} == n["max_derivative"]
    elif name == "derive":  # both derivations, step by step, ending in σ(1 − σ)
        # the CLI's JSON names each step's route in its rule: "Approach 1 (chain rule): ..."
        page = [step for route in d["derivations"] for step in route["steps"]]
        assert out["steps"] == [
            {"rule": f"{s['route']}: {s['rule']}" if s.get("route") else s["rule"],
             "result": s["result"]} for s in page]
        assert out["simplified"] == "(1 - sigmoid(z))*sigmoid(z)"
    elif name == "diffcheck" and out["at"] == 0:
        row = [r for r in out["rows"] if r["method"] == "forward" and r["h"] == 1e-13][0]
        assert row["estimate"] == n["article_forward_estimate"]
    elif name == "diffcheck":  # the step-size study at z = 1 and its recommended steps
        assert out["rows"] == d["study"]["rows"] and out["exact"] == n["exact_at_study"]
        assert out["recommended"]["central"] == n["recommended_central_h"]
        from gradsight import step_study  # the JSON holds h; its error comes from the API

        study = step_study(argv[1], out["at"])
        assert study.recommended_error["central"] == n["central_error_at_recommended_h"]
        article_row = [r for r in out["rows"]
                       if r["method"] == "forward" and r["h"] == 1e-13][0]
        assert article_row["abs_error"] == n["study_forward_error_at_article_h"]
    elif name == "descend" and "runs" in out:
        assert [r["verdict"] for r in out["runs"]] == [r["verdict"] for r in d["comparison"]]
        assert {str(r["lr"]): len(r["iterations"]) - 1 for r in out["runs"]} == \
            {rate: run["iterations"] for rate, run in n["rates"].items()}
    elif name == "descend":
        assert out["x_final"] == d["run"]["x_final"]
    elif name == "explain" and "--train" in argv:
        shown = d["training"]
        assert out["losses"] == shown["losses"] and out["epochs"] == len(shown["losses"])
        assert out["final_cost"] == shown["final_cost"] and out["w"] == shown["w"]
        assert out["learned"] is shown["learned"] is n["learned"]
    elif name == "explain":
        assert out["dC_dw"] == d["walkthrough"]["dC_dw"]
    elif name == "vanish":
        speeds = [layer["speed_at_init"] for layer in out["layers"]]
        shown = list(d["protocol"].values()) + list(d["fixes"].values())[1:]
        assert speeds == [layer["speed_at_init"] for layer in shown[index]["layers"]]
    elif name == "train":
        command = [a for a in argv if a != "--neurons"]
        run = [r for r in d["runs" if "runs" in d else "training"] if r["command"] == command][0]
        assert out["final"]["test_accuracy"] == run["final"]["test_accuracy"]
        assert out["final"]["train_loss"] == pytest.approx(run["final"]["train_loss"], rel=1e-9)
        if "--neurons" in argv:  # the page's state counts, summed over the hidden layers
            per_layer = out["neurons"]["counts"].values()
            totals = {s: sum(c[s] for c in per_layer) for s in d["counts"][run["label"]]}
            assert totals == out["neurons"]["total"] == d["counts"][run["label"]]
            assert len(out["neurons"]["units"]) == d["hidden_units"]
    elif name == "doctor":
        assert out["best"] == d["doctor"]["best"]
        assert out["baseline"]["loss"] == pytest.approx(d["doctor"]["baseline"]["loss"],
                                                        rel=1e-9)


def test_every_command_shown_runs_and_reproduces_its_numbers(
        tour: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    monkeypatch.chdir(tmp_path)  # commands may write figures (--plot NAME.png) in the cwd
    runner, kinds = CliRunner(), set()
    for summary in tour["doc"]["sections"]:
        section = tour["sections"][summary["id"]]
        section["argv"] = [shlex.split(line)[1:] for line in summary["commands"]]
        for index, argv in enumerate(section["argv"]):
            result = runner.invoke(app, [*argv, "--json"])
            assert result.exit_code == 0, f"{argv}\n{result.output}"
            if "--plot" in argv:  # the figure the command promises is written
                assert (tmp_path / argv[argv.index("--plot") + 1]).stat().st_size > 1000
            same_kind = [a for a in section["argv"][:index] if a[0] == argv[0]]
            _reproduced(section, argv, len(same_kind), json.loads(result.stdout))
            kinds.add(argv[0])
    assert kinds == {"activations", "derive", "diffcheck", "descend", "explain", "vanish",
                     "train", "doctor"}
    shown = {s: tour["sections"][s]["argv"] for s in ("descent", "neuron", "neurons")}
    assert ["--train", "or"] == shown["neuron"][-1][1:3]       # the training curve's command
    assert [a for a in shown["neurons"] if a[0] == "train"]    # the state counts' commands
    assert all("--neurons" in a for a in shown["neurons"] if a[0] == "train")
    assert any("--compare-lr" in a and "--plot" in a for a in shown["descent"])


def test_run_tour_python_api_subset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    result = run_tour(tmp_path / "t", quick=True, progress=True, sections=["descent"])
    assert [s.id for s in result.sections] == ["descent"]
    assert result.index_path.is_file() and 'id="descent"' in result.index_path.read_text()
    assert result.section("descent").numbers["x_final"] == pytest.approx(2.0, abs=1e-4)
    captured = capsys.readouterr()
    assert "tour" in captured.err and captured.out == ""  # the progress bar is on stderr


def test_open_uses_the_browser_and_survives_without_one(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    from gradsight.cli.tour_cmd import _open

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    _open(tmp_path / "index.html")
    assert opened == [(tmp_path / "index.html").resolve().as_uri()]

    def no_browser(url: str) -> bool:
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "open", no_browser)
    _open(tmp_path / "index.html")  # no exception


def test_bad_out_is_one_line_exit_2(tmp_path: Path) -> None:
    existing = tmp_path / "a-file"
    existing.write_text("x")
    result = CliRunner().invoke(app, ["tour", "--quick", "--out", str(existing)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output
    assert existing.read_text() == "x"


def test_unknown_section_is_a_clear_error(tmp_path: Path) -> None:
    from gradsight.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="descent"):
        run_tour(tmp_path, quick=True, progress=False, sections=["nope"])
