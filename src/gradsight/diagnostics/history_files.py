"""Saved histories: the records of a run and what the diagnosis needs besides them, in a file.

A run recorded on a cluster is diagnosed on a laptop exactly as it would have been where it
ran only if the file holds everything :func:`~gradsight.diagnostics.diagnose` reads: every
field of every :class:`LayerStats` record with its type (a NaN gradient norm stays NaN, an
unmeasured one stays None) and the run's metadata (its set-up, loss curve and coverage).

Two open formats, one table of records each (a column per LayerStats field):

* **Parquet** (through pyarrow, the ``parquet`` extra): typed, compressed columns that
  pandas, polars or DuckDB read as a normal table; NaN and ±inf are IEEE doubles, None is a
  null. The metadata is JSON under the ``gradsight`` key of the schema's key-value metadata.
* **JSON Lines**: a header line ``{"gradsight": {...metadata, "version": 1}}``, then one
  record per line; non-finite floats are the strings ``"nan"``, ``"inf"``, ``"-inf"`` (as
  :func:`gradsight.io.jsonable` writes them everywhere), read back by the field's type.

This module knows the formats only: records and a metadata dict in, the same out. Turning
the metadata into a history's attributes is :mod:`gradsight.diagnostics.history`'s work.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, fields
from pathlib import Path
from typing import IO, Any, get_args, get_type_hints

from ..errors import DataError, InvalidValueError, require_extra
from ..io import atomic_path, jsonable
from .stats import LayerStats

__all__ = ["FORMATS", "FORMAT_VERSION", "METADATA_KEY", "default_format", "history_format",
           "json_float", "read_history_file", "write_history_file"]

#: file suffix → format
FORMATS = {".parquet": "parquet", ".jsonl": "jsonl"}
#: the version of the layout written; a reader refuses a newer one instead of misreading it
FORMAT_VERSION = 1
#: the key of the metadata (Parquet: schema metadata; JSON Lines: the header line's object)
METADATA_KEY = "gradsight"
#: what a file to read must be, for the error messages
_EXPECTED = "expected a gradsight history saved by save_history (.parquet or .jsonl)"
_PARQUET_MAGIC = b"PAR1"
_NON_FINITE = ("nan", "inf", "-inf")


def _columns() -> dict[str, tuple[type, bool]]:
    """LayerStats field → (its type: int, float, str or bool; whether it may be None)."""
    hints = get_type_hints(LayerStats)
    columns = {}
    for field in fields(LayerStats):
        args = get_args(hints[field.name]) or (hints[field.name],)
        kind = next(arg for arg in args if arg is not type(None))
        columns[field.name] = (kind, type(None) in args)
    return columns


#: the table's columns, in LayerStats' field order
COLUMNS = _columns()
#: the fields without a default: a file without them is no history (the others default, so
#: a file written before a field was added still reads)
REQUIRED = [f.name for f in fields(LayerStats)
            if f.default is MISSING and f.default_factory is MISSING]
_KIND_TEXT = {int: "an integer", float: "a number", str: "text", bool: "true or false"}


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401  (an optional extra: only asked whether it is there)
    except ImportError:
        return False
    return True


def default_format() -> str:
    """Parquet where pyarrow is installed, else JSON Lines."""
    return "parquet" if _has_pyarrow() else "jsonl"


def history_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format to write ``path`` in: ``format`` if given, else the one its suffix names
    (``.parquet``, ``.jsonl``); a path without a suffix gets :func:`default_format`."""
    allowed = ", ".join(sorted(set(FORMATS.values())))
    if format is not None:
        if format not in FORMATS.values():
            raise InvalidValueError(f"unknown history format {format!r}; allowed: {allowed}")
        return format
    suffix = Path(path).suffix.lower()
    if not suffix:
        return default_format()
    if suffix not in FORMATS:
        raise InvalidValueError(f"cannot save a history as {os.fspath(path)!r}: unknown suffix "
                                f"{suffix!r}; allowed: {', '.join(FORMATS)} (or pass "
                                f"format= {allowed})")
    return FORMATS[suffix]


# ---- writing ---------------------------------------------------------------------------------
def _cell(value: Any, name: str) -> Any:
    """A record's value as the plain Python type of its column (NumPy scalars included)."""
    kind, nullable = COLUMNS[name]
    if value is None:
        if nullable:
            return None
        raise InvalidValueError(f"record field {name!r} must be {_KIND_TEXT[kind]}, got None")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"record field {name!r} must be {_KIND_TEXT[kind]}, got "
                                f"{value!r}") from None


