"""Saved histories (save_history / RecordList.save / load_history): Parquet and JSON Lines
give back every record field by field, the run's metadata, and the same diagnosis; the
Parquet file is a normal table for pyarrow and pandas; a bad file is one line, never a
traceback; a failed save keeps the older file."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import gradsight
from gradsight.diagnostics import LayerStats, Monitor, load_history, save_history
from gradsight.diagnostics.history import RecordList, history_to_csv, history_to_json
from gradsight.engine import mlp
from gradsight.errors import DataError, InvalidValueError, MissingExtraError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")

FORMATS = (".parquet", ".jsonl")


# ---- the runs: the in-memory originals are the oracle ----------------------------------------
def record_torch_run() -> RecordList:
    """A watched torch MLP: six ReLU units dead from the start (bias −50), a PReLU whose
    weight is not watched (coverage < 100%), and a NaN in the last step's batch, which makes
    NaN norms and non-finite counts."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.PReLU(),
                          nn.Linear(16, 3))
    with torch.no_grad():
        model[0].bias[:6] = -50.0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    with gradsight.watch(model, optimizer=opt, loss_fn=loss_fn, every=1) as watcher:
        for step in range(6):
            batch = X.clone()
            if step == 5:
                batch[0, 0] = float("nan")
            opt.zero_grad()
            loss_fn(model(batch), y).backward()
            opt.step()
    return watcher.history


def record_engine_run() -> Monitor:
    """A NumPy-engine run (gradsight.fit) under a Monitor recording every step: sigmoid
    outputs fed to a cross-entropy, a mismatch only the run's set-up shows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    monitor = Monitor(every=1)
    model = mlp([2, 8, 8, 2], activation="sigmoid", output_activation="sigmoid", seed=0)
    gradsight.fit(model, X, y, loss="cross_entropy", epochs=3, batch_size=16,
                  callbacks=[monitor], progress=False)
    return monitor


def _edge_history() -> RecordList:
    """Hand-made records with every kind of value a column holds: NaN, ±inf, None, False,
    text with non-ASCII characters, and a set-up and loss curve with non-finite numbers."""
    history = RecordList([
        LayerStats("dense0", 0, 0, epoch=0, grad_W_norm=math.nan, grad_b_norm=math.inf,
                   weight_norm=-math.inf, update_ratio=1e-300, nonfinite=3, skipped=False,
                   loss=math.inf, role="hidden", skipped_between=0, note="ΔW/W — ∞"),
        LayerStats("relu0", 1, 0, epoch=0, kind="activation", activation="relu",
                   act_mean=0.25, act_std=math.nan, dead_fraction=0.5, skipped=True,
                   source="input of dense1", bias_zero_by=""),
        LayerStats("dense1", 2, 1, grad_W_norm=5e-324, time_steps=7, time_grad_ratio=math.inf,
                   attention_entropy=0.0, loss_window=-0.0),
    ])
    history.setup = {"output_activation": None, "loss": "cross_entropy", "classes": 2,
                     "first_loss": math.inf, "probabilities": None, "optimizer": "SGD"}
    history.loss_curve = [(0, math.nan), (1, 0.5), (2, -math.inf)]
    return history


@pytest.fixture(scope="module")
def torch_history() -> RecordList:
    return record_torch_run()


@pytest.fixture(scope="module")
def engine_run() -> Monitor:
    return record_engine_run()


@pytest.fixture(scope="module")
def engine_history(engine_run) -> RecordList:
    return engine_run.history


def _same_value(a, b) -> bool:
    """Equal, NaN equal to NaN, and of the same type (an int stays an int, None stays None)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b and (not isinstance(a, float)
                                              or math.copysign(1, a) == math.copysign(1, b))


def _assert_same_records(loaded, original) -> None:
    assert len(loaded) == len(original)
    for got, want in zip(loaded, original, strict=True):
        assert isinstance(got, LayerStats)
        for name in LayerStats.field_names():
            value, expected = getattr(got, name), getattr(want, name)
            if isinstance(expected, (np.floating, np.integer)):
                expected = expected.item()
            assert _same_value(value, expected), (want.layer, want.step, name, value, expected)


