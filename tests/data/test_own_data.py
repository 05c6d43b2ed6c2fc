"""Every kind of file a user brings trains, and every command that reads the run then works on
it from another working directory (the run stores the data's absolute path and sha256)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vaelab.cli import main

N = 120  # rows: 108 / 6 / 6 after the 90/5/5 split
FEATURES = ["alpha", "beta", "gamma", "delta", "eps"]
TINY = ["--epochs", "1", "--batch-size", "32", "--hidden", "16", "--latent-dim", "2",
        "--quiet", "--set", "train.final_eval_k=5"]  # fmt: skip


def _table(seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated features on very different scales, and a class label per row."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, 2))
    x = z @ rng.normal(size=(2, len(FEATURES))) + 0.1 * rng.normal(size=(N, len(FEATURES)))
    x *= np.array([0.1, 1.0, 10.0, 100.0, 1000.0])
    return x.round(6), (z[:, 0] > 0).astype(np.int64)


def _images(seed=0, channels=1) -> np.ndarray:
    """Bars at random positions: (N, 8, 8) or (N, 8, 8, 3) uint8 with structure to learn."""
    rng = np.random.default_rng(seed)
    out = np.zeros((N, 8, 8, channels), np.uint8)
    for i in range(N):
        r = rng.integers(0, 8)
        out[i, r, :, rng.integers(0, channels)] = 255
        out[i, :, rng.integers(0, 8)] = rng.integers(60, 200)
    return out[..., 0] if channels == 1 else out


def _csv_text(x, labels, header=True, sep=","):
    lines = [sep.join([*FEATURES, "kind"])] if header else []
    for row, y in zip(x, labels, strict=True):
        lines.append(sep.join([*map(repr, row.tolist()), str(y)]))
    return "\n".join(lines) + "\n"


def _write_folder(root: Path, images: np.ndarray) -> None:
    for i, img in enumerate(images):
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")


# name -> (make the file in a folder and return its name, extra train flags, rows it holds,
#          is it a table)
def _npy_uint8(d):
    np.save(d / "x.npy", _images())
    return "x.npy"


def _npy_float(d):
    np.save(d / "x.npy", _table()[0].astype(np.float32))
    return "x.npy"


def _npz(d):
    np.savez(d / "x.npz", x=_table()[0])
    return "x.npz"


def _csv_header(d):
    (d / "x.csv").write_text(_csv_text(*_table()))
    return "x.csv"


def _csv_no_header(d):
    (d / "x.csv").write_text(_csv_text(_table()[0], _table()[1], header=False))
    return "x.csv"


def _tsv(d):
    (d / "x.tsv").write_text(_csv_text(*_table(), sep="\t"))
    return "x.tsv"


def _parquet(d):
    x, y = _table()
    columns = {name: x[:, j] for j, name in enumerate(FEATURES)}
    pq.write_table(pa.table({**columns, "kind": y}), d / "x.parquet")
    return "x.parquet"


def _folder_grey(d):
    _write_folder(d / "pictures", _images())
    return "pictures"


def _folder_rgb(d):
    _write_folder(d / "pictures", _images(channels=3))
    return "pictures"


def _channels_last(d):
    np.save(d / "x.npy", _images(channels=3))
    return "x.npy"


SOURCES = {
    "npy-uint8": (_npy_uint8, [], False),
    "npy-float": (_npy_float, [], True),
    "npz": (_npz, [], True),
    "csv-header": (_csv_header, ["--label-column", "kind"], True),
    "csv-no-header": (_csv_no_header, ["--columns", "col0,col1,col2,col3,col4"], True),
    "tsv": (_tsv, ["--label-column", "kind"], True),
    "parquet": (_parquet, ["--label-column", "kind"], True),
    "folder-grey": (_folder_grey, [], False),
    "folder-rgb": (_folder_rgb, [], False),
    "channels-last": (_channels_last, [], False),
}


def _read_table(path: Path) -> pa.Table:
    return pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)


@pytest.mark.parametrize("source", list(SOURCES))
def test_each_source_trains_and_every_command_works_from_another_folder(
    tmp_path, monkeypatch, capsys, source
):
    make, flags, is_table = SOURCES[source]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    name = make(data_dir)
    monkeypatch.chdir(data_dir)  # the user types a relative path
    assert main(["train", "--dataset", name, "--out", "run", *TINY, *flags]) == 0
    config = json.loads((data_dir / "run" / "config.json").read_text())
    assert Path(config["data"]["dataset"]) == (data_dir / name).resolve()
    shape = config["config"]["data_shape"]
    if is_table:
        assert shape == [len(FEATURES)]  # the label column is never a feature
    else:  # channels-last arrays and colour folders are (3, H, W)
        assert shape == [3 if source in ("folder-rgb", "channels-last") else 1, 8, 8]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = str(data_dir / "run")
    capsys.readouterr()
    assert main(["evaluate", run, "--k", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 6 and np.isfinite(report["log_likelihood"])
    assert (report["bits_per_dim"] is None) == is_table  # bits/dim only for images

    assert main(["encode", run, "--out", "codes.csv"]) == 0
    codes = _read_table(elsewhere / "codes.csv")
    assert codes.num_rows == N
    assert {"mean_0", "mean_1", "std_0", "std_1"} <= set(codes.column_names)
    assert min(codes.column("std_0").to_pylist()) > 0

    assert main(["score", run, "--out", "scores.parquet", "--k", "5", "--top", "3"]) == 0
    scores = _read_table(elsewhere / "scores.parquet")
    assert scores.num_rows == N
    log_px = np.asarray(scores.column("log_px"))
    assert np.isfinite(log_px).all()
    assert capsys.readouterr().out.count("log p(x)") >= 4  # the summary and three rows

    out = "s.csv" if is_table else "s.png"
    assert main(["sample", run, "-n", "4", "--out", out]) == 0
    out_r = "r.csv" if is_table else "r.png"
    assert main(["reconstruct", run, "-n", "4", "--out", out_r]) == 0
    if is_table:
        sampled = _read_table(elsewhere / "s.csv")
        assert sampled.num_rows == 4 and len(sampled.column_names) == 5
        assert _read_table(elsewhere / "r.csv").num_rows == 8  # originals and reconstructions
    else:
        assert Image.open(elsewhere / "s.png").size[0] >= 256  # small images enlarged
        assert Image.open(elsewhere / "r.png").size[0] >= 256


def _train_csv(folder: Path) -> None:
    _csv_header(folder)
    args = ["train", "--dataset", "x.csv", "--out", "run", "--label-column", "kind", *TINY]
    assert main(args) == 0


def test_feature_columns_and_labels_come_out_with_their_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _train_csv(tmp_path)
    assert main(["sample", "run", "-n", "3", "--out", "s.csv"]) == 0
    assert _read_table(tmp_path / "s.csv").column_names == FEATURES
    assert main(["encode", "run", "--out", "codes.parquet"]) == 0
    codes = _read_table(tmp_path / "codes.parquet")
    assert codes.column("label").to_pylist() == _table()[1].tolist()  # input order


def test_a_moved_data_file_is_found_with_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _train_csv(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", "run", "--k", "5", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "x.csv", tmp_path / "moved" / "renamed.csv")
    for command in (["evaluate", "run", "--k", "5"], ["encode", "run", "--out", "e.csv"],
                    ["score", "run", "--out", "s.csv"]):  # fmt: skip
        assert main(command) == 2
        err = capsys.readouterr().err  # the old path, named, and how to give the new one
        assert "x.csv: the run's data is not there any more" in err and "--data PATH" in err
    assert main(["encode", "run", "--out", "e.csv", "--data", "moved/renamed.csv"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "run", "--k", "5", "--json", "--data", "moved/renamed.csv"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["log_likelihood"] == before["log_likelihood"]


def test_an_edited_data_file_is_evaluated_with_a_warning(tmp_path, monkeypatch, capsys):
    """The run records the training file's absolute path and sha256: an edited file is
    evaluated (the user may mean it) but never silently as if it were the same data."""
    monkeypatch.chdir(tmp_path)
    _train_csv(tmp_path)
    source = json.loads((tmp_path / "run" / "config.json").read_text())["data"]["source"]
    assert source["sha256"] == hashlib.sha256((tmp_path / "x.csv").read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(["evaluate", "run", "--k", "5", "--json"]) == 0
    same = capsys.readouterr()
    assert "data_changed" not in json.loads(same.out) and "sha256" not in same.err
    x, y = _table(seed=1)
    (tmp_path / "x.csv").write_text(_csv_text(x, y))
    assert main(["evaluate", "run", "--k", "5", "--json"]) == 0
    edited = capsys.readouterr()
    assert "not the file this run was trained on" in json.loads(edited.out)["data_changed"]
    assert edited.err.count("\n") == 1 and "x.csv" in edited.err


def test_resume_reads_the_file_it_was_trained_on_with_its_saved_preprocessing(
    tmp_path, monkeypatch, capsys
):
    """A resumed run takes the rows it started on: an edited file is refused (other splits,
    and the standardization would be fitted anew), before anything is written; the same file
    resumes, with the recorded preprocessing, not a refit."""
    monkeypatch.chdir(tmp_path)
    _train_csv(tmp_path)
    config = tmp_path / "run" / "config.json"
    before = config.read_bytes()
    x, y = _table(seed=1)
    original = (tmp_path / "x.csv").read_bytes()
    (tmp_path / "x.csv").write_text(_csv_text(x, y))
    capsys.readouterr()
    assert main(["train", "--resume", "--out", "run", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "x.csv is not the file this run was trained on" in err and err.count("\n") == 1
    assert config.read_bytes() == before  # nothing written
    (tmp_path / "x.csv").write_bytes(original)
    # moved: named with the flag that gives its new place, and resumable from there
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "x.csv", tmp_path / "moved" / "y.csv")
    assert main(["train", "--resume", "--out", "run", "--epochs", "2"]) == 2
    assert "x.csv: the run's data is not there any more" in capsys.readouterr().err
    shutil.move(tmp_path / "moved" / "y.csv", tmp_path / "x.csv")
    saved = json.loads(before)["data"]["preprocessing"]
    fitted = []
    monkeypatch.setattr(
        "vaelab.data.pipeline.Preprocessing.fit", lambda *a, **k: fitted.append(a) or None
    )
    shutil.copy(tmp_path / "x.csv", tmp_path / "moved" / "y.csv")
    args = ["train", "--resume", "--out", "run", "--epochs", "2", "--dataset", "moved/y.csv"]
    assert main(args) == 0  # the same bytes elsewhere
    assert fitted == []  # the saved preprocessing, not a refit
    capsys.readouterr()
    assert main([*args[:4], "--epochs", "1", *args[6:]]) == 2  # fewer than it has done
    assert "1 is fewer than the 2 epochs this run has finished" in capsys.readouterr().err
    assert json.loads(config.read_text())["data"]["preprocessing"] == saved


def test_header_yes_reads_names_that_are_numbers_and_the_run_keeps_the_choice(
    tmp_path, monkeypatch, capsys
):
    """A table of years (2019,2020,...) has a header of numbers: by default it is data (with a
    notice saying how to read it as names); --header yes reads names, is saved with the run,
    and `score` of the same file answers one row per data row."""
    monkeypatch.chdir(tmp_path)
    x, _ = _table()
    lines = ["2019,2020,2021"] + [",".join(map(repr, row[:3].tolist())) for row in x]
    (tmp_path / "years.csv").write_text("\n".join(lines) + "\n")
    assert main(["train", "--dataset", "years.csv", "--out", "auto", *TINY]) == 0
    assert "pass --header yes" in capsys.readouterr().err
    auto = json.loads((tmp_path / "auto" / "config.json").read_text())["data"]["source"]
    assert auto["n_rows_in_file"] == len(x) + 1 and auto["header"] is False
    assert main(["train", "--dataset", "years.csv", "--out", "run", "--header", "yes", *TINY]) == 0
    assert "--header" not in capsys.readouterr().err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["source"]["columns"] == ["2019", "2020", "2021"]
    assert config["run"]["data"]["header"] == "yes"
    assert main(["score", "run", "--data", "years.csv", "--out", "s.csv", "--k", "3"]) == 0
    assert _read_table(tmp_path / "s.csv").num_rows == len(x)
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1]}), tmp_path / "p.parquet")
    assert main(["train", "--dataset", "p.parquet", "--out", "p", "--header", "yes", *TINY]) == 2
    assert "a Parquet file's column names are in its schema" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    assert main(["train", "--dataset", "x.npy", "--out", "n", "--header", "no", *TINY]) == 2
    assert "--header apply to tables" in capsys.readouterr().err


def test_a_drop_missing_run_answers_every_row_in_place_and_names_file_rows(
    tmp_path, monkeypatch, capsys
):
    """A run trained with --drop-missing answers row for row: a row with a missing cell keeps
    its place with NaN answers (never fewer rows than the file has), and the rows it names
    (reconstruct, the report) are the file's rows, not positions after the drop."""
    monkeypatch.chdir(tmp_path)
    x, y = _table()
    text = _csv_text(x, y).splitlines()
    hole = 4  # 0-based data row (line 5: the header is line 0)
    text[hole + 1] = ",".join(["", *text[hole + 1].split(",")[1:]])
    (tmp_path / "holes.csv").write_text("\n".join(text) + "\n")
    args = ["train", "--dataset", "holes.csv", "--label-column", "kind", "--out", "run", *TINY]
    assert main([*args, "--drop-missing", "true"]) == 0
    capsys.readouterr()
    assert main(["encode", "run", "--out", "codes.csv"]) == 0
    assert "1 of 120 rows have missing values: their answers are NaN" in capsys.readouterr().err
    codes = _read_table(tmp_path / "codes.csv")
    assert codes.num_rows == N and codes.column("label").to_pylist() == y.tolist()
    mean_0 = np.asarray(codes.column("mean_0").to_pylist(), dtype=float)
    assert np.isnan(mean_0[hole]) and np.isfinite(np.delete(mean_0, hole)).all()
    _csv_header(tmp_path)  # the same rows without the hole: the same answers for the others
    assert main(["encode", "run", "--data", "x.csv", "--out", "full.csv"]) == 0
    full = np.asarray(_read_table(tmp_path / "full.csv").column("mean_0").to_pylist())
    np.testing.assert_allclose(np.delete(mean_0, hole), np.delete(full, hole), rtol=1e-6)
    assert main(["score", "run", "--out", "s.csv", "--k", "5", "--top", str(N)]) == 0
    printed = capsys.readouterr().out
    assert "the 119 least likely rows" in printed and f"row {hole + 1}:" not in printed
    # the file's own rows, after the drop: row i of the file holds x[i]
    assert main(["reconstruct", "run", "-n", "6", "--out", "rec.csv"]) == 0
    rec = _read_table(tmp_path / "rec.csv").to_pydict()
    for i, row in enumerate(rec["row"][:6]):  # counted from 1
        got = [rec[f][i] for f in FEATURES]
        np.testing.assert_allclose(got, x[row - 1], rtol=1e-6, err_msg=f"file row {row}")
    assert any(row > hole + 1 for row in rec["row"])  # a row the drop moved up