def _metadata_text(metadata: dict[str, Any]) -> str:
    """The metadata with the format version, as strict JSON (non-finite floats as text)."""
    return json.dumps(jsonable({**metadata, "version": FORMAT_VERSION}), allow_nan=False,
                      ensure_ascii=False)


def write_history_file(path: str | os.PathLike[str], records: list[LayerStats],
                       metadata: dict[str, Any], format: str | None = None) -> Path:
    """Write ``records`` and ``metadata`` (a JSON-able dict) to ``path`` atomically: a
    failure midway leaves no half-written file, and an older file at ``path`` intact."""
    chosen = history_format(path, format)
    target = Path(path)
    if chosen == "parquet":
        require_extra("pyarrow", "parquet", "saving a history as Parquet")
        table = _arrow_table(records, metadata)
        with atomic_path(target) as tmp:
            _write_parquet(table, tmp)
    else:
        header = f'{{"{METADATA_KEY}": {_metadata_text(metadata)}}}'
        with atomic_path(target) as tmp:
            with open(tmp, "w", encoding="utf-8") as handle:
                _write_lines(handle, header, records)
    return target


def _write_lines(handle: IO[str], header: str, records: list[LayerStats]) -> None:
    handle.write(header + "\n")
    names = list(COLUMNS)
    for record in records:
        row = {name: _cell(getattr(record, name), name) for name in names}
        for name, value in row.items():  # non-finite floats as the strings jsonable writes
            if isinstance(value, float) and not math.isfinite(value):
                row[name] = jsonable(value)
        handle.write(json.dumps(row, allow_nan=False, ensure_ascii=False) + "\n")


