"""gradsight.engine.data: generators, CSV reading (errors name row and column), split, scaling."""

from __future__ import annotations

import numpy as np
import pytest

from gradsight.engine import data
from gradsight.errors import DataError, InvalidValueError, ShapeError, UnknownNameError


# ---- generators ---------------------------------------------------------------------------
def test_xor_is_the_truth_table():
    ds = data.xor()
    X, y = ds.X, ds.y
    assert X.dtype == np.float64 and X.shape == (4, 2)
    # independent oracle: y = x1 XOR x2 on the 4 corners
    assert y.tolist() == [int(a) ^ int(b) for a, b in X]
    assert ds.n_classes == 2 and ds.feature_names == ["x1", "x2"]


def test_noisy_xor_keeps_labels_of_the_nearest_corner():
    ds = data.xor(n=200, noise=0.1, seed=3)
    assert ds.X.shape == (200, 2)
    corner = np.round(np.clip(ds.X, 0, 1))
    agree = np.mean((corner[:, 0] != corner[:, 1]).astype(int) == ds.y)
    assert agree > 0.97  # noise 0.1 seldom crosses the midline 0.5 (5 σ away)


@pytest.mark.parametrize(("name", "kwargs", "shape", "k"), [
    ("circles", {"n": 50}, (50, 2), 2),
    ("moons", {"n": 51}, (51, 2), 2),
    ("spirals", {"n": 31, "classes": 3}, (31, 2), 3),
    ("gauss", {"n": 40, "classes": 4}, (40, 2), 4),
])
def test_generators_shapes_classes_and_determinism(name, kwargs, shape, k):
    a = data.load(name, **kwargs, seed=1)
    b = data.load(name, **kwargs, seed=1)
    c = data.load(name, **kwargs, seed=2)
    assert a.X.shape == shape and a.y.shape == (shape[0],)
    assert a.n_classes == k and set(a.y.tolist()) == set(range(k))
    assert a.X.dtype == np.float64 and a.y.dtype.kind == "i"
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


def test_circles_radii_follow_factor_without_noise():
    ds = data.circles(n=100, noise=0.0, factor=0.3)
    radius = np.hypot(ds.X[:, 0], ds.X[:, 1])
    np.testing.assert_allclose(radius[ds.y == 0], 1.0)
    np.testing.assert_allclose(radius[ds.y == 1], 0.3)


def test_spirals_match_the_cs231n_construction():
    ds = data.spirals(n=30, classes=3, noise=0.0)
    for k in range(3):
        r = np.linspace(0, 1, 10)
        t = np.linspace(4 * k, 4 * (k + 1), 10)
        np.testing.assert_allclose(ds.X[ds.y == k], np.c_[r * np.sin(t), r * np.cos(t)])


def test_digits_scaled_to_unit_interval():
    ds = data.digits()
    assert ds.X.shape == (1797, 64) and ds.n_classes == 10
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    from sklearn.datasets import load_digits
    np.testing.assert_array_equal(ds.X * 16, load_digits().data)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: data.moons(n=0), "n must be an integer"),
    (lambda: data.moons(noise=-1), "noise must be"),
    (lambda: data.circles(factor=1.5), "factor must be"),
    (lambda: data.spirals(n=2, classes=3), "n must be an integer ≥ 3"),
    (lambda: data.gauss(noise=0), "noise must be a finite number > 0"),
    (lambda: data.xor(n=2.5), "n must be an integer"),
])
def test_generator_validation(call, message):
    with pytest.raises(InvalidValueError, match=message):
        call()


def test_load_unknown_name_lists_known():
    with pytest.raises(UnknownNameError) as info:
        data.load("mooons")
    text = str(info.value)
    assert "mooons" in text and "moons" in text and "spirals" in text and "\n" not in text
    with pytest.raises(InvalidValueError, match="has no option 'classes'"):
        data.load("moons", classes=3)
    with pytest.raises(InvalidValueError, match="options: none"):
        data.load("digits", n=5)
    with pytest.raises(InvalidValueError, match="target applies to CSV files only"):
        data.load("moons", target="y")


def test_dataset_validates_labels_and_shapes():
    with pytest.raises(DataError, match="label 2 out of range"):
        data.Dataset(np.zeros((3, 2)), [0, 1, 2], "d", 2)
    with pytest.raises(ShapeError):
        data.Dataset(np.zeros((3, 2)), [0, 1], "d", 2)
    with pytest.raises(DataError, match="non-finite"):
        data.Dataset(np.array([[np.nan, 1.0]]), [0], "d", 1)
    assert "3 samples × 2 features, 2 classes" in repr(data.Dataset(np.zeros((3, 2)),
                                                                    [0, 1, 1], "d", 2))


# ---- CSV ----------------------------------------------------------------------------------
def _csv(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_string_labels_default_last_column(tmp_path):
    path = _csv(tmp_path, "a,b,species\n1,2,setosa\n3,4.5,virginica\n5,6,setosa\n")
    ds = data.from_csv(path)
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4.5], [5, 6]])
    assert ds.y.tolist() == [0, 1, 0] and ds.classes == ["setosa", "virginica"]
    assert ds.n_classes == 2 and ds.feature_names == ["a", "b"] and ds.target_name == "species"


