"""Reading a CSV file of one's own: pandas reads the cells, and every guess is said.

A learner's file comes from a spreadsheet or a script, in whatever local convention; each
thing that had to be guessed to read it is recorded in a :class:`CsvReading` (its
:meth:`~CsvReading.lines` are what ``gradsight train`` prints), so that a wrong guess is seen
and can be overridden. Messages name the command-line flags; in Python each flag is the
keyword argument of :func:`read_csv` (and :func:`gradsight.data.from_csv`) of the same name.

    encoding   UTF-8 (with or without a byte-order mark), else Windows-1252
    delimiter  ``csv.Sniffer`` among , ; tab | — a ';' that splits every line alike wins over
               ',' (spreadsheets that write decimal commas separate cells with ';')
               (``--delimiter``)
    decimal    ',' when the delimiter is not ',' and numbers are written 1,5 and never 1.5;
               else '.' (``--decimal``)
    header     the first row is a header when it holds text above columns of numbers, and is
               data when it holds numbers there (``--header`` / ``--no-header``); a file
               without a column of numbers asks ``csv.Sniffer.has_header``
    target     the last column, or ``--target``: a column name, or its number counting the
               first column as 1
    task       text → class labels; numbers with decimals → regression; whole numbers →
               class labels when there are at most 10 distinct values, or at most 20 and
               fewer than half the rows, else regression (``--task``)
    text       a feature column that mostly holds text is refused, or one-hot encoded
               (``--categorical onehot``, at most 20 distinct values)
    missing    empty cells and NA, N/A, #N/A, NULL, None, ? are refused, or their rows
               dropped / filled with the column mean (``--missing drop|mean``; with either,
               'nan' counts as missing too)

Errors name the row — the line number in the file, the first line being row 1 — and the
column.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, InvalidValueError

__all__ = ["CsvReading", "CsvTable", "read_csv", "MAX_ONEHOT_VALUES", "MAX_CLASS_VALUES",
           "FEW_CLASS_VALUES", "MISSING_MARKERS"]

#: a whole-number target with at most this many distinct values is class labels ...
FEW_CLASS_VALUES = 10
#: ... and so is one with at most this many, when they are fewer than half the rows
MAX_CLASS_VALUES = 20
#: ``--categorical onehot`` encodes a text column with at most this many distinct values
MAX_ONEHOT_VALUES = 20
#: cell texts that mean "no value" (compared in lower case); with a --missing strategy, the
#: float spellings of NaN too
MISSING_MARKERS = frozenset({"", "na", "n/a", "#n/a", "null", "none", "?"})
_NAN_TEXTS = frozenset({"nan", "+nan", "-nan"})
_DELIMITERS = ",;\t|"
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|",
                    "space": " "}
_COMMA_DECIMAL = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")
_DOT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")
_TOO_MANY = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


@dataclass
class CsvReading:
    """What was read from a CSV file and every guess made reading it."""

    file: str
    rows: int  # data rows in the file (blank lines not counted)
    columns: int
    encoding: str
    delimiter: str
    delimiter_given: bool
    decimal: str
    decimal_given: bool
    header: bool
    header_reason: str
    target: str = ""
    target_number: int = 0  # 1 = the first column
    task: str = ""
    task_reason: str = ""
    onehot: dict[str, list[str]] = field(default_factory=dict)
    missing: str | None = None  # what --missing did, as a sentence

    def lines(self) -> list[str]:
        """One line per guess, as ``gradsight train`` prints them on stderr."""
        marks = [f"delimiter {_show(self.delimiter)} "
                 + ("(--delimiter)" if self.delimiter_given else "(sniffed)")]
        if self.decimal != "." or self.decimal_given:
            marks.append(f"decimal mark {self.decimal!r} "
                         + ("(--decimal)" if self.decimal_given else "(sniffed)"))
        encoding = "" if self.encoding == "UTF-8" else f", encoding {self.encoding}"
        first = (f"read {Path(self.file).name}: {self.rows} rows, {self.columns} columns, "
                 f"header: {self.header_reason}; {', '.join(marks)}{encoding}")
        lines = [first, self.task_reason]
        for column, values in self.onehot.items():
            lines.append(f"one-hot: column {column!r} ({len(values)} values) became "
                         f"{len(values)} columns of 0/1: "
                         + ", ".join(f"{column}={value}" for value in values))
        if self.missing:
            lines.append(self.missing)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CsvTable:
    """The arrays of a CSV file and how they were read (``y``: class codes 0..K−1 or
    floats; ``classes[k]`` is the original label of code k)."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int | None
    feature_names: list[str]
    classes: list[Any] | None
    target_name: str
    reading: CsvReading


