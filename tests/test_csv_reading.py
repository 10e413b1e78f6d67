"""Reading a CSV file of one's own (gradsight.data.from_csv): the header, the delimiter and the
decimal mark, the target and its task, text columns and missing cells — each guess said.

Oracles: the values written into the test files by hand, and pandas reading the same file
with the right settings given explicitly (``sep``, ``decimal``, ``header``) and doing the
one-hot encoding, the dropping and the mean-filling itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradsight import data
from gradsight.errors import DataError, InvalidValueError


def _csv(tmp_path, text, name="t.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _rows(n=199, seed=0):
    """n rows of three features and an integer class 0/1, as text."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(n, 3)), 3)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return X, y, "".join(f"{a},{b},{c},{t}\n" for (a, b, c), t in zip(X, y, strict=True))


# ---- the header -----------------------------------------------------------------------------
def test_a_file_without_a_header_keeps_its_first_row(tmp_path):
    X, y, body = _rows()
    ds = data.from_csv(_csv(tmp_path, body))
    assert ds.n_samples == 199  # was 198: the first row was taken for a header
    oracle = pd.read_csv(tmp_path / "t.csv", header=None).to_numpy()
    np.testing.assert_array_equal(ds.X, oracle[:, :3])
    np.testing.assert_array_equal(ds.y, oracle[:, 3])
    assert ds.reading.header is False
    assert ds.feature_names == ["column 1", "column 2", "column 3"]
    assert ds.reading.lines()[0] == ("read t.csv: 199 rows, 4 columns, header: none (the first "
                                     "row is numbers); delimiter ',' (sniffed)")


def test_a_header_above_numbers_is_detected(tmp_path):
    X, y, body = _rows()
    ds = data.from_csv(_csv(tmp_path, "a,b,c,label\n" + body))
    assert ds.n_samples == 199 and ds.feature_names == ["a", "b", "c"]
    np.testing.assert_array_equal(ds.X, X)
    assert ds.reading.header is True
    assert "header: the first row (it holds text above columns of numbers)" in \
        ds.reading.lines()[0]


def test_header_and_no_header_force_the_first_row(tmp_path):
    path = _csv(tmp_path, "2020,2021,2022\n1,2,0\n3,4,1\n")  # years as column names
    assert data.from_csv(path).n_samples == 3
    forced = data.from_csv(path, header=True)
    assert forced.n_samples == 2 and forced.feature_names == ["2020", "2021"]
    assert forced.target_name == "2022" and "header: the first row (--header)" in \
        forced.reading.lines()[0]
    with pytest.raises(DataError, match=r"^row 1, column 'column 1': 'x1' is not a number$"):
        data.from_csv(_csv(tmp_path, "x1,x2,y\n1,2,0\n3,4,1\n", "h.csv"), header=False)


# ---- delimiter, decimal mark, encoding ------------------------------------------------------
ITALIAN = "altezza;peso;classe\n1,62;60,5;0\n1,80;81;1\n1,75;70,25;1\n1,58;-52,75;0\n"


def test_semicolons_and_decimal_commas_are_sniffed_and_said(tmp_path):
    path = _csv(tmp_path, ITALIAN)
    ds = data.from_csv(path)
    oracle = pd.read_csv(path, sep=";", decimal=",")
    np.testing.assert_array_equal(ds.X, oracle[["altezza", "peso"]].to_numpy())
    np.testing.assert_array_equal(ds.X[:, 1], [60.5, 81.0, 70.25, -52.75])
    assert ds.y.tolist() == [0, 1, 1, 0]
    assert ds.reading.lines()[0].endswith("delimiter ';' (sniffed), decimal mark ',' (sniffed)")


def test_semicolons_win_over_decimal_commas_without_a_header(tmp_path):
    # csv.Sniffer alone picks ',' here: every line has as many commas as semicolons
    ds = data.from_csv(_csv(tmp_path, "1,5;2,25;0\n2,5;3,75;1\n0,5;1;0\n"))
    np.testing.assert_array_equal(ds.X, [[1.5, 2.25], [2.5, 3.75], [0.5, 1.0]])
    assert (ds.reading.delimiter, ds.reading.decimal, ds.n_samples) == (";", ",", 3)