def test_csv_integer_labels_mapped_and_named_target(tmp_path):
    path = _csv(tmp_path, "label,x1,x2\n5,0,1\n-1,1,0\n5,2,2\n9,3,3\n")
    ds = data.load(str(path), target="label")
    assert ds.classes == [-1, 5, 9] and ds.y.tolist() == [1, 0, 1, 2]
    np.testing.assert_array_equal(ds.X[:, 0], [0, 1, 2, 3])


def test_csv_float_target_is_regression(tmp_path):
    ds = data.from_csv(_csv(tmp_path, "x,price\n1,2.5\n2,3.0\n"))
    assert ds.n_classes is None and ds.y.dtype == np.float64 and ds.y.tolist() == [2.5, 3.0]
    assert "regression" in repr(ds)


@pytest.mark.parametrize(("text", "target", "pattern"), [
    ("x1,x2,y\n1,2,0\n3,4,1\n", "label",
     r"target column 'label' not in .*columns: x1, x2, y"),
    ("x1,x2,y\n1,2,0\n3,4,1\n1,2,0\n1,2,1\n1,2,0\n1,abc,1\n", None,
     r"^row 7, column 'x2': 'abc' is not a number$"),
    ("x1,x2,y\n1,2,0\n3,inf,1\n", None, r"^row 3, column 'x2': 'inf' is not a finite number$"),
    ("x1,x2,y\n1,nan,0\n", None, r"^row 2, column 'x2': 'nan' is not a finite number; if it "
     r"marks a missing value, --missing drop\|mean handles it$"),
    ("x1,x2,y\n1,,0\n", None, r"^row 2, column 'x2': empty cell"),
    ("x1,x2,y\n1,2,0\n3,4\n", None, r"row 3 has 2 cells, the header has 3"),
    ("x1,x2,y\n1,2,0\n3,4,\n", None, r"^row 3, column 'y': empty cell"),
    ("", None, r"is empty"),
    ("x1,x2,y\n", None, r"no data rows"),
    ("y\n1\n", None, r"at least one feature column"),
])
def test_csv_errors_name_row_and_column(tmp_path, text, target, pattern):
    with pytest.raises(DataError, match=pattern) as info:
        data.from_csv(_csv(tmp_path, text), target=target)
    assert "\n" not in str(info.value)


def test_csv_missing_file_and_forced_tasks(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.load(tmp_path / "nope.csv")
    path = _csv(tmp_path, "x,y\n1,1\n2,2\n3,1\n")
    assert data.from_csv(path, task="regression").n_classes is None
    with pytest.raises(InvalidValueError, match="has no option 'noise'"):
        data.load(path, noise=0.1)
    with pytest.raises(DataError, match="^row 3, column 'y': 'b' is not a number$"):
        data.from_csv(_csv(tmp_path, "x,y\n1,1.5\n2,b\n", "s.csv"), task="regression")
    with pytest.raises(DataError, match="class label '2.5' is not an integer"):
        data.from_csv(_csv(tmp_path, "x,y\n1,1\n2,2.5\n", "f.csv"), task="classification")


# ---- split and scaling --------------------------------------------------------------------
def test_split_is_stratified_and_deterministic():
    y = np.array([0] * 80 + [1] * 20)
    X = np.arange(200.0).reshape(100, 2)
    Xtr, Xte, ytr, yte = data.train_test_split(X, y, test_size=0.2, seed=5)
    assert Xtr.shape == (80, 2) and Xte.shape == (20, 2)
    assert np.bincount(yte).tolist() == [16, 4] and np.bincount(ytr).tolist() == [64, 16]
    # the parts partition the rows, and each row keeps its label
    rows = np.concatenate([Xtr[:, 0], Xte[:, 0]]) / 2
    assert sorted(rows.tolist()) == list(range(100))
    np.testing.assert_array_equal(y[(Xte[:, 0] / 2).astype(int)], yte)
    again = data.train_test_split(X, y, test_size=0.2, seed=5)
    np.testing.assert_array_equal(again[1], Xte)


def test_split_falls_back_and_validates():
    X, y = data.xor().X, data.xor().y
    Xtr, Xte, _, _ = data.train_test_split(X, y, test_size=0.25)  # 1 test row < 2 classes
    assert len(Xte) == 1 and len(Xtr) == 3
    with pytest.raises(ShapeError):
        data.train_test_split(np.zeros((4, 2)), [0, 1, 0])
    with pytest.raises(InvalidValueError, match="test_size"):
        data.train_test_split(np.zeros((4, 2)), [0, 1, 0, 1], test_size=1.5)
    with pytest.raises(DataError, match="cannot split 1"):
        data.train_test_split(np.zeros((1, 2)), [0])


def test_standardize_uses_training_statistics():
    rng = np.random.default_rng(0)
    Xtr = rng.normal(3.0, 2.0, (50, 3))
    Xtr[:, 2] = 7.0  # a constant column
    Xte = rng.normal(3.0, 2.0, (10, 3))
    train, test, mean, std = data.standardize(Xtr, Xte)
    np.testing.assert_allclose(train[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(train[:, :2].std(axis=0), 1.0)
    assert np.all(train[:, 2] == 0.0) and std[2] == 1.0
    np.testing.assert_allclose(test, (Xte - Xtr.mean(axis=0)) / std)
    np.testing.assert_allclose(std[:2], Xtr[:, :2].std(axis=0))
    assert data.standardize(Xtr.astype(np.float32)).train.dtype == np.float32
    with pytest.raises(ShapeError):
        data.standardize(Xtr, Xte[:, :2])