def _assert_same_metadata(loaded, original) -> None:
    assert isinstance(loaded, RecordList)
    assert loaded.coverage == original.coverage
    if original.setup is None:
        assert loaded.setup is None
    else:
        assert loaded.setup.keys() == original.setup.keys()
        assert all(_same_value(loaded.setup[k], v) for k, v in original.setup.items())
    if original.loss_curve is None:
        assert loaded.loss_curve is None
    else:
        assert len(loaded.loss_curve) == len(original.loss_curve)
        for (step, mean), (step0, mean0) in zip(loaded.loss_curve, original.loss_curve,
                                                strict=True):
            assert step == step0 and _same_value(mean, float(mean0))


def _assert_same_diagnosis(loaded, original) -> None:
    with np.errstate(all="ignore"):
        want, got = gradsight.diagnose(original), gradsight.diagnose(loaded)
    assert [f.to_dict() for f in got] == [f.to_dict() for f in want]
    assert got.coverage == want.coverage


# ---- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", FORMATS)
def test_a_watched_torch_run_comes_back_with_the_same_diagnosis(torch_history, tmp_path,
                                                                suffix) -> None:
    original = torch_history
    # the run really has what must survive: dead units, NaN norms, non-finite counts and a
    # parameter left out of the coverage
    assert any(r.dead_fraction for r in original)
    assert any(isinstance(r.grad_W_norm, float) and math.isnan(r.grad_W_norm) for r in original)
    assert any(r.nonfinite > 0 for r in original) and original.coverage.left_out
    path = original.save(tmp_path / f"run{suffix}")
    loaded = load_history(path)
    _assert_same_records(loaded, original)
    _assert_same_metadata(loaded, original)
    _assert_same_diagnosis(loaded, original)
    with np.errstate(all="ignore"):
        codes = gradsight.diagnose(loaded).codes
        bare = gradsight.diagnose(RecordList(original)).codes  # without the coverage
    assert {"nonfinite", "dead-units", "coverage"} <= set(codes) and "coverage" not in bare


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_engine_run_under_a_monitor_comes_back_with_the_same_diagnosis(
        engine_run, tmp_path, suffix) -> None:
    original = engine_run.history
    path = save_history(engine_run, tmp_path / f"run{suffix}")  # the Monitor itself
    loaded = load_history(path)
    assert original.setup is not None and original.loss_curve and original.coverage is None
    _assert_same_records(loaded, original)
    _assert_same_metadata(loaded, original)
    _assert_same_diagnosis(loaded, original)
    # the set-up is what the mismatch is read from: without it the diagnosis differs
    assert "output-loss-mismatch" in gradsight.diagnose(loaded).codes
    assert "output-loss-mismatch" not in gradsight.diagnose(RecordList(original)).codes


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_kind_of_value_keeps_its_type_and_bits(tmp_path, suffix) -> None:
    original = _edge_history()
    loaded = load_history(save_history(original, tmp_path / f"edge{suffix}"))
    _assert_same_records(loaded, original)
    _assert_same_metadata(loaded, original)
    assert loaded[2].grad_W_norm == 5e-324 and math.copysign(1, loaded[2].loss_window) == -1


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_plain_list_of_records_is_saved_without_metadata(tmp_path, suffix) -> None:
    records = list(_edge_history())
    loaded = load_history(save_history(records, tmp_path / f"plain{suffix}"))
    _assert_same_records(loaded, records)
    assert loaded.setup is None and loaded.loss_curve is None and loaded.coverage is None


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_empty_history_round_trips(tmp_path, suffix) -> None:
    loaded = load_history(save_history(RecordList(), tmp_path / f"empty{suffix}"))
    assert isinstance(loaded, RecordList) and len(loaded) == 0


def test_the_json_and_csv_exports_load_too(engine_history, tmp_path) -> None:
    history_to_json(engine_history, tmp_path / "run.json")
    history_to_csv(engine_history, tmp_path / "run.csv")
    for name in ("run.json", "run.csv"):
        loaded = load_history(tmp_path / name)
        _assert_same_records(loaded, engine_history)
        assert loaded.setup is None  # the exports hold the records only


def test_format_is_chosen_by_suffix_or_by_argument(tmp_path) -> None:
    history = _edge_history()
    save_history(history, tmp_path / "a.parquet")
    save_history(history, tmp_path / "b.jsonl")
    save_history(history, tmp_path / "c.data", format="jsonl")
    save_history(history, tmp_path / "d", format="parquet")
    save_history(history, tmp_path / "e")  # no suffix: Parquet, pyarrow being installed
    for name in ("a.parquet", "d", "e"):
        assert (tmp_path / name).read_bytes()[:4] == b"PAR1"
    for name in ("b.jsonl", "c.data"):
        assert json.loads((tmp_path / name).read_text().splitlines()[0])["gradsight"]
    for name in ("a.parquet", "b.jsonl", "c.data", "d", "e"):
        _assert_same_records(load_history(tmp_path / name), history)