def test_delimiter_and_decimal_can_be_given(tmp_path):
    path = _csv(tmp_path, "a|b|y\n1,5|2|0\n2|3,5|1\n")
    ds = data.from_csv(path, delimiter="|", decimal=",")
    np.testing.assert_array_equal(ds.X, [[1.5, 2.0], [2.0, 3.5]])
    assert "delimiter '|' (--delimiter), decimal mark ',' (--decimal)" in ds.reading.lines()[0]
    tab = data.from_csv(_csv(tmp_path, "a\tb\ty\n1\t2\t0\n", "t.tsv.csv"), delimiter="tab")
    assert tab.X.tolist() == [[1.0, 2.0]] and "delimiter tab" in tab.reading.lines()[0]
    with pytest.raises(InvalidValueError, match="--delimiter must be one character"):
        data.from_csv(path, delimiter="ab")
    with pytest.raises(InvalidValueError, match=r"--decimal must be '\.' or ','"):
        data.from_csv(path, decimal=";")


def test_decimal_commas_in_a_comma_file_name_the_decimal_flag(tmp_path):
    path = _csv(tmp_path, 'a,b,y\n"1,5",2,0\n"2,5",3,1\n')
    with pytest.raises(DataError, match=r"column 'a' .* text, not numbers; they look like "
                                        r"numbers with a decimal comma: pass --decimal ,"):
        data.from_csv(path)
    np.testing.assert_array_equal(data.from_csv(path, decimal=",").X, [[1.5, 2], [2.5, 3]])


def test_a_windows_1252_file_is_read_and_its_encoding_said(tmp_path):
    path = _csv(tmp_path, "città;età;y\n1;2,5;0\n2;3;1\n", encoding="cp1252")
    ds = data.from_csv(path)
    assert ds.feature_names == ["città", "età"] and ds.X.tolist() == [[1, 2.5], [2, 3]]
    assert ds.reading.lines()[0].endswith(", encoding Windows-1252")


def test_a_row_with_too_many_or_too_few_cells_is_named(tmp_path):
    with pytest.raises(DataError, match=r"row 3 has 4 cells, the first row has 3"):
        data.from_csv(_csv(tmp_path, "x1,x2,y\n1,2,0\n3,4,5,6\n"))
    with pytest.raises(DataError, match=r"row 4 has 2 cells, the first row has 3"):
        data.from_csv(_csv(tmp_path, "1,2,0\n\n\n3,4\n", "b.csv"))  # blank lines count


# ---- the target and the task ----------------------------------------------------------------
def _target_file(tmp_path, values, name="t.csv"):
    rng = np.random.default_rng(1)
    body = "".join(f"{rng.normal():.3f},{v}\n" for v in values)
    return _csv(tmp_path, "x,target\n" + body, name)


def _rule(values):
    """The documented rule: whole numbers are classes with ≤ 10 distinct values, or ≤ 20
    when they are fewer than half the rows; other numbers are a regression target."""
    values = np.asarray(values, dtype=float)
    distinct = len(np.unique(values))
    whole = bool(np.all(values == np.round(values)))
    return whole and (distinct <= 10 or (distinct <= 20 and distinct < len(values) / 2))


AGES = list(np.random.default_rng(2).integers(18, 81, size=199))


@pytest.mark.parametrize(("values", "task"), [
    (AGES, "regression"),                                  # the learner's ages: 57-ish values
    ([0, 1, 2] * 10, "classification"),
    (list(range(15)) * 3, "classification"),               # 15 values, 45 rows
    (list(range(15)) + [0, 1, 2, 3, 4], "regression"),      # 15 values, 20 rows
    ([0.5, 1.0, 1.5, 2.0] * 5, "regression"),
    ([5, -1, 5, 9], "classification"),                     # ≤ 10 values
])
def test_a_whole_number_target_is_classes_only_when_it_has_few_values(tmp_path, values, task):
    ds = data.from_csv(_target_file(tmp_path, values))
    assert ("classification" if _rule(values) else "regression") == task
    assert ds.reading.task == task and (ds.n_classes is None) == (task == "regression")
    if task == "regression":
        np.testing.assert_array_equal(ds.y, np.asarray(values, dtype=float))
    else:
        labels = sorted(set(values))
        assert ds.classes == labels and ds.y.tolist() == [labels.index(v) for v in values]
    reason = ds.reading.task_reason
    assert reason.startswith("target: column 2 'target' ") and f"→ {task}" in reason


