"""The README's Python examples run as written and print what the README says they print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def _run(code: str, cwd: Path) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_api_examples_run_and_give_the_values_in_their_comments(tmp_path: Path) -> None:
    (block,) = _python_blocks("The Python API in a few examples")
    checks = """
assert act.derivative(0.0) == 0.25 and act.derivative_from_output(0.5) == 0.25
assert traj.verdict == "converged" and abs(traj.x_final[0] - 2.0000059) < 1e-6
assert (tmp := gradsight.load("moons.npz")).predict(ds.X).tolist() == model.predict(ds.X).tolist()
print("ok")
"""
    assert _run(block + checks, tmp_path).strip().endswith("ok")


def test_torch_examples_run_and_print_what_the_readme_shows(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    watch, quick, factory, doctor = _python_blocks("Diagnosing your PyTorch model")
    out = _run(watch, tmp_path)
    assert out.startswith("[critical] Vanishing gradients")
    assert "[warning] The loss has stalled" in out  # from loss_fn=, without train_history
    out = _run(quick, tmp_path)
    # no problem (an info may say it is still converging after 50 steps)
    assert "[warning]" not in out and "[critical]" not in out and "'learning': 64" in out
    (tmp_path / "my_models.py").write_text(factory.split("\n", 1)[1], encoding="utf-8")
    out = _run(doctor, tmp_path)
    rows = [line.rsplit(" ", 2) for line in out.strip().splitlines()[:-1]]
    shown = {change: (round(float(loss), 3 if float(loss) > 0.1 else 4), float(accuracy))
             for change, loss, accuracy in rows}  # as the README's sentence rounds them
    assert shown == {"no change": (0.349, 0.85), "activation=relu, init=he_normal": (0.0026, 1.0),
                     "activation=tanh": (0.255, 0.925)}
    assert out.strip().splitlines()[-1] == "best: activation=relu, init=he_normal"
