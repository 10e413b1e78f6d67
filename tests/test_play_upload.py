"""A CSV file of one's own in the playground: ``POST /api/upload`` reads it with the reader of
``gradsight train --data FILE.csv`` (the oracle: :func:`gradsight.engine.data.from_csv`
itself), a session trains on it, and every refusal is one line while the server serves on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from gradsight.engine.data import from_csv
from gradsight.play import Limits, PlayServer
from gradsight.play.sessions import split_arrays
from gradsight.play.upload import PENDING, UploadError, UploadStore, read_upload


@pytest.fixture(scope="module")
def server():
    with PlayServer() as running:
        yield running


def upload(server: PlayServer, body: bytes, name: str = "data.csv", token: bool = True,
           **options: str) -> httpx.Response:
    params = {"name": name, **options, **({"token": server.token} if token else {})}
    return httpx.post(server.base + "/api/upload", params=params, content=body, timeout=30)


def health(server: PlayServer) -> dict[str, Any]:
    response = httpx.get(server.base + "/api/health", params={"token": server.token},
                         timeout=10)
    assert response.status_code == 200
    return response.json()


def socket(server: PlayServer):
    return connect(f"{server.base.replace('http://', 'ws://')}/ws?token={server.token}",
                   max_size=2**24, open_timeout=10, close_timeout=5)


def receive(ws, kind: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["type"] in (kind, "error"):
            return message


def ask(ws, message: dict[str, Any], kind: str) -> dict[str, Any]:
    ws.send(json.dumps(message))
    return receive(ws, kind)


def two_classes(n: int = 120, features: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(n, features)), 3)
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def csv_text(X: np.ndarray, y: np.ndarray, delimiter: str = ",", decimal: str = ".",
             labels: list[str] | None = None) -> str:
    names = [f"x{i + 1}" for i in range(X.shape[1])] + ["label"]
    rows = [delimiter.join(names)]
    for row, target in zip(X, y, strict=True):
        cells = [f"{v:g}".replace(".", decimal) for v in row]
        rows.append(delimiter.join([*cells, labels[target] if labels else str(target)]))
    return "\n".join(rows) + "\n"


def one_line(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["type"] == "error" and answer["field"] == "upload"
    assert "\n" not in answer["message"] and answer["message"]
    return answer["message"]


# ---- a good file trains ----------------------------------------------------------------
@pytest.mark.parametrize("delimiter, decimal", [(",", "."), (";", ",")])
def test_an_uploaded_csv_is_what_from_csv_reads_and_a_session_trains_on_it(
        server, tmp_path: Path, delimiter: str, decimal: str) -> None:
    X, y = two_classes()
    text = csv_text(X, y, delimiter, decimal)
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    oracle = from_csv(path)  # the library reads the same file
    assert oracle.reading is not None
    answer = upload(server, text.encode())
    assert answer.status_code == 200, answer.text
    read = answer.json()
    assert read["type"] == "upload" and read["rows"] == 120 and read["features"] == 2
    assert read["lines"] == oracle.reading.lines()  # the reader's own lines, as `train`'s
    assert read["lines"][0].startswith("read data.csv: 120 rows, 3 columns, header: ")
    if decimal == ",":
        assert "delimiter ';' (sniffed), decimal mark ',' (sniffed)" in read["lines"][0]
    with socket(server) as ws:
        configured = ask(ws, {"type": "configure", "upload": read["upload"], "seed": 3},
                         "configured")
        assert configured["type"] == "configured", configured
        assert configured["config"]["dataset"] == "csv" and configured["sizes"][0] == 2
        assert configured["data"]["rows"] == 120 and configured["data"]["drawable"] is True
        split = split_arrays(oracle.X, oracle.y, 3)  # as `gradsight train` splits it
        train = np.array(configured["points"]["train"])
        assert np.array_equal(train[:, :2], split.X_train)
        assert np.array_equal(train[:, 2], split.y_train)
        first = receive(ws, "frame")
        assert first["step"] == 0 and first["boundary"]["n"] == 40
        ws.send(json.dumps({"type": "play"}))
        later = receive(ws, "frame")
        while later["step"] < 30:
            later = receive(ws, "frame")
        assert later["loss"] < first["loss"]
        # configure again with the same upload: the socket keeps its data
        again = ask(ws, {"type": "configure", "upload": read["upload"], "hidden": [4]},
                    "configured")
        assert again["type"] == "configured" and again["sizes"] == [2, 4, 2]
    # the upload went with its socket: another one cannot claim it
    with socket(server) as other:
        refused = ask(other, {"type": "configure", "upload": read["upload"]}, "configured")
        assert refused["type"] == "error" and refused["field"] == "upload"
        assert "upload the CSV file again" in refused["message"]
    assert health(server)["status"] == "ok"


def test_the_reader_in_python_equals_from_csv(tmp_path: Path) -> None:
    X, y = two_classes(80, 3)
    text = csv_text(X, y, "\t", ",", labels=["no", "yes"])
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    oracle = from_csv(tmp_path / "t.csv")
    read = read_upload(text.encode(), "t.csv")
    assert np.array_equal(read.X, oracle.X) and np.array_equal(read.y, oracle.y)
    assert read.classes == oracle.classes == ["no", "yes"]
    assert read.reading is not None and oracle.reading is not None
    assert read.reading.lines() == oracle.reading.lines()


def test_more_than_two_features_train_and_the_boundary_is_not_drawn(server) -> None:
    X, y = two_classes(100, 4)
    read = upload(server, csv_text(X, y).encode(), "four.csv").json()
    assert read["features"] == 4
    with socket(server) as ws:
        configured = ask(ws, {"type": "configure", "upload": read["upload"]}, "configured")
        assert configured["sizes"][0] == 4 and configured["bounds"] is None
        assert configured["points"] == {"train": [], "test": []}
        assert configured["data"]["drawable"] is False
        assert receive(ws, "frame")["boundary"] is None
        frame = ask(ws, {"type": "step", "count": 20}, "frame")
        assert frame["step"] == 20 and frame["boundary"] is None and frame["loss"] > 0


def test_three_classes_train_without_a_boundary(server) -> None:
    rng = np.random.default_rng(1)
    X = np.round(rng.normal(size=(90, 2)), 3)
    y = np.digitize(X[:, 0], [-0.4, 0.4])
    read = upload(server, csv_text(X, y, labels=["a", "b", "c"]).encode()).json()
    assert read["classes"] == ["a", "b", "c"]
    with socket(server) as ws:
        configured = ask(ws, {"type": "configure", "upload": read["upload"]}, "configured")
        assert configured["sizes"] == [2, 8, 8, 3]
        assert configured["data"]["drawable"] is False
        assert receive(ws, "frame")["step"] == 0
        frame = ask(ws, {"type": "step", "count": 5}, "frame")
        assert frame["step"] == 5 and frame["boundary"] is None


# ---- refusals: one line each, and the server serves on --------------------------------
def test_a_10_mb_upload_is_refused_in_one_line(server) -> None:
    message = one_line(upload(server, b"1,2,0\n" * (10 * 2**20 // 6)), 413)
    assert message == ("data.csv of 10.0 MB is too large: the limit of an upload is 5 MB "
                       "(5242880 bytes)")
    assert health(server)["status"] == "ok"


def test_a_binary_file_and_a_name_that_is_not_csv_are_refused(server) -> None:
    png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256))
    assert one_line(upload(server, png, "picture.png")) == (
        "only CSV files can be uploaded (a name ending in .csv), got 'picture.png'")
    assert one_line(upload(server, png, "picture.csv")) == (
        "CSV file 'picture.csv' is not a text file (it holds NUL bytes)")
    assert health(server)["status"] == "ok"


def test_text_columns_need_the_option_and_a_regression_target_is_refused(server) -> None:
    rows = ["colour,size,label"] + [f"{c},{s},{s % 2}" for c, s in
                                    zip(["red", "green", "blue"] * 10, range(30), strict=True)]
    text = ("\n".join(rows) + "\n").encode()
    message = one_line(upload(server, text))
    assert "'colour'" in message and "--categorical onehot" in message
    assert health(server)["status"] == "ok"
    read = upload(server, text, categorical="onehot").json()  # train's flag, as a parameter
    assert read["features"] == 4 and any(line.startswith("one-hot: column 'colour'")
                                         for line in read["lines"])
    regression = b"x,y\n" + b"".join(f"{i},{i * 1.5 + 0.25}\n".encode() for i in range(30))
    assert one_line(upload(server, regression)) == (
        "data.csv: the playground trains classifiers only for now, and target: column 2 'y' "
        "holds numbers with decimals → regression (choose a column of class labels as the "
        "target, or the task classification)")
    assert one_line(upload(server, b"a,b\n1,0\n", "x.csv", colour="red")).startswith(
        "unknown option 'colour' of an upload")
    assert one_line(upload(server, b"a,b\n1,0\n", "x.csv", task="guess")) == (
        "task must be one of auto, classification, regression, got 'guess'")
    assert health(server)["status"] == "ok"


def test_the_row_limit_and_the_token() -> None:
    with PlayServer(limits=Limits(max_upload_rows=50)) as small:
        X, y = two_classes(60)
        assert one_line(upload(small, csv_text(X, y).encode())) == (
            "data.csv has 61 lines: the limit of an upload is 50 rows")
        assert upload(small, csv_text(X[:50], y[:50]).encode()).status_code == 200
        refused = upload(small, csv_text(X, y).encode(), token=False)
        assert refused.status_code == 403 and "token" in refused.text
        assert health(small)["limits"]["max_upload_bytes"] == 5 * 2**20
        assert health(small)["limits"]["max_upload_rows"] == 50


def test_configure_with_an_unknown_or_malformed_upload_is_refused(server) -> None:
    with socket(server) as ws:
        for value, words in (("nope", "unknown upload 'nope'"), (5, "upload must be null")):
            refused = ask(ws, {"type": "configure", "upload": value}, "configured")
            assert refused["type"] == "error" and refused["field"] == "upload"
            assert words in refused["message"]
        assert ask(ws, {"type": "configure"}, "configured")["config"]["dataset"] == "moons"


def test_the_store_keeps_the_newest_uploads_only() -> None:
    X, y = two_classes(30)
    dataset = read_upload(csv_text(X, y).encode(), "d.csv")
    store = UploadStore()
    ids = [store.put("d.csv", dataset).id for _ in range(PENDING + 2)]
    assert len(store) == PENDING and store.take(ids[0]) is None
    assert store.take(ids[-1]) is not None and store.take(ids[-1]) is None
    with pytest.raises(UploadError, match="only CSV files"):
        read_upload(b"a,b\n", "notes.txt")
