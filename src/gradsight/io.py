"""Files the program writes are written atomically: a temp file beside the target, then a
rename, so an interrupted run never leaves a half-written model, figure or report."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temp name keeps the target's suffix so writers that look at it (matplotlib's
    ``savefig``, ``np.savez``) pick the right format. On error the temp file is removed and
    the target is untouched.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {str(target)!r}: it is a folder; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent
        )
    except OSError as error:
        raise OutputError(f"cannot write {str(target)!r}: {error.strerror or error}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file 0600; give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as error:  # e.g. a full disk while writing: the target is untouched
        raise OutputError(f"cannot write {str(target)!r}: {error.strerror or error}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def require_folder(path: str | os.PathLike[str], mkdir: bool = False) -> Path:
    """Check, before any work is done, that the folder ``path`` will be written in exists.

    The command line calls it for every output path it is given: a typo in a folder name is
    a one-line error, not a folder silently created — unless ``mkdir`` (``--mkdir``), which
    creates it. (The Python API's writers create missing folders, as ``atomic_path`` does.)
    """
    target = Path(path)
    folder = target.parent
    if folder.is_dir():
        return target
    if folder.exists():
        raise OutputError(f"cannot write {str(target)!r}: {str(folder)!r} is not a folder")
    if not mkdir:
        raise OutputError(f"cannot write {str(target)!r}: the folder {str(folder)!r} does not "
                          "exist (create it, or pass --mkdir)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the folder {str(folder)!r}: "
                          f"{error.strerror or error}") from None
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def jsonable(value: Any) -> Any:
    """Turn NumPy scalars/arrays, dataclasses and non-finite floats into JSON values.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` — never silently
    dropped, and still valid JSON.

    >>> jsonable({"a": float("nan"), "b": (1, 2.5)})
    {'a': 'nan', 'b': [1, 2.5]}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return jsonable(value.to_dict())
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "__float__"):
        return jsonable(float(value))
    return str(value)


def dumps(value: Any, indent: int | None = 2) -> str:
    """JSON text of ``value`` after :func:`jsonable` (strict: no bare NaN)."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False, ensure_ascii=False)