def test_the_ages_rule_is_said_and_task_overrides_it(tmp_path):
    path = _target_file(tmp_path, AGES)
    distinct = len(set(AGES))
    reason = data.from_csv(path).reading.task_reason
    assert reason == (f"target: column 2 'target' → regression: {distinct} distinct whole "
                      f"numbers in 199 rows (class labels need ≤ 10, or ≤ 20 and fewer than "
                      f"half the rows); --task classification if they are labels")
    forced = data.from_csv(path, task="classification")
    assert forced.n_classes == distinct and forced.classes == sorted(set(int(a) for a in AGES))
    assert data.from_csv(_target_file(tmp_path, [0, 1] * 5, "c.csv"),
                         task="regression").n_classes is None


def test_target_by_name_or_by_number_counting_from_one(tmp_path):
    path = _csv(tmp_path, "a,b,c\n1,2,0.5\n3,4,1.5\n")
    by_number = data.from_csv(path, target="1")
    assert by_number.target_name == "a" and by_number.feature_names == ["b", "c"]
    assert data.from_csv(path, target=2).target_name == "b"
    assert data.from_csv(path, target="c").y.tolist() == [0.5, 1.5]
    named = _csv(tmp_path, "x,2,y\n1,0,5\n2,1,6\n", "n.csv")  # a name wins over a number
    assert data.from_csv(named, target="2").target_name == "2"
    with pytest.raises(DataError, match=r"target column number 4 is not in .* 3 columns; "
                                        r"columns: a, b, c \(or a column number 1\.\.3"):
        data.from_csv(path, target="4")
    with pytest.raises(DataError, match=r"target column number 0"):
        data.from_csv(path, target=0)


# ---- text columns ---------------------------------------------------------------------------
COLOURS = "x,colour,size,y\n1,red,S,0\n2,blue,M,1\n3,red,L,1\n4,green,M,0\n5,blue,S,1\n"


def test_text_columns_are_refused_naming_them_and_the_flag(tmp_path):
    with pytest.raises(DataError) as info:
        data.from_csv(_csv(tmp_path, COLOURS))
    assert str(info.value) == (
        "columns 'colour' (3 values: 'blue', 'green', 'red'), 'size' (3 values: 'L', 'M', "
        "'S') hold text, not numbers; --categorical onehot encodes each as one 0/1 column "
        "per value")


def test_onehot_encodes_text_columns_as_pandas_get_dummies_does(tmp_path):
    path = _csv(tmp_path, COLOURS)
    ds = data.from_csv(path, categorical="onehot")
    frame = pd.read_csv(path)
    oracle = pd.get_dummies(frame.drop(columns="y"), prefix_sep="=", dtype=float)
    assert ds.feature_names == list(oracle.columns)
    np.testing.assert_array_equal(ds.X, oracle.to_numpy())
    assert ds.reading.onehot == {"colour": ["blue", "green", "red"], "size": ["L", "M", "S"]}
    assert ("one-hot: column 'colour' (3 values) became 3 columns of 0/1: colour=blue, "
            "colour=green, colour=red") in ds.reading.lines()


def test_onehot_refuses_a_column_of_many_values(tmp_path):
    body = "".join(f"{i},name{i},{i % 2}\n" for i in range(30))
    with pytest.raises(DataError, match=r"column 'who' \(30 values: 'name0', 'name1', "
                                        r"'name10', \.\.\.\) holds text, not numbers; "
                                        r"--categorical onehot encodes at most 20"):
        data.from_csv(_csv(tmp_path, "x,who,y\n" + body), categorical="onehot")


