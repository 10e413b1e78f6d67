"""The playground's click panels and vanishing view, on the server: every number checked
against an oracle that does not share the code — f′(z) recomputed in NumPy from the weights,
the chain rule against the engine's backward pass on the one sample and central differences
(recomputed here), the speeds of learning against the vanishing-gradient lab."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from gradsight.lab import nielsen_speeds
from gradsight.play import PlayServer
from gradsight.play.inspect import HISTOGRAM_BINS
from gradsight.play.protocol import DEFAULT_CONFIG, VANISHING_DEFAULTS
from gradsight.play.sessions import NetworkSession
from gradsight.play.vanishing import VanishingSession


@pytest.fixture(scope="module")
def server():
    with PlayServer() as running:
        yield running


def socket(server: PlayServer):
    address = server.base.replace("http://", "ws://") + "/ws"
    return connect(f"{address}?token={server.token}", max_size=2**24, open_timeout=10,
                   close_timeout=5)


def ask(ws, message: dict[str, Any], kind: str) -> dict[str, Any]:
    ws.send(json.dumps(message))
    deadline = time.monotonic() + 30
    while True:
        reply = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if reply["type"] in (kind, "error"):
            return reply


# ---- oracles written here, in NumPy -----------------------------------------------------------
DERIVATIVES = {
    "sigmoid": lambda z: (1 / (1 + np.exp(-z))) * (1 - 1 / (1 + np.exp(-z))),
    "tanh": lambda z: 1 - np.tanh(z) ** 2,
    "relu": lambda z: (z > 0).astype(float),
}
FUNCTIONS = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh,
             "relu": lambda z: np.maximum(z, 0.0), "linear": lambda z: z}


def numpy_forward(weights: list[tuple[np.ndarray, np.ndarray]], activations: list[str],
                  X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    zs, outs, a = [], [], X
    for (W, b), name in zip(weights, activations, strict=True):
        z = a @ W + b
        a = FUNCTIONS[name](z)
        zs.append(z)
        outs.append(a)
    return zs, outs


def weights_of(session: NetworkSession) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(layer.W.copy(), layer.b.copy()) for layer in session.model.dense_layers]


def activations_of(config: dict[str, Any]) -> list[str]:
    out = "linear" if config["loss"] == "cross_entropy" else "sigmoid"
    return [config["activation"]] * len(config["hidden"]) + [out]


def numpy_sample_cost(weights, activations, x, label, loss) -> float:
    _, outs = numpy_forward(weights, activations, x[None, :])
    out = outs[-1][0]
    if loss == "cross_entropy":
        return float(np.log(np.exp(out - out.max()).sum()) + out.max() - out[label])
    target = np.eye(out.shape[0])[label]
    return 0.5 * float(((out - target) ** 2).sum())


def central_difference(weights, activations, x, label, loss, layer, row, col,
                       h: float = 1e-6) -> float:
    probe = copy.deepcopy(weights)
    kept = probe[layer][0][row, col]
    probe[layer][0][row, col] = kept + h
    up = numpy_sample_cost(probe, activations, x, label, loss)
    probe[layer][0][row, col] = kept - h
    down = numpy_sample_cost(probe, activations, x, label, loss)
    return (up - down) / (2 * h)


def trained(changes: dict[str, Any], steps: int = 40) -> NetworkSession:
    session = NetworkSession({**DEFAULT_CONFIG, **changes})
    for _ in range(steps):
        assert session.step()
    return session


# ---- click a unit ---------------------------------------------------------------------------
@pytest.mark.parametrize("changes", [
    {},
    {"activation": "sigmoid", "loss": "quadratic", "hidden": [5, 3], "optimizer": "sgd",
     "lr": 0.5},
    {"activation": "relu", "init": "he_normal", "hidden": [6], "dataset": "circles"},
])
def test_a_units_derivatives_are_f_prime_of_z_recomputed_in_numpy(changes):
    config = {**DEFAULT_CONFIG, **changes}
    session = trained(changes)
    X, y = session.split.X_train, session.split.y_train
    zs, outs = numpy_forward(weights_of(session), activations_of(config), X)
    for hidden, size in enumerate(config["hidden"]):
        for index in (0, size - 1):
            panel = session.unit(f"dense{hidden}", index)
            expected = DERIVATIVES[config["activation"]](zs[hidden][:, index])
            np.testing.assert_allclose(panel["derivatives"], expected, rtol=1e-9, atol=1e-12)
            # the histogram counts these derivatives
            counts, edges = np.histogram(expected, bins=HISTOGRAM_BINS,
                                         range=(panel["histogram"]["edges"][0],
                                                panel["histogram"]["edges"][-1]))
            np.testing.assert_allclose(panel["histogram"]["edges"], edges, rtol=1e-12)
            assert panel["histogram"]["counts"].tolist() == counts.tolist()
            assert counts.sum() == len(y) == panel["samples"]
            # right and wrong: the network's answer on each sample
            assert panel["correct"].tolist() == (outs[-1].argmax(axis=1) == y).tolist()
            # the state's evidence, recomputed: a sample is active when f′ ≥ 1% of max f′
            top = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0}[config["activation"]]
            active = expected >= 0.01 * top
            assert panel["evidence"]["active_fraction"] == pytest.approx(active.mean())
            assert panel["evidence"]["mean_derivative"] == pytest.approx(expected.mean())
            assert panel["evidence"]["positive_fraction"] == pytest.approx(
                (zs[hidden][:, index] > 0).mean())
            if config["activation"] == "relu" and not (zs[hidden][:, index] > 0).any():
                assert panel["state"] == "dead"
            elif active.mean() >= 0.05 and (~active).mean() < 0.95:
                assert panel["state"] == "learning"
            else:
                right = panel["correct"][~active].mean()
                assert panel["state"] == ("saturated-right" if right >= 0.5 else
                                          "saturated-wrong")


def test_a_saturated_unit_is_saturated_and_a_dead_one_dead():
    session = trained({"activation": "sigmoid", "hidden": [3]}, steps=1)
    dense = session.model.dense_layers[0]
    dense.b[0], dense.W[:, 0] = 40.0, 0.0  # z = 40 on every sample: σ′ ≈ 4e-18
    panel = session.unit("dense0", 0)
    assert max(panel["derivatives"]) < 1e-15
    assert panel["state"] in ("saturated-right", "saturated-wrong")
    right = np.mean(panel["correct"])
    assert panel["state"] == ("saturated-right" if right >= 0.5 else "saturated-wrong")
    assert panel["histogram"]["counts"][0] == panel["samples"]
    relu = trained({"activation": "relu", "hidden": [3]}, steps=1)
    relu.model.dense_layers[0].b[1] = -100.0
    assert relu.unit("dense0", 1)["state"] == "dead"
    assert set(relu.unit("dense0", 1)["derivatives"].tolist()) == {0.0}


def test_the_unit_panel_leaves_the_session_as_it_was():
    session = trained({})
    before = copy.deepcopy(session.frame())
    session.unit("dense1", 2)
    session.weight("dense0", 1, 3, 7)
    after = session.frame()
    for key in ("loss", "flow", "step"):
        assert after[key] == before[key]
    assert session.step()


# ---- click a weight -------------------------------------------------------------------------
@pytest.mark.parametrize("changes", [
    {},
    {"activation": "sigmoid", "loss": "quadratic", "hidden": [5, 3], "optimizer": "sgd",
     "lr": 0.5},
    {"activation": "relu", "init": "he_normal", "hidden": [6], "dataset": "circles"},
])
def test_a_weights_chain_rule_equals_the_engine_and_central_differences(changes):
    config = {**DEFAULT_CONFIG, **changes}
    session = trained(changes)
    weights, activations = weights_of(session), activations_of(config)
    X, y = session.split.X_train, session.split.y_train
    for position in range(len(weights)):
        n_in, n_out = weights[position][0].shape
        for row, col, sample in ((0, 0, 0), (n_in - 1, n_out - 1, 17), (n_in // 2, 1, 101)):
            panel = session.weight(f"dense{position}", row, col, sample)
            x, label = X[sample], int(y[sample])
            # the engine's backward on this one sample, on a copy of the model
            model = copy.deepcopy(session.model)
            target = session.loss.prepare_target(y[sample:sample + 1], (1, 2), np.float64)
            model.backward(session.loss.gradient(model.forward(x[None, :]), target))
            engine = model.dense_layers[position].grad_W[row, col]
            numeric = central_difference(weights, activations, x, label, config["loss"],
                                         position, row, col)
            assert panel["gradient"] == pytest.approx(engine, rel=1e-9, abs=1e-12)
            assert panel["engine"] == pytest.approx(engine, rel=1e-12, abs=1e-15)
            assert panel["gradient"] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
            assert panel["matches"] is True and panel["matches_engine"] is True
            assert panel["w"] == weights[position][0][row, col]
            assert panel["label"] == label and panel["x"].tolist() == x.tolist()
            assert panel["cost"] == pytest.approx(numpy_sample_cost(
                weights, activations, x, label, config["loss"]), rel=1e-12)
            # every factor, recomputed: input × δ; δ = carried × f′(z)
            factors = {f["kind"]: f["value"] for f in panel["factors"]}
            zs, outs = numpy_forward(weights, activations, x[None, :])
            source = x if position == 0 else outs[position - 1][0]
            assert factors["input"] == pytest.approx(source[row], rel=1e-12)
            assert factors["gradient"] == pytest.approx(engine, rel=1e-9, abs=1e-12)
            if position == len(weights) - 1:
                assert [f["kind"] for f in panel["factors"]] == [
                    "input", "output_error", "gradient"]
                assert factors["input"] * factors["output_error"] == pytest.approx(
                    factors["gradient"], rel=1e-12, abs=1e-15)
            else:
                assert [f["kind"] for f in panel["factors"]] == [
                    "input", "carried", "local", "delta", "gradient"]
                local = DERIVATIVES[config["activation"]](zs[position][0][col])
                assert factors["local"] == pytest.approx(local, rel=1e-9, abs=1e-12)
                assert factors["carried"] * factors["local"] == pytest.approx(
                    factors["delta"], rel=1e-12, abs=1e-15)
                assert factors["input"] * factors["delta"] == pytest.approx(
                    factors["gradient"], rel=1e-12, abs=1e-15)
            assert panel["chain"][-1].endswith(f"= {panel['gradient']:.6g}")


def test_units_and_weights_over_a_real_socket(server):
    with socket(server) as ws:
        ask(ws, {"type": "configure", "activation": "sigmoid", "hidden": [4, 4]}, "frame")
        ask(ws, {"type": "step", "count": 30}, "frame")
        unit = ask(ws, {"type": "unit", "layer": "dense1", "index": 3}, "unit")
        weight = ask(ws, {"type": "weight", "layer": "dense1", "row": 2, "col": 1,
                          "sample": 9}, "weight")
        refusals = [
            ask(ws, {"type": "unit", "layer": "dense2", "index": 0}, "unit"),
            ask(ws, {"type": "unit", "layer": "dense0", "index": 4}, "unit"),
            ask(ws, {"type": "unit", "layer": "dense0"}, "unit"),
            ask(ws, {"type": "weight", "layer": "dense0", "row": 2, "col": 0}, "weight"),
            ask(ws, {"type": "weight", "layer": "dense0", "row": 0, "col": 0,
                     "sample": 160}, "weight"),
            ask(ws, {"type": "weight", "layer": "densely", "row": 0, "col": 0}, "weight"),
            ask(ws, {"type": "unit", "layer": "dense0", "index": -1}, "unit"),
        ]
        assert ask(ws, {"type": "step"}, "frame")["step"] == 31  # the socket serves on
    config = {**DEFAULT_CONFIG, "activation": "sigmoid", "hidden": [4, 4]}
    twin = trained({"activation": "sigmoid", "hidden": [4, 4]}, steps=30)
    zs, _ = numpy_forward(weights_of(twin), activations_of(config), twin.split.X_train)
    np.testing.assert_allclose(unit["derivatives"], DERIVATIVES["sigmoid"](zs[1][:, 3]),
                               rtol=1e-9, atol=1e-15)
    assert unit["state"] in ("learning", "saturated-wrong", "saturated-right", "quiet")
    assert sum(unit["histogram"]["counts"]) == 160
    expected = twin.weight("dense1", 2, 1, 9)
    assert weight["gradient"] == expected["gradient"] and weight["matches"] is True
    assert [(r["type"], r["field"]) for r in refusals] == [
        ("error", "layer"), ("error", "index"), ("error", None), ("error", "row"),
        ("error", "sample"), ("error", "layer"), ("error", "index")]
    assert "the hidden layers of this network: dense0, dense1" in refusals[0]["message"]
    assert "dense0 has 4 units" in refusals[1]["message"]
    assert "160 training samples" in refusals[4]["message"]


# ---- the vanishing view ---------------------------------------------------------------------
@pytest.mark.parametrize("changes", [
    {},
    {"depth": 1},
    {"depth": 6, "activation": "relu", "init": "he_normal", "bias_init": "zeros", "seed": 3},
    {"depth": 3, "width": 12, "loss": "quadratic", "init": "normal", "samples": 300},
])
def test_the_speeds_at_initialisation_are_the_labs(changes):
    config = {**VANISHING_DEFAULTS, **changes}
    message = VanishingSession(config).message()
    lab = nielsen_speeds(hidden=(config["width"],) * config["depth"],
                         activation=config["activation"], init=config["init"],
                         bias_init=config["bias_init"], loss=config["loss"],
                         samples=config["samples"], seed=config["seed"])
    assert message["speeds"] == [layer["speed_at_init"] for layer in lab.layers]
    assert message["step"] == 0 and len(message["layers"]) == config["depth"]
    depth = config["depth"]
    assert message["factors"] == [0.25 ** (depth - 1 - l) for l in range(depth)]
    assert message["bound"] == pytest.approx(
        [message["speeds"][-1] * 0.25 ** (depth - 1 - l) for l in range(depth)], rel=1e-15)
    assert message["loss"] == pytest.approx(lab.loss_at_init, rel=1e-12)


def test_the_speeds_while_training_are_the_labs_after_whole_epochs():
    config = {**VANISHING_DEFAULTS, "samples": 200, "batch_size": 20, "depth": 3}
    session = VanishingSession(config)
    after_two_epochs = session.advance(20)  # 10 mini-batches an epoch
    lab = nielsen_speeds(hidden=(30,) * 3, samples=200, batch_size=20, train_epochs=2,
                         lr=config["lr"], seed=0)
    assert after_two_epochs["step"] == 20 and after_two_epochs["epoch"] == 2
    np.testing.assert_allclose(after_two_epochs["speeds"],
                               [layer["speed_trained"] for layer in lab.layers],
                               rtol=1e-9)  # fit's fast step differs in the last bits
    assert after_two_epochs["loss"] == pytest.approx(lab.loss_trained, rel=1e-9)


def numpy_speeds(model, X: np.ndarray, y: np.ndarray) -> list[float]:
    """‖∂C/∂b^l‖ by hand for Nielsen's cross-entropy on sigmoid outputs (mean over samples)
    and sigmoid hidden layers: δ^L = (σ(z^L) − y)/N, δ^l = (δ^(l+1) W^(l+1)ᵀ) ⊙ σ′(z^l)."""
    weights = [(d.W, d.b) for d in model.dense_layers]
    zs, outs = numpy_forward(weights, ["sigmoid"] * (len(weights) - 1) + ["linear"], X)
    target = np.eye(weights[-1][0].shape[1])[y]
    delta = (FUNCTIONS["sigmoid"](zs[-1]) - target) / X.shape[0]
    speeds = []
    for l in range(len(weights) - 2, -1, -1):
        delta = (delta @ weights[l + 1][0].T) * DERIVATIVES["sigmoid"](zs[l])
        speeds.append(float(np.linalg.norm(delta.sum(axis=0))))
    return speeds[::-1]


def test_the_speeds_after_any_number_of_steps_equal_a_numpy_backprop():
    session = VanishingSession({**VANISHING_DEFAULTS, "depth": 5})
    for count in (1, 7, 50):
        message = session.advance(count)
        np.testing.assert_allclose(message["speeds"],
                                   numpy_speeds(session.model, session.X, session.y),
                                   rtol=1e-9)
    assert message["step"] == 58
    first, last = message["speeds"][0], message["speeds"][-1]
    assert message["ratio_last_first"] == pytest.approx(last / first)
    assert last > 10 * first  # the gradient vanishes towards the input


def test_the_vanishing_view_over_a_real_socket(server):
    with socket(server) as ws:
        early = ask(ws, {"type": "vanishing_step", "count": 1}, "vanishing")
        at_init = ask(ws, {"type": "vanishing", "depth": 5, "activation": "sigmoid",
                           "init": "normal", "seed": 2}, "vanishing")
        trained_a_bit = ask(ws, {"type": "vanishing_step", "count": 30}, "vanishing")
        refusals = [ask(ws, message, "vanishing") for message in (
            {"type": "vanishing", "depth": 11}, {"type": "vanishing", "depth": 0},
            {"type": "vanishing", "activation": "swish-9000"},
            {"type": "vanishing", "init": "magic"}, {"type": "vanishing", "bias_init": "x"},
            {"type": "vanishing", "loss": "hinge"}, {"type": "vanishing", "lr": 1e308},
            {"type": "vanishing_step", "count": 5000}, {"type": "vanishing", "width": 129})]
        assert ask(ws, {"type": "vanishing_step"}, "vanishing")["step"] == 31
    assert early["type"] == "error" and "before vanishing_step" in early["message"]
    lab = nielsen_speeds(hidden=(30,) * 5, init="normal", seed=2)
    assert at_init["speeds"] == [layer["speed_at_init"] for layer in lab.layers]
    twin = VanishingSession({**VANISHING_DEFAULTS, "depth": 5, "init": "normal", "seed": 2})
    assert trained_a_bit["speeds"] == twin.advance(30)["speeds"]
    assert trained_a_bit["step"] == 30
    assert [(r["type"], r["field"]) for r in refusals] == [
        ("error", "depth"), ("error", "depth"), ("error", "activation"), ("error", "init"),
        ("error", "bias_init"), ("error", "loss"), ("error", "lr"), ("error", "count"),
        ("error", "width")]
    assert "the limit" in refusals[0]["message"]
