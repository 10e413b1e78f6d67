"""Ctrl-C during ``gradsight tour``: the page is built in a hidden folder beside the target
and moved into place at the end, so an interrupted build leaves the old folder as it was (or
no folder at all) and no temporary folder behind; a finished build replaces the old one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradsight.present.tour import descent, run_tour


def _interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_interrupted_first_build_leaves_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(descent, "build", _interrupt)
    out = tmp_path / "tour"
    with pytest.raises(KeyboardInterrupt):
        # "numeric" is built and written, then "descent" is interrupted
        run_tour(out, quick=True, progress=False, sections=["numeric", "descent"])
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_rebuild_leaves_the_old_tour_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "tour"
    run_tour(out, quick=True, progress=False, sections=["descent"])
    before = _snapshot(out)
    assert "index.html" in before and "json/descent.json" in before
    monkeypatch.setattr(descent, "build", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_tour(out, quick=True, progress=False, sections=["numeric", "descent"])
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["tour"]


def test_a_finished_build_replaces_the_old_tour_whole(tmp_path: Path) -> None:
    out = tmp_path / "tour"
    run_tour(out, quick=True, progress=False, sections=["descent"])
    (out / "json" / "stale.json").write_text("{}")
    result = run_tour(out, quick=True, progress=False, sections=["numeric"])
    files = _snapshot(out)
    assert "json/stale.json" not in files and "json/descent.json" not in files
    assert "json/numeric.json" in files and 'id="numeric"' in files["index.html"].decode()
    assert result.index_path == out / "index.html" and all(p.exists() for p in result.files)
    assert [p.name for p in tmp_path.iterdir()] == ["tour"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # like any folder, not 0700


def test_a_folder_with_other_files_keeps_them(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    run_tour(out, quick=True, progress=False, sections=["descent"])
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "index.html").is_file() and (out / "figures" / "descent-path.png").is_file()
    before = _snapshot(out)
    monkeypatch.setattr(descent, "build", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_tour(out, quick=True, progress=False, sections=["descent"])
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert sorted(p.name for p in out.iterdir()) == ["figures", "index.html", "json",
                                                      "notes.txt"]
