"""``watch`` on a ``torch.compile``'d model: no graph break, no recompilation, the same numbers.

Dynamo's own counters (``torch._dynamo.utils.counters``) are the oracle: a compiled model
trained while watched must show as many graph breaks (none) and as many compiled graphs as
the same model trained unwatched. The recorded numbers must equal those the watcher records
on the eager model. Most tests use the ``aot_eager`` backend — dynamo traces and AOT autograd
splits forward and backward exactly as for inductor, without inductor's C++ compile time;
one test runs inductor itself.
"""

from __future__ import annotations

import copy
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import gradsight  # noqa: E402
from gradsight.adapters.torch import _compiled  # noqa: E402
from gradsight.adapters.torch._torch import is_compiled, unwrap  # noqa: E402

pytestmark = pytest.mark.slow  # torch.compile takes seconds to warm up

STEPS = 6


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.Sigmoid(), nn.Linear(16, 16),
                         nn.Tanh(), nn.Linear(16, 3))


class _Net(nn.Module):
    """A model class of the user's own: dynamo compiles its ``forward`` as the frame (not
    ``nn.Sequential``'s ``_call_impl``), and the model's own hooks sit outside that frame."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.norm = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.hidden, self.act, self.out = nn.Linear(4 * 6 * 6, 16), nn.Sigmoid(), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.norm(self.conv(x))).flatten(1)
        return self.out(self.act(self.hidden(h)))


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 6, 6, generator=generator),
             torch.randint(0, 3, (8,), generator=generator)) for _ in range(STEPS)]


def _train(model: nn.Module, watched: bool, backend: str | None = "aot_eager",
           every: int | None = 1, in_place: bool = False) -> tuple[list[dict], dict[str, int]]:
    """Train (compiled with ``backend`` unless None: ``torch.compile(model)``, or
    ``model.compile()`` when ``in_place``); the records and dynamo's counts."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    run = model
    if backend and in_place:
        model.compile(backend=backend)
    elif backend:
        run = torch.compile(model, backend=backend)
    optimizer = torch.optim.SGD(run.parameters(), lr=0.05)
    watcher = gradsight.watch(run, optimizer=optimizer, every=every) if watched else None
    try:
        for x, y in _batches():
            optimizer.zero_grad()
            nn.functional.cross_entropy(run(x), y).backward()
            optimizer.step()
    finally:
        if watcher is not None:
            watcher.remove()
    counts = {"graph_breaks": sum(counters["graph_break"].values()),
              "graphs": counters["stats"]["unique_graphs"],
              "frames": counters["frames"]["total"]}
    records = [r.to_dict() for r in watcher.history] if watcher is not None else []
    return records, counts


#: what the eager watcher reads from autograd's graph, which a compiled forward does not have
#: (the rules fall back on the measured ‖∂C/∂b‖/‖∂C/∂W‖)
STRUCTURAL = {"bias_zero_by"}


def _same_records(compiled: list[dict], eager: list[dict]) -> None:
    assert [(r["layer"], r["step"], r["kind"]) for r in compiled] == \
        [(r["layer"], r["step"], r["kind"]) for r in eager]
    for c, e in zip(compiled, eager, strict=True):
        for key, value in e.items():
            if key in STRUCTURAL:  # seen where a layer's graph is its own (in place)
                assert c[key] in (None, value)
            else:
                assert _close(c[key], value), (c["layer"], c["step"], key, c[key], value)


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-5, abs=1e-7, nan_ok=True)
    return a == b


def test_watching_adds_no_graph_break_and_no_recompilation():
    _, plain = _train(_model(), watched=False)
    records, watched = _train(_model(), watched=True)
    assert plain == {"graph_breaks": 0, "graphs": 1, "frames": 1}
    assert watched == plain, watched
    assert len({r["step"] for r in records}) == STEPS