def _arrow_types() -> dict[type, Any]:
    import pyarrow as pa  # an optional extra (parquet): only for the Parquet format

    return {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def _arrow_schema(metadata: dict[str, Any] | None = None) -> Any:
    import pyarrow as pa  # an optional extra (parquet): only for the Parquet format

    types = _arrow_types()
    schema_fields = [pa.field(name, types[kind], nullable=nullable)
                     for name, (kind, nullable) in COLUMNS.items()]
    encoded = None if metadata is None else {METADATA_KEY: _metadata_text(metadata)}
    return pa.schema(schema_fields, metadata=encoded)


def _arrow_table(records: list[LayerStats], metadata: dict[str, Any]) -> Any:
    import pyarrow as pa  # an optional extra (parquet): only for the Parquet format

    columns = {name: [_cell(getattr(r, name), name) for r in records] for name in COLUMNS}
    return pa.Table.from_pydict(columns, schema=_arrow_schema(metadata))


def _write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq  # an optional extra (parquet): only for the Parquet format

    pq.write_table(table, path, write_page_checksum=True)


# ---- reading ---------------------------------------------------------------------------------
def _fail(path: Path, reason: str) -> DataError:
    return DataError(f"cannot read history {str(path)!r}: {reason}; {_EXPECTED}")


def read_history_file(path: str | os.PathLike[str]) -> tuple[list[LayerStats], dict[str, Any]]:
    """(records, metadata) of a file :func:`write_history_file` wrote, its format read from
    its first bytes (not its name). Anything else — a missing, empty, truncated or foreign
    file, a folder — is one :class:`DataError` naming the path and what was expected."""
    target = Path(path)
    if target.is_dir():
        raise _fail(target, "it is a folder")
    try:
        with open(target, "rb") as handle:
            head = handle.read(64)
    except FileNotFoundError:
        raise _fail(target, "no such file") from None
    except OSError as error:
        raise _fail(target, str(error.strerror or error)) from None
    if not head:
        raise _fail(target, "the file is empty")
    if head.startswith(_PARQUET_MAGIC):
        return _read_parquet(target)
    if head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{":
        return _read_jsonl(target)
    raise _fail(target, "it is neither a Parquet file nor JSON Lines")


def _check_metadata(path: Path, metadata: Any) -> dict[str, Any]:
    """The metadata dict, its version checked (one this reader knows)."""
    if not isinstance(metadata, dict):
        raise _fail(path, f"its {METADATA_KEY!r} metadata is not a JSON object")
    version = metadata.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(path, f"its {METADATA_KEY!r} metadata has no format version")
    if version > FORMAT_VERSION:
        raise DataError(f"cannot read history {str(path)!r}: written in format version "
                        f"{version} by a newer gradsight; expected version {FORMAT_VERSION} "
                        "or older (upgrade gradsight to read it)")
    return metadata


def _read_parquet(path: Path) -> tuple[list[LayerStats], dict[str, Any]]:
    pa = require_extra("pyarrow", "parquet", "reading a Parquet history")
    import pyarrow.parquet as pq  # an optional extra (parquet): only for the Parquet format

    broken = (pa.ArrowException, OSError, ValueError, EOFError)
    try:
        schema = pq.read_schema(path)
    except broken:
        raise _fail(path, "not a readable Parquet file (truncated or corrupt)") from None
    raw = (schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        raise _fail(path, f"a Parquet file without {METADATA_KEY!r} metadata")
    try:
        metadata = _check_metadata(path, json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(path, f"its {METADATA_KEY!r} metadata is not JSON") from None
    present = [name for name in COLUMNS if name in schema.names]
    missing = [name for name in REQUIRED if name not in present]
    if missing:
        raise _fail(path, f"no column {', '.join(map(repr, missing))}")
    try:
        # the pages' CRC checksums (written by _write_parquet) catch flipped bytes that would
        # otherwise decode as other numbers
        table = pq.read_table(path, columns=present, page_checksum_verification=True)
        columns = {name: _column(path, table.column(name), name) for name in present}
    except DataError:  # a column of the wrong type, said by _column
        raise
    except broken:
        raise _fail(path, "not a readable Parquet file (truncated or corrupt)") from None
    records = [LayerStats(**dict(zip(present, row, strict=True)))
               for row in zip(*columns.values(), strict=True)]
    return records, metadata


def _column(path: Path, column: Any, name: str) -> list[Any]:
    """One column's values as its field's Python type (a safe cast from a narrower type)."""
    kind, nullable = COLUMNS[name]
    expected = _arrow_types()[kind]
    if column.type != expected:
        try:
            column = column.cast(expected)
        except (ValueError, TypeError, NotImplementedError):  # pyarrow's ArrowInvalid & co.
            raise _fail(path, f"column {name!r} holds {column.type}, not "
                              f"{_KIND_TEXT[kind]}") from None
    if not nullable and column.null_count:
        raise _fail(path, f"column {name!r} has empty cells")
    values: list[Any] = column.to_pylist()
    return values


def json_float(value: Any) -> float:
    """A float as JSON keeps it — a number, or "nan", "inf", "-inf" — else ValueError."""
    if isinstance(value, str) and value.lower() in _NON_FINITE:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


def _decode(value: Any, name: str) -> Any:
    """A JSON value as its field's type; ValueError naming the field otherwise."""
    kind, nullable = COLUMNS[name]
    if value is None:
        if nullable:
            return None
    elif kind is float:
        try:
            return json_float(value)
        except ValueError:
            pass
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, kind):
        return value
    raise ValueError(f"field {name!r} must be {_KIND_TEXT[kind]}, got {value!r}")


def _read_jsonl(path: Path) -> tuple[list[LayerStats], dict[str, Any]]:
    records = []
    metadata: dict[str, Any] | None = None
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    raise _fail(path, f"line {number} is not JSON ({error.msg})") from None
                if metadata is None:
                    if not isinstance(value, dict) or METADATA_KEY not in value:
                        raise _fail(path, f"line {number} is not a {METADATA_KEY!r} header")
                    metadata = _check_metadata(path, value[METADATA_KEY])
                    continue
                records.append(_record(path, number, value))
    except UnicodeDecodeError:
        raise _fail(path, "the file is not UTF-8 text") from None
    except OSError as error:
        raise _fail(path, str(error.strerror or error)) from None
    if metadata is None:
        raise _fail(path, "the file is empty")
    return records, metadata


def _record(path: Path, number: int, value: Any) -> LayerStats:
    if not isinstance(value, dict):
        raise _fail(path, f"line {number} is not a record (a JSON object)")
    missing = [name for name in REQUIRED if name not in value]
    if missing:
        raise _fail(path, f"line {number} has no {', '.join(map(repr, missing))}")
    try:
        return LayerStats(**{name: _decode(value[name], name) for name in COLUMNS
                             if name in value})
    except ValueError as error:
        raise _fail(path, f"line {number}: {error}") from None

