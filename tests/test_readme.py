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


@pytest.mark.slow
def test_trainer_and_tracker_examples_run_and_print_what_the_readme_shows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The section "Use it with Lightning / Hugging Face / TensorBoard / W&B": each example
    runs as written, and the saved history's commands run on the installed entry point."""
    for module in ("lightning", "transformers", "tensorboard", "wandb", "pyarrow"):
        pytest.importorskip(module)
    lightning, hugging_face, tensorboard, wandb = _python_blocks(
        "Use it with Lightning / Hugging Face / TensorBoard / W&B")
    out = _run(lightning, tmp_path)
    assert "Vanishing gradients" in out and "critical" in out
    assert (tmp_path / "lightning_run.html").exists()
    metrics = (tmp_path / "logs" / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "grad_norm/net.0" in metrics.splitlines()[0]
    out = _run(hugging_face, tmp_path)
    assert out.strip().splitlines()[-1] == "True" and (tmp_path / "hf_run.html").exists()
    out = _run(tensorboard, tmp_path)
    assert out.strip().splitlines()[-1] == str(
        ["grad_b_norm/0", "grad_norm/0", "nonfinite/0", "update_ratio/0", "weight_norm/0"])
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Use it with Lightning"):text.index("## Architecture")]
    (commands,) = re.findall(r"```console\n(.*?)```", section, flags=re.S)
    entry = Path(sys.executable).parent / "gradsight"
    for line in commands.strip().splitlines():
        done = subprocess.run([str(entry), *line.split()[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert "Diagnosis" in subprocess.run([str(entry), "diagnose", "relu.parquet"], cwd=tmp_path,
                                         capture_output=True, text=True).stdout
    assert (tmp_path / "relu.html").exists()
    # W&B offline, its files and caches kept in tmp_path
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path))
    out = _run(wandb, tmp_path)
    assert out.strip().splitlines()[-1] == str(["grad_norm/0", "grad_norm/2"])