def test_a_sparse_schedule_neither_recompiles_nor_misses_its_steps():
    _, plain = _train(_model(), watched=False)
    records, watched = _train(_model(), watched=True, every=4)
    assert watched == plain
    assert sorted({r["step"] for r in records}) == [0, 4]
    for step in (0, 4):  # the activations of the recorded steps, not of the others
        kinds = [r["kind"] for r in records if r["step"] == step]
        assert kinds.count("activation") == 3


def test_compiled_records_equal_the_eager_ones_and_names_have_no_orig_mod():
    model = _model()
    compiled, _ = _train(copy.deepcopy(model), watched=True)
    eager, _ = _train(copy.deepcopy(model), watched=True, backend=None)
    _same_records(compiled, eager)
    assert not any("_orig_mod" in r["layer"] for r in compiled)
    assert any(r["bias_zero_by"] for r in eager)  # the conv before BatchNorm, seen eagerly


def test_inductor_the_default_backend():
    _, plain = _train(_model(), watched=False, backend="inductor")
    records, watched = _train(_model(), watched=True, backend="inductor")
    assert watched == plain == {"graph_breaks": 0, "graphs": 1, "frames": 1}
    relu = [r for r in records if r["layer"] == "2"]
    assert len(relu) == STEPS and all(0.0 <= r["dead_fraction"] <= 1.0 for r in relu)


