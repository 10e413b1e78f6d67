"""Run a command that may start processes of its own (mp.spawn, a browser) with a time limit.

``subprocess.run(..., timeout=...)`` kills only the direct child on timeout and then waits
for the output pipes to close, which the grandchildren still hold: a hung grandchild hangs
the test run. Here the command gets its own process group, its output goes to files, and on
timeout the whole group is killed and the test fails with what it printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile

import pytest


def run_bounded(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            err.seek(0)
            pytest.fail(f"{command[0]} did not finish in {timeout} s: {err.read()[-2000:]}")
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(command, code, out.read(), err.read())


def run_two_ranks(script: str, folder: object, timeout: float = 120) -> list[dict]:
    """Write ``script`` (which spawns two ranks, each writing ``rank{r}.json`` into the folder
    given as its second argument) into ``folder``, run it bounded, and read the ranks' JSON."""
    import json
    import sys
    from pathlib import Path

    path = Path(str(folder))
    (path / "ranks_run.py").write_text(script)
    done = run_bounded([sys.executable, str(path / "ranks_run.py"), str(path / "rendezvous"),
                        str(path)], timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((path / f"rank{r}.json").read_text()) for r in (0, 1)]