@pytest.mark.parametrize("name,format,fragments", [
    ("run.txt", None, ["'.txt'", ".parquet", ".jsonl"]),
    ("run.jsonl", "csv", ["'csv'", "jsonl", "parquet"]),
])
def test_an_unknown_format_is_one_line_naming_the_allowed_ones(tmp_path, name, format,
                                                               fragments) -> None:
    with pytest.raises(InvalidValueError) as caught:
        save_history(_edge_history(), tmp_path / name, format=format)
    message = str(caught.value)
    assert "\n" not in message and all(f in message for f in fragments)
    assert list(tmp_path.iterdir()) == []


# ---- the files are open formats --------------------------------------------------------------
def test_parquet_is_a_normal_table_for_pandas_and_pyarrow(torch_history, tmp_path) -> None:
    path = save_history(torch_history, tmp_path / "run.parquet")
    frame = pd.read_parquet(path)
    assert list(frame.columns) == LayerStats.field_names()
    assert frame["layer"].tolist() == [r.layer for r in torch_history]
    assert frame["step"].dtype == np.int64 and frame["step"].tolist() == [
        r.step for r in torch_history]
    assert frame["nonfinite"].tolist() == [r.nonfinite for r in torch_history]
    norms = frame["grad_W_norm"].to_numpy(dtype=float)
    want = np.array([np.nan if r.grad_W_norm is None else r.grad_W_norm for r in torch_history])
    np.testing.assert_array_equal(norms, want)  # NaN where NaN, same doubles elsewhere
    # None is a null (not NaN) in Parquet: pyarrow's own reader tells them apart
    table = pq.read_table(path)
    assert table.column("grad_W_norm").to_pylist()[1] is None  # an activation record
    assert table.schema.field("step").type == pa.int64()
    assert table.schema.field("skipped").type == pa.bool_()
    meta = json.loads(table.schema.metadata[b"gradsight"])
    assert meta["version"] == 1
    assert meta["coverage"]["left_out"] == torch_history.coverage.left_out
    assert meta["setup"]["loss"] == torch_history.setup["loss"]


def test_jsonl_is_a_header_and_one_record_per_line(tmp_path) -> None:
    history = _edge_history()
    path = save_history(history, tmp_path / "run.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert set(header) == {"gradsight"} and header["gradsight"]["version"] == 1
    assert header["gradsight"]["setup"]["first_loss"] == "inf"
    assert header["gradsight"]["loss_curve"] == [[0, "nan"], [1, 0.5], [2, "-inf"]]
    rows = [json.loads(line) for line in lines[1:]]
    assert len(rows) == len(history)
    assert rows[0]["grad_W_norm"] == "nan" and rows[0]["grad_b_norm"] == "inf"
    assert rows[0]["note"] == "ΔW/W — ∞" and rows[1]["skipped"] is True
    assert rows[1]["grad_W_norm"] is None


# ---- without pyarrow -------------------------------------------------------------------------
@pytest.fixture
def no_pyarrow(monkeypatch):
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)


def test_without_pyarrow_jsonl_is_the_default_and_parquet_says_what_to_install(
        tmp_path, no_pyarrow) -> None:
    history = _edge_history()
    save_history(history, tmp_path / "run")
    assert json.loads((tmp_path / "run").read_text().splitlines()[0])["gradsight"]
    _assert_same_records(load_history(tmp_path / "run"), history)
    with pytest.raises(MissingExtraError) as caught:
        save_history(history, tmp_path / "run.parquet")
    message = str(caught.value)
    assert "\n" not in message and "pip install 'gradsight[parquet]'" in message
    assert not (tmp_path / "run.parquet").exists()


def test_without_pyarrow_a_parquet_file_says_what_to_install(tmp_path, monkeypatch) -> None:
    path = save_history(_edge_history(), tmp_path / "run.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'gradsight\[parquet\]'"):
        load_history(path)