def _show(delimiter: str) -> str:
    return {"\t": "tab", " ": "space"}.get(delimiter, repr(delimiter))


# ---- the text and its separators -----------------------------------------------------------
def _decode(path: Path) -> tuple[str, str]:
    """The file's text and its encoding: UTF-8 (a byte-order mark dropped), else
    Windows-1252 (what a spreadsheet in Western Europe saves)."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise DataError(f"CSV file {str(path)!r} {what}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"CSV file {str(path)!r} cannot be read: "
                        f"{error.strerror or error}") from None
    if b"\0" in raw:
        raise DataError(f"CSV file {str(path)!r} is not a text file (it holds NUL bytes)")
    for codec, name in (("utf-8-sig", "UTF-8"), ("cp1252", "Windows-1252")):
        try:
            return raw.decode(codec), name
        except UnicodeDecodeError:
            continue
    raise DataError(f"CSV file {str(path)!r} is neither UTF-8 nor Windows-1252 text; "
                    f"save it as UTF-8")


def _check_delimiter(delimiter: str) -> str:
    key = delimiter if len(delimiter) == 1 else delimiter.strip().lower()
    key = _DELIMITER_NAMES.get(key, key)
    if len(key) != 1 or key in "\"'\r\n" or key.isalnum() or key == ".":
        raise InvalidValueError(f"--delimiter must be one character such as , ; | or the word "
                                f"tab, got {delimiter!r}")
    return key


def _sniff_delimiter(text: str) -> str:
    """``csv.Sniffer``'s delimiter among , ; tab |. A ';' that appears equally often on every
    line wins over a ',' (1,5;2,3 is two cells with decimal commas, not three); a file the
    sniffer cannot read takes the candidate most frequent on its first line, or ','."""
    lines = [line for line in text[:65536].splitlines() if line.strip()][:200]
    if not lines:
        return ","
    sample = "\n".join(lines)
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","
    semicolons = {line.count(";") for line in lines}
    if delimiter == "," and len(semicolons) == 1 and semicolons != {0}:
        return ";"
    return delimiter


# ---- the cells -----------------------------------------------------------------------------
def _cells(text: str, delimiter: str, path: Path) -> tuple[list[list[str | None]], list[int]]:
    """The cells of every non-blank row (pandas' python parser: it tells a short row, padded
    with None, from an empty cell '') and each row's line number in the file."""
    import pandas as pd  # late: pandas is slow to import and needed only for CSV files

    if not text.strip():
        raise DataError(f"CSV file {str(path)!r} is empty (expected rows of numbers, "
                        f"usually below a header row)")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, header=None, dtype=object,
                            keep_default_na=False, skip_blank_lines=False, engine="python",
                            quotechar='"')
    except pd.errors.ParserError as error:
        found = _TOO_MANY.search(str(error))
        if found:
            width, line, cells = found.groups()
            raise DataError(f"CSV file {str(path)!r}: row {line} has {cells} cells, the first "
                            f"row has {width}") from None
        raise DataError(f"CSV file {str(path)!r} cannot be read: "
                        f"{' '.join(str(error).split())}") from None
    records = frame.to_numpy().tolist()
    rows, lines, line = [], [], 1
    for record in records:
        if not all(cell is None or not cell.strip() for cell in record):
            rows.append(record)
            lines.append(line)
        line += 1 + sum(cell.count("\n") for cell in record if cell is not None)
    if not rows:
        raise DataError(f"CSV file {str(path)!r} is empty (only blank lines)")
    return rows, lines


def _check_widths(rows: list[list[str | None]], lines: list[int], header: bool,
                  path: Path) -> list[list[str]]:
    """The stripped cells, once no row is short (pandas pads a short row with None)."""
    width = len(rows[0])
    for record, number in zip(rows, lines, strict=True):
        short = [cell for cell in record if cell is None]
        if short:
            first = "the header" if header else "the first row"
            raise DataError(f"CSV file {str(path)!r}: row {number} has {width - len(short)} "
                            f"cells, {first} has {width}")
    return [[cell.strip() for cell in record if cell is not None] for record in rows]


