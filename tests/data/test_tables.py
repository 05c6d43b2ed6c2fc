"""Tables: .csv/.tsv/.txt/.parquet read as float32 features, labels and ids, and every mistake
in a file answered with one DataError line that names the file (and the row, column, value)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab.data import tables
from vaelab.data.tables import read_table
from vaelab.errors import DataError, InvalidArgumentError


def _text(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def _parquet(tmp_path: Path, name: str, data: dict | pa.Table, **kw) -> Path:
    path = tmp_path / name
    pq.write_table(data if isinstance(data, pa.Table) else pa.table(data), path, **kw)
    return path


def _error(path: Path, **kw) -> str:
    """The DataError message of reading ``path``, checked to be one line naming the file."""
    with pytest.raises(DataError) as e:
        read_table(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    return msg


# --------------------------------------------------------------------------- values read


def test_csv_values_columns_labels_in_order(tmp_path):
    path = _text(tmp_path, "t.csv", "a,b,label\n1.5,-2,cat\n3,4e-3,dog\n5,6,cat\n")
    r = read_table(path, label_column="label")
    assert r.values.dtype == np.float32 and r.values.flags.c_contiguous
    np.testing.assert_array_equal(
        r.values, np.array([[1.5, -2], [3, 4e-3], [5, 6]], dtype=np.float32)
    )
    assert r.columns == ["a", "b"]
    assert r.labels.tolist() == ["cat", "dog", "cat"] and r.labels.dtype.kind == "U"
    assert r.label_name == "label" and r.ids is None and r.notices == []
    d = json.loads(json.dumps(r.describe()))  # JSON-serializable as is
    assert d["kind"] == "table" and d["format"] == "csv" and d["header"] is True
    assert d["columns"] == ["a", "b"] and d["label_name"] == "label"
    assert d["labels"] == {"dtype": "str", "n_distinct": 2, "values": ["cat", "dog"]}
    assert d["shape"] == [3, 2] and d["n_rows_in_file"] == 3 and d["n_rows_dropped"] == 0


def test_columns_pick_features_in_the_given_order_and_skip_the_rest(tmp_path):
    # "name" is not numeric, but it is not asked for: it is never converted.
    path = _text(tmp_path, "t.csv", "name,x,y,z\nann,1,2,3\nbob,4,5,6\n")
    r = read_table(path, columns=["z", "x"])
    assert r.columns == ["z", "x"]
    np.testing.assert_array_equal(r.values, [[3, 1], [6, 4]])


def test_integer_labels_become_int64(tmp_path):
    path = _text(tmp_path, "t.csv", "x,y\n0.5,1\n0.25, 007\n0.125,2\n")
    r = read_table(path, label_column="y")
    assert r.labels.dtype == np.int64 and r.labels.tolist() == [1, 7, 2]
    assert r.describe()["labels"]["values"] == [1, 2, 7]


def test_headerless_file_gets_col_names(tmp_path):
    path = _text(tmp_path, "t.csv", "1,2\n3,4\n")
    r = read_table(path)
    assert r.columns == ["col0", "col1"] and r.describe()["header"] is False
    np.testing.assert_array_equal(r.values, [[1, 2], [3, 4]])
    # The names are usable: as features and as the label.
    r = read_table(path, label_column="col1")
    assert r.columns == ["col0"] and r.labels.tolist() == [2, 4]


def test_header_argument_overrides_the_guess(tmp_path):
    # pandas' DataFrame(a).to_csv(index=False) writes the header 0,1: all numbers, so by
    # default it is data; header=True says otherwise.
    path = _text(tmp_path, "t.csv", "0,1\n5,6\n7,8\n")
    guessed = read_table(path)
    assert guessed.values.shape == (3, 2)
    assert guessed.notices == [
        "read the first row (0,1) as data, the columns named col0, col1, ...; if it names the "
        "columns, pass --header yes"
    ]
    r = read_table(path, header=True)
    assert r.columns == ["0", "1"] and r.values.tolist() == [[5, 6], [7, 8]]
    assert r.notices == []  # the user said so: nothing to note
    # header=False on a file that has one: its names are refused as numbers, in row 1.
    named = _text(tmp_path, "n.csv", "a,b\n1,2\n")
    msg = _error(named, header=False)
    assert "'a'" in msg and "row 1 (1 = the first row)" in msg


def test_a_first_row_of_numbers_and_text_read_as_a_header_says_how_to_read_it_as_data(
    tmp_path,
):
    """iris without its header: the label in the first row makes the row look like names,
    so every error about its columns, and the notice, say that --header no reads it as data."""
    rows = "5.1,3.5,setosa\n4.9,3.0,setosa\n7.0,3.2,versicolor\n"
    path = _text(tmp_path, "iris.csv", rows)
    msg = _error(path)
    assert "non-numeric column 'setosa'" in msg and "if it is data, pass --header no" in msg
    assert "pass --header no" in _error(path, label_column="col2")
    taken = read_table(path, label_column="setosa")  # as asked: the first row is the names
    assert taken.values.shape == (2, 2)
    assert taken.notices == [
        "the first row, '5.1', '3.5', 'setosa', was read as the header because it holds text; "
        "if it is data, pass --header no"
    ]
    data = read_table(path, label_column="col2", header=False)
    assert data.values.shape == (3, 2) and data.labels.tolist() == ["setosa"] * 2 + ["versicolor"]
    assert data.notices == []
    # --header no on a file whose first row is names: the error says what was asked
    named_iris = _text(tmp_path, "named.csv", "a,b,kind\n" + rows)
    msg = _error(named_iris, label_column="col2", header=False)
    assert "--header no read the first row, 'a', 'b', 'kind', as data" in msg
    assert "--header auto or yes" in msg
    # new rows for a run whose file had no header: its columns are col0, ...; say so
    msg = _error(named_iris, columns=["col0", "col1"], every_row=True)
    assert "read from a file without a header row" in msg and "give rows without" in msg
    # an ordinary header (no field a number) is taken without a word
    named = read_table(_text(tmp_path, "n.csv", "a,b,kind\n" + rows), label_column="kind")
    assert named.notices == [] and named.values.shape == (3, 2)


def test_true_false_columns_read_as_one_and_zero(tmp_path):
    # What pandas writes for a bool column (True/False), with the other spellings pyarrow
    # parses, 0/1 among them, and a missing cell; numbers in the other columns untouched.
    rows = "a,flag,ok,b\n1.5,True,true,2\n-3,False,FALSE,4\n5,1,,6\n7,0,TRUE,8\n"
    path = _text(tmp_path, "t.csv", rows)
    r = read_table(path, drop_missing=True)
    assert r.columns == ["a", "flag", "ok", "b"]
    np.testing.assert_array_equal(r.values, [[1.5, 1, 1, 2], [-3, 0, 0, 4], [7, 0, 1, 8]])
    assert r.notices == [
        "read 'flag', 'ok' (true/false words) as 1/0",
        "dropped 1 of 4 rows with missing values",
    ]
    # the same file as new rows for a run trained on it reads the same way
    again = read_table(path, columns=r.columns, drop_missing=True, every_row=True)
    np.testing.assert_array_equal(again.values[[0, 1, 3]], r.values)
    assert np.isnan(again.values[2, 2]) and again.rows is None  # new rows keep their places
    assert r.rows.tolist() == [0, 1, 3]  # the file's rows, after the drop
    # without the words the columns are plain numbers and nothing is said
    plain = read_table(_text(tmp_path, "p.csv", "a,flag\n1,1\n2,0\n"))
    assert plain.notices == [] and plain.values.tolist() == [[1, 1], [2, 0]]


def test_true_false_with_other_text_is_refused_at_the_other_text(tmp_path):
    path = _text(tmp_path, "t.csv", "a,flag,ok\n1,True,True\n2,maybe,False\n")
    msg = _error(path)
    # 'ok' is read as booleans; 'flag' is named at its first cell that is not a word
    assert "non-numeric column 'flag' (the first: 'maybe' in 'flag', data row 2 " in msg
    assert "'ok'" not in msg
    # pyarrow's boolean parser takes the words exactly: with spaces around them they are text
    msg = _error(_text(tmp_path, "s.csv", "a,flag\n1, True\n2,False\n"))
    assert "non-numeric column 'flag' (the first: ' True' in 'flag'" in msg


def test_semicolon_csv_with_decimal_commas_as_spreadsheets_write_it(tmp_path):
    # pandas' to_csv(sep=";", decimal=","), Excel where the comma is the decimal mark
    path = _text(tmp_path, "t.csv", "alcohol;malic;kind\n14,23;1,71;a\n13,2;-0,5;b\n")
    r = read_table(path, label_column="kind")
    assert r.columns == ["alcohol", "malic"] and r.labels.tolist() == ["a", "b"]
    np.testing.assert_allclose(r.values, [[14.23, 1.71], [13.2, -0.5]], rtol=1e-6)
    assert r.notices == [
        "read as separated by ';', its numbers with a decimal comma (the first row has no "
        "other comma)"
    ]
    assert r.describe()["delimiter"] == ";" and r.describe()["decimal"] == ","
    # without a header, the first row's decimal commas do not make it one
    bare = read_table(_text(tmp_path, "b.csv", "1,5;2,5\n3,25;4\n"))
    np.testing.assert_allclose(bare.values, [[1.5, 2.5], [3.25, 4.0]])
    assert (
        bare.columns == ["col0", "col1"]
        and "read the first row (1,5;2,5) as data" in (bare.notices[1])
    )
    # semicolons and decimal points: only the separator changes
    points = read_table(_text(tmp_path, "p.csv", "a;b\n1.5;2\n"))
    assert points.values.tolist() == [[1.5, 2.0]] and "decimal" not in points.describe()
    # a comma outside a number: the comma separates, a semicolon is part of a name
    names = read_table(_text(tmp_path, "n.csv", "a,b;c\n1,2\n"))
    assert names.columns == ["a", "b;c"] and names.notices == []
    # a bad cell is named as it stands
    msg = _error(_text(tmp_path, "x.csv", "a;b\n1,5;oops\n"))
    assert "non-numeric column 'b' (the first: 'oops'" in msg


def test_pandas_index_column_dropped_with_notice(tmp_path):
    # What pandas.DataFrame({"x": ..., "y": ...}).to_csv() writes.
    path = _text(tmp_path, "t.csv", ",x,y\n0,1.5,2\n1,3,4\n2,5,6\n")
    r = read_table(path)
    assert r.columns == ["x", "y"] and r.ids is None
    assert r.notices == ["dropped the unnamed first column: it holds the row numbers 0..2"]
    assert r.describe()["index_column"] == "dropped"


def test_pandas_default_column_names_header(tmp_path):
    # pandas.DataFrame(array).to_csv(): an unnamed index, then columns named 0, 1.
    path = _text(tmp_path, "t.csv", ",0,1\n0,1.5,2\n1,3,4\n")
    r = read_table(path)
    assert r.columns == ["0", "1"] and r.values.tolist() == [[1.5, 2], [3, 4]]


def test_unnamed_column_that_is_not_0_to_n_becomes_ids(tmp_path):
    path = _text(tmp_path, "t.csv", "Unnamed: 0,x\n5,1\n9,2\n2,3\n")
    r = read_table(path)
    assert r.ids.tolist() == [5, 9, 2] and r.columns == ["x"]
    assert r.notices == ["read the index column 'Unnamed: 0' as row ids, not as a feature"]
    text = _text(tmp_path, "s.csv", ",x\nr1,1\nr2,2\n")
    assert read_table(text).ids.tolist() == ["r1", "r2"]


def test_a_column_named_id_is_read_as_ids_unless_asked_for_as_a_feature(tmp_path):
    # Kaggle-style: a key column first. As a feature the last rows would look unusual.
    path = _text(tmp_path, "t.csv", "ID,x\n0,1.5\n1,2.5\n")
    r = read_table(path)
    assert r.columns == ["x"] and r.ids.tolist() == [0, 1]  # kept even when it is 0..N-1
    np.testing.assert_array_equal(r.values, [[1.5], [2.5]])
    assert r.notices == [
        "read the column 'ID' as row ids, not as a feature (name it in --columns to make it one)"
    ]
    assert r.describe()["index_column"] == "ids"
    asked = read_table(path, columns=["ID", "x"])  # named as a feature: a feature
    assert asked.columns == ["ID", "x"] and asked.ids is None and asked.notices == []
    labelled = read_table(path, label_column="ID")  # named as the label: the label
    assert labelled.ids is None and labelled.labels.tolist() == [0, 1]
    # text ids, in Parquet too, where the column may sit anywhere
    pq_path = _parquet(tmp_path, "t.parquet", {"x": [1.0, 2.0], "id": ["a7", "b9"]})
    got = read_table(pq_path)
    assert got.columns == ["x"] and got.ids.tolist() == ["a7", "b9"]


def test_id_column_names_the_ids(tmp_path):
    path = _text(tmp_path, "t.csv", "customer,x,y\nc-01,1,2\nc-02,3,4\nc-03,5,6\n")
    r = read_table(path, id_column="customer")
    assert r.columns == ["x", "y"] and r.ids.tolist() == ["c-01", "c-02", "c-03"]
    assert r.notices == []  # asked for: nothing to say
    # numbers too, and never dropped as a pandas index of 0..N-1 would be
    nums = read_table(_text(tmp_path, "n.csv", "k,x\n0,1\n1,2\n2,3\n"), id_column="k")
    assert nums.ids.tolist() == [0, 1, 2] and nums.columns == ["x"]
    # the run's new rows may come without it
    bare = _text(tmp_path, "new.csv", "x,y\n7,8\n")
    new = read_table(bare, columns=["x", "y"], id_column="customer", every_row=True)
    assert new.ids is None and new.values.tolist() == [[7, 8]]
    # refused: a column that is not there, or named for two jobs
    assert "no id column 'who'; the columns are 'customer', 'x', 'y'" in _error(
        path, id_column="who"
    )
    with pytest.raises(InvalidArgumentError, match="both the --id-column and a feature"):
        read_table(path, columns=["customer", "x"], id_column="customer")
    with pytest.raises(InvalidArgumentError, match="both the --id-column and the --label-column"):
        read_table(path, label_column="customer", id_column="customer")


def test_text_variants_bom_quotes_crlf_spaces_blank_lines(tmp_path):
    text = '\ufeff"a, the first",b\r\n 1 ,"2"\r\n\r\n3,4\r\n'
    r = read_table(_text(tmp_path, "t.csv", text))
    assert r.columns == ["a, the first", "b"]
    np.testing.assert_array_equal(r.values, [[1, 2], [3, 4]])


def test_tsv_and_txt(tmp_path):
    r = read_table(_text(tmp_path, "t.tsv", "a\tb\n1\t2\n"))
    assert r.columns == ["a", "b"] and r.describe()["delimiter"] == "\t"
    tab = read_table(_text(tmp_path, "tab.txt", "a b\tc\n1\t2\n"))
    assert tab.columns == ["a b", "c"]
    # numpy.savetxt's default: spaces, no header.
    np.savetxt(tmp_path / "np.txt", np.array([[1.5, -2.0], [3.0, 4.0]]))
    r = read_table(tmp_path / "np.txt")
    assert r.describe()["delimiter"] == " " and r.values.tolist() == [[1.5, -2], [3, 4]]


def test_one_row_is_read(tmp_path):
    # One example is a valid file; too few to split, which the splitter says.
    r = read_table(_text(tmp_path, "t.csv", "1,2,3\n"))
    assert r.values.shape == (1, 3)
    r = read_table(_text(tmp_path, "h.csv", "a\n7\n"))
    assert r.values.shape == (1, 1) and r.values[0, 0] == 7


def test_drop_missing_drops_rows_keeps_order_labels_ids(tmp_path):
    text = ",x,y,lab\n10,1,2,a\n11,,3,b\n12,4,NA,c\n13,5,6,\n14,7,8,d\n"
    path = _text(tmp_path, "t.csv", text)
    r = read_table(path, label_column="lab", drop_missing=True)
    assert r.values.tolist() == [[1, 2], [7, 8]]
    assert r.labels.tolist() == ["a", "d"] and r.ids.tolist() == [10, 14]
    assert "dropped 3 of 5 rows with missing values" in r.notices
    d = r.describe()
    assert d["drop_missing"] is True and d["n_rows_in_file"] == 5 and d["n_rows_dropped"] == 3


def test_many_blocks_keep_order_and_find_rows_across_blocks(tmp_path, monkeypatch):
    # Small pyarrow blocks: the streamed fill, its resizing and the row numbers in errors
    # must hold across block boundaries.
    monkeypatch.setattr(tables, "_CSV_BLOCK_BYTES", 256)
    rng = np.random.default_rng(0)
    x = rng.integers(-1000, 1000, (2000, 3)).astype(np.float32) / 8
    lines = ["a,b,c,lab", *(f"{r[0]},{r[1]},{r[2]},{i % 5}" for i, r in enumerate(x))]
    path = _text(tmp_path, "t.csv", "\n".join(lines) + "\n")
    r = read_table(path, label_column="lab")
    np.testing.assert_array_equal(r.values, x)
    assert r.labels.tolist() == [i % 5 for i in range(2000)]
    lines[1500] = "1,2"  # data row 1500
    msg = _error(_text(tmp_path, "r.csv", "\n".join(lines) + "\n"))
    assert "data row 1500 " in msg and "1 field" not in msg and "2 fields" in msg
    lines[1500] = "1,2,x,0"
    msg = _error(_text(tmp_path, "n.csv", "\n".join(lines) + "\n"))
    assert "'x' in 'c', data row 1500 " in msg


def test_row_estimate_too_low_grows_the_output(tmp_path):
    # Long lines first, short ones after: the size estimate from the file's start is far
    # too low, and the output grows in place.
    long_rows = [f"{i}.{'0' * 24},1" for i in range(3000)]
    short_rows = [f"{i},2" for i in range(20000)]
    path = _text(tmp_path, "t.csv", "a,b\n" + "\n".join(long_rows + short_rows) + "\n")
    r = read_table(path)
    assert r.values.shape == (23000, 2)
    assert r.values[:3000, 0].tolist() == list(range(3000))
    assert r.values[3000:, 0].tolist() == list(range(20000))


def test_parquet_types_row_groups_labels(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "_PARQUET_GROUP_BYTES", 1)  # one column per read
    n = 50
    data = {
        "f64": np.arange(n, dtype=np.float64) / 4,
        "i8": pa.array(np.arange(n) % 100, pa.int8()),
        "flag": pa.array(np.arange(n) % 2 == 0),
        "dec": pa.array([i / 2 for i in range(n)]).cast(pa.decimal128(6, 2)),
        "label": [f"c{i % 3}" for i in range(n)],
    }
    path = _parquet(tmp_path, "t.parquet", data, row_group_size=7)
    r = read_table(path, label_column="label")
    assert r.columns == ["f64", "i8", "flag", "dec"]
    np.testing.assert_array_equal(r.values[:, 0], np.arange(n) / 4)
    np.testing.assert_array_equal(r.values[:, 1], np.arange(n) % 100)
    np.testing.assert_array_equal(r.values[:, 2], np.arange(n) % 2 == 0)
    np.testing.assert_array_equal(r.values[:, 3], np.arange(n) / 2)
    assert r.labels.tolist() == [f"c{i % 3}" for i in range(n)]
    d = json.loads(json.dumps(r.describe()))
    assert d["format"] == "parquet" and d["header"] is None


def test_parquet_pandas_index_and_integral_float_labels(tmp_path):
    path = _parquet(tmp_path, "t.parquet", {"x": [1.0, 2.0], "y": [3.0, 1.0]})
    r = read_table(path, label_column="y")
    assert r.labels.dtype == np.int64 and r.labels.tolist() == [3, 1]
    indexed = _parquet(tmp_path, "i.parquet", {"x": [1.0, 2.0], "__index_level_0__": [7, 3]})
    r = read_table(indexed)
    assert r.columns == ["x"] and r.ids.tolist() == [7, 3]
    ranged = _parquet(tmp_path, "r.parquet", {"x": [1.0, 2.0], "__index_level_0__": [0, 1]})
    r = read_table(ranged)
    assert r.ids is None and r.describe()["index_column"] == "dropped"


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda d: st.lists(
            st.lists(
                st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=d, max_size=d
            ),
            min_size=1,
            max_size=15,
        )
    ),
    st.booleans(),
    st.booleans(),
)
def test_csv_round_trip_is_exact(tmp_path_factory, rows, header, float64_text):
    # Any float32 table written as text (shortest float32 digits, or the float64 digits of the
    # same value) reads back bit for bit.
    x = np.array(rows, dtype=np.float32)
    fmt = (lambda v: repr(float(v))) if float64_text else (lambda v: str(np.float32(v)))
    lines = [",".join(fmt(v) for v in row) for row in x]
    if header:
        lines.insert(0, ",".join(f"f{j}" for j in range(x.shape[1])))
    path = tmp_path_factory.mktemp("rt") / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    r = read_table(path)
    assert r.values.shape == x.shape
    np.testing.assert_array_equal(r.values, x)
    assert np.array_equal(np.signbit(r.values), np.signbit(x))  # -0.0 stays -0.0


def test_pyarrow_written_csv_round_trip(tmp_path):
    x = np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)
    pa_csv.write_csv(pa.table({f"f{j}": x[:, j] for j in range(4)}), tmp_path / "t.csv")
    np.testing.assert_array_equal(read_table(tmp_path / "t.csv").values, x)


# --------------------------------------------------------------------------- bad inputs

# name -> builder(tmp_path) -> (path, read_table keywords, needles the one-line error names)
BAD = {
    "non-numeric column": lambda t: (
        _text(t, "a.csv", "a,b\n1,2\n3,x\n"),
        {},
        ["non-numeric column 'b'", "'x'", "data row 2 "],
    ),
    "several non-numeric columns": lambda t: (
        _text(t, "a.csv", "a,b,c\n1,u,v\n"),
        {},
        ["columns 'b', 'c'", "'u' in 'b'"],
    ),
    "pipe-separated csv": lambda t: (
        _text(t, "a.csv", "a|b\n1|2\n"),
        {},
        ["'1|2'", "separated by another character"],
    ),
    "missing cell": lambda t: (
        _text(t, "a.csv", "a,b\n1,2\n3,\n"),
        {},
        ["missing value", "column 'b'", "data row 2 ", "drop_missing=True"],
    ),
    "missing label": lambda t: (
        _text(t, "a.csv", "a,y\n1,u\n2,NA\n"),
        {"label_column": "y"},
        ["missing value", "column 'y'", "data row 2 "],
    ),
    "missing cell, no header": lambda t: (
        _text(t, "a.csv", "1,2\nNaN,4\n"),
        {},
        ["column 'col0'", "row 2 (1 = the first row)"],
    ),
    "every row missing": lambda t: (
        _text(t, "a.csv", "a,b\n1,\n,2\n"),
        {"drop_missing": True},
        ["every one of the 2 rows"],
    ),
    "ragged row, too few": lambda t: (
        _text(t, "a.csv", "a,b,c\n1,2,3\n4,5\n"),
        {},
        ["ragged", "data row 2 ", "2 fields where the header has 3", "'4,5'"],
    ),
    "ragged row, too many": lambda t: (
        _text(t, "a.csv", "1,2\n3,4\n5,6\n7,8,9\n"),
        {},
        ["ragged", "row 4 ", "3 fields where the first row has 2"],
    ),
    "duplicated header names": lambda t: (
        _text(t, "a.csv", "a,b,a,c,b\n1,2,3,4,5\n"),
        {},
        ["duplicated column names", "'a', 'b'"],
    ),
    "empty header name": lambda t: (
        _text(t, "a.csv", "a,,c\n1,2,3\n"),
        {},
        ["column 2 of the header", "no name"],
    ),
    "empty file": lambda t: (_text(t, "a.csv", ""), {}, ["empty file (0 bytes)"]),
    "blank lines only": lambda t: (_text(t, "a.csv", "\n\r\n\n"), {}, ["empty file"]),
    "header only": lambda t: (_text(t, "a.csv", "a,b\n"), {}, ["a header but no data rows"]),
    "non-UTF-8 header": lambda t: (
        _text(t, "a.csv", "température,b\n1,2\n".encode("latin-1")),
        {},
        ["not UTF-8", "0xe9", "offset 4"],
    ),
    "non-UTF-8 label far into the file": lambda t: (
        _text(t, "a.csv", ("x,y\n" + "1,ok\n" * 20000 + "2,caf\xe9\n").encode("latin-1")),
        {"label_column": "y"},
        ["column 'y' is not UTF-8"],
    ),
    "inf value": lambda t: (
        _text(t, "a.csv", "a,b\n1,2\n-inf,4\n"),
        {},
        ["infinite value -inf", "column 'a'", "data row 2 "],
    ),
    "beyond float32": lambda t: (
        _text(t, "a.csv", "a,b\n1,2\n3,1e39\n"),
        {},
        ["infinite value inf", "column 'b'", "data row 2 ", "float32"],
    ),
    "label column that does not exist": lambda t: (
        _text(t, "a.csv", "a,b\n1,2\n"),
        {"label_column": "y"},
        ["no label column 'y'", "the columns are 'a', 'b'"],
    ),
    "label column that does not exist, no header": lambda t: (
        _text(t, "a.csv", "1,2\n"),
        {"label_column": "y"},
        ["no label column 'y'", "'col0', 'col1'", "no header row"],
    ),
    "requested column missing": lambda t: (
        _text(t, "a.csv", "a,b\n1,2\n"),
        {"columns": ["a", "c", "d"]},
        ["no column 'c', 'd'", "the columns are 'a', 'b'"],
    ),
    "only a label column": lambda t: (
        _text(t, "a.csv", "y\n1\n"),
        {"label_column": "y"},
        ["no feature columns besides 'y'"],
    ),
    "a folder named x.csv": lambda t: ((t / "x.csv").mkdir() or t / "x.csv", {}, ["is a folder"]),
    "file not found": lambda t: (t / "nope.csv", {}, ["file not found"]),
    "unsupported suffix": lambda t: (
        _text(t, "a.xlsx", "PK\x03\x04"),
        {},
        ["unsupported table type '.xlsx'", ".parquet"],
    ),
    "not a parquet file": lambda t: (
        _text(t, "a.parquet", b"a,b\n1,2\n"),
        {},
        ["not a readable Parquet file"],
    ),
    "truncated parquet": lambda t: (
        _text(t, "b.parquet", _parquet(t, "a.parquet", {"x": [1.0, 2.0]}).read_bytes()[:-30]),
        {},
        ["not a readable Parquet file"],
    ),
    "parquet non-numeric column": lambda t: (
        _parquet(
            t, "a.parquet", {"x": [1.0], "when": pa.array([0], pa.timestamp("s")), "s": ["a"]}
        ),
        {},
        ["non-numeric columns 'when', 's'", "timestamp"],
    ),
    "parquet missing value": lambda t: (
        _parquet(t, "a.parquet", {"x": [1.0, 2.0, None]}),
        {},
        ["missing value", "column 'x'", "row 3 (1 = the first row)"],
    ),
    "parquet NaN": lambda t: (
        _parquet(t, "a.parquet", {"x": [1.0, float("nan")]}),
        {},
        ["missing value", "row 2 "],
    ),
    "parquet beyond float32": lambda t: (
        _parquet(t, "a.parquet", {"x": [1.0, 1e300]}),
        {},
        ["infinite value inf", "column 'x'", "row 2 "],
    ),
    "parquet duplicated names": lambda t: (
        _parquet(t, "a.parquet", pa.table([pa.array([1.0]), pa.array([2.0])], names=["a", "a"])),
        {},
        ["duplicated column names: 'a'"],
    ),
    "parquet without rows": lambda t: (
        _parquet(t, "a.parquet", {"x": pa.array([], pa.float64())}),
        {},
        ["no rows"],
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_table_is_one_line_naming_the_file(tmp_path, case):
    path, kw, needles = BAD[case](tmp_path)
    msg = _error(path, **kw)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_unreadable_file(tmp_path, monkeypatch):
    path = _text(tmp_path, "a.csv", "a\n1\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # The first read of the file is this module's own open(): a refusal there is the user's.
    monkeypatch.setattr(tables, "open", refuse, raising=False)
    assert "cannot read (Permission denied)" in _error(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_by_mode(tmp_path):
    path = _text(tmp_path, "a.csv", "a\n1\n")
    path.chmod(0)
    assert "cannot read" in _error(path)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"columns": "a"}, "list of column names"),
        ({"columns": []}, "columns is empty"),
        ({"columns": ["a", "a"]}, "'a' more than once"),
        ({"columns": ["a"], "label_column": "a"}, "both the --label-column and a feature"),
        ({"label_column": 3}, "label_column must be a column name"),
        ({"drop_missing": "yes"}, "drop_missing must be True or False"),
        ({"header": "auto"}, "header must be None, True or False"),
    ],
)
def test_bad_arguments(tmp_path, kw, match):
    path = _text(tmp_path, "a.csv", "a,b\n1,2\n")
    with pytest.raises(InvalidArgumentError, match=match):
        read_table(path, **kw)


def test_header_argument_refused_for_parquet(tmp_path):
    path = _parquet(tmp_path, "a.parquet", {"x": [1.0]})
    with pytest.raises(InvalidArgumentError, match="header applies to text tables"):
        read_table(path, header=True)
