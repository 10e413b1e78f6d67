"""Training runs of the tour, made exactly as ``gradsight train`` makes them.

Same data pipeline (load, stratified split with the seed, standardise with the training
statistics), same model (``mlp`` with the seed, zero biases), same optimizer and ``fit``
call with a :class:`~gradsight.diagnostics.Monitor` (on the default schedule unless
``monitor_every``; it only reads the values the passes already hold) — so the
``gradsight train ...`` command shown under a figure reproduces its numbers (the tests run
those commands and compare).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import engine as nn
from ... import optim
from ...diagnostics import Monitor
from ...engine import data as gdata
from ...engine.train import evaluate
from ...engine.train import fit_one_of_many as fit

TEST_SIZE = 0.2


@dataclass
class TrainRun:
    """One run: its label, the CLI arguments that reproduce it, the trained model and data."""

    label: str
    argv: list[str]
    model: Any
    history: Any
    loss: Any
    X_train: Any
    y_train: Any
    X_test: Any
    y_test: Any
    monitor: Any = None
    final: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON of the run: configuration (as CLI arguments), per-epoch history, final."""
        return {"label": self.label, "command": self.argv,
                "history": [dict(row) for row in self.history.epochs],
                "final": self.final, "stopped": self.history.stopped}


def train_like_cli(label: str, *, data: str = "digits", hidden: tuple[int, ...] = (30, 30),
                   activation: str = "sigmoid", init: str = "xavier_uniform",
                   loss: str = "cross_entropy", optimizer: str = "sgd", lr: float = 0.1,
                   epochs: int = 10, batch_size: int = 32, seed: int = 0,
                   monitor_every: int | None = None, dataset: Any = None) -> TrainRun:
    """Train as ``gradsight train`` with these options would (classification data);
    ``dataset`` is ``gradsight.data.load(data)`` when the caller has it already."""
    dataset = gdata.load(data) if dataset is None else dataset
    X_raw, X_test_raw, y_train, y_test = gdata.train_test_split(dataset.X, dataset.y,
                                                                TEST_SIZE, seed)
    X_train, scaled_test, _, _ = gdata.standardize(X_raw, X_test_raw)
    assert scaled_test is not None  # a test split was given
    X_test = scaled_test
    output_activation = None if loss in ("cross_entropy", "bce_with_logits") else "sigmoid"
    n_out = 1 if loss == "bce_with_logits" else dataset.n_classes
    spec = "-".join(str(n) for n in (dataset.n_features, *hidden, n_out))
    model = nn.mlp(spec, activation=activation, output_activation=output_activation,
                   init=init, seed=seed)
    cost = nn.loss(loss)
    # gradsight train always trains with a Monitor (its diagnosis reads it), default schedule:
    # the steps a Monitor records are not fused, so a chaotic run (sigmoid, η = 15) depends on
    # which steps are recorded at the last bits — and the command shown must reproduce it
    monitor = Monitor(every=monitor_every)
    history = fit(model, X_train, y_train, loss=cost, optimizer=optim.get(optimizer, lr=lr),
                  epochs=epochs, batch_size=batch_size, seed=seed,
                  validation=(X_test, y_test), callbacks=[monitor], progress=False)
    train_loss, train_accuracy = evaluate(model, X_train, y_train, cost)
    test_loss, test_accuracy = evaluate(model, X_test, y_test, cost)
    argv = ["train", "--data", data, "--hidden", ",".join(str(h) for h in hidden),
            "--activation", activation, "--init", init, "--loss", loss,
            "--optimizer", optimizer, "--lr", f"{lr:g}", "--epochs", str(epochs),
            "--batch-size", str(batch_size), "--seed", str(seed)]
    final = {"train_loss": train_loss, "train_accuracy": train_accuracy,
             "test_loss": test_loss, "test_accuracy": test_accuracy}
    return TrainRun(label, argv, model, history, cost, X_train, y_train, X_test, y_test,
                    monitor, final)