def _sniff_decimal(rows: list[list[str]], delimiter: str) -> str:
    """',' when the cells are not separated by ',' and numbers are written 1,5 and never
    1.5; else '.'."""
    if delimiter == ",":
        return "."
    commas = dots = 0
    for row in rows:
        for cell in row:
            commas += bool(_COMMA_DECIMAL.match(cell))
            dots += bool(_DOT_DECIMAL.match(cell))
    return "," if commas and not dots else "."


@dataclass
class _Parsed:
    """One column's cells read as numbers: value (NaN unless a finite or infinite number),
    and masks of the cells that are missing, text, or a NaN spelled out."""

    values: np.ndarray
    missing: np.ndarray
    text: np.ndarray
    nan_text: np.ndarray

    @property
    def numbers(self) -> int:
        return int(np.count_nonzero(~self.missing & ~self.text))

    @property
    def mostly_text(self) -> bool:
        """More than half of the filled cells are not numbers."""
        return int(np.count_nonzero(self.text)) > self.numbers


def _parse(cells: list[str], decimal: str, nan_is_missing: bool) -> _Parsed:
    import pandas as pd  # late: pandas is slow to import and needed only for CSV files

    lower = [cell.lower() for cell in cells]
    nan_text = np.array([cell in _NAN_TEXTS for cell in lower], dtype=bool)
    missing = np.array([cell in MISSING_MARKERS for cell in lower], dtype=bool)
    if nan_is_missing:
        missing |= nan_text
        nan_text = np.zeros_like(nan_text)
    texts = [cell.replace(",", ".") if decimal == "," and "." not in cell else cell
             for cell in cells]
    values = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan, copy=True)
    text = np.isnan(values) & ~missing & ~nan_text
    values[missing | text] = np.nan
    return _Parsed(values, missing, text, nan_text)


# ---- the header, the names, the target -------------------------------------------------------
def _decide_header(rows: list[list[str]], decimal: str, header: bool | None,
                   text: str) -> tuple[bool, str]:
    """(whether the first row is a header, the reason as the read line says it)."""
    if header is not None:
        return header, "the first row (--header)" if header else "none (--no-header)"
    first = [_parse([cell], decimal, False) for cell in rows[0]]
    first_text = [bool(p.text[0]) for p in first]
    if len(rows) == 1:
        if any(first_text):
            return True, "the first row (it holds text)"
        return False, "none (the first row is numbers)"
    sample = rows[1:1001]  # enough rows to tell a column of numbers
    body = [_parse([row[c] for row in sample], decimal, False) for c in range(len(rows[0]))]
    numeric = [c for c, parsed in enumerate(body) if parsed.numbers and not parsed.mostly_text]
    if not numeric:
        try:
            guess = csv.Sniffer().has_header("\n".join(text.splitlines()[:50]))
        except csv.Error:
            guess = True
        reason = "no column holds numbers; csv.Sniffer's guess"
        return guess, f"the first row ({reason})" if guess else f"none ({reason})"
    if any(first_text[c] for c in numeric):
        return True, "the first row (it holds text above columns of numbers)"
    if not any(first_text):
        return False, "none (the first row is numbers)"
    return False, "none (the first row holds numbers in the columns of numbers)"


def _column_names(first: list[str], header: bool, path: Path) -> list[str]:
    if not header:
        return [f"column {c + 1}" for c in range(len(first))]
    names = [name or f"column {c + 1}" for c, name in enumerate(first)]
    for name in names:
        if names.count(name) > 1:
            raise DataError(f"CSV file {str(path)!r}: the header names column {name!r} "
                            f"{names.count(name)} times; columns need distinct names")
    return names


def _target_index(names: list[str], target: str | int | None, path: Path) -> int:
    """The target column: the last by default; else by name, or by number (first = 1)."""
    if target is None:
        return len(names) - 1
    text = str(target).strip()
    if text in names:
        return names.index(text)
    allowed = (f"columns: {', '.join(names)} (or a column number 1..{len(names)}, the first "
               f"column being 1)")
    if text.lstrip("+").isdigit():
        number = int(text)
        if 1 <= number <= len(names):
            return number - 1
        raise DataError(f"target column number {number} is not in {str(path)!r}, which has "
                        f"{len(names)} columns; {allowed}")
    raise DataError(f"target column {text!r} not in {str(path)!r}; {allowed}")


