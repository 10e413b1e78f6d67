"""The public names: lazily imported, never shadowed by a submodule, and dispatching to the
right backend."""

import importlib

import numpy as np
import pytest

import gradsight


def test_every_public_name_resolves():
    for name in gradsight.__all__:
        if name == "torch_adapter" or name in {"watch", "diagnose_torch",
                                               "classify_neurons_torch", "torch_runner"}:
            continue  # needs torch; covered in test_torch_adapter
        assert getattr(gradsight, name) is not None, name


def test_functions_are_not_shadowed_by_submodules():
    importlib.import_module("gradsight.diagnostics.fixes")
    importlib.import_module("gradsight.engine.gradcheck")
    assert callable(gradsight.doctor) and gradsight.doctor.__module__.endswith(".fixes")
    assert gradsight.diagnostics.doctor is gradsight.doctor
    assert gradsight.gradcheck.__module__ == "gradsight.engine.gradcheck"


def test_classify_neurons_dispatches_torch_models_to_the_adapter():
    torch = pytest.importorskip("torch")
    from gradsight.adapters.torch import classify_neurons_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 5), torch.nn.ReLU(), torch.nn.Linear(5, 5), torch.nn.Sigmoid(),
        torch.nn.Linear(5, 2),
    ).double()
    with torch.no_grad():
        model[0].bias[0] = -100.0  # a unit that is dead on every sample
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2))
    y = (X[:, 0] > 0).astype(int)
    via_dispatch = gradsight.classify_neurons(model, X, y)
    direct = classify_neurons_torch(model, X, y)
    assert via_dispatch.to_dict() == direct.to_dict()
    assert via_dispatch.counts()["1"]["dead"] == 1  # layer "1" is the ReLU module
    assert via_dispatch[0].unit == 0 and via_dispatch[0].state == "dead"


def test_import_gradsight_stays_light_of_the_optional_extras():
    """``import gradsight`` — and the modules that only mention an extra (the sinks, the
    trackers' re-exports, saved histories) — load none of the optional libraries: each is
    imported when it is used."""
    import subprocess
    import sys

    extras = ["torch", "lightning", "transformers", "tensorboard", "wandb", "dask",
              "distributed", "pyarrow"]
    code = (
        "import sys, gradsight\n"
        "import gradsight.diagnostics.sinks, gradsight.diagnostics.trackers\n"
        "import gradsight.integrations.tensorboard, gradsight.integrations.wandb\n"
        "gradsight.load_history, gradsight.diagnose\n"
        f"print([m for m in {extras!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