# ---- atomic writes ---------------------------------------------------------------------------
def test_a_parquet_writer_failing_midway_keeps_the_older_file(engine_history, tmp_path,
                                                              monkeypatch) -> None:
    older = _edge_history()
    path = save_history(older, tmp_path / "run.parquet")
    before = path.read_bytes()

    def half_written(table, where, **options):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", half_written)
    with pytest.raises(gradsight.GradsightError, match="No space left"):
        save_history(engine_history, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.parquet"]  # no temp file left
    _assert_same_records(load_history(path), older)


def test_a_jsonl_save_failing_midway_keeps_the_older_file(engine_history, tmp_path) -> None:
    older = _edge_history()
    path = save_history(older, tmp_path / "run.jsonl")
    before = path.read_bytes()
    newer = list(engine_history)
    newer[20] = LayerStats("bad", 0, 3, grad_W_norm="not a number")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="grad_W_norm"):
        save_history(newer, path)  # written line by line: fails at the 21st record
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.jsonl"]


# ---- bad files -------------------------------------------------------------------------------
def _lines(tmp_path: Path) -> list[str]:
    return save_history(_edge_history(), tmp_path / "good.jsonl").read_text().splitlines()


def _foreign_parquet_with_metadata(path: Path) -> None:
    """Gradsight metadata, but no ``step`` column."""
    table = pa.table({"layer": ["a"], "index": [0]})
    table = table.replace_schema_metadata({"gradsight": json.dumps({"version": 1})})
    pq.write_table(table, path)


def _wrong_type_parquet(path: Path) -> None:
    table = pa.table({"layer": ["a"], "index": [0], "step": ["zero"]})
    pq.write_table(table.replace_schema_metadata({"gradsight": '{"version": 1}'}), path)


BAD_FILES = {
    "truncated.parquet": lambda p, t: p.write_bytes(
        save_history(_edge_history(), t / "good.parquet").read_bytes()[:-40]),
    "garbage.parquet": lambda p, t: p.write_bytes(bytes(range(256)) * 3),
    "garbage_after_magic.parquet": lambda p, t: p.write_bytes(b"PAR1" + b"\x00\xff" * 50),
    "foreign.parquet": lambda p, t: pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(p),
    "no_step.parquet": lambda p, t: _foreign_parquet_with_metadata(p),
    "wrong_type.parquet": lambda p, t: _wrong_type_parquet(p),
    "empty.parquet": lambda p, t: p.write_bytes(b""),
    "missing.parquet": lambda p, t: None,
    "folder.parquet": lambda p, t: p.mkdir(),
    "bad_line.jsonl": lambda p, t: p.write_text("\n".join(
        [*_lines(t)[:2], '{"layer": "x", "index": 0,', *_lines(t)[3:]])),
    "bad_value.jsonl": lambda p, t: p.write_text("\n".join(
        [*_lines(t)[:3], _lines(t)[3].replace('"step": 1', '"step": "one"')])),
    "no_header.jsonl": lambda p, t: p.write_text("\n".join(_lines(t)[1:])),
    "no_layer.jsonl": lambda p, t: p.write_text(_lines(t)[0] + '\n{"index": 0, "step": 0}\n'),
    "newer.jsonl": lambda p, t: p.write_text('{"gradsight": {"version": 99}}\n'),
    "blank.jsonl": lambda p, t: p.write_text("\n\n"),
    "binary.jsonl": lambda p, t: p.write_bytes(b"{\xff\xfe\x00"),
    "text.json": lambda p, t: p.write_text("not json"),
    "foreign.csv": lambda p, t: p.write_text("a,b\n1,2\n"),
}
#: what the message must say besides the path
BAD_REASONS = {"bad_line.jsonl": "line 3", "bad_value.jsonl": "line 4",
               "no_layer.jsonl": "line 2", "newer.jsonl": "version 99",
               "missing.parquet": "no such file", "folder.parquet": "folder",
               "empty.parquet": "empty", "no_step.parquet": "'step'",
               "wrong_type.parquet": "'step'", "foreign.parquet": "'gradsight' metadata"}


def make_bad_file(name: str, folder: Path) -> Path:
    """The bad file ``name`` (one of :data:`BAD_FILES`) in ``folder``; shared with the CLI's
    tests."""
    path = folder / name
    BAD_FILES[name](path, folder)
    return path


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_one_line_naming_the_path_and_what_was_expected(tmp_path, name) -> None:
    path = make_bad_file(name, tmp_path)
    with pytest.raises(DataError) as caught:
        load_history(path)
    message = str(caught.value)
    assert "\n" not in message
    assert repr(str(path)) in message and "expected" in message
    assert BAD_REASONS.get(name, "") in message