def test_a_stray_word_in_a_column_of_numbers_is_a_typo_not_a_category(tmp_path):
    path = _csv(tmp_path, "x1,x2,y\n1,2,0\n3,4,1\n5,six,0\n")
    with pytest.raises(DataError, match=r"^row 4, column 'x2': 'six' is not a number$"):
        data.from_csv(path, categorical="onehot")


# ---- missing cells --------------------------------------------------------------------------
MISSING = "x1,x2,y\n1,,0\n2,3,1\nNA,4,0\n5,6,1\n7,8,\n9,?,1\n"


def test_missing_cells_are_refused_naming_columns_and_the_flag(tmp_path):
    with pytest.raises(DataError) as info:
        data.from_csv(_csv(tmp_path, MISSING))
    assert str(info.value) == (
        "row 2, column 'x2': empty cell (a missing value); 4 of 6 rows have missing cells "
        "(1 in 'x1', 2 in 'x2', 1 in 'y'); --missing drop drops those rows, --missing mean "
        "fills the cells with their column's mean")
    with pytest.raises(DataError, match=r"^row 3, column 'y': empty cell \(a missing value\); "
                                        r".*--missing drop drops those rows \(a missing "
                                        r"target cannot be filled in\)$"):
        data.from_csv(_csv(tmp_path, "x,y\n1,0\n2,\n3,1\n", "t2.csv"))


def test_missing_drop_drops_the_rows_pandas_dropna_drops(tmp_path):
    path = _csv(tmp_path, MISSING)
    ds = data.from_csv(path, missing="drop")
    oracle = pd.read_csv(path, na_values=["?"]).dropna()
    np.testing.assert_array_equal(ds.X, oracle[["x1", "x2"]].to_numpy())
    assert ds.classes == [1] and ds.y.tolist() == [0, 0] and ds.n_samples == len(oracle) == 2
    assert ds.reading.missing == ("missing values: dropped 4 of 6 rows with missing cells "
                                  "(in 'x1', 'x2', 'y')")


def test_missing_mean_fills_as_pandas_fillna_with_the_column_mean(tmp_path):
    path = _csv(tmp_path, MISSING)
    ds = data.from_csv(path, missing="mean")
    frame = pd.read_csv(path, na_values=["?"]).dropna(subset=["y"])  # no target: dropped
    oracle = frame[["x1", "x2"]].fillna(frame[["x1", "x2"]].mean())
    np.testing.assert_allclose(ds.X, oracle.to_numpy(), rtol=0, atol=1e-15)
    assert ds.y.tolist() == [0, 1, 0, 1, 1]
    mean_x1, mean_x2 = frame["x1"].mean(), frame["x2"].mean()
    assert ds.reading.missing == (
        f"missing values: filled 1 cell of 'x1' with its mean {mean_x1:.4g}, 2 cells of 'x2' "
        f"with its mean {mean_x2:.4g}; dropped 1 of 6 rows without a target (in 'y')")


def test_missing_mean_of_a_onehot_column_is_the_share_of_each_value(tmp_path):
    path = _csv(tmp_path, "x,colour,y\n1,red,0\n2,blue,1\n3,,1\n4,red,0\n")
    ds = data.from_csv(path, categorical="onehot", missing="mean")
    np.testing.assert_allclose(ds.X[2], [3, 1 / 3, 2 / 3])
    assert "1 cell of 'colour' with the share of each value" in ds.reading.missing


def test_nan_counts_as_missing_only_with_a_missing_strategy(tmp_path):
    path = _csv(tmp_path, "x1,x2,y\n1,nan,0\n2,3,1\n4,5,1\n")
    with pytest.raises(DataError, match=r"^row 2, column 'x2': 'nan' is not a finite number; "
                                        r"if it marks a missing value, --missing drop\|mean"):
        data.from_csv(path)
    np.testing.assert_array_equal(data.from_csv(path, missing="mean").X[0], [1, 4])
    with pytest.raises(DataError, match="column 'x2' has no values to take the mean of"):
        data.from_csv(_csv(tmp_path, "x1,x2,y\n1,,0\n2,,1\n", "e.csv"), missing="mean")