def test_after_remove_the_compiled_graph_calls_nothing_back():
    model = torch.compile(_model(), backend="aot_eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = set(_compiled._CALLBACKS)
    with gradsight.watch(model, optimizer=optimizer) as watcher:
        for x, y in _batches()[:2]:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        assert set(_compiled._CALLBACKS) > before
    assert set(_compiled._CALLBACKS) == before
    recorded = len(watcher.history)
    for x, y in _batches()[2:]:  # the graph may still hold the operator: it does nothing
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert len(watcher.history) == recorded and watcher._calls == []


def test_watching_a_model_compiled_before_warns():
    model = torch.compile(_model(), backend="aot_eager")
    x, y = _batches()[0]
    model(x)  # compiled now, without gradsight's hooks
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.warns(UserWarning, match="before watch"), \
            gradsight.watch(model, optimizer=optimizer):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_unwrap_removes_compile_and_parallel_wrappers_in_any_nesting():
    inner = _model()
    compiled = torch.compile(inner, backend="aot_eager")
    assert unwrap(compiled) is inner and is_compiled(compiled)
    assert unwrap(nn.DataParallel(compiled)) is inner and is_compiled(nn.DataParallel(compiled))
    assert not is_compiled(inner)
    in_place = _model()
    in_place[4].compile(backend="aot_eager")
    assert is_compiled(in_place) and unwrap(in_place) is in_place
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = [layer.name for layer in gradsight.watch(compiled)._params]
    assert names == ["0", "1", "4", "6", "8"]


@pytest.mark.parametrize("in_place", [False, True], ids=["torch.compile(model)", "model.compile()"])
def test_a_model_class_of_ones_own_compiles_to_one_graph_watched_or_not(in_place):
    # dynamo compiles the class's forward as the frame; the model's own hooks (the
    # ForwardBatch) and the hooks called from outside a traced frame run eagerly, not as
    # graphs of their own
    _, plain = _train(_Net(), watched=False, in_place=in_place)
    compiled, watched = _train(_Net(), watched=True, in_place=in_place)
    assert plain == {"graph_breaks": 0, "graphs": 1, "frames": 1}
    assert watched == plain, watched
    eager, _ = _train(_Net(), watched=True, backend=None)
    _same_records(compiled, eager)
    assert {r["layer"] for r in compiled if r["kind"] == "activation"} == {"relu", "act"}


def test_a_sequential_compiled_in_place_compiles_what_any_hook_makes_it_compile():
    """``nn.Sequential.compile()`` compiles ``_call_impl``, which dynamo skips along with
    ``Sequential.forward``: unwatched, nothing is compiled at all. Any forward hook on a
    submodule (a no-op lambda) sends it through the hooked call path, and dynamo compiles
    each such submodule's forward as a frame. Watching compiles exactly those graphs — the
    hooks' own code is never a graph — with no graph break, and the records are right."""
    from torch._dynamo.utils import counters

    def counts() -> dict[str, int]:
        return {"graph_breaks": sum(counters["graph_break"].values()),
                "graphs": counters["stats"]["unique_graphs"]}

    def train(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for x, y in _batches():
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

    torch._dynamo.reset()
    counters.clear()
    noop = _model()
    noop.compile(backend="aot_eager")
    for module in noop:  # the modules a watcher hooks: layers with parameters, activations
        if not isinstance(module, nn.Flatten):
            module.register_forward_hook(lambda module, args, output: None)
    train(noop, torch.optim.SGD(noop.parameters(), lr=0.05))
    any_hook = counts()
    torch._dynamo.reset()
    counters.clear()
    _, _ = _train(_model(), watched=False, in_place=True)
    assert counts() == {"graph_breaks": 0, "graphs": 0}  # unwatched: nothing compiled
    records, watched = _train(_model(), watched=True, in_place=True)
    assert watched["graph_breaks"] == 0 and watched["graphs"] == any_hook["graphs"] > 0
    eager, _ = _train(_model(), watched=True, backend=None)
    _same_records(records, eager)


def test_a_submodule_compiled_in_place_is_watched_without_graph_breaks():
    """Only some submodules compiled in place (``module.compile()``): no graph break, the
    right records."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model()
    model[4].compile(backend="aot_eager")  # only the Linear: its hooks run in the graph
    model[5].compile(backend="aot_eager")  # the Sigmoid: its activation hook too
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with gradsight.watch(model, optimizer=optimizer, every=2) as watcher:
        for x, y in _batches():
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    assert sum(counters["graph_break"].values()) == 0
    sigmoid = [r for r in watcher.history if r.layer == "5"]
    assert [r.step for r in sigmoid] == [0, 2, 4]
    assert all(0.0 < r.act_mean < 1.0 for r in sigmoid)


def test_a_compiled_twin_neither_takes_nor_feeds_the_watched_models_records():
    # two instances of one class compiled in one process: without hook guards dynamo gives
    # them one graph, and the watched model ran its twin's hook-less graph
    torch._dynamo.reset()
    batches = _batches()
    watched = torch.compile(_model(), backend="aot_eager")
    twin = torch.compile(_model(), backend="aot_eager")
    optimizer = torch.optim.SGD(watched.parameters(), lr=0.05)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.05)
    config = torch._dynamo.config
    setting = config.skip_nnmodule_hook_guards
    with gradsight.watch(watched, optimizer=optimizer, every=1) as watcher:
        assert config.skip_nnmodule_hook_guards is False
        for step, (x, y) in enumerate(batches[:4]):
            if step == 2:  # the twin trains in between, on inputs 100 times larger
                for _ in range(3):
                    twin_optimizer.zero_grad()
                    nn.functional.cross_entropy(twin(100 * x), y).backward()
                    twin_optimizer.step()
            optimizer.zero_grad()
            nn.functional.cross_entropy(watched(x), y).backward()
            optimizer.step()
    assert config.skip_nnmodule_hook_guards == setting  # given back
    activations = [r for r in watcher.history if r.kind == "activation"]
    per_step = {step: [r for r in activations if r.step == step] for step in range(4)}
    assert all(len(records) == 3 for records in per_step.values())  # ReLU, Sigmoid, Tanh
    # the same numbers as an eager run of the watched model alone: nothing of the twin's
    eager_records, _ = _train(_model(), watched=True, backend=None)
    eager = [r for r in eager_records if r["kind"] == "activation"][:12]
    for ours, theirs in zip(activations, eager, strict=True):
        assert ours.act_mean == pytest.approx(theirs["act_mean"], rel=1e-5, abs=1e-7)