# ---- the public reader ---------------------------------------------------------------------
def _check_options(task: str, decimal: str | None, categorical: str | None,
                   missing: str | None) -> None:
    if task not in ("auto", "classification", "regression"):
        raise InvalidValueError(f"task must be 'auto', 'classification' or 'regression', "
                                f"got {task!r}")
    if decimal is not None and decimal not in (".", ","):
        raise InvalidValueError(f"--decimal must be '.' or ',', got {decimal!r}")
    if categorical is not None and categorical != "onehot":
        raise InvalidValueError(f"--categorical must be 'onehot', got {categorical!r}")
    if missing is not None and missing not in ("drop", "mean"):
        raise InvalidValueError(f"--missing must be 'drop' or 'mean', got {missing!r}")


def read_csv(path: str | Path, target: str | int | None = None, task: str = "auto",
             header: bool | None = None, delimiter: str | None = None,
             decimal: str | None = None, categorical: str | None = None,
             missing: str | None = None) -> CsvTable:
    """Read ``path`` into features X and a target y, guessing what is not given (see the
    module docstring) and recording each guess in ``CsvTable.reading``."""
    _check_options(task, decimal, categorical, missing)
    file = Path(path)
    text, encoding = _decode(file)
    sep = _check_delimiter(delimiter) if delimiter is not None else _sniff_delimiter(text)
    raw, lines = _cells(text, sep, file)
    padded = [[cell or "" for cell in record] for record in raw]
    mark = decimal if decimal is not None else _sniff_decimal(padded, sep)
    has_header, reason = _decide_header(padded, mark, header, text)
    rows = _check_widths(raw, lines, has_header, file)
    names = _column_names(rows[0], has_header, file)
    body, body_lines = (rows[1:], lines[1:]) if has_header else (rows, lines)
    if not body:
        raise DataError(f"CSV file {str(file)!r} has a header but no data rows")
    t = _target_index(names, target, file)
    if len(names) < 2:
        raise DataError(f"CSV file {str(file)!r} has only the target column {names[t]!r}; "
                        f"at least one feature column is needed")
    reading = CsvReading(str(file), len(body), len(names), encoding, sep, delimiter is not None,
                         mark, decimal is not None, has_header, reason, names[t], t + 1)
    columns = [[row[c] for row in body] for c in range(len(names))]
    table = _Table(columns, names, t, np.array(body_lines), reading, missing)
    table.check(task, categorical)
    keep = table.rows_to_keep()
    X, feature_names = table.features(keep)
    y, n_classes, classes = table.target(keep, task)
    return CsvTable(X, y, n_classes, feature_names, classes, names[t], reading)


