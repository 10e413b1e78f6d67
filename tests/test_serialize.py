"""save/load: round trips, atomic writes, and clear errors for bad files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradsight
from gradsight import engine, optim
from gradsight.engine.serialize import load, save
from gradsight.errors import DataError, GradsightError, InvalidValueError


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_predicts_identically(tmp_path: Path, dtype: str) -> None:
    model = engine.mlp("5-7-6-3", activation="leaky_relu:0.2", output_activation="sigmoid",
                       init="he_normal", bias_init="normal", dtype=dtype, seed=4)
    path = save(model, tmp_path / "model.npz", metadata={"data": "moons", "lr": 0.1})
    loaded = load(path)
    X = np.random.default_rng(0).normal(size=(9, 5))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.dtype == np.dtype(dtype)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.spec == model.spec
    assert loaded.metadata == {"data": "moons", "lr": 0.1}
    for a, b in zip(loaded.parameters(), model.parameters(), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_public_names_and_a_loaded_model_trains(tmp_path: Path) -> None:
    model = engine.mlp("2-3-2", activation="tanh", seed=0)
    gradsight.save(model, tmp_path / "m.npz")
    loaded = gradsight.load(tmp_path / "m.npz")
    X, y = np.random.default_rng(1).normal(size=(8, 2)), np.arange(8) % 2
    history = gradsight.fit(loaded, X, y, loss="cross_entropy", optimizer=optim.SGD(lr=0.1),
                            epochs=2, batch_size=4, progress=False)
    assert history.stopped is None and history.steps == 4


def test_file_layout_is_npz_with_a_json_spec(tmp_path: Path) -> None:
    model = engine.mlp("3-2", seed=0)
    save(model, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["dense0.W", "dense0.b", "spec"]
        document = json.loads(str(archive["spec"][()]))
    assert document["format"] == "gradsight-model" and document["version"] == 1
    assert document["model"]["layers"][0] == {
        "type": "dense", "n_in": 3, "n_out": 2, "init": "xavier_uniform", "bias_init": "zeros"}


def test_write_is_atomic_and_keeps_the_given_name(tmp_path: Path) -> None:
    model = engine.mlp("3-2", seed=0)
    target = tmp_path / "sub" / "model.bin"
    save(model, target)
    assert target.is_file() and sorted(p.name for p in target.parent.iterdir()) == ["model.bin"]
    X = np.ones((1, 3))
    np.testing.assert_array_equal(load(target).predict(X), model.predict(X))
    # a failed save leaves the previous file untouched and no temp file behind
    before = target.read_bytes()
    with pytest.raises(InvalidValueError):
        save("not a model", target)  # type: ignore[arg-type]
    (target.parent / "a_directory").mkdir()
    with pytest.raises(GradsightError, match="cannot write"):
        save(model, target.parent / "a_directory")
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["a_directory", "model.bin"]


def test_bad_files_raise_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00not a zip file at all")
    with pytest.raises(DataError, match="cannot read"):
        load(garbage)
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    with pytest.raises(DataError, match="not a gradsight model"):
        load(tmp_path / "plain.npz")
    np.save(tmp_path / "array.npy", np.ones(3))
    with pytest.raises(DataError):
        load(tmp_path / "array.npy")

    model = engine.mlp("3-4-2", seed=0)
    good = save(model, tmp_path / "good.npz")

    def rewrite(name: str, change) -> Path:  # type: ignore[no-untyped-def]
        with np.load(good, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        document = json.loads(str(arrays["spec"][()]))
        change(document, arrays)
        arrays["spec"] = np.array(json.dumps(document))
        path = tmp_path / name
        np.savez(path, **arrays)
        return path

    with pytest.raises(DataError, match="version 99"):
        load(rewrite("v99.npz", lambda d, a: d.update(version=99)))
    with pytest.raises(DataError, match="dense1.W"):
        load(rewrite("missing.npz", lambda d, a: a.pop("dense1.W")))
    with pytest.raises(DataError, match="do not fit"):
        load(rewrite("shape.npz", lambda d, a: a.update({"dense0.W": np.ones((2, 2))})))
    with pytest.raises(DataError, match="activation"):
        load(rewrite("act.npz", lambda d, a: d["model"]["layers"][1].update(activation="swish")))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(Path(good).read_bytes()[:100])
    with pytest.raises(DataError):
        load(truncated)
    assert zipfile.is_zipfile(good)


def test_a_save_interrupted_mid_write_leaves_the_old_file_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = engine.mlp("3-4-2", seed=0), engine.mlp("3-4-2", seed=1)
    target = save(old, tmp_path / "model.npz")
    before = target.read_bytes()

    def half_then_ctrl_c(file: Any, **arrays: Any) -> None:
        file.write(b"PK\x03\x04 half of a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save(new, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left
    X = np.ones((2, 3))
    np.testing.assert_array_equal(load(target).predict(X), old.predict(X))


def test_a_file_that_is_not_a_zip_gets_a_plain_message(tmp_path: Path) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(DataError, match="not an .npz") as error:
        load(text)
    assert "pickle" not in str(error.value)
