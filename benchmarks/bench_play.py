"""What the playground's server streams: updates a second, time to the first frame, memory
per session.

The server runs as a fresh ``gradsight play --no-browser --port 0`` process (what a user
starts); this script is the page, over a real WebSocket on loopback:

* frames (updates) a second and optimizer steps a second while playing, for the default
  network (2-8-8-2 tanh, Adam, 160 training points of moons, batch 16) and for a network of
  4 hidden layers of 64 units on 1,000 points (800 train), measured over ``--seconds``;
* the time from the ``play`` message to the first frame (median of 10), and from starting
  the command to the first frame of a session (the URL printed, the socket opened, the
  default network configured and its first frame received);
* the server's resident memory (VmRSS of /proc) before and after opening ``--sessions``
  sessions (each configured and stepped once), per session, and after closing them (on a
  fresh server warmed by one session that played 2 s: the libraries and caches loaded on
  first use are not a session's).

    .venv/bin/python benchmarks/bench_play.py [--seconds 3] [--sessions 10]

``--load``: ``--sessions`` (default 20, the limit) sessions of the default network playing at
once for ``--seconds`` (default 30) while ``/api/health`` is asked every 50 ms: its p50/p95
latency, the open sessions, and the server's RSS before, during and after (every socket
closed).

    .venv/bin/python benchmarks/bench_play.py --load [--seconds 30] [--sessions 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from websockets.sync.client import ClientConnection, connect

BIG = {"hidden": [64, 64, 64, 64], "n_samples": 1000}


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc (not Linux?)")


def receive(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(ws.recv(timeout=60))
        if message["type"] == kind:
            return message
        if message["type"] == "error":
            raise RuntimeError(message["message"])


def start_server() -> tuple[subprocess.Popen[str], str, str, float]:
    """(process, ws address, token, seconds until the URL was printed)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", "from gradsight.cli import main; main()", "play",
         "--no-browser", "--port", "0"], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = process.stdout.readline() if process.stdout else ""
    match = re.search(r"http://([\d.]+:\d+)/\?token=([\w-]+)", line)
    if match is None:
        process.kill()
        raise RuntimeError(f"gradsight play printed {line!r}")
    return process, f"ws://{match.group(1)}/ws", match.group(2), time.perf_counter() - started


def session(address: str, token: str) -> ClientConnection:
    return connect(f"{address}?token={token}", max_size=2**24, open_timeout=30)


def streaming(ws: ClientConnection, config: dict[str, Any], seconds: float
              ) -> tuple[float, float, float]:
    """(frames a second, steps a second, mean frame size in kB) while playing."""
    ws.send(json.dumps({"type": "configure", **config}))
    receive(ws, "configured")
    receive(ws, "frame")
    ws.send(json.dumps({"type": "play"}))
    first = receive(ws, "frame")
    start, frames, size, last = time.perf_counter(), 0, 0, first
    while time.perf_counter() - start < seconds:
        text = ws.recv(timeout=60)
        message = json.loads(text)
        if message["type"] == "frame":
            frames, size, last = frames + 1, size + len(text), message
    elapsed = time.perf_counter() - start
    ws.send(json.dumps({"type": "pause"}))
    receive(ws, "frame")
    return frames / elapsed, (last["step"] - first["step"]) / elapsed, size / frames / 1000


def play_to_first_frame(ws: ClientConnection, trials: int = 10) -> float:
    """Median milliseconds from sending ``play`` to the first frame."""
    ws.send(json.dumps({"type": "configure"}))
    receive(ws, "configured")
    receive(ws, "frame")
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        ws.send(json.dumps({"type": "play"}))
        receive(ws, "frame")
        times.append(1000 * (time.perf_counter() - start))
        ws.send(json.dumps({"type": "pause"}))
        receive(ws, "frame")
    return statistics.median(times)


def memory(pid: int, address: str, token: str, count: int, config: dict[str, Any]
           ) -> tuple[float, float, float]:
    """(RSS before, after opening ``count`` sessions, after closing them) in MiB; one session
    opened and closed first, so that the libraries a session loads on first use (scikit-learn
    for the data sets, the diagnostics) count before."""
    with session(address, token) as ws:
        ws.send(json.dumps({"type": "configure", **config}))
        receive(ws, "configured")
        receive(ws, "frame")
    time.sleep(1.0)
    before = rss_mib(pid)
    with contextlib.ExitStack() as stack:
        for _ in range(count):
            ws = stack.enter_context(session(address, token))
            ws.send(json.dumps({"type": "configure", **config}))
            receive(ws, "configured")
            receive(ws, "frame")
            ws.send(json.dumps({"type": "step"}))
            receive(ws, "frame")
        opened = rss_mib(pid)
    time.sleep(1.0)
    return before, opened, rss_mib(pid)