class _Table:
    """The cells of a CSV file's columns, checked and turned into arrays step by step."""

    def __init__(self, columns: list[list[str]], names: list[str], t: int, lines: np.ndarray,
                 reading: CsvReading, missing: str | None) -> None:
        self.columns, self.names, self.t, self.lines = columns, names, t, lines
        self.reading, self.missing = reading, missing
        self.parsed = {c: _parse(cells, reading.decimal, missing is not None)
                       for c, cells in enumerate(columns)}
        self.text_columns = [c for c, p in self.parsed.items() if c != t and p.mostly_text]
        self.target_is_text = False

    # -- the checks, in the order a learner can fix them: a typo, a text column, gaps --
    def check(self, task: str, categorical: str | None) -> None:
        target = self.parsed[self.t]
        self.target_is_text = task != "regression" and target.mostly_text
        numeric = [c for c in self.parsed if c not in self.text_columns
                   and not (c == self.t and self.target_is_text)]
        self._check_numbers(numeric)
        if self.text_columns:
            self._check_text_columns(categorical)
        if self.missing is None:
            self._refuse_missing()

    def _check_numbers(self, numeric: list[int]) -> None:
        """The first cell (by row) of a column of numbers that is not a finite number."""
        found: tuple[int, int] | None = None
        for c in numeric:
            p = self.parsed[c]
            bad = p.text | p.nan_text | np.isinf(p.values)
            if bad.any() and (found is None or int(np.argmax(bad)) < found[0]):
                found = (int(np.argmax(bad)), c)
        if found is not None:
            r, c = found
            kind = "a number" if self.parsed[c].text[r] else "a finite number"
            # a 'nan' cell is a missing value written out: the same way forward as a gap
            hint = ("; if it marks a missing value, --missing drop|mean handles it"
                    if self.parsed[c].nan_text[r] and self.missing is None else "")
            raise DataError(f"row {self.lines[r]}, column {self.names[c]!r}: "
                            f"{self.columns[c][r]!r} is not {kind}{hint}")

    def _values(self, c: int) -> list[str]:
        return sorted({cell for cell, gap in zip(self.columns[c], self.gaps(c), strict=True)
                       if not gap})

    def _check_text_columns(self, categorical: str | None) -> None:
        parts, too_many, decimal_commas = [], [], True
        for c in self.text_columns:
            values = self._values(c)
            shown = ", ".join(repr(v) for v in values[:3]) + (", ..." if len(values) > 3 else "")
            parts.append(f"{self.names[c]!r} ({len(values)} values: {shown})")
            if len(values) > MAX_ONEHOT_VALUES:
                too_many.append(repr(self.names[c]))
            decimal_commas &= all(_COMMA_DECIMAL.match(v) for v in values)
        message = (f"column {parts[0]} holds text, not numbers" if len(parts) == 1 else
                   f"columns {', '.join(parts)} hold text, not numbers")
        if decimal_commas:
            raise DataError(f"{message}; they look like numbers with a decimal comma: "
                            f"pass --decimal ,")
        if too_many:
            raise DataError(f"{message}; --categorical onehot encodes at most "
                            f"{MAX_ONEHOT_VALUES} distinct values, so remove "
                            f"{', '.join(too_many)} from the file (names and identifiers "
                            f"teach a network nothing)")
        if categorical is None:
            raise DataError(f"{message}; --categorical onehot encodes each as one 0/1 column "
                            f"per value")

    def gaps(self, c: int) -> np.ndarray:
        """The missing cells of column ``c``."""
        if c in self.text_columns or (c == self.t and self.target_is_text):
            markers = MISSING_MARKERS | (_NAN_TEXTS if self.missing else frozenset())
            return np.array([cell.lower() in markers for cell in self.columns[c]], dtype=bool)
        return self.parsed[c].missing

    def _refuse_missing(self) -> None:
        gaps = {c: self.gaps(c) for c in range(len(self.names))}
        rows = np.logical_or.reduce(list(gaps.values()))
        if not rows.any():
            return
        r = int(np.argmax(rows))
        c = next(c for c in gaps if gaps[c][r])
        cell = self.columns[c][r]
        what = "empty cell" if cell == "" else f"{cell!r}"
        counts = ", ".join(f"{int(g.sum())} in {self.names[c]!r}" for c, g in gaps.items()
                           if g.any())
        only_target = not any(g.any() for c, g in gaps.items() if c != self.t)
        fix = ("--missing drop drops those rows (a missing target cannot be filled in)"
               if only_target else "--missing drop drops those rows, --missing mean fills "
               "the cells with their column's mean")
        raise DataError(f"row {self.lines[r]}, column {self.names[c]!r}: {what} (a missing "
                        f"value); {int(rows.sum())} of {len(rows)} rows have missing cells "
                        f"({counts}); {fix}")

    # -- rows, features, target --
    def rows_to_keep(self) -> np.ndarray:
        """All rows; with --missing drop those without a gap, with mean those with a
        target."""
        n = len(self.lines)
        if self.missing is None:
            return np.ones(n, dtype=bool)
        gaps = {c: self.gaps(c) for c in range(len(self.names))}
        dropped = gaps[self.t].copy()
        if self.missing == "drop":
            dropped = np.logical_or.reduce(list(gaps.values()))
        if dropped.all():
            raise DataError(f"no rows left: every one of the {n} rows has a missing cell "
                            f"(--missing {self.missing})")
        if dropped.any():
            columns = ", ".join(repr(self.names[c]) for c, g in gaps.items()
                                if (g & dropped).any() and (self.missing == "drop"
                                                            or c == self.t))
            why = "with missing cells" if self.missing == "drop" else "without a target"
            self.reading.missing = (f"missing values: dropped {int(dropped.sum())} of {n} rows "
                                    f"{why} (in {columns})")
        return ~dropped

    def features(self, keep: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """The feature matrix: columns of numbers as they are, text columns one-hot; with
        --missing mean each gap filled with its column's mean."""
        import pandas as pd  # late: pandas is slow to import and needed only for CSV files

        blocks, names, filled = [], [], []
        for c in range(len(self.names)):
            if c == self.t:
                continue
            if c in self.text_columns:
                values = self._values_kept(c, keep)
                gaps = self.gaps(c)[keep]
                cells = [None if gap else cell for cell, gap in
                         zip(np.array(self.columns[c], dtype=object)[keep], gaps, strict=True)]
                block = np.array(pd.get_dummies(pd.Categorical(cells, categories=values),
                                                dtype=np.float64), dtype=np.float64)
                if not values:
                    raise DataError(f"column {self.names[c]!r} has no values left; remove it "
                                    f"from the file")
                block[gaps] = np.nan
                self.reading.onehot[self.names[c]] = values
                names += [f"{self.names[c]}={value}" for value in values]
            else:
                block = self.parsed[c].values[keep][:, None]
                names.append(self.names[c])
            gaps = np.isnan(block[:, 0])
            if gaps.any():
                block = self._fill(block, c)
                filled.append((c, int(gaps.sum()), block))
            blocks.append(block)
        if filled:
            self._say_filled(filled)
        return np.hstack(blocks), names

    def _values_kept(self, c: int, keep: np.ndarray) -> list[str]:
        gaps = self.gaps(c)
        return sorted({cell for cell, gap, kept in zip(self.columns[c], gaps, keep, strict=True)
                       if kept and not gap})

    def _fill(self, block: np.ndarray, c: int) -> np.ndarray:
        present = ~np.isnan(block[:, 0])
        if not present.any():
            raise DataError(f"column {self.names[c]!r} has no values to take the mean of; "
                            f"remove it from the file")
        means = block[present].mean(axis=0)
        return np.where(np.isnan(block), means, block)

    def _say_filled(self, filled: list[tuple[int, int, np.ndarray]]) -> None:
        parts = []
        for c, count, block in filled:
            cells = "cell" if count == 1 else "cells"
            if c in self.text_columns:
                parts.append(f"{count} {cells} of {self.names[c]!r} with the share of each "
                             f"value")
            else:
                parts.append(f"{count} {cells} of {self.names[c]!r} with its mean "
                             f"{float(block[:, 0].mean()):.4g}")
        sentence = "missing values: filled " + ", ".join(parts)
        if self.reading.missing:
            sentence += "; " + self.reading.missing.removeprefix("missing values: ")
        self.reading.missing = sentence

    def target(self, keep: np.ndarray, task: str) -> tuple[np.ndarray, int | None,
                                                           list[Any] | None]:
        """(y, K, classes) — class codes 0..K−1 and their labels, or floats and None."""
        name, number, n = self.names[self.t], self.t + 1, int(keep.sum())
        where = f"target: column {number} {name!r}"
        if self.target_is_text:
            labels = [cell for cell, kept in zip(self.columns[self.t], keep, strict=True)
                      if kept]
            classes: list[Any] = sorted(set(labels))
            self._say_task("classification", f"{where} holds text: {_classes(classes)}")
            code = {label: k for k, label in enumerate(classes)}
            return np.array([code[label] for label in labels]), len(classes), classes
        values = self.parsed[self.t].values[keep]
        whole = np.mod(values, 1) == 0
        if task == "regression":
            self._say_task("regression", f"{where} → regression (--task regression)")
            return values, None, None
        distinct = int(np.unique(values).size)
        if task == "classification" and not whole.all():
            r = int(np.argmax(~whole))
            line = self.lines[keep][r]
            cell = np.array(self.columns[self.t], dtype=object)[keep][r]
            raise DataError(f"row {line}, column {name!r}: class label {cell!r} is not an "
                            f"integer; --task classification needs whole numbers or text")
        if task == "auto" and not whole.all():
            self._say_task("regression", f"{where} holds numbers with decimals → regression")
            return values, None, None
        if task == "auto" and not (distinct <= FEW_CLASS_VALUES or (
                distinct <= MAX_CLASS_VALUES and 2 * distinct < n)):
            self._say_task("regression", f"{where} → regression: {distinct} distinct whole "
                           f"numbers in {n} rows (class labels need ≤ {FEW_CLASS_VALUES}, or "
                           f"≤ {MAX_CLASS_VALUES} and fewer than half the rows); --task "
                           f"classification if they are labels")
            return values, None, None
        ints = [int(v) for v in np.unique(values)]
        if task == "auto":
            reason = (f"{where} → classification, {_classes(ints)}: whole numbers with "
                      f"≤ {FEW_CLASS_VALUES} distinct values (or ≤ {MAX_CLASS_VALUES}, fewer "
                      f"than half the rows) are class labels; --task regression if they are "
                      f"quantities")
        else:
            reason = f"{where} → classification, {_classes(ints)} (--task classification)"
        self._say_task("classification", reason)
        return np.searchsorted(np.array(ints, dtype=np.float64), values), len(ints), ints

    def _say_task(self, task: str, reason: str) -> None:
        self.reading.task, self.reading.task_reason = task, reason


def _classes(classes: list[Any]) -> str:
    shown = ", ".join(str(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
    return f"{len(classes)} classes ({shown})"
