"""What a learner meets first on the tour page: the articles named (never called "seeds"),
the text's claims holding for the figures' own data, and the deep sigmoid net beside Adam —
numbers checked against NumPy re-runs and against what Adam's first step must be."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from gradsight import activations
from gradsight import engine as nn
from gradsight.present.tour import run_tour
from gradsight.present.tour._base import fmt

README = Path(__file__).resolve().parents[1] / "README.md"
OR = np.array([0.0, 1.0, 1.0, 1.0])
X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("edges") / "tour"
    result = run_tour(out, quick=True, progress=False)
    sections = {s.id: json.loads((out / s.json_path).read_text("utf-8"))
                for s in result.sections}
    return {"result": result, "html": (out / "index.html").read_text("utf-8"),
            "sections": sections}


def _prose(page: str) -> str:
    """The page's visible text outside code: tags, code, scripts and styles removed."""
    body = page[page.index("<main>"):]
    body = re.sub(r"<(pre|code|script|style)\b.*?</\1>", " ", body, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


# ---- 1. the articles, never "seeds" -------------------------------------------------------
ARTICLES = ("the Italian article on the sigmoid's derivative", "the same article in Spanish",
            "the Spanish question-and-answer article on the derivative in training",
            "its answers in Indonesian", "the Italian article on the vanishing gradient")


def test_the_page_names_each_article_once_and_says_gradsight_retells_them(tour: dict) -> None:
    prose = _prose(tour["html"])
    assert "gradsight retells five short articles" in prose
    for name in ARTICLES:
        assert prose.count(name) == 1, name


def test_seed_on_the_page_and_in_its_json_only_means_the_random_seed(tour: dict) -> None:
    prose = _prose(tour["html"])
    for match in re.finditer(r"(?i)\bseeds?\b", prose):
        assert prose[max(0, match.start() - 7):match.start()] == "random ", \
            prose[max(0, match.start() - 60):match.end() + 20]
    for section_id, doc in tour["sections"].items():
        for key, text in _walk(doc):
            assert key in (None, "seed", "seeds", "per_seed_speeds_at_init") or \
                "seed" not in key.lower(), (section_id, key)
            if text is not None and re.search(r"(?i)seed", text):
                cleaned = re.sub(r"--seeds?\b|random seeds?", "", text)
                assert not re.search(r"(?i)seed", cleaned), (section_id, text)
    numeric = tour["sections"]["numeric"]
    assert numeric["numbers"]["article_h"] == 1e-13
    assert {"article_study", "article_curve"} <= set(numeric["data"])


def _walk(value, key=None):
    """(key, string) pairs of every key and string value in a JSON document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, None
            yield from _walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)
    elif isinstance(value, str):
        yield key, value


def test_the_readme_tour_section_names_the_articles() -> None:
    text = README.read_text("utf-8")
    section = text[text.index("## What the tour shows"):text.index("## The command line")]
    prose = " ".join(section.split())
    assert "gradsight retells five short articles" in prose
    for name in ARTICLES:
        assert name in prose, name
    assert not re.search(r"(?i)\bseeds?\b", prose)


# ---- 16. the text's claims hold for the figures' data -----------------------------------
def _neuron_by_hand(w: tuple[float, float], b: float, epochs: int, lr: float = 4.0) -> list:
    """C per epoch of w ← w − η ∂C/∂w on OR's 4 inputs, written out in NumPy."""
    w_arr, losses = np.array(w, dtype=float), []
    for _ in range(epochs):
        a = 1 / (1 + np.exp(-(X @ w_arr + b)))
        losses.append(0.5 * np.mean((a - OR) ** 2))
        delta = (a - OR) * a * (1 - a)
        w_arr, b = w_arr - lr * X.T @ delta / 4, b - lr * delta.mean()
    return losses


def _share(losses, epochs: int) -> float:
    losses = np.asarray(losses)
    return float((losses[0] - losses[epochs]) / (losses[0] - losses[-1]))


def test_the_neuron_text_says_what_its_figures_show(tour: dict) -> None:
    section = tour["result"].section("neuron")
    text = " ".join(section.paragraphs)
    assert "Note the slow start" not in text
    data, numbers = tour["sections"]["neuron"]["data"], section.numbers
    random_start = data["training"]["loss"]
    saturated = data["saturated_training"]
    epochs = len(random_start)
    early = numbers["early_epochs"]
    assert early <= epochs // 10  # "the first tenth": the window is within it
    # the saturated run is the articles' neuron from w = (−3, −3), b = −2: re-run in NumPy
    np.testing.assert_allclose(saturated["losses"], _neuron_by_hand((-3, -3), -2, epochs),
                               rtol=1e-10)
    w0, b0 = data["training"]["w_start"], data["training"]["b_start"]
    np.testing.assert_allclose(random_start, _neuron_by_hand(tuple(w0), b0, epochs),
                               rtol=1e-10)
    # the claims: from the random start the cost falls fastest at once, from the saturated
    # one slowly — per epoch, the first tenth against the rest of the run
    for losses, fast in ((random_start, True), (saturated["losses"], False)):
        tenth = epochs // 10
        first = (losses[0] - losses[tenth]) / tenth
        rest = (losses[tenth] - losses[-1]) / (epochs - tenth)
        assert (first > 5 * rest) if fast else (first < rest), (first, rest)
    random_share, saturated_share = _share(random_start, early), _share(saturated["losses"],
                                                                        early)
    assert random_share > 0.5 and saturated_share < 0.05
    assert f"{100 * random_share:.0f}% of its whole fall" in text
    assert f"only {100 * saturated_share:.2g}% of its fall" in text
    half = next(i for i, c in enumerate(saturated["losses"])
                if c <= saturated["losses"][0] - (saturated["losses"][0]
                                                  - saturated["losses"][-1]) / 2)
    assert f"until epoch {half}" in text and half > 3 * early
    # the figure of the two starts is drawn from these two curves
    assert any(f.path == "figures/neuron-slow-start.png" for f in section.figures)


def test_the_derivatives_table_says_where_each_maximum_is_reached(tour: dict) -> None:
    table = next(t for t in tour["sections"]["sigmoid"]["tables"]
                 if t["caption"].startswith("Derivatives compared"))
    reached = {row[0]: row[table["columns"].index("reached")] for row in table["rows"]}
    # the claim checked by central differences of the functions themselves: slope 1 on a
    # grid of z > 0, below 1 on z < 0
    h, positive, negative = 1e-6, np.linspace(0.01, 50.0, 500), np.linspace(-50.0, -0.01, 500)
    for name in ("relu", "leaky_relu", "elu"):
        f = activations.get(name)
        assert reached[name] == "for every z > 0", reached
        np.testing.assert_allclose((f(positive + h) - f(positive - h)) / (2 * h), 1.0,
                                   atol=1e-6)
        assert np.all((f(negative + h) - f(negative - h)) / (2 * h) < 1.0)
    assert reached["softplus"] == "as z → ∞ (never reached)"
    assert reached["sigmoid"] == "at z = 0"


# ---- 4. the deep sigmoid net with SGD and with Adam ------------------------------------
def test_adam_compensates_and_the_text_says_so_with_the_runs_numbers(tour: dict) -> None:
    section = tour["result"].section("vanishing")
    data = tour["sections"]["vanishing"]["data"]
    balance = data["optimizers"]
    text = " ".join(section.paragraphs)
    accuracy = section.numbers["test_accuracy"]
    assert accuracy["sigmoid+adam"] > 0.8 > 0.2 > accuracy["sigmoid"]
    sgd, adam = balance["sgd"], balance["adam"]
    # recomputed from the per-step values the run's Monitor recorded in the first epoch
    for b in (sgd, adam):
        steps = b["steps"]
        assert steps["step"][0] == 0 and max(steps["step"]) < b["steps_per_epoch"]
        grad = np.median(np.array(steps["grad_W_norm_last"]) /
                         np.array(steps["grad_W_norm_first"]))
        moves = np.median(np.array(steps["update_ratio_first"]) /
                          np.array(steps["update_ratio_last"]))
        assert b["gradient_last_over_first"] == pytest.approx(grad, rel=1e-12)
        assert b["step_first_over_last"] == pytest.approx(moves, rel=1e-12)
    assert sgd["gradient_last_over_first"] > 4 and adam["gradient_last_over_first"] > 4
    assert sgd["step_first_over_last"] < 0.25 < 0.5 < adam["step_first_over_last"]
    # an independent oracle: the first step of Adam is η·g/(|g| + ε) ≈ η·sign(g), so for a
    # 30 × 30 hidden layer ‖ΔW‖ = η·30 and ‖ΔW‖/‖W‖ = 0.3/‖W_init‖; SGD's is η‖∂C/∂W‖/‖W_init‖
    model = nn.mlp("64-30-30-30-30-10", activation="sigmoid", init="scaled_normal", seed=0)
    norms = [float(np.linalg.norm(d.W)) for d in model.dense_layers]
    assert adam["steps"]["update_ratio_last"][0] == pytest.approx(0.01 * 30 / norms[3],
                                                                  rel=1e-4)
    assert sgd["steps"]["update_ratio_first"][0] == pytest.approx(
        0.1 * sgd["steps"]["grad_W_norm_first"][0] / norms[0], rel=1e-9)
    for phrase in ("Adam", "compensates", "rescaling", "SGD"):
        assert phrase in text
    for value in (adam["gradient_last_over_first"], sgd["gradient_last_over_first"],
                  adam["step_first_over_last"], sgd["step_first_over_last"],
                  accuracy["sigmoid+adam"]):
        assert fmt(value, 3) in text
    table = section.tables[-1]
    assert [row[0] for row in table.rows] == ["SGD", "Adam"]
    # the Adam run's command is shown and is the train command's default optimizer
    commands = [c for c in section.command_lines if "--optimizer adam" in c]
    assert len(commands) == 1 and "--lr 0.01" in commands[0]
