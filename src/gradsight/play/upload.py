"""A CSV file of the user's own in the playground, read exactly as ``gradsight train --data
FILE.csv`` reads it (:func:`gradsight.engine.data.from_csv`: header, delimiter, decimal mark,
target, task, text columns, missing cells — every guess said in the reader's own lines).

The page sends the file's bytes to ``POST /api/upload?name=FILE.csv`` (behind the token, like
every route), optionally with the reader's options as query parameters (``target``, ``task``,
``header``, ``delimiter``, ``decimal``, ``categorical``, ``missing``: the values of
``train``'s flags). The answer is JSON: ``{"type": "upload", "upload": ID, "name": ...,
"rows": ..., "features": ..., "feature_names": [...], "target": ..., "classes": [...],
"lines": [the reader's lines]}``, or ``{"type": "error", "field": "upload", "message":
"<one line>"}`` — with status 200, as the socket's ``error`` messages: the file arrived and
the answer is a refusal the page shows (a 4xx would also be a console error in the browser);
413 for a body over the size limit (the page checks the size before it sends). A session
then trains on it: ``{"type": "configure", "upload": ID, ...}`` over its socket.

An upload waits in an :class:`UploadStore` until a session claims it; the session then owns
the data (they go when its socket closes). At most :data:`PENDING` uploads wait; the oldest
is dropped for a new one.

Limits (:class:`~.limits.Limits`): ``max_upload_bytes`` (5 MB) and ``max_upload_rows``
(100,000); a file whose name does not end in ``.csv`` is refused, and so is a regression
target (the playground trains classifiers: its frames show accuracy and a class boundary).
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..engine.data import Dataset, from_csv
from ..errors import GradsightError
from .limits import Limits
from .protocol import error_message, jsonable

__all__ = ["CSV_OPTIONS", "PENDING", "Upload", "UploadError", "UploadStore", "read_upload",
           "reader_options", "upload_route"]

PENDING = 8  # uploads that wait for a session at most (the oldest is dropped)
DRAIN_FACTOR = 8  # a body over the limit is read (and dropped) up to 8× the limit, then cut
#: the reader's options a page may pass, and the values each takes (as ``train``'s flags)
CSV_OPTIONS: dict[str, tuple[str, ...] | None] = {
    "target": None, "task": ("auto", "classification", "regression"),
    "header": ("auto", "yes", "no"), "delimiter": None, "decimal": (".", ","),
    "categorical": ("onehot",), "missing": ("drop", "mean"),
}
_UNSAFE = re.compile(r"[^\w.\- ]")


class UploadError(GradsightError):
    """An upload refused: one line that says why (and what the limit is)."""


@dataclass
class Upload:
    """A CSV file read, waiting for (or owned by) a session."""

    id: str
    name: str
    dataset: Dataset

    def summary(self) -> dict[str, Any]:
        """The route's answer: what was read, in the reader's own lines."""
        data = self.dataset
        reading = data.reading
        return {"type": "upload", "upload": self.id, "name": self.name,
                "rows": data.n_samples, "features": data.n_features,
                "feature_names": list(data.feature_names), "target": data.target_name,
                "classes": list(data.classes or []),
                "lines": [] if reading is None else reading.lines()}


def reader_options(query: Mapping[str, str]) -> dict[str, Any]:
    """The reader's options of a query (``train``'s flag values), checked; others refused."""
    options: dict[str, Any] = {}
    for key, value in query.items():
        if key in ("token", "name"):
            continue
        if key not in CSV_OPTIONS:
            raise UploadError(f"unknown option {key!r} of an upload; options: "
                              f"{', '.join(CSV_OPTIONS)}")
        choices = CSV_OPTIONS[key]
        if choices is not None and value not in choices:
            raise UploadError(f"{key} must be one of {', '.join(choices)}, got {value[:40]!r}")
        if not value or len(value) > 100:
            raise UploadError(f"{key} must be text of 1 to 100 characters")
        if key == "header":
            if value != "auto":
                options[key] = value == "yes"
        elif not (key == "task" and value == "auto"):
            options[key] = value
    return options


def _file_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name.strip()
    if not base.lower().endswith(".csv") or base.lower() == ".csv":
        raise UploadError(f"only CSV files can be uploaded (a name ending in .csv), got "
                          f"{base[:60]!r}")
    return _UNSAFE.sub("_", base)[-100:]


def read_upload(raw: bytes, name: str, options: Mapping[str, Any] | None = None,
                limits: Limits | None = None) -> Dataset:
    """The data set of an uploaded CSV file, read by :func:`~gradsight.engine.data.from_csv`
    with ``options``; raises :class:`UploadError` (one line) when it is refused."""
    limits = limits or Limits()
    safe = _file_name(name)
    if len(raw) > limits.max_upload_bytes:
        raise UploadError(_too_big(safe, len(raw), limits))
    lines = sum(1 for line in raw.splitlines() if line.strip())
    if lines > limits.max_upload_rows + 1:  # + 1: a header
        raise UploadError(f"{safe} has {lines} lines: the limit of an upload is "
                          f"{limits.max_upload_rows} rows")
    with tempfile.TemporaryDirectory(prefix="gradsight-upload-") as folder:
        path = Path(folder) / safe
        path.write_bytes(raw)
        try:
            dataset = from_csv(path, **dict(options or {}))
        except GradsightError as error:  # the reader's message, naming the file as sent
            text = str(error).replace(repr(str(path)), repr(safe)).replace(str(path), safe)
            raise UploadError(" ".join(text.split())) from None
    dataset.name = Path(safe).stem
    if dataset.n_samples > limits.max_upload_rows:
        raise UploadError(f"{safe} has {dataset.n_samples} rows: the limit of an upload is "
                          f"{limits.max_upload_rows} rows")
    reading = dataset.reading
    if dataset.n_classes is None:
        why = reading.task_reason if reading is not None else "the target holds numbers"
        raise UploadError(f"{safe}: the playground trains classifiers only for now, and {why} "
                          "(choose a column of class labels as the target, or the task "
                          "classification)")
    if dataset.n_classes < 2:
        raise UploadError(f"{safe}: the target {dataset.target_name!r} holds one class only; "
                          "a classifier needs two or more")
    return dataset


def _too_big(name: str, size: int | None, limits: Limits) -> str:
    mb = limits.max_upload_bytes / 2**20
    said = f"of {size / 2**20:.1f} MB " if size is not None else ""
    return (f"{name} {said}is too large: the limit of an upload is {mb:g} MB "
            f"({limits.max_upload_bytes} bytes)")


class UploadStore:
    """Uploads waiting for a session, at most ``size`` (the oldest dropped for a new one).
    Used on the event loop only."""

    def __init__(self, size: int = PENDING) -> None:
        self.size = size
        self.waiting: OrderedDict[str, Upload] = OrderedDict()

    def put(self, name: str, dataset: Dataset) -> Upload:
        upload = Upload(secrets.token_urlsafe(12), name, dataset)
        self.waiting[upload.id] = upload
        while len(self.waiting) > self.size:
            self.waiting.popitem(last=False)
        return upload

    def take(self, upload_id: str) -> Upload | None:
        """The upload, which leaves the store (its session owns it now); None if unknown."""
        return self.waiting.pop(upload_id, None)

    def __len__(self) -> int:
        return len(self.waiting)


def _refused(message: str, status: int = 200) -> Response:
    return JSONResponse(error_message("upload", message), status_code=status)


async def upload_route(request: Request) -> Response:
    """``POST /api/upload?name=FILE.csv[&target=...]``: the body is the file's bytes."""
    limits: Limits = request.app.state.limits
    name = request.query_params.get("name", "")
    try:
        safe = _file_name(name)
        options = reader_options(request.query_params)
    except UploadError as error:
        return _refused(str(error))
    declared = request.headers.get("content-length", "")
    body, size, cut = bytearray(), 0, False
    if declared.isdigit() and int(declared) > DRAIN_FACTOR * limits.max_upload_bytes:
        return _refused(_too_big(safe, int(declared), limits), 413)
    async for chunk in request.stream():  # read (and drop what is over the limit)
        size += len(chunk)
        if size <= limits.max_upload_bytes:
            body += chunk
        elif size > DRAIN_FACTOR * limits.max_upload_bytes:
            cut = True
            break
    if size > limits.max_upload_bytes:
        return _refused(_too_big(safe, None if cut else size, limits), 413)
    try:
        dataset = await to_thread.run_sync(read_upload, bytes(body), name, options, limits)
    except UploadError as error:
        return _refused(str(error))
    except Exception as error:  # noqa: BLE001 - the server never dies from an upload
        return _refused(f"{safe} could not be read ({type(error).__name__}): {error}")
    return JSONResponse(jsonable(request.app.state.uploads.put(safe, dataset).summary()))
