"""Twenty sessions training at once: the server keeps answering, refuses the 21st by name, and
frees every session when its socket closes. No timing is asserted here (the project forbids
timing assertions in tests); ``benchmarks/bench_play.py --load`` measures the latency of
``/api/health`` and the memory under the same load."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from gradsight.play import Limits, PlayServer

pytestmark = pytest.mark.slow
SESSIONS = Limits().max_sessions  # 20
PLAY_SECONDS = 3.0


def socket(server: PlayServer):
    return connect(f"{server.base.replace('http://', 'ws://')}/ws?token={server.token}",
                   max_size=2**24, open_timeout=30, close_timeout=10,
                   max_queue=None)  # the client keeps reading: its close is not held up


def frame_after(ws, step: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        assert message["type"] != "error", message
        if message["type"] == "frame" and message["step"] > step:
            return message


def test_twenty_sessions_play_at_once_and_all_are_freed() -> None:
    with PlayServer() as server, httpx.Client(base_url=server.base,
                                              params={"token": server.token},
                                              timeout=30) as client:
        def health() -> dict[str, Any]:
            response = client.get("/api/health")
            assert response.status_code == 200
            return response.json()

        assert health()["sessions"] == 0
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(socket(server)) for _ in range(SESSIONS)]
            for ws in sockets:
                ws.send(json.dumps({"type": "configure"}))
                ws.send(json.dumps({"type": "play"}))
            answered = 0
            deadline = time.monotonic() + PLAY_SECONDS
            while time.monotonic() < deadline:  # every health request answers while they play
                answer = health()
                assert answer["status"] == "ok" and answer["sessions"] == SESSIONS
                answered += 1
                time.sleep(0.02)
            assert answered > 0
            with socket(server) as extra:  # the 21st: refused by name, then closed
                refused = json.loads(extra.recv(timeout=30))
                assert refused["type"] == "error"
                assert refused["message"].startswith(
                    f"too many open sessions: the limit is {SESSIONS}")
            for ws in sockets:  # every session trained
                assert frame_after(ws, 0)["step"] > 0
            assert health()["sessions"] == SESSIONS
        deadline = time.monotonic() + 30
        while health()["sessions"] != 0:
            assert time.monotonic() < deadline, f"{health()['sessions']} sessions left open"
            time.sleep(0.05)