def load(seconds: float, count: int) -> None:
    """``count`` sessions playing at once for ``seconds``: /api/health's latency, memory."""
    process, address, token, _ = start_server()
    health = f"{address.replace('ws://', 'http://')[:-3]}/api/health?token={token}"

    def ask() -> tuple[float, dict[str, Any]]:
        start = time.perf_counter()
        with urllib.request.urlopen(health, timeout=30) as answer:  # noqa: S310 - loopback
            body = json.loads(answer.read())
        return 1000 * (time.perf_counter() - start), body

    try:
        with session(address, token) as ws:  # warm: the libraries a session loads once
            ws.send(json.dumps({"type": "configure"}))
            receive(ws, "configured")
            ws.send(json.dumps({"type": "play"}))  # the findings and unit states too
            deadline = time.perf_counter() + 2.0
            while time.perf_counter() < deadline:
                receive(ws, "frame")
        time.sleep(1.0)
        before = rss_mib(process.pid)
        idle = sorted(ask()[0] for _ in range(20))
        stop = threading.Event()
        frames = [0] * count

        def drain(ws: ClientConnection, k: int) -> None:  # the pages read every frame
            with contextlib.suppress(Exception):
                while not stop.is_set():
                    if json.loads(ws.recv(timeout=5))["type"] == "frame":
                        frames[k] += 1

        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(session(address, token)) for _ in range(count)]
            readers = []
            for k, ws in enumerate(sockets):
                ws.send(json.dumps({"type": "configure"}))
                ws.send(json.dumps({"type": "play"}))
                readers.append(threading.Thread(target=drain, args=(ws, k), daemon=True))
                readers[-1].start()
            latencies, sessions, during = [], set(), 0.0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                took, body = ask()
                latencies.append(took)
                sessions.add(body["sessions"])
                time.sleep(0.05)
            during = rss_mib(process.pid)
            elapsed = time.perf_counter() - start
            stop.set()
        closed_at = time.perf_counter()
        while ask()[1]["sessions"]:
            time.sleep(0.05)
        freed = time.perf_counter() - closed_at
        time.sleep(1.0)
        after = rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    latencies.sort()

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    print(f"load: {count} sessions of the default network playing for {elapsed:.0f} s")
    print(f"/api/health idle: p50 {pct(idle, 0.5):.1f} ms, p95 {pct(idle, 0.95):.1f} ms")
    print(f"/api/health under load ({len(latencies)} requests): p50 {pct(latencies, 0.5):.1f} "
          f"ms, p95 {pct(latencies, 0.95):.1f} ms, max {latencies[-1]:.1f} ms")
    print(f"sessions seen by health: {sorted(sessions)}; frames per session per second: "
          f"{sum(frames) / count / elapsed:.1f}")
    print(f"RSS: before {before:.1f} MiB, during {during:.1f} MiB, after {after:.1f} MiB "
          f"({100 * (after - before) / before:+.1f}%); all sessions freed {freed:.2f} s after "
          "the sockets closed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--sessions", type=int, default=None)
    parser.add_argument("--load", action="store_true",
                        help="20 sessions playing at once: health latency and memory")
    options = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if options.load:
        load(options.seconds or 30.0, options.sessions or 20)
        return
    options.seconds = options.seconds or 3.0
    options.sessions = options.sessions or 10
    for label, config in (("default", {}), ("4×64 on 1,000 points", BIG)):
        process, address, token, _ = start_server()  # a fresh server: its own heap
        try:
            before, opened, closed = memory(process.pid, address, token, options.sessions,
                                            config)
        finally:
            process.terminate()
            process.wait(timeout=30)
        per = (opened - before) / options.sessions
        print(f"memory, {label}: {before:.1f} MiB → {opened:.1f} MiB with "
              f"{options.sessions} sessions ({per:.2f} MiB a session) → {closed:.1f} MiB "
              "after closing them")
    print()
    launched = time.perf_counter()
    process, address, token, url_seconds = start_server()
    try:
        with session(address, token) as ws:
            ws.send(json.dumps({"type": "configure"}))
            receive(ws, "configured")
            receive(ws, "frame")
            cold = time.perf_counter() - launched
            print(f"command to URL printed: {url_seconds:.2f} s; command to the first frame of "
                  f"a session: {cold:.2f} s")
            print(f"'play' to the first frame: {play_to_first_frame(ws):.1f} ms (median of 10)")
            print()
            print(f"{'network':<32} {'frames/s':>9} {'steps/s':>9} {'kB/frame':>9}")
            for label, config in (("default 2-8-8-2, 160 points", {}),
                                  ("4×64 hidden, 800 points", BIG),
                                  ("4×64, steps_per_frame 1000",
                                   {**BIG, "steps_per_frame": 1000})):
                fps, steps, size = streaming(ws, config, options.seconds)
                print(f"{label:<32} {fps:9.1f} {steps:9.0f} {size:9.1f}")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
