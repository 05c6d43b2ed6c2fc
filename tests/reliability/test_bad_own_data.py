"""A catalogue of bad inputs for the user's own data (issue 13): tables, image folders, arrays,
and the commands that read new rows for a run (``encode``, ``score``, ``evaluate --data``).

Each refused case is answered with exactly one ``vaelab: error: ...`` line on stderr naming the
file and what is wrong with it (the column, the row), exit status 2, no traceback, and nothing
written before changed: a finished image run (``prev``), a finished table run (``trun``) and the
user's files, all under ``tmp_path``. A failed ``train`` writes no run files.

A guard is tested on what it must accept as much as on what it refuses: the near misses at the
end (missing cells with ``--drop-missing``, palette and 16-bit PNGs, a label column, a column
subset, a value range on integer levels, ...) train, and ``encode`` reads what it must.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.reliability.checks import (
    assert_no_run_files,
    assert_one_line_error,
    assert_unchanged,
    run_cli,
    snapshot,
)
from vaelab.cli import main

# A tiny model and one epoch; the data are 40 rows or a dozen 8×8 images.
QUICK = [
    "--hidden",
    "8",
    "--latent-dim",
    "2",
    "--batch-size",
    "16",
    "--epochs",
    "1",
    "--seed",
    "7",
    "--device",
    "cpu",
    "--quiet",
    "--set",
    "train.final_eval_n=0",
    "--set",
    "train.threads=1",
]
N_ROWS = 40
N_IMAGES = 12


# --------------------------------------------------------------------------- the user's files


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _write(t: Path, name: str, content: str | bytes) -> str:
    path = t / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def _rows(n: int = N_ROWS, d: int = 5, sep: str = ",", header: bool = True, seed: int = 0) -> str:
    """A table of continuous features c0..c{d-1}."""
    x = _rng(seed).normal(size=(n, d))
    lines = [sep.join(f"c{j}" for j in range(d))] if header else []
    lines += [sep.join(f"{v:.4f}" for v in row) for row in x]
    return "\n".join(lines) + "\n"


def _with_city(n: int = N_ROWS) -> str:
    """Two numeric columns and a text column 'city'."""
    towns = ("Oslo", "Lima", "Pune")
    return "a,b,city\n" + "".join(f"{i * 0.5},{i % 7},{towns[i % 3]}\n" for i in range(n))


def _labelled(n: int = N_ROWS) -> str:
    """Features a, b, c and a text label y: the table run's data."""
    return "a,b,c,y\n" + "".join(
        f"{i * 0.1:.2f},{(i * 7) % 5},{np.sin(i):.3f},{'cat' if i % 2 else 'dog'}\n"
        for i in range(n)
    )


def _levels(n: int = N_ROWS) -> str:
    """Whole levels 0..16 (like the 8×8 digits data set)."""
    return "a,b,c\n" + "".join(f"{i % 17},{(3 * i) % 17},{(5 * i) % 17}\n" for i in range(n))


def _parquet(t: Path, name: str, table: pa.Table) -> str:
    path = t / name
    pq.write_table(table, path)
    return str(path)


def _npz(t: Path, name: str, **arrays) -> str:
    path = t / name
    np.savez(path, **arrays)
    return str(path)


def _npy(t: Path, name: str, arr: np.ndarray) -> str:
    path = t / name
    np.save(path, arr)
    return str(path)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _grey(seed: int = 0, size: int = 8) -> Image.Image:
    return Image.fromarray(_rng(seed).integers(0, 256, (size, size), dtype=np.uint8))


