"""TensorBoard and W&B sinks: what is written is read back with the trackers' own readers.

Events files are read with TensorBoard's ``plugin_event_accumulator`` (the loader behind
``tensorboard --logdir``) and ``tensor_util.make_ndarray``; an offline W&B run's ``.wandb``
file is read record by record and each record parsed with W&B's own protocol buffers
(``wandb.proto.wandb_internal_pb2.Record``). The values are checked against gradient norms
recomputed by hand in PyTorch inside the training loop, and against the watcher's and the
Monitor's own records.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import gradsight
from gradsight import nn as gnn
from gradsight import optim
from gradsight.diagnostics.history import history_from_json, history_to_json
from gradsight.diagnostics.monitor import Monitor
from gradsight.diagnostics.sinks import scalars
from gradsight.diagnostics.stats import LayerStats
from gradsight.diagnostics.trackers import (
    LOSS_CURVE_TAG,
    STEP_FIELD,
    TensorBoardSink,
    WandbSink,
    history_to_tensorboard,
    tensorboard_tag,
)
from gradsight.errors import GradsightError, InvalidValueError, MissingExtraError, OutputError

torch = pytest.importorskip("torch")

#: LayerStats field → tag prefix, written out here as the oracle of what a record logs
FIELD_TAGS = {"grad_W_norm": "grad_norm", "grad_b_norm": "grad_b_norm",
              "weight_norm": "weight_norm", "update_ratio": "update_ratio",
              "act_mean": "act_mean", "act_std": "act_std",
              "saturated_fraction": "saturated", "dead_fraction": "dead",
              "nonfinite": "nonfinite"}
STEP_TAGS = {"loss": "gradsight/loss", "loss_window": "gradsight/loss_window",
             "grad_norm_before_clip": "gradsight/grad_norm_before_clip"}


# ---- readers and oracles ----------------------------------------------------------------------
def read_tensorboard(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of an event file (or folder) as {tag: [(step, value), ...]}, read by
    TensorBoard's loader; every tag must be claimed by the scalars plugin."""
    from tensorboard.backend.event_processing import plugin_event_accumulator
    from tensorboard.util import tensor_util

    accumulator = plugin_event_accumulator.EventAccumulator(
        str(path), size_guidance={plugin_event_accumulator.TENSORS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()["tensors"]
    assert set(accumulator.PluginTagToContent("scalars")) == set(tags)
    result = {}
    for tag in tags:
        events = accumulator.Tensors(tag)
        assert all(event.tensor_proto.dtype == 2 for event in events)  # DT_DOUBLE
        result[tag] = [(event.step, tensor_util.make_ndarray(event.tensor_proto).item())
                       for event in events]
    return result


def expected_series(records: list[LayerStats]) -> dict[str, list[tuple[int, float]]]:
    """What a record list should log, built from the records' fields (tags as TensorBoard
    writes them for this test's layer names)."""
    series: dict[str, dict[int, float]] = {}
    for record in records:
        for field, prefix in FIELD_TAGS.items():
            value = getattr(record, field)
            if value is not None:
                series.setdefault(f"{prefix}/{record.layer}", {})[record.step] = float(value)
        for field, tag in STEP_TAGS.items():
            value = getattr(record, field)
            if value is not None:
                series.setdefault(tag, {})[record.step] = float(value)
    return {tensorboard_tag(tag): sorted(points.items()) for tag, points in series.items()}


def same(a: float, b: float) -> bool:
    """Equal as floats, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_same_series(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for tag, points in want.items():
        assert [step for step, _ in got[tag]] == [step for step, _ in points], tag
        for (step, value), (_, expected) in zip(got[tag], points, strict=True):
            assert same(value, expected), (tag, step, value, expected)


# ---- a real torch run with hand-computed gradient norms -----------------------------------
def _torch_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    # module names may hold characters a TensorBoard tag may not: "[", "]", " "
    model.add_module("fc[0] in", torch.nn.Linear(3, 4))
    model.add_module("act", torch.nn.Tanh())
    model.add_module("out", torch.nn.Linear(4, 1))
    return model


def train_watched(sinks, steps=5, poison_last=False, between=None):
    """Train a small torch model under watch(every=1, sinks) and return (watcher, oracle):
    the oracle holds, per step, what PyTorch says right before/after ``optimizer.step``."""
    model = _torch_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.MSELoss()
    generator = torch.Generator().manual_seed(1)
    X, Y = torch.randn(steps, 8, 3, generator=generator), torch.randn(steps, 8, 1,
                                                                      generator=generator)
    if poison_last:
        X[-1, 0, 0] = float("inf")  # the first layer's weight gradient becomes NaN
    layers = {"fc[0] in": model[0], "out": model[2]}
    oracle = []
    with gradsight.watch(model, optimizer=optimizer, every=1, loss_fn=loss_fn,
                         sinks=sinks) as watcher:
        for step, (x, y) in enumerate(zip(X, Y, strict=True)):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            seen = {"loss": loss.item()}
            before = {}
            for name, layer in layers.items():
                seen[f"grad_norm/{name}"] = torch.linalg.vector_norm(layer.weight.grad).item()
                seen[f"grad_b_norm/{name}"] = torch.linalg.vector_norm(layer.bias.grad).item()
                seen[f"weight_norm/{name}"] = torch.linalg.vector_norm(layer.weight).item()
                before[name] = layer.weight.detach().double().clone()
            optimizer.step()
            for name, layer in layers.items():
                change = torch.linalg.vector_norm(layer.weight.detach().double() - before[name])
                seen[f"update_ratio/{name}"] = (change / torch.linalg.vector_norm(
                    before[name])).item()
            oracle.append(seen)
            if between is not None:
                between(step)
    return watcher, oracle


def test_watched_torch_run_reads_back_as_recomputed_by_hand(tmp_path):
    with TensorBoardSink(tmp_path / "run") as board:
        watcher, oracle = train_watched([board])
    got = read_tensorboard(tmp_path / "run")
    history = watcher.history
    # every tag, step and value is exactly what the watcher recorded (float64, lossless) ...
    assert_same_series(got, expected_series(history))
    # ... the layer named "fc[0] in" under the tag rule, never under its raw name ...
    assert "grad_norm/fc_0__in" in got and not any("[" in tag for tag in got)
    # ... and the gradient readings are PyTorch's own norms, taken in the loop
    for reading in ("grad_norm", "grad_b_norm", "weight_norm", "update_ratio"):
        for raw, tag in (("fc[0] in", "fc_0__in"), ("out", "out")):
            values = [value for _, value in got[f"{reading}/{tag}"]]
            by_hand = [seen[f"{reading}/{raw}"] for seen in oracle]
            assert values == pytest.approx(by_hand, rel=1e-5), reading
    losses = [value for _, value in got["gradsight/loss"]]
    assert losses == pytest.approx([seen["loss"] for seen in oracle], rel=1e-6)
    assert [step for step, _ in got["grad_norm/out"]] == list(range(len(oracle)))


def test_a_nan_gradient_of_a_real_run_is_written_as_nan(tmp_path):
    with TensorBoardSink(tmp_path) as board:
        watcher, oracle = train_watched([board], poison_last=True)
    got = dict(read_tensorboard(tmp_path)["grad_norm/fc_0__in"])
    last = len(oracle) - 1
    assert math.isnan(oracle[last]["grad_norm/fc[0] in"])  # PyTorch's own norm is NaN
    assert math.isnan(got[last])
    assert all(math.isfinite(got[step]) for step in range(last))
    nonfinite = dict(read_tensorboard(tmp_path)["nonfinite/fc_0__in"])
    assert nonfinite[last] == float(next(r.nonfinite for r in watcher.history
                                         if r.step == last and r.layer == "fc[0] in")) > 0


def test_numpy_engine_monitor_writes_its_history(tmp_path):
    model = gnn.mlp("3-5-2", activation="relu", output_activation="sigmoid", seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(24, 3)), rng.integers(0, 2, size=(24, 2)).astype(float)
    with TensorBoardSink(tmp_path / "engine") as board:
        monitor = Monitor(every=1, sinks=[board])
        gradsight.fit(model, X, y, optimizer=optim.SGD(lr=0.5), epochs=2, batch_size=8,
                      callbacks=[monitor], progress=False)
    got = read_tensorboard(tmp_path / "engine")
    assert_same_series(got, expected_series(monitor.history))
    assert len(got["grad_norm/dense0"]) == 6  # 2 epochs × 3 batches, every one recorded


def test_history_to_tensorboard_of_a_saved_history_equals_the_live_sink(tmp_path):
    with TensorBoardSink(tmp_path / "live") as board:
        watcher, _ = train_watched([board])
    saved = tmp_path / "history.json"
    history_to_json(watcher.history, saved)
    path = history_to_tensorboard(history_from_json(saved), tmp_path / "saved")
    assert path.parent == tmp_path / "saved" and "tfevents" in path.name
    assert_same_series(read_tensorboard(path), read_tensorboard(tmp_path / "live"))


def test_history_to_tensorboard_writes_the_loss_curve(tmp_path):
    watcher, oracle = train_watched(None, steps=4)
    path = history_to_tensorboard(watcher, tmp_path)  # a Watcher: its .history
    got = read_tensorboard(path)
    curve = watcher.history.loss_curve
    assert curve  # the watcher kept one
    assert got[LOSS_CURVE_TAG] == [(step, float(loss)) for step, loss in curve]
    # every step recorded: the curve's points are the batch losses PyTorch computed
    assert [loss for _, loss in got[LOSS_CURVE_TAG]] == \
        pytest.approx([seen["loss"] for seen in oracle], rel=1e-6)
    del got[LOSS_CURVE_TAG]
    assert_same_series(got, expected_series(watcher.history))
    # RecordList.to_tensorboard is the same writer
    again = read_tensorboard(watcher.history.to_tensorboard(tmp_path / "method"))
    assert again.pop(LOSS_CURVE_TAG) == [(step, float(loss)) for step, loss in curve]
    assert_same_series(again, got)


def _hand_records():
    nan, inf = math.nan, math.inf
    return [LayerStats("blocks[0] fc", 0, step, grad_W_norm=value, update_ratio=-value,
                       weight_norm=1e-9 * (step + 1), loss=0.5)
            for step, value in enumerate([0.25, nan, inf, 1e-300])] + \
        [LayerStats("act", 1, step, kind="activation", act_mean=-inf, dead_fraction=nan)
         for step in range(4)]


def test_nan_and_inf_are_read_back_as_nan_and_inf(tmp_path):
    records = _hand_records()
    path = history_to_tensorboard(records, tmp_path / "history")
    with TensorBoardSink(tmp_path / "live") as board:
        for step in range(4):
            board.write(step, scalars([r for r in records if r.step == step]))
    for got in (read_tensorboard(path), read_tensorboard(tmp_path / "live")):
        assert_same_series(got, expected_series(records))
        norms = [value for _, value in got["grad_norm/blocks_0__fc"]]
        assert norms[0] == 0.25 and math.isnan(norms[1]) and norms[2] == math.inf
        assert norms[3] == 1e-300  # float64: a float32 scalar would have made it 0
        assert [value for _, value in got["update_ratio/blocks_0__fc"]][2] == -math.inf
        assert all(value == -math.inf for _, value in got["act_mean/act"])
        assert all(math.isnan(value) for _, value in got["dead/act"])


@pytest.mark.parametrize("raw, tag", [
    ("grad_norm/encoder.layer.0.attention", "grad_norm/encoder.layer.0.attention"),
    ("dead/blocks[0] relu", "dead/blocks_0__relu"),
    ("grad_norm/a:b,c(d)é", "grad_norm/a_b_c_d__"),
    ("grad_norm/x-y_z", "grad_norm/x-y_z"),
    ("/leading", "leading"),
])
def test_tag_rule_keeps_dots_slashes_underscores_and_replaces_the_rest(raw, tag):
    assert tensorboard_tag(raw) == tag


def test_the_docstring_examples_run():
    import doctest

    from gradsight.diagnostics import trackers

    failed, tried = doctest.testmod(trackers)
    assert failed == 0 and tried > 0


def test_tags_that_clean_to_the_same_name_stay_two_curves(tmp_path):
    with TensorBoardSink(tmp_path) as board:
        board.write(0, {"grad_norm/a b": 1.0, "grad_norm/a[b": 2.0})
        board.write(1, {"grad_norm/a[b": 4.0, "grad_norm/a b": 3.0})
    got = read_tensorboard(tmp_path)
    assert got == {"grad_norm/a_b": [(0, 1.0), (1, 3.0)], "grad_norm/a_b_2": [(0, 2.0), (1, 4.0)]}


def test_writing_into_a_used_log_dir_clobbers_nothing(tmp_path):
    records = _hand_records()
    (tmp_path / "notes.txt").write_text("mine")
    with TensorBoardSink(tmp_path) as board:
        board.write(0, {"grad_norm/x": 1.0})
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    first = history_to_tensorboard(records, tmp_path)
    second = history_to_tensorboard(records, tmp_path)  # the same second, the same process
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert first != second and set(after) == set(before) | {first.name, second.name}
    assert all(after[name] == data for name, data in before.items())
    assert_same_series(read_tensorboard(second), read_tensorboard(first))
    assert_same_series(read_tensorboard(first), expected_series(records))


def test_bad_history_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    for bad in ("text", 3, [LayerStats("a", 0, 0), 7], []):
        with pytest.raises(InvalidValueError) as error:
            history_to_tensorboard(bad, folder)
        assert "\n" not in str(error.value)
    with pytest.raises(InvalidValueError, match="step"):
        history_to_tensorboard([LayerStats("a", 0, -1, grad_W_norm=1.0)], folder)
    assert list(folder.iterdir()) == []
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="it is a file"):
        history_to_tensorboard(_hand_records(), a_file)
    with pytest.raises(OutputError, match="it is a file"):
        TensorBoardSink(a_file)
    with pytest.raises(InvalidValueError, match="flush_secs"):
        TensorBoardSink(folder, flush_secs=0)


def test_a_closed_sink_refuses_writes(tmp_path):
    board = TensorBoardSink(tmp_path)
    board.write(0, {"a": 1.0})
    board.close()
    board.close()
    with pytest.raises(OutputError, match="closed"):
        board.write(1, {"a": 2.0})
    with TensorBoardSink(tmp_path / "x") as other, pytest.raises(InvalidValueError, match="'a'"):
        other.write(0, {"a": "high"})
    assert read_tensorboard(tmp_path) == {"a": [(0, 1.0)]}


def test_missing_tensorboard_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    for make in (lambda: TensorBoardSink(tmp_path), lambda: history_to_tensorboard(
            _hand_records(), tmp_path)):
        with pytest.raises(MissingExtraError) as error:
            make()
        message = str(error.value)
        assert "\n" not in message and "pip install 'gradsight[tensorboard]'" in message
    assert list(tmp_path.iterdir()) == []


def test_missing_wandb_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingExtraError) as error:
        WandbSink()
    assert "\n" not in str(error.value)
    assert "pip install 'gradsight[wandb]'" in str(error.value)


def test_integrations_modules_are_the_same_classes():
    from gradsight.integrations import tensorboard as tb_integration
    from gradsight.integrations import wandb as wandb_integration

    assert tb_integration.TensorBoardSink is TensorBoardSink
    assert tb_integration.history_to_tensorboard is history_to_tensorboard
    assert wandb_integration.WandbSink is WandbSink


# ---- W&B, offline -----------------------------------------------------------------------------
def read_wandb_records(path: Path) -> list:
    """The records of a ``.wandb`` file: LevelDB-log framing (32 KiB blocks, each chunk with a
    CRC-32 of its type and data, checked here), each record parsed by W&B's protocol
    buffers."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0)
    block, position, pieces, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:  # a block's trailer: zeros
            position += room
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk = data[position + 7:position + 7 + length]
        assert len(chunk) == length, (position, length, len(data))
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum
        position += 7 + length
        pieces = chunk if kind in (1, 2) else pieces + chunk  # FULL, FIRST | MIDDLE, LAST
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
    return records


def wandb_rows(records: list) -> list[tuple[int, dict]]:
    """The history rows as (W&B step, {key: value}), values decoded from their JSON."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)  # "NaN", "Infinity" → float
            rows.append((record.history.step.num, row))
    return rows


@pytest.mark.slow
def test_wandb_offline_run_holds_the_watched_values(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert wandb.run is None
    with pytest.raises(GradsightError, match="wandb.init") as error:
        WandbSink()
    assert "\n" not in str(error.value)
    settings = wandb.Settings(x_disable_stats=True, console="off", disable_git=True,
                              save_code=False, x_save_requirements=False)
    run = wandb.init(mode="offline", dir=tmp_path, project="gradsight-test", settings=settings)
    run_folder = Path(run.dir).parent
    try:
        sink = WandbSink()  # the active run

        def loop_logs_its_own(step):
            if step >= 3:  # the loop logs twice a step: W&B's step runs ahead of the record
                run.log({"user/metric": step})
                run.log({"user/metric": step + 0.5})

        watcher, oracle = train_watched([sink], steps=6, poison_last=True,
                                        between=loop_logs_its_own)
        sink.write(6, {"grad_norm/by hand": math.inf, "dead/by hand": -math.inf})
    finally:
        run.finish()
        wandb.teardown()  # waits until the run's files are written; stops W&B's service
    assert wandb.run is None
    files = list(run_folder.glob("*.wandb"))
    assert len(files) == 1
    records = read_wandb_records(files[0])
    rows = wandb_rows(records)
    ours = {row[STEP_FIELD]: (step, row) for step, row in rows if STEP_FIELD in row}
    assert sorted(ours) == list(range(7))
    # logged at W&B's step = the recorded step while W&B was not ahead, after it later
    assert [ours[k][0] for k in range(4)] == [0, 1, 2, 3]
    assert all(ours[k][0] > k for k in (4, 5, 6))
    assert [row["user/metric"] for _, row in rows if "user/metric" in row] == \
        [3, 3.5, 4, 4.5, 5, 5.5]
    by_step: dict[int, list] = {}
    for record in watcher.history:
        by_step.setdefault(record.step, []).append(record)
    for step, group in by_step.items():
        row = ours[step][1]
        want = {tag: points[0][1] for tag, points in expected_series(group).items()}
        raw = {tensorboard_tag(key): value for key, value in row.items()
               if key != STEP_FIELD and not key.startswith(("_", "user/"))}
        assert set(raw) == set(want)
        assert all(same(raw[tag], want[tag]) for tag in want), step
        assert row["grad_norm/fc[0] in"] == pytest.approx(
            oracle[step]["grad_norm/fc[0] in"], rel=1e-5, nan_ok=True)
    assert math.isnan(ours[5][1]["grad_norm/fc[0] in"])  # the real NaN, logged as NaN
    assert ours[6][1]["grad_norm/by hand"] == math.inf
    assert ours[6][1]["dead/by hand"] == -math.inf
    # the charts' x-axis: every family of tags is drawn against gradsight/step
    metrics = {m.metric.glob_name or m.metric.name: m.metric.step_metric for m in records
               if m.WhichOneof("record_type") == "metric"}
    assert metrics["grad_norm/*"] == STEP_FIELD and metrics["gradsight/loss"] == STEP_FIELD
    assert STEP_FIELD in metrics


@pytest.mark.slow
def test_wandb_last_recorded_step_is_committed_when_the_watch_ends(tmp_path, monkeypatch):
    """W&B keeps a row logged with step= open for more values of its step; the watcher's
    flush at the end commits it, so run.summary holds the last recorded step at once."""
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    settings = wandb.Settings(x_disable_stats=True, console="off", disable_git=True,
                              save_code=False, x_save_requirements=False)
    run = wandb.init(mode="offline", dir=tmp_path, project="gradsight-test", settings=settings)
    try:
        watcher, oracle = train_watched([WandbSink(run)], steps=4)
        last = [r for r in watcher.history if r.layer == "fc[0] in"][-1]
        assert last.step == 3
        assert run.summary[STEP_FIELD] == 3
        assert run.summary["grad_norm/fc[0] in"] == last.grad_W_norm
        assert last.grad_W_norm == pytest.approx(oracle[3]["grad_norm/fc[0] in"], rel=1e-5)
    finally:
        run.finish()
        wandb.teardown()
