"""The walkthroughs' edges: the network's backward formula written in the row convention it
declares, outputs on the threshold 0.5 neither right nor wrong by chance (the rule stated
and applied, against a NumPy re-run), and HTML that wraps instead of running off the page."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from gradsight.engine.layers import Dense
from gradsight.present.explain import explain_network, explain_neuron, fmt, train_neuron
from gradsight.present.explain.neuron import ACCURACY_RULE, decide, decided_accuracy
from gradsight.present.plots.training import plot_history

TRUTH = {"or": [0, 1, 1, 1], "xor": [0, 1, 1, 0]}
X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


# ---- δ in the row convention --------------------------------------------------------------
def _vector(text: str) -> np.ndarray:
    return np.array([float(v.replace("−", "-")) for v in text.strip("()").split(", ")])


@pytest.mark.parametrize("spec", ["2-3-2", "3-4-2-1"])
def test_backward_formula_is_written_in_rows_and_matches_its_numbers(spec: str) -> None:
    walk = explain_network(spec, seed=1)
    text = "\n".join(walk.lines())
    assert "z^l = a^(l−1) W^l + b^l" in text  # the convention the walkthrough declares
    assert not re.search(r"\(W\S+ δ", text)   # W^(l+1) δ^(l+1) is the column convention
    for below, above in zip(walk.layers[:-1], walk.layers[1:], strict=True):
        l, n = "¹²³⁴"[below.index - 1], "¹²³⁴"[above.index - 1]
        match = re.search(rf"δ{l} = \(δ{n} \(W{n}\)ᵀ\) ⊙ f′\(z{l}\) = (\([^)]*\)) ⊙", text)
        assert match, text
        # a row δ^(l+1) times (W^(l+1))ᵀ, W stored n_in × n_out: recomputed here
        carried = above.delta[None, :] @ above.W.T
        assert carried.shape == (1, below.delta.size)
        np.testing.assert_allclose(_vector(match.group(1)), carried[0], rtol=1e-3, atol=1e-12)
        np.testing.assert_allclose(below.delta, carried[0] * below.f_prime, rtol=1e-12)


# ---- an output on the threshold ----------------------------------------------------------
def _by_hand(table: str, epochs: int, lr: float = 4.0, seed: int = 0) -> list[float]:
    """Accuracy before each epoch's update, from a NumPy re-run of w ← w − η ∂C/∂w, with
    the stated rule: 1 above 0.5 + 1e-9, 0 below 0.5 − 1e-9, otherwise wrong."""
    start = Dense(2, 1, seed=seed)
    w, b = start.W[:, 0].copy(), float(start.b[0])
    y = np.array(TRUTH[table], dtype=float)
    accuracies = []
    for _ in range(epochs):
        a = 1 / (1 + np.exp(-(X @ w + b)))
        right = [(o > 0.5 + 1e-9 and t == 1) or (o < 0.5 - 1e-9 and t == 0)
                 for o, t in zip(a, y, strict=True)]
        accuracies.append(sum(right) / 4)
        delta = (a - y) * a * (1 - a)
        w, b = w - lr * X.T @ delta / 4, b - lr * delta.mean()
    return accuracies


def test_outputs_at_one_half_count_as_undecided_not_by_rounding() -> None:
    assert decide([0.5, 0.5 + 1e-16, 0.5 - 1e-16, 0.5 + 2e-9, 0.5 - 2e-9]).tolist() == \
        [-1, -1, -1, 1, 0]
    assert decided_accuracy([0.5] * 4, TRUTH["xor"]) == 0.0
    run = train_neuron("xor", epochs=1000, lr=4.0, seed=0)
    assert run.accuracies == _by_hand("xor", 1000)
    # once every ŷ is 0.5 up to rounding the accuracy stays put instead of flickering
    settled = next(i for i, o in enumerate(_settled(run)) if o)
    assert settled < 900 and set(run.accuracies[settled:]) == {0.0}
    assert run.predictions.tolist() == [-1, -1, -1, -1]
    assert run.accuracy == 0.0 and not run.learned


def _settled(run) -> list[bool]:
    """Per epoch: whether all four outputs are within 1e-9 of 0.5 (a NumPy re-run)."""
    start = Dense(2, 1, seed=run.seed)
    w, b = start.W[:, 0].copy(), float(start.b[0])
    y = np.array(TRUTH[run.data], dtype=float)
    out = []
    for _ in range(run.epochs):
        a = 1 / (1 + np.exp(-(X @ w + b)))
        out.append(bool(np.all(np.abs(a - 0.5) <= 1e-9)))
        delta = (a - y) * a * (1 - a)
        w, b = w - run.lr * X.T @ delta / 4, b - run.lr * delta.mean()
    return out


def test_the_rule_is_stated_in_the_text_json_and_plot_data() -> None:
    run = train_neuron("xor", epochs=600, lr=4.0, seed=0)
    doc = json.loads(json.dumps(run.to_dict()))
    assert doc["accuracy_rule"] == ACCURACY_RULE and "1e-9" in ACCURACY_RULE
    assert "undecided" in ACCURACY_RULE and "wrong" in ACCURACY_RULE
    text = "\n".join(run.lines())
    assert f"accuracy: {ACCURACY_RULE}" in text and "undecided" in text
    assert "did not learn XOR" in text
    rows = [{"epoch": i, "loss": c, "accuracy": a}
            for i, (c, a) in enumerate(zip(run.losses, run.accuracies, strict=True))]
    accuracy_panel = plot_history(rows).axes[1]
    np.testing.assert_array_equal(accuracy_panel.lines[0].get_ydata(), _by_hand("xor", 600))
    learned = train_neuron("or", epochs=300, lr=4.0, seed=0)
    assert learned.learned and learned.predictions.tolist() == TRUTH["or"]
    assert learned.accuracies == _by_hand("or", 300)
    assert "learned OR" in "\n".join(learned.lines())


def test_a_start_can_be_given_and_is_reported() -> None:
    run = train_neuron("or", epochs=50, lr=4.0, w_start=(-3, -3), b_start=-2)
    assert run.w_start == (-3.0, -3.0) and run.b_start == -2.0
    a = 1 / (1 + np.exp(-(X @ np.array([-3.0, -3.0]) - 2.0)))
    assert run.losses[0] == pytest.approx(0.5 * np.mean((a - np.array(TRUTH["or"])) ** 2),
                                          rel=1e-12)


# ---- HTML that wraps ----------------------------------------------------------------------
def test_walkthrough_html_wraps_long_lines() -> None:
    for walk in (explain_neuron(), explain_network("4-6-6-3")):
        html = walk._repr_html_()
        pre = re.search(r"<pre([^>]*)>", html)
        assert pre is not None
        style = pre.group(1)
        assert "white-space: pre-wrap" in style and "overflow-x: auto" in style
    assert fmt(-0.5) == "−0.5"


def test_a_trained_neuron_shows_its_curve_in_a_notebook():
    """``train_neuron`` results had no HTML repr (a notebook printed the dataclass)."""
    from gradsight.present.explain.neuron import train_neuron

    trained = train_neuron("or", epochs=300, lr=4.0)
    page = trained._repr_html_()
    assert page.startswith("<pre style='white-space: pre-wrap'>")
    assert "learning OR" in page and "accuracy: ŷ &gt; 0.5" in page
    assert repr(trained) == (f"NeuronTraining(or, 300 epochs, η = 4: C {trained.final_cost:.4g}, "
                             f"accuracy {trained.accuracy:.0%}, "
                             f"{'learned' if trained.learned else 'not learned'})")
    # the oracle for the cost: C = 1/(2N) Σ(ŷ − y)² recomputed from the outputs
    assert trained.final_cost == 0.5 * float(((trained.outputs - trained.targets) ** 2).mean())


def test_the_explain_api_refuses_overflow_in_one_line_without_a_numpy_warning():
    """``explain_neuron`` walked through z = inf after three RuntimeWarnings."""
    import warnings

    from gradsight.errors import InvalidValueError
    from gradsight.present.explain import explain_neuron

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidValueError, match=r"^w1·x1 = 1e\+308·1e\+308 overflows"):
            explain_neuron(x=[1e308, 1e308], w=[1e308, 1], b=0, y=1)
        with pytest.raises(InvalidValueError, match="update w − η·∂C/∂w overflows"):
            explain_neuron(x=[1e308, 1], w=[-1e-308, 0], b=0, y=1, lr=1e300)
        walk = explain_neuron(x=[1e154, 1], w=[1e-154, 0.5], b=0, y=1)  # large but finite
    assert walk.z == pytest.approx(1.0 + 0.5)  # 1e154·1e-154 + 1·0.5, by hand
