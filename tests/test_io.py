"""Atomic writes and JSON output."""

import json
import os
import stat

import pytest

from gradsight.errors import InvalidValueError, require_finite, require_positive
from gradsight.io import atomic_path, atomic_write_text, dumps, jsonable


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_path_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "model.npz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_atomic_write_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.html", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_dumps_never_emits_bare_nan():
    text = dumps({"loss": float("nan"), "grad": [float("inf"), -float("inf"), 1.5]})
    assert json.loads(text) == {"loss": "nan", "grad": ["inf", "-inf", 1.5]}


def test_jsonable_numpy_values():
    np = pytest.importorskip("numpy")
    assert jsonable({"a": np.float32(0.5), "b": np.arange(3)}) == {"a": 0.5, "b": [0, 1, 2]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc", None])
def test_require_finite_names_the_value(bad):
    with pytest.raises(InvalidValueError, match="lr must be a finite number"):
        require_finite("lr", bad)


@pytest.mark.parametrize("bad", [0, -0.1])
def test_require_positive(bad):
    with pytest.raises(InvalidValueError, match=r"lr must be > 0"):
        require_positive("lr", bad)


def test_unwritable_targets_raise_one_line_output_errors(tmp_path):
    from gradsight.errors import OutputError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write .*file/out.png"):
        atomic_write_text(blocker / "out.png", "never")
    with pytest.raises(OutputError, match="it is a folder"):
        atomic_write_text(tmp_path, "never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_cli_unwritable_plot_path_exits_2_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from gradsight.cli import app

    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["activations", "--plot", str(blocker / "a.png")])
    assert result.exit_code == 2
    assert "cannot write" in result.output and "Traceback" not in result.output


def test_require_folder_refuses_a_missing_folder_unless_asked_to_make_it(tmp_path):
    from gradsight.errors import OutputError
    from gradsight.io import require_folder

    target = tmp_path / "nodir" / "x.png"
    with pytest.raises(OutputError, match="does not exist.*--mkdir"):
        require_folder(target)
    assert not (tmp_path / "nodir").exists()
    assert require_folder(target, mkdir=True) == target and (tmp_path / "nodir").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        require_folder(tmp_path / "file" / "x.png", mkdir=True)
    assert require_folder(tmp_path / "y.png") == tmp_path / "y.png"