def _rgb(seed: int = 0, size: int = 8) -> Image.Image:
    return Image.fromarray(_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _palette(seed: int = 0) -> Image.Image:
    img = Image.fromarray(_rng(seed).integers(0, 4, (8, 8), dtype=np.uint8), mode="L")
    img = img.convert("P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    return img


def _sixteen_bit(seed: int = 0) -> Image.Image:
    return Image.fromarray(_rng(seed).integers(0, 65536, (8, 8)).astype(np.uint16))


def _folder(t: Path, name: str, make=_grey, n: int = N_IMAGES, sub: str = "") -> Path:
    """``n`` images made by ``make`` in ``t/name`` (in class folder ``sub`` if given)."""
    folder = t / name
    (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make(i).save(folder / sub / f"{i:02d}.png")
    return folder


# --------------------------------------------------------------------------- runs to protect


@pytest.fixture(scope="session")
def table_run(tmp_path_factory) -> Path:
    """A finished one-epoch run on a table with features a, b, c and the label column y."""
    root = tmp_path_factory.mktemp("table-run")
    data = _write(root, "lab.csv", _labelled())
    out = root / "trun"
    assert main(["train", "--out", str(out), "--dataset", data, "--label-column", "y", *QUICK]) == 0
    return out


@pytest.fixture
def runs(finished_run, table_run, tmp_path) -> Path:
    """This test's copies of the finished image run (``prev``) and table run (``trun``)."""
    shutil.copytree(finished_run, tmp_path / "prev")
    shutil.copytree(table_run, tmp_path / "trun")
    return tmp_path


# --------------------------------------------------------------------------- refused

# name → builder(tmp_path, new run folder) -> (argv, needles in the error line)
Case = Callable[[Path, str], tuple[list[str], list[str]]]


def _train(out: str, data: str | Path, *extra: str) -> list[str]:
    return ["train", "--out", out, "--dataset", str(data), *extra, *QUICK]


def _ragged(t: Path, o: str):
    text = "a,b,c\n" + "".join(f"{i},{i + 1},{i + 2}\n" for i in range(10)) + "7,8\n"
    text += "".join(f"{i},{i + 1},{i + 2}\n" for i in range(30))
    path = _write(t, "ragged.csv", text)
    return _train(o, path), [
        path,
        "ragged rows",
        "data row 11 ",
        "2 fields where the header has 3",
        "'7,8'",
    ]


def _missing_cell(t: Path, o: str):
    text = "a,b,c\n" + "".join(f"{i},{'' if i == 5 else i * 2},{i % 3}\n" for i in range(N_ROWS))
    path = _write(t, "holes.csv", text)
    return _train(o, path), [
        path,
        "missing value",
        "column 'b'",
        "data row 6 ",
        "1 of 40",
        "--drop-missing",
    ]


def _missing_label(t: Path, o: str):
    lines = _labelled().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",NA"  # data row 3's label
    path = _write(t, "nolabel.csv", "\n".join(lines) + "\n")
    return _train(o, path, "--label-column", "y"), [
        path,
        "missing value",
        "column 'y'",
        "data row 3 ",
    ]


def _corrupt_image(t: Path, o: str):
    folder = _folder(t, "digits", sub="three")
    _folder(t, "digits", sub="seven")
    bad = folder / "seven" / "05.png"
    bad.write_bytes(_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
    return _train(o, folder), [str(bad), "not a readable PNG, JPEG or BMP image"]


def _truncated_png(t: Path, o: str):
    folder = _folder(t, "pics")
    bad = folder / "big.png"
    bad.write_bytes(_png_bytes(_rgb(size=64))[:400])
    return _train(o, folder), [str(bad), "truncated or corrupt image"]


def _zero_byte_png(t: Path, o: str):
    folder = _folder(t, "pics")
    (folder / "00.png").write_bytes(b"")
    return _train(o, folder), [str(folder / "00.png"), "not a readable"]


def _gif_named_png(t: Path, o: str):
    folder = _folder(t, "pics")
    _grey().save(folder / "03.png", format="GIF")
    return _train(o, folder), [str(folder / "03.png"), "not a readable PNG, JPEG or BMP image"]


def _empty_folder(t: Path, o: str):
    (t / "nothing").mkdir()
    return _train(o, t / "nothing"), [str(t / "nothing"), "empty folder (no images)"]


def _no_images(t: Path, o: str):
    folder = t / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("the images are elsewhere")
    (folder / "scan.tiff").write_bytes(b"II*\x00")
    return _train(o, folder), [str(folder), "no PNG, JPEG or BMP images (ignored 2 other files)"]


def _loose_and_classes(t: Path, o: str):
    folder = _folder(t, "mixed", sub="cat")
    _grey(99).save(folder / "stray.png")
    return _train(o, folder), [
        str(folder),
        "1 image directly in the folder (e.g. 'stray.png')",
        f"{N_IMAGES} in class folders ('cat')",
    ]


def _too_few_images(t: Path, o: str):
    folder = _folder(t, "two", n=2)
    return _train(o, folder), [str(folder), "2 examples are too few to split"]


def _encode_corrupt_folder(t: Path, o: str):
    folder = _folder(t, "new-pics")
    (folder / "07.png").write_bytes(_png_bytes(_grey())[:60])
    return (
        ["encode", str(t / "prev"), "--data", str(folder), "--out", str(t / "codes.csv")],
        [str(folder / "07.png"), "corrupt image"],
    )


def _overwrite_prev(t: Path, o: str):
    path = _write(t, "towns.csv", _with_city())
    argv = ["train", "--out", str(t / "prev"), "--overwrite", "--dataset", path, *QUICK]
    return argv, [path, "non-numeric column 'city'"]


def _overwrite_trun(t: Path, o: str):
    path = _write(t, "rows.csv", _rows())
    argv = [
        "train",
        "--out",
        str(t / "trun"),
        "--overwrite",
        "--dataset",
        path,
        "--label-column",
        "y",
        *QUICK,
    ]
    return argv, [path, "no label column 'y'", "'c0', 'c1', 'c2', 'c3', 'c4'"]


def _encode(t: Path, run: str, data: str | None, out: str = "codes.csv", *extra: str) -> list[str]:
    argv = ["encode", str(t / run), "--out", str(t / out), *extra]
    return argv + (["--data", data] if data is not None else [])


def _score(t: Path, run: str, data: str | None, out: str = "scores.csv", *extra: str) -> list[str]:
    argv = ["score", str(t / run), "--out", str(t / out), "--k", "5", *extra]
    return argv + (["--data", data] if data is not None else [])


def _levels_with_one_outlier(split: str) -> str:
    """Levels 0..9, but one row of ``split`` holds a 16."""
    from vaelab.data.arrays import split_indices

    rows = [f"{i % 10},{(3 * i) % 10}" for i in range(N_ROWS)]
    rows[int(split_indices(N_ROWS, split, seed=0)[0])] = "16,3"
    return "a,b\n" + "\n".join(rows) + "\n"


def _outlier_in_valid(t: Path, o: str):
    path = _write(t, "levels.csv", _levels_with_one_outlier("valid"))
    # refused before the run folder is touched, not after the first epoch
    return _train(o, path, "--value-range", "0,10"), [
        path,
        "values in [0, 16] fall outside the value range [0, 10]",
    ]


def _overwrite_with_an_outlier_in_test(t: Path, o: str):
    path = _write(t, "levels.csv", _levels_with_one_outlier("test"))
    argv = ["train", "--out", str(t / "trun"), "--overwrite", "--dataset", path]
    return [*argv, "--value-range", "0,10", *QUICK], [path, "outside the value range [0, 10]"]


def _int_levels_bernoulli(t: Path, o: str):
    x = _rng().integers(0, 1000, (N_ROWS, 5)).astype(np.int16)
    x[:, 0], x[:, 1] = 0, 999
    path = _npy(t, "counts.npy", x)
    argv = _train(o, path, "--likelihood", "bernoulli", "--binarize", "none")
    return argv, [path, "has integer levels 0..999", "--binarize dynamic"]


CASES: dict[str, Case] = {
    # ---- tables: what is in the cells
    "non-numeric-column": lambda t, o: (
        _train(o, p := _write(t, "towns.csv", _with_city())),
        [p, "non-numeric column 'city'", "'Oslo' in 'city'", "data row 1 ", "--columns"],
    ),
    "missing-cell": _missing_cell,
    "missing-label": _missing_label,
    "every-row-missing-dropped": lambda t, o: (
        _train(o, p := _write(t, "gaps.csv", "a,b\n1,\n,2\nNA,3\n"), "--drop-missing", "true"),
        [p, "every one of the 3 rows has a missing value"],
    ),
    "beyond-float32": lambda t, o: (
        _train(o, p := _write(t, "huge.csv", "a,b\n1,2\n3,1e39\n4,5\n")),
        [p, "infinite value inf", "column 'b'", "data row 2 ", "float32"],
    ),
    # ---- tables: the shape of the file
    "ragged-rows": _ragged,
    "duplicated-header-names": lambda t, o: (
        _train(o, p := _write(t, "dup.csv", "a,b,a,c\n" + "1,2,3,4\n" * 10)),
        [p, "duplicated column names in the header: 'a'"],
    ),
    "empty-header-name": lambda t, o: (
        _train(o, p := _write(t, "hole.csv", "a,,c\n" + "1,2,3\n" * 10)),
        [p, "column 2 of the header", "no name"],
    ),
    "empty-tsv": lambda t, o: (
        _train(o, p := _write(t, "empty.tsv", "")),
        [p, "empty file (0 bytes)"],
    ),
    "blank-lines-only": lambda t, o: (
        _train(o, p := _write(t, "blank.csv", "\n\r\n  \n")),
        [p, "empty file (no rows, only blank lines)"],
    ),
    "header-only-tsv": lambda t, o: (
        _train(o, p := _write(t, "head.tsv", "a\tb\tc\n")),
        [p, "a header but no data rows"],
    ),
    # one row is a valid table, too few to train on (train, valid and test need one each)
    "one-row": lambda t, o: (
        _train(o, p := _write(t, "one.csv", "a,b\n1,2\n")),
        [p, "1 example is too few to split into train/valid/test", "give at least 3"],
    ),
    "two-rows-headerless": lambda t, o: (
        _train(o, p := _write(t, "two.csv", "1,2\n3,4\n")),
        [p, "2 examples are too few to split"],
    ),
    "not-utf8": lambda t, o: (
        _train(o, p := _write(t, "latin.csv", "température,b\n1,2\n".encode("latin-1"))),
        [p, "not UTF-8 text (byte 0xe9 at offset 4)", "save the file as UTF-8"],
    ),
    # (a semicolon-separated .csv is read: see test_tables.py; pipes are not guessed)
    "pipes-in-a-csv": lambda t, o: (
        _train(o, p := _write(t, "pipes.csv", _rows(sep="|"))),
        [p, "non-numeric column", "separated by another character"],
    ),
    # ---- tables: column choices
    "label-column-does-not-exist": lambda t, o: (
        _train(o, p := _write(t, "rows.csv", _rows()), "--label-column", "y"),
        [p, "no label column 'y'", "the columns are 'c0', 'c1', 'c2', 'c3', 'c4'"],
    ),
    "label-column-headerless": lambda t, o: (
        _train(o, p := _write(t, "bare.csv", _rows(header=False)), "--label-column", "label"),
        [p, "no label column 'label'", "'col0'", "no header row"],
    ),
    "columns-unknown": lambda t, o: (
        _train(o, p := _write(t, "rows.csv", _rows()), "--columns", "c0,zz,c2"),
        [p, "no column 'zz'", "the columns are 'c0', 'c1'"],
    ),
    "columns-non-numeric": lambda t, o: (
        _train(o, p := _write(t, "towns.csv", _with_city()), "--columns", "a,city"),
        [p, "non-numeric column 'city'", "'Oslo'"],
    ),
    "label-column-also-a-feature": lambda t, o: (
        _train(o, _write(t, "rows.csv", _rows()), "--columns", "c0,c1", "--label-column", "c1"),
        ["column 'c1' cannot be both the --label-column and a feature"],
    ),
    "columns-twice": lambda t, o: (
        _train(o, _write(t, "rows.csv", _rows()), "--columns", "c0,c1,c0"),
        ["--columns names 'c0' more than once"],
    ),
    "columns-on-an-array": lambda t, o: (
        _train(o, p := _npy(t, "x.npy", _rng().random((N_ROWS, 5))), "--columns", "c0"),
        [p, "--columns, --label-column, --id-column, --drop-missing and --header apply", ".npy"],
    ),
    # ---- value range and standardization
    "value-range-reversed": lambda t, o: (
        _train(o, _write(t, "levels.csv", _levels()), "--value-range", "5,1"),
        ["data.value_range: must be two numbers LO < HI, got [5.0, 1.0]"],
    ),
    "value-range-empty": lambda t, o: (
        _train(o, _write(t, "levels.csv", _levels()), "--value-range", "0,0"),
        ["data.value_range: must be two numbers LO < HI, got [0.0, 0.0]"],
    ),
    "values-outside-the-range": lambda t, o: (
        _train(o, p := _write(t, "levels.csv", _levels()), "--value-range", "0,10"),
        [p, "values in [0, 16] fall outside the value range [0, 10]", "--value-range"],
    ),
    "standardize-on-with-a-value-range": lambda t, o: (
        _train(o, p := _write(t, "rows.csv", _rows()), "--standardize", "on", "--value-range=-5,5"),
        [p, "--standardize on and --value-range exclude each other"],
    ),
    "standardize-on-integer-images": lambda t, o: (
        _train(o, p := _folder(t, "grey"), "--likelihood", "gaussian", "--standardize", "on"),
        [str(p), "integer levels 0..255 are dequantized", "leave out --standardize on"],
    ),
    "standardize-on-bernoulli": lambda t, o: (
        _train(
            o,
            p := _write(t, "rows.csv", _rows()),
            "--standardize",
            "on",
            "--likelihood",
            "bernoulli",
        ),
        [p, "standardized values are not probabilities", "--standardize on"],
    ),
    "value-outside-the-range-in-the-valid-split": _outlier_in_valid,
    "overwrite-with-a-value-outside-the-range-in-the-test-split": (
        _overwrite_with_an_outlier_in_test
    ),
    "integer-levels-bernoulli-binarize-none": _int_levels_bernoulli,
    # a reader's notice (the index column dropped) is not printed before the error
    "notice-then-a-refused-model": lambda t, o: (
        _train(o, _write(t, "idx.csv", _indexed()), "--arch", "conv"),
        ["the conv architecture needs images shaped (C, H, W), got (2,)"],
    ),
    # ---- other files
    "parquet-that-is-csv": lambda t, o: (
        _train(o, p := _write(t, "table.parquet", _rows())),
        [p, "not a readable Parquet file"],
    ),
    "parquet-non-numeric": lambda t, o: (
        _train(
            o,
            p := _parquet(
                t,
                "towns.parquet",
                pa.table({"a": np.arange(N_ROWS, dtype=float), "city": ["Oslo"] * N_ROWS}),
            ),
        ),
        [p, "non-numeric column 'city'", "string"],
    ),
    "parquet-no-rows": lambda t, o: (
        _train(o, p := _parquet(t, "none.parquet", pa.table({"a": pa.array([], pa.float64())}))),
        [p, "no rows"],
    ),
    "npz-two-arrays-none-named-x": lambda t, o: (
        _train(o, p := _npz(t, "pair.npz", a=np.zeros((N_ROWS, 4)), b=np.ones((N_ROWS, 4)))),
        [p, "holds arrays [a, b]", "the array named 'x'"],
    ),
    "npz-no-arrays": lambda t, o: (
        _train(o, p := _npz(t, "hollow.npz")),
        [p, "holds arrays [none]"],
    ),
    "npz-not-a-zip": lambda t, o: (
        _train(o, p := _write(t, "fake.npz", _rows())),
        [p, "not a readable .npz archive"],
    ),
    "npz-of-text": lambda t, o: (
        _train(o, p := _npz(t, "words.npz", x=np.array(["a", "b", "c"]))),
        [p, "non-numeric array of dtype <U1"],
    ),
    "spreadsheet": lambda t, o: (
        _train(o, p := _write(t, "book.xlsx", b"PK\x03\x04 not really")),
        [p, "unsupported data file type '.xlsx'", ".parquet", "folder of PNG/JPEG/BMP images"],
    ),
    # ---- image folders
    "corrupt-image": _corrupt_image,
    "truncated-png": _truncated_png,
    "zero-byte-png": _zero_byte_png,
    "gif-named-png": _gif_named_png,
    "empty-folder": _empty_folder,
    "folder-without-images": _no_images,
    "images-loose-and-in-class-folders": _loose_and_classes,
    "too-few-images": _too_few_images,
    "image-size-0": lambda t, o: (
        _train(o, _folder(t, "pics"), "--image-size", "0"),
        ["data.image_size: must be > 0, got 0"],
    ),
    # ---- replacing a run with bad data keeps the old run
    "overwrite-prev-with-bad-table": _overwrite_prev,
    "overwrite-table-run-without-its-label": _overwrite_trun,
    # ---- encode, score, evaluate on new rows
    "encode-missing-run": lambda t, o: (
        _encode(t, "norun", None),
        [str(t / "norun"), "no such run directory"],
    ),
    "encode-missing-data": lambda t, o: (
        _encode(t, "trun", str(t / "nope.csv")),
        [str(t / "nope.csv"), "file not found"],
    ),
    "encode-a-column-missing": lambda t, o: (
        _encode(t, "trun", p := _write(t, "new.csv", "a,b,y\n1,2,cat\n")),
        [p, "no column 'c'", "the columns are 'a', 'b', 'y'"],
    ),
    "encode-non-numeric-feature": lambda t, o: (
        _encode(t, "trun", p := _write(t, "new.csv", "a,b,c,y\n1,2,3,cat\n4,five,6,dog\n")),
        [p, "non-numeric column 'b'", "'five'", "data row 2 "],
    ),
    "encode-missing-cell": lambda t, o: (
        _encode(t, "trun", p := _write(t, "new.csv", "a,b,c,y\n1,2,3,cat\n4,,6,dog\n")),
        [p, "missing value", "column 'b'", "data row 2 "],
    ),
    "encode-array-of-the-wrong-width": lambda t, o: (
        _encode(t, "trun", p := _npy(t, "new.npy", np.zeros((4, 5), np.float32))),
        [p, "rows of shape [5], but the run's model takes [3]"],
    ),
    "encode-table-into-an-image-run": lambda t, o: (
        _encode(t, "prev", p := _write(t, "rows.csv", _rows())),
        [p, "rows of shape [5], but the run's model takes [1, 28, 28]"],
    ),
    "encode-corrupt-image": _encode_corrupt_folder,
    "encode-out-xlsx": lambda t, o: (
        _encode(t, "trun", None, "codes.xlsx"),
        [str(t / "codes.xlsx"), "cannot write a table as '.xlsx'", ".csv, .parquet, .npy"],
    ),
    "encode-out-without-suffix": lambda t, o: (
        _encode(t, "trun", None, "codes"),
        [str(t / "codes"), "cannot write a table as '(no suffix)'"],
    ),
    "encode-out-in-a-missing-folder": lambda t, o: (
        _encode(t, "trun", None, "nodir/codes.csv"),
        [str(t / "nodir"), "does not exist"],
    ),
    "encode-batch-size-0": lambda t, o: (
        _encode(t, "trun", None, "codes.csv", "--batch-size", "0"),
        ["batch_size must be an integer >= 1, got 0"],
    ),
    "score-k-0": lambda t, o: (
        ["score", str(t / "trun"), "--out", str(t / "s.csv"), "--k", "0"],
        ["k must be an integer >= 1, got 0"],
    ),
    "score-top-negative": lambda t, o: (
        _score(t, "trun", None, "scores.csv", "--top", "-3"),
        ["--top must be >= 0", "-3"],
    ),
    "score-out-json": lambda t, o: (
        _score(t, "trun", None, "scores.json"),
        [str(t / "scores.json"), "cannot write a table as '.json'"],
    ),
    "score-ragged-rows": lambda t, o: (
        _score(t, "trun", p := _write(t, "new.csv", "a,b,c,y\n1,2,3,cat\n4,5,dog\n")),
        [p, "ragged rows", "data row 2 ", "3 fields where the header has 4"],
    ),
    "score-empty-file": lambda t, o: (
        _score(t, "trun", p := _write(t, "new.csv", "")),
        [p, "empty file (0 bytes)"],
    ),
    "score-empty-folder": lambda t, o: (
        _score(t, "prev", str((t / "nothing").mkdir() or t / "nothing")),
        [str(t / "nothing"), "empty folder (no images)"],
    ),
    "label-column-of-a-pipe-separated-file": lambda t, o: (
        [
            "train",
            "--out",
            o,
            "--dataset",
            p := _write(t, "pipes.csv", "a|b|y\n1|2|cat\n"),
            "--label-column",
            "y",
            *QUICK,
        ],
        [p, "no label column 'y'", "the columns are 'a|b|y'", "separated by another character"],
    ),
    "evaluate-data-without-the-label-column": lambda t, o: (
        ["evaluate", str(t / "trun"), "--data", p := _write(t, "rows.csv", _rows()), "--k", "5"],
        [p, "no label column 'y'"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_own_data_is_one_line_exit_2_and_touches_nothing(runs, capsys, case):
    t = runs
    new = t / "new"
    argv, needles = CASES[case](t, str(new))
    before = snapshot(t)
    code, out, err = run_cli(capsys, argv)
    assert code == 2, (out, err)
    assert_one_line_error(err, *needles)
    assert_unchanged(before, t)
    assert_no_run_files(new)
    assert not (t / "codes.csv").exists() and not (t / "scores.csv").exists()


# Refused by the command line's parser, before anything is read: one line naming the flag.
FLAG_CASES = {
    "value-range-words": (["train", "--value-range", "a,b"], "--value-range: expected LO,HI"),
    "value-range-one-number": (["train", "--value-range", "1"], "got '1'"),
    "value-range-three-numbers": (["train", "--value-range", "0,1,2"], "got '0,1,2'"),
    "value-range-nan": (["train", "--value-range", "nan,1"], "got 'nan,1'"),
    "value-range-inf": (["train", "--value-range", "0,inf"], "got '0,inf'"),
    "standardize-maybe": (["train", "--standardize", "maybe"], "--standardize: invalid choice"),
    "drop-missing-maybe": (["train", "--drop-missing", "maybe"], "expected true or false"),
    "columns-with-an-empty-name": (["train", "--columns", "a,,b"], "expected column names"),
    "image-size-words": (["train", "--image-size", "big"], "--image-size: invalid int value"),
    "score-top-words": (["score", "RUN", "--out", "s.csv", "--top", "ten"], "--top: invalid int"),
    "score-k-words": (["score", "RUN", "--out", "s.csv", "--k", "many"], "--k: invalid int"),
    "encode-without-out": (["encode", "RUN"], "--out"),
    "hidden-with-an-empty-size": (["train", "--hidden", "8,,8"], "got '8,,8'"),
    "hidden-ending-in-a-comma": (["train", "--hidden", "8,"], "got '8,'"),
}


@pytest.mark.parametrize(
    "text, sizes", [("400", [400]), ("200,200", [200, 200]), ("200, 100", [200, 100]),
                    ("200 100", [200, 100])],
)  # fmt: skip
def test_hidden_sizes_are_read_with_commas_or_spaces(text, sizes):
    from vaelab.cli.options import int_list

    assert int_list(text) == sizes


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_flag_values_are_one_line(tmp_path, capsys, case):
    argv, needle = FLAG_CASES[case]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"vaelab {argv[0]}: error: "), lines[0]
    assert needle in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- accepted


def _record(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["data"]


def _missing_dropped(t: Path):
    """Two rows with an NA cell, dropped with a notice."""
    text = "a,b,c\n" + "".join(f"{i},{'NA' if i in (3, 9) else i * 2},{i % 5}\n" for i in range(40))
    argv = ["--dataset", _write(t, "holes.csv", text), "--drop-missing", "true"]

    def check(r: dict) -> bool:
        return r["source"]["n_rows_dropped"] == 2 and r["source"]["shape"] == [38, 3]

    return argv, check


def _mixed_folder(t: Path) -> Path:
    """Six grey and six RGB images: the grey ones become RGB, with a notice."""
    folder = _folder(t, "mix", n=6)
    for i in range(6):
        _rgb(i).save(folder / f"rgb{i}.png")
    return folder


def _classes_folder(t: Path) -> Path:
    """Two class folders; one image of another size, resized with a notice."""
    folder = _folder(t, "pets", sub="cat", n=6)
    _folder(t, "pets", sub="dog", n=6)
    _grey(size=16).save(folder / "dog" / "big.png")
    return folder


def _indexed() -> str:
    """What pandas' ``to_csv`` writes: an unnamed index column 0..n-1 first."""
    return ",a,b\n" + "".join(f"{i},{i * 0.5},{i % 3}\n" for i in range(N_ROWS))


ACCEPTED: dict[str, Callable[[Path], tuple[list[str], Callable[[dict], bool]]]] = {
    "csv-drop-missing": _missing_dropped,
    "palette-png-folder": lambda t: (
        ["--dataset", str(_folder(t, "pal", make=_palette))],
        lambda r: r["source"]["channels"] == 3 and r["source"]["image_size"] == [8, 8],
    ),
    "sixteen-bit-png-folder": lambda t: (
        ["--dataset", str(_folder(t, "deep", make=_sixteen_bit))],
        lambda r: r["source"]["counts"]["sixteen_bit"] == N_IMAGES and r["source"]["channels"] == 1,
    ),
    "grey-and-rgb-in-one-folder": lambda t: (
        ["--dataset", str(_mixed_folder(t))],
        lambda r: r["source"]["channels"] == 3 and r["source"]["counts"]["grey_to_rgb"] == 6,
    ),
    "class-folders-and-a-resize": lambda t: (
        ["--dataset", str(_classes_folder(t))],
        lambda r: (
            r["source"]["classes"] == ["cat", "dog"] and r["source"]["counts"]["resized"] == 1
        ),
    ),
    "label-column": lambda t: (
        ["--dataset", _write(t, "lab.csv", _labelled()), "--label-column", "y"],
        lambda r: r["source"]["columns"] == ["a", "b", "c"] and r["source"]["label_name"] == "y",
    ),
    "columns-subset": lambda t: (
        ["--dataset", _write(t, "towns.csv", _with_city()), "--columns", "b,a"],
        lambda r: r["source"]["columns"] == ["b", "a"],
    ),
    "value-range-on-levels": lambda t: (
        ["--dataset", _write(t, "levels.csv", _levels()), "--value-range", "0,16"],
        lambda r: r["preprocessing"]["value_range"] == [0, 16] and r["preprocessing"]["integer"],
    ),
    "tsv": lambda t: (
        ["--dataset", _write(t, "rows.tsv", _rows(sep="\t"))],
        lambda r: r["source"]["delimiter"] == "\t" and r["source"]["columns"][0] == "c0",
    ),
    "space-separated-txt": lambda t: (
        ["--dataset", _write(t, "rows.txt", _rows(sep=" ", header=False))],
        lambda r: r["source"]["delimiter"] == " " and r["source"]["columns"][0] == "col0",
    ),
    "headerless-csv": lambda t: (
        ["--dataset", _write(t, "bare.csv", _rows(header=False))],
        lambda r: r["source"]["header"] is False and len(r["source"]["columns"]) == 5,
    ),
    "pandas-index-column": lambda t: (
        ["--dataset", _write(t, "idx.csv", _indexed())],
        lambda r: r["source"]["index_column"] == "dropped" and r["source"]["columns"] == ["a", "b"],
    ),
    "three-rows-the-fewest": lambda t: (
        ["--dataset", _write(t, "three.csv", "a,b\n1,2\n3,5\n6,4\n")],
        lambda r: r["source"]["shape"] == [3, 2],
    ),
    "parquet": lambda t: (
        [
            "--dataset",
            _parquet(
                t, "t.parquet", pa.table({"a": _rng().normal(size=N_ROWS), "n": range(N_ROWS)})
            ),
        ],
        lambda r: r["source"]["format"] == "parquet" and r["source"]["columns"] == ["a", "n"],
    ),
    "channels-last-npy": lambda t: (
        ["--dataset", _npy(t, "rgb.npy", _rng().integers(0, 256, (N_ROWS, 8, 8, 3), np.uint8))],
        lambda r: r["source"]["shape"] == [N_ROWS, 3, 8, 8] and "channels-last" in str(r["source"]),
    ),
    "npz-with-x-and-more": lambda t: (
        ["--dataset", _npz(t, "xy.npz", x=_rng().random((N_ROWS, 4)), y=np.arange(N_ROWS))],
        lambda r: r["source"]["shape"] == [N_ROWS, 4],
    ),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_near_misses_train(tmp_path, capsys, case):
    extra, check = ACCEPTED[case](tmp_path)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", "--out", str(run), *extra, *QUICK])
    assert code == 0, err
    assert "Traceback" not in err and "error" not in err, err
    assert (run / "model.safetensors").is_file()
    record = _record(run)
    assert check(record), json.dumps(record, indent=1)


def test_new_rows_read_as_the_run_reads_them(table_run, tmp_path, capsys):
    """encode/score take the near misses: the run's columns in another order beside an extra
    one (picked by name), the same without the label column (the label is never a feature),
    raw rows as an array of the run's width (by position), --top 0."""
    run = shutil.copytree(table_run, tmp_path / "trun")
    shuffled = _write(tmp_path, "new.csv", "y,extra,c,b,a\ncat,9,0.5,1,0.1\ndog,8,0.2,3,0.4\n")
    unlabelled = _write(tmp_path, "nolabel.csv", "extra,c,b,a\n9,0.5,1,0.1\n8,0.2,3,0.4\n")
    rows = _npy(tmp_path, "rows.npy", np.array([[0.1, 1, 0.5], [0.4, 3, 0.2]], np.float32))
    before = snapshot(tmp_path)
    for data, name in ((shuffled, "a.csv"), (rows, "b.csv"), (unlabelled, "c.csv")):
        code, _, err = run_cli(capsys, _encode(tmp_path, "trun", data, name))
        assert code == 0, err
    a = pa_csv.read_csv(tmp_path / "a.csv").to_pydict()
    b = pa_csv.read_csv(tmp_path / "b.csv").to_pydict()
    c = pa_csv.read_csv(tmp_path / "c.csv").to_pydict()
    # the same two rows, read by name from the table and by position from the array
    for other in (b, c):
        np.testing.assert_allclose(a["mean_0"], other["mean_0"], rtol=1e-5)
        np.testing.assert_allclose(a["std_1"], other["std_1"], rtol=1e-5)
    assert a["label"] == ["cat", "dog"] and "label" not in b and "label" not in c
    code, out, err = run_cli(capsys, _score(tmp_path, "trun", shuffled, "s.csv", "--top", "0"))
    assert code == 0, err
    assert "least likely" not in out
    assert len(pa_csv.read_csv(tmp_path / "s.csv")) == 2
    assert_unchanged(before, tmp_path)
    assert run.is_dir()


def test_grey_folder_for_an_rgb_run_is_read_in_the_runs_channels(tmp_path, capsys):
    """A run trained on colour images reads a folder of grey ones as RGB (replicated), and at
    the run's size (resized), as training would have."""
    run = tmp_path / "run"
    folder = _folder(tmp_path, "colour", make=_rgb)
    assert main(["train", "--out", str(run), "--dataset", str(folder), *QUICK]) == 0
    grey = _folder(tmp_path, "grey", make=lambda i: _grey(i, size=16), n=3)
    code, _, err = run_cli(capsys, _encode(tmp_path, "run", str(grey), "codes.csv"))
    assert code == 0, err
    codes = pa_csv.read_csv(tmp_path / "codes.csv").to_pydict()
    assert codes["id"] == ["00.png", "01.png", "02.png"] and len(codes["mean_0"]) == 3


def test_an_observed_integer_range_covers_every_split(tmp_path, capsys):
    """int16 counts whose largest value is in a test row only: the observed range is the
    file's, so training and the test evaluation both work (it was the training split's, and
    the test evaluation was skipped without a word; ``evaluate`` then refused the run)."""
    from vaelab.data.arrays import split_indices

    x = np.tile(np.arange(5, dtype=np.int16) * 100, (N_ROWS, 1))
    x[int(split_indices(N_ROWS, "test", seed=0)[0]), 0] = 999
    data = _npy(tmp_path, "counts.npy", x)
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--dataset", data, *QUICK, "--set", "train.final_eval_n=2"]
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    assert "levels 0..999" in err
    assert _record(run)["preprocessing"]["value_range"] == [0, 999]
    assert (run / "eval_test.json").is_file()
    code, _, err = run_cli(capsys, ["evaluate", str(run), "--k", "5"])
    assert code == 0, err


def test_what_a_command_says_next_is_what_works(tmp_path, capsys):
    """The end-of-training hint, a moved file and a wrongly named report say what to do."""
    data = _write(tmp_path, "rows.csv", _rows())
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, ["train", "--out", str(run), "--dataset", data, *QUICK])
    assert code == 0, err
    assert f"vaelab sample {run} -n 64 --out samples.csv" in out  # a table's samples: a table
    code, _, err = run_cli(
        capsys, ["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.csv")]
    )
    assert code == 0, err  # and the hint's command works
    code, _, err = run_cli(capsys, ["train", "--out", str(run), "--resume", "--no-report"])
    assert code == 0 and f"resuming {run} (complete: nothing to train)" in err, err
    code, _, err = run_cli(capsys, ["report", str(run), "--out", str(tmp_path / "r.pdf")])
    assert code == 2
    assert_one_line_error(err, "r.pdf", "name it .html")
    assert not (tmp_path / "r.pdf").exists()
    moved = tmp_path / "elsewhere.csv"
    Path(data).rename(moved)
    code, _, err = run_cli(capsys, ["evaluate", str(run), "--k", "5"])
    assert code == 2
    assert_one_line_error(err, data, "not there any more", "--data PATH")
    code, _, err = run_cli(capsys, ["evaluate", str(run), "--k", "5", "--data", str(moved)])
    assert code == 0, err


def test_a_value_range_on_a_float_table_is_the_scaling_not_a_clash(tmp_path, capsys):
    """--value-range on a table of floats scales it; standardizing is only the default when no
    range is given (it said "--standardize on and --value-range exclude each other" although
    nobody had asked for --standardize)."""
    x = _rng(1).uniform(0, 4, size=(N_ROWS, 3))
    data = _write(
        tmp_path, "u.csv", "a,b,c\n" + "".join(",".join(f"{v:.3f}" for v in r) + "\n" for r in x)
    )
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--dataset", data, "--value-range", "0,4", *QUICK]
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    prep = _record(run)["preprocessing"]
    assert prep["value_range"] == [0, 4] and prep["mean"] is None  # scaled by the range only
    again = ["train", "--out", str(tmp_path / "run2"), "--dataset", data, "--value-range", "0,4"]
    code, _, err = run_cli(capsys, [*again, "--standardize", "on", *QUICK])
    assert code == 2 and "exclude each other" in err  # asked for both: still refused
