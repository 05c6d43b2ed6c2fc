"""The answers a run gives on a user's data are the model's own numbers: ``encode`` is the
encoder's mean of the preprocessed rows, ``score`` is ``evaluate`` row by row, the NLL in the
data's units follows the data's units exactly, and integer images train without collapsing."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.evaluation.metrics import evaluate_model
from vaelab.report.final import collapse_warning
from vaelab.runs import load_run as load_with_data

N, D = 200, 5
NAMES = ["a", "b", "c", "d", "e"]
SMALL = ["--epochs", "3", "--batch-size", "50", "--hidden", "32", "--latent-dim", "3",
         "--quiet", "--set", "train.final_eval_k=20"]  # fmt: skip


def _table(seed: int = 0) -> np.ndarray:
    """Correlated float64 features on scales from 0.1 to 1000."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 2)) @ rng.normal(size=(2, D)) + 0.2 * rng.normal(size=(N, D))
    return x * np.array([0.1, 1.0, 10.0, 100.0, 1000.0])


def _write_parquet(path, x: np.ndarray, labels=None) -> str:
    columns = {name: x[:, j] for j, name in enumerate(NAMES)}
    if labels is not None:
        columns["kind"] = labels
    pq.write_table(pa.table(columns), path)
    return str(path)


def _evaluate_json(run, capsys, *extra) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "20", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    labels = np.arange(N) % 3
    data = _write_parquet(folder / "t.parquet", _table().astype(np.float32), labels)
    run = folder / "run"
    assert (
        main(["train", "--dataset", data, "--label-column", "kind", "--out", str(run), *SMALL]) == 0
    )
    return folder, run


def test_encode_is_the_encoders_mean_of_the_standardized_rows_in_input_order(table_run, capsys):
    folder, run = table_run
    assert main(["encode", str(run), "--out", str(folder / "codes.parquet")]) == 0
    codes = pq.read_table(folder / "codes.parquet")
    assert codes.column("label").to_pylist() == (np.arange(N) % 3).tolist()

    # the statistics are the training split's, and nothing else's
    loaded = load_with_data(run, device="cpu")
    train = loaded.data.source.split("train").images.double()
    prep = loaded.data.prep
    assert len(train) == 180
    np.testing.assert_allclose(prep.mean, train.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(prep.std, train.std(0, correction=0).numpy(), rtol=1e-12)

    # by hand: the file's rows, standardized, through the encoder
    raw = torch.from_numpy(_table().astype(np.float32)).double()
    x = ((raw - torch.tensor(prep.mean)) / torch.tensor(prep.std)).float()
    with torch.no_grad():
        q = loaded.model.encode(x)
    # (float32 products summed in another order by another thread count: not bit-identical)
    close = {"rtol": 1e-5, "atol": 1e-6}
    for j in range(3):
        got = codes.column(f"mean_{j}").to_numpy()
        np.testing.assert_allclose(got, q.mean[:, j].numpy(), **close)
        got = codes.column(f"std_{j}").to_numpy()
        np.testing.assert_allclose(got, q.stddev[:, j].numpy(), **close)

    # the Python API gives the same, from the file or from an array of raw rows
    api = vaelab.load_run(run)
    from_array = api.encode(_table().astype(np.float32))
    np.testing.assert_allclose(from_array.mean.numpy(), q.mean.numpy(), **close)
    # .npy holds the numbers only: means then standard deviations
    assert main(["encode", str(run), "--out", str(folder / "codes.npy")]) == 0
    npy = np.load(folder / "codes.npy")
    assert npy.shape == (N, 6)
    np.testing.assert_allclose(npy[:, :3], q.mean.numpy(), **close)
    np.testing.assert_allclose(npy[:, 3:], q.stddev.numpy(), **close)


def test_score_is_evaluate_row_by_row_on_the_same_rows(table_run, capsys):
    folder, run = table_run
    loaded = load_with_data(run, device="cpu")
    test = loaded.data.source.split("test")
    data = _write_parquet(folder / "test.parquet", test.images.numpy(), test.labels.numpy())
    out = folder / "scores.parquet"
    capsys.readouterr()
    assert main(["score", str(run), "--data", data, "--k", "20", "--out", str(out)]) == 0
    scores = pq.read_table(out)
    report = _evaluate_json(run, capsys)

    # the same per-example numbers as evaluate's own computation, in the data's units
    per = evaluate_model(
        loaded.model, loaded.data.eval_data("test"), k=20, seed=loaded.cfg.data.eval_seed,
        per_example=True,
    )["per_example"]  # fmt: skip
    jacobian = loaded.data.log_jacobian
    assert jacobian == pytest.approx(sum(math.log(s) for s in loaded.data.prep.std))
    log_px = scores.column("log_px").to_numpy()
    np.testing.assert_allclose(log_px, (per["log_px"].double() - jacobian).numpy(), atol=1e-9)
    np.testing.assert_allclose(
        scores.column("elbo").to_numpy(), (per["elbo"].double() - jacobian).numpy(), atol=1e-9
    )
    # and the means are evaluate's report
    assert -log_px.mean() == pytest.approx(report["nll_original"], rel=1e-9)
    assert log_px.mean() + jacobian == pytest.approx(report["log_likelihood"], rel=1e-9)
    kl = scores.column("kl").to_numpy()
    assert kl.mean() == pytest.approx(report["kl"], rel=1e-6)
    assert (kl >= 0).all()
    rec = scores.column("reconstruction").to_numpy()
    np.testing.assert_allclose(rec - kl, scores.column("elbo").to_numpy(), atol=1e-4)
    # the ELBO is the mean of the same K log-weights: below log p(x) on every row (Jensen),
    # not only on average (a one-sample ELBO was above it on a third of a table's rows)
    gap = log_px - scores.column("elbo").to_numpy()
    assert (gap >= -1e-6).all(), gap.min()
    assert (gap > 1e-3).mean() > 0.5  # and the inequality is not an identity here


def test_new_rows_need_no_label_and_the_data_read_is_never_the_output(table_run, capsys):
    folder, run = table_run
    x = _table(seed=5).astype(np.float32)[:20]
    unlabelled = _write_parquet(folder / "new.parquet", x)  # no "kind" column
    labelled = _write_parquet(folder / "new_kind.parquet", x, np.arange(20) % 3)
    for data, keys in ((unlabelled, []), (labelled, ["label"])):
        out = folder / "new_scores.csv"
        assert main(["score", str(run), "--data", data, "--k", "10", "--out", str(out)]) == 0
        header = out.read_text().splitlines()[0].replace('"', "").split(",")
        assert header == [*keys, "log_px", "log_px_stderr", "log_px_ess", "elbo",
                          "reconstruction", "kl"]  # fmt: skip
    # the same rows give the same scores with or without their labels
    a = vaelab.load_run(run).score(unlabelled, k=10)
    b = vaelab.load_run(run).score(labelled, k=10)
    assert a.labels is None and b.labels.tolist() == (np.arange(20) % 3).tolist()
    torch.testing.assert_close(a.log_px, b.log_px)
    # some rows labelled, some not (the usual anomaly search): each answered, its label kept
    # or empty, never a made-up 0; --top counts rows from 1 and says which have no label
    some = _write_parquet(folder / "some.parquet", x, pa.array([0, None, 2] + [1] * 17))
    out = folder / "some.parquet.scores.parquet"
    capsys.readouterr()
    assert (
        main(["score", str(run), "--data", some, "--k", "10", "--out", str(out), "--top", "20"])
        == 0
    )
    assert pq.read_table(out).column("label").to_pylist() == [0, None, 2] + [1] * 17
    top = capsys.readouterr().out
    assert "row 2 no label" in top and "row 1 label 0" in top and "row 0 " not in top
    c = vaelab.load_run(run).score(some, k=10)
    assert c.labels.tolist() == [0, None, 2] + [1] * 17
    torch.testing.assert_close(c.log_px, a.log_px)
    # a missing cell in new rows is refused without advice to drop rows (score has no flag)
    holey = x.copy()
    holey[3, 1] = np.nan
    data = _write_parquet(folder / "holey.parquet", holey)
    capsys.readouterr()
    assert main(["score", str(run), "--data", data, "--out", str(folder / "h.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing value" in err and "--drop-missing" not in err and "every row" in err
    # text in a feature column: the run's features are fixed, so no advice to choose others
    for name, text in (("text.csv", True), ("text.parquet", False)):
        path = folder / name
        if text:
            rows = [",".join(NAMES)] + [",".join(map(repr, r.tolist())) for r in x]
            rows[4] = rows[4].replace(rows[4].split(",")[2], "abc", 1)
            path.write_text("\n".join(rows) + "\n")
        else:
            pq.write_table(pa.table({n: x[:, j] if n != "c" else ["?"] * len(x)
                                     for j, n in enumerate(NAMES)}), path)  # fmt: skip
        assert main(["score", str(run), "--data", str(path), "--out", str(folder / "t.csv")]) == 2
        err = capsys.readouterr().err
        assert "non-numeric column 'c'" in err and "--columns" not in err, err
        assert "the run was trained on this column as numbers" in err
    # --out naming the file being read is refused, and the file is untouched
    before = (folder / "new.parquet").read_bytes()
    for command in ("score", "encode"):
        assert main([command, str(run), "--data", unlabelled, "--out", unlabelled]) == 2
        assert "is the data being read" in capsys.readouterr().err
    assert (folder / "new.parquet").read_bytes() == before
    # an empty array of rows is one line, not a reshape error
    with pytest.raises(vaelab.errors.DataError, match="empty"):
        vaelab.load_run(run).score(np.zeros((0, D), np.float32))


def test_images_read_differently_from_training_are_noted(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    grey, colour = tmp_path / "grey", tmp_path / "colour"
    for folder, mode, size in ((grey, "L", (12, 10)), (colour, "RGB", (16, 16))):
        folder.mkdir()
        for i in range(40):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                folder / f"{i}.png"
            )
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(grey), "--out", str(run), *SMALL]) == 0
    capsys.readouterr()
    a = str(tmp_path / "a.npy")
    assert main(["score", str(run), "--data", str(grey), "--k", "5", "--out", a]) == 0
    assert "note:" not in capsys.readouterr().err  # read as in training: nothing to say
    out = str(tmp_path / "b.npy")
    assert main(["encode", str(run), "--data", str(colour), "--out", out]) == 0
    err = capsys.readouterr().err
    assert "converted 40 colour images to grey" in err and "resized 40 of 40 images" in err


def test_score_of_binarized_images_is_evaluate_on_the_test_split(tmp_path, capsys):
    """With a fixed binarization the draw of an example depends on its position: the test
    rows handed to ``score`` in the split's order get the draws ``evaluate`` gave them."""
    rng = np.random.default_rng(0)
    images = (rng.random((N, 6, 6)) * rng.random((N, 1, 1)) * 255).astype(np.uint8)
    np.save(tmp_path / "img.npy", images)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "img.npy"), "--out", str(run), *SMALL]) == 0
    test = load_with_data(run, device="cpu").data.source.split("test").images
    np.save(tmp_path / "test.npy", test.numpy())
    out = tmp_path / "s.csv"
    assert main(["score", str(run), "--data", str(tmp_path / "test.npy"), "--k", "20",
                 "--out", str(out)]) == 0  # fmt: skip
    report = _evaluate_json(run, capsys)
    log_px = np.loadtxt(out, delimiter=",", skiprows=1, usecols=0)
    assert log_px.shape == (10,)
    assert -log_px.mean() == pytest.approx(report["nll"], rel=1e-9)
    assert report["log_jacobian"] == 0  # a Bernoulli model scores probabilities: no Jacobian


def test_rescaled_columns_shift_the_nll_in_data_units_by_the_log_scales(tmp_path, capsys):
    """Columns multiplied by a_j (powers of two, so every step is exact in floating point):
    the standardized data are bit-identical, so the model and its standardized NLL are too,
    and the NLL in the data's units moves by exactly Σ log a_j."""
    scales = np.array([2.0, 0.25, 8.0, 1.0, 1 / 16])
    reports = []
    for name, x in (("plain", _table()), ("scaled", _table() * scales)):
        np.save(tmp_path / f"{name}.npy", x)
        run = tmp_path / name
        assert main(["train", "--dataset", str(tmp_path / f"{name}.npy"), "--out", str(run),
                     *SMALL]) == 0  # fmt: skip
        reports.append(_evaluate_json(run, capsys))
    plain, scaled = reports
    assert plain["units"].startswith("standardized")
    assert scaled["nll"] == plain["nll"]  # standardized units: unchanged
    shift = scaled["nll_original"] - plain["nll_original"]
    assert shift == pytest.approx(np.log(scales).sum(), abs=1e-9)
    assert shift != 0
    assert scaled["nll_per_dim"] == pytest.approx(scaled["nll_original"] / D)
    assert scaled["bits_per_dim"] is None  # a table has no bits per dimension


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """scikit-learn's 8×8 digits: grey levels stored as whole numbers 0..16."""
    from sklearn import datasets

    folder = tmp_path_factory.mktemp("digits")
    np.save(folder / "digits.npy", datasets.load_digits().images)
    return folder


def test_integer_images_train_with_most_units_active_and_real_reconstructions(digits_run, capsys):
    run = digits_run / "run"
    args = ["train", "--dataset", str(digits_run / "digits.npy"), "--value-range", "0,16",
            "--likelihood", "gaussian", "--latent-dim", "8", "--hidden", "128", "--epochs", "10",
            "--batch-size", "32",
            "--out", str(run), "--set", "train.final_eval_k=20"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "posterior collapse" not in err
    report = json.loads((run / "eval_test.json").read_text())
    assert report["active_units"] >= 6
    assert report["units"] == "levels 0..16 scaled to [0, 1]"

    api = vaelab.load_run(run)
    loaded = load_with_data(run, device="cpu")
    test = loaded.data.source.split("test").images.float()
    train = loaded.data.source.split("train").images.float()
    recon = api.reconstruct(test.numpy())
    assert recon.max() > 8  # in the data's units, not [0, 1]
    mse = ((recon - test) ** 2).mean()
    mean_image_mse = ((train.mean(0) - test) ** 2).mean()
    assert mse < 0.6 * mean_image_mse  # far better than the collapsed answer, the mean image

    samples = api.sample(16)
    assert samples.shape == (16, 1, 8, 8) and samples.max() > 4  # the data's units


def test_collapse_is_warned_in_one_line(digits_run, capsys):
    """A fixed, far too wide Gaussian makes the decoder's reconstruction term weak against the
    KL: the posterior collapses and ``train`` says so."""
    args = ["train", "--dataset", str(digits_run / "digits.npy"), "--value-range", "0,16",
            "--likelihood", "gaussian", "--latent-dim", "8", "--hidden", "32", "--epochs", "2",
            "--out", str(digits_run / "collapsed"), "--quiet", "--set", "train.final_eval_k=5",
            "--set", "model.gaussian_variance=fixed", "--set", "model.gaussian_std=3"]  # fmt: skip
    assert main(args) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "posterior collapse" in line]
    assert len(warned) == 1 and "--kl-warmup" in warned[0] and "of 8 latent units" in warned[0]


@pytest.mark.parametrize(
    "active, total, warns",
    [(0, 8, True), (1, 8, True), (2, 8, False), (8, 8, False), (0, 1, True), (1, 1, False),
     (None, 8, False), (3, 0, False)],
)  # fmt: skip
def test_collapse_warning_threshold_is_a_quarter(active, total, warns):
    warning = collapse_warning({"active_units": active, "latent_dim": total})
    assert (warning is not None) == warns
    if warns:
        assert f"only {active} of {total}" in warning


@pytest.mark.parametrize(
    "likelihood, variance, advised",
    [("gaussian", "scalar", True), ("gaussian", "fixed", True), ("gaussian", "per_dim", False),
     ("gaussian", "per_example", False), ("bernoulli", "per_dim", False)],
)  # fmt: skip
def test_collapse_advice_names_per_dim_variance_only_where_it_is_not_set(
    likelihood, variance, advised
):
    from types import SimpleNamespace

    report = {"active_units": 0, "latent_dim": 8, "likelihood": likelihood}
    warning = collapse_warning(report, SimpleNamespace(gaussian_variance=variance))
    assert ("gaussian_variance=per_dim" in warning) == advised
    assert "--kl-warmup" in warning and warning.endswith("or a smaller --latent-dim")


def test_a_constant_column_neither_wrecks_training_nor_the_numbers(tmp_path, capsys):
    """A column that never varies is left unscaled by the preprocessing; its learned scale
    starts at 1 like its neighbours' (at the 0.002 floor, the first steps' small errors in its
    mean cost thousands of nats and training diverged: val ELBO -1241 where the same table
    without the column had -19)."""
    x = _table(seed=1).astype(np.float32)
    with_const = np.concatenate([x, np.full((N, 1), 5.0, np.float32)], 1)
    runs = {}
    for name, values in (("plain", x), ("const", with_const)):
        columns = {f"c{j}": values[:, j] for j in range(values.shape[1])}
        pq.write_table(pa.table(columns), tmp_path / f"{name}.parquet")
        run = tmp_path / name
        argv = ["train", "--dataset", str(tmp_path / f"{name}.parquet"), "--out", str(run)]
        assert main([*argv, *SMALL, "--no-report"]) == 0
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        runs[name] = [r["val_elbo"] for r in rows]
    capsys.readouterr()
    # the constant column costs at most the log-density of a unit Gaussian at its mean (0.92
    # nats) while its scale shrinks; it does not throw training off
    for plain, const in zip(runs["plain"], runs["const"], strict=True):
        assert const > plain - 3, (runs["plain"], runs["const"])
    # and the scale of the constant value itself started at 1
    model = vaelab.load_run(tmp_path / "const").model
    scale = model.likelihood.scale().detach()
    assert scale.shape[-1] == 6 and float(scale[..., -1]) < 1.0  # trained down from 1


def test_the_output_scale_of_a_value_that_never_varies_starts_at_1():
    from vaelab import VAE

    vae = VAE(data_shape=(3,), latent_dim=2, hidden=(8,), likelihood="gaussian")
    vae.init_output_scale(torch.tensor([0.5, 0.0, 2.0]))
    torch.testing.assert_close(vae.likelihood.scale(), torch.tensor([0.5, 1.0, 2.0]))


def test_image_folder_rows_are_labelled_with_their_folder_names(tmp_path, capsys):
    """Class folders label their images by name: a code would be a position in the sorted
    names of whichever folder was read, so 'birds' would come out as training's 'cats'."""
    from PIL import Image

    rng = np.random.default_rng(1)

    def folder(root, classes):
        for name in classes:
            (root / name).mkdir(parents=True)
            for i in range(20):
                pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
                Image.fromarray(pixels, "L").save(root / name / f"{i}.png")
        return str(root)

    train = folder(tmp_path / "pets", ["cats", "dogs"])
    new = folder(tmp_path / "wild", ["birds", "zebras"])
    run = tmp_path / "run"
    assert main(["train", "--dataset", train, "--out", str(run), *SMALL, "--no-report"]) == 0
    capsys.readouterr()
    out = tmp_path / "s.csv"
    assert main(["score", str(run), "--data", new, "--k", "5", "--out", str(out)]) == 0
    labels = [line.split(",")[1].strip('"') for line in out.read_text().splitlines()[1:]]
    assert sorted(set(labels)) == ["birds", "zebras"] and labels.count("birds") == 20
    enc = vaelab.load_run(run).encode(train)
    assert sorted(set(enc.labels.tolist())) == ["cats", "dogs"]
    # the run's own splits, as the report colours its latent map and captions its rows
    data = load_with_data(run, device="cpu").data
    for split in ("train", "test"):
        assert set(data.labels(split).tolist()) <= {"cats", "dogs"}
    # one image alone, named by its path, as the README's "one image alone too" says
    one = tmp_path / "wild" / "birds" / "3.png"
    out = tmp_path / "one.csv"
    assert main(["score", str(run), "--data", str(one), "--k", "5", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith('"3.png",')
    from vaelab.report.build import _labels

    assert set(_labels(data, "test").tolist()) <= {"cats", "dogs"}  # the latent map's legend


class _Frame:
    """The part of a pandas DataFrame the API uses (pandas is not a dependency)."""

    def __init__(self, columns: dict):
        self.data = columns
        self.columns = list(columns)

    def __getitem__(self, names):
        return _Frame({n: self.data[n] for n in names})

    def to_numpy(self):
        return np.stack([self.data[n] for n in self.columns], axis=1)


def test_the_api_takes_arrays_in_every_layout_the_files_take(tmp_path, capsys):
    rng = np.random.default_rng(3)
    images = (rng.random((60, 8, 8)) < 0.3).astype(np.uint8) * 255  # 8-bit, (N, H, W)
    np.save(tmp_path / "x.npy", images)
    run_dir = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "x.npy"), "--out", str(run_dir), *SMALL,
                 "--no-report"]) == 0  # fmt: skip
    capsys.readouterr()
    run = vaelab.load_run(run_dir)
    first = images[:5]
    base = run.score(first[:, None], k=5)  # (N, 1, H, W) levels
    assert base.notices == []
    same = {
        "(N, H, W)": first,
        "(N, H, W, 1)": first[..., None],
        "a tensor": torch.from_numpy(first),
        "intensities in [0, 1]": first.astype(np.float32) / 255,
        "booleans": first > 0,
    }
    for what, rows in same.items():
        got = run.score(rows, k=5)
        torch.testing.assert_close(got.log_px, base.log_px, msg=what)
    assert any("intensities" in n for n in run.score(first > 0, k=5).notices)
    assert any("channels" in n or "transpos" in n for n in run.score(first[..., None]).notices)
    # one image alone, and the model's own samples (intensities) are rows too
    assert run.score(first[0], k=5).log_px.shape == (1,)
    assert run.score(run.sample(np.int64(3)), k=5).log_px.shape == (3,)
    with pytest.raises(vaelab.errors.DataError, match="values must be numbers"):
        run.score(np.array([["a"] * 8] * 8))
    with pytest.raises(vaelab.errors.DataError, match="fixed at training") as e:
        run.score(first.astype(np.uint16) * 257)
    assert "--value-range" not in str(e.value)


def test_the_api_takes_a_data_frame_by_column_name(table_run):
    _, run = table_run
    api = vaelab.load_run(run)
    x = _table(seed=7).astype(np.float32)[:10]
    by_position = api.score(x, k=5)
    shuffled = {name: x[:, j] for j, name in reversed(list(enumerate(NAMES)))}
    frame = _Frame({"extra": np.zeros(10), **shuffled})
    torch.testing.assert_close(api.score(frame, k=5).log_px, by_position.log_px)
    with pytest.raises(vaelab.errors.DataError, match="no column 'a'"):
        api.score(_Frame({n: x[:, j] for j, n in enumerate(NAMES) if n != "a"}))


def test_the_api_takes_pandas_rows_by_name_with_their_ids_and_labels(tmp_path):
    """A real pandas frame with text columns: ``df.iloc[i]`` (a Series) is matched by its
    names like a frame, not by position; the run's id and label columns come back."""
    pd = pytest.importorskip("pandas")
    x = _table(seed=2).astype(np.float32)
    cells = dict(zip(NAMES, x.T, strict=True))
    frame = pd.DataFrame({"who": [f"r{i}" for i in range(N)], **cells, "kind": np.arange(N) % 3})
    frame.to_csv(tmp_path / "t.csv", index=False)
    run_dir = tmp_path / "run"
    keys = ["--id-column", "who", "--label-column", "kind"]
    data = ["--dataset", str(tmp_path / "t.csv"), *keys]
    assert main(["train", *data, "--out", str(run_dir), *SMALL, "--no-report"]) == 0
    run = vaelab.load_run(run_dir)
    whole = run.encode(frame)
    assert whole.ids.tolist() == frame["who"].tolist()
    assert whole.labels.tolist() == frame["kind"].tolist()
    row = frame.iloc[7]  # object dtype: it holds the id's text
    one = run.encode(row)
    torch.testing.assert_close(one.mean, whole.mean[7:8], rtol=1e-5, atol=1e-6)
    reversed_row = row[::-1]  # the same cells in another order: the same answer
    torch.testing.assert_close(run.encode(reversed_row).mean, one.mean)
    numbers = row[NAMES][::-1].astype(float)  # only the features, reversed
    torch.testing.assert_close(run.encode(numbers).mean, one.mean)
    with pytest.raises(vaelab.errors.DataError, match="not numbers"):
        run.encode(row.replace({row["a"]: "oops"}))


def test_reconstruct_and_report_name_the_rows_of_the_file(table_run, capsys):
    """A test-split example is shown with its row in the user's file (counted from 1, as
    score --top and the errors count) and its
    values as the file has them, not standardized and back (float32 noise)."""
    folder, run = table_run
    loaded = load_with_data(run, device="cpu")
    rows = loaded.data.file_rows("test")
    assert rows is not None and len(rows) == 10 and len(set(rows.tolist())) == 10
    out = folder / "recon.parquet"
    assert main(["reconstruct", str(run), "-n", "4", "--out", str(out)]) == 0
    table = pq.read_table(out).to_pydict()
    assert table["row"] == (rows[:4] + 1).tolist() * 2  # file_rows is 0-based, for indexing
    assert table["kind"] == ["original"] * 4 + ["reconstruction"] * 4
    file_values = _table().astype(np.float32)[rows[:4]]  # the file's own rows
    for j, name in enumerate(NAMES):
        assert np.array_equal(np.float32(table[name][:4]), file_values[:, j]), name
    assert main(["report", str(run), "--out", str(folder / "r.html")]) == 0
    html = (folder / "r.html").read_text()
    assert f"original (file row {rows[0] + 1})" in html and "counted from 1" in html
    capsys.readouterr()


def test_a_tables_levels_are_never_read_as_intensities(tmp_path, capsys):
    """Counts 0..9 in a table: new rows of 0s and 1s are levels 0 and 1, not intensities to
    scale (that reading is for images only), and a fractional count is refused, not rounded."""
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 10, size=(N, 3)).astype(np.int16)
    np.save(tmp_path / "counts.npy", counts)
    run_dir = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "counts.npy"), "--out", str(run_dir),
                 *SMALL, "--no-report"]) == 0  # fmt: skip
    capsys.readouterr()
    run = vaelab.load_run(run_dir)
    ones = np.ones((4, 3), np.float32)
    got = run.score(ones, k=5)
    assert got.notices == []
    torch.testing.assert_close(got.log_px, run.score(ones.astype(np.int16), k=5).log_px)
    with pytest.raises(vaelab.errors.DataError, match="whole levels"):
        run.score(ones * 2.5)


def test_id_column_is_carried_into_the_answers_and_is_never_a_feature(tmp_path, capsys):
    """A key column named with --id-column: the model never sees it, and encode/score give
    each row's key back, for the training file and for new rows in another column order."""
    x = _table()
    keys = [f"k{i:03d}" for i in range(N)]
    lines = ["who," + ",".join(NAMES)] + [
        f"{k}," + ",".join(f"{v:.6g}" for v in row) for k, row in zip(keys, x, strict=True)
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    args = ["train", "--dataset", str(tmp_path / "t.csv"), "--id-column", "who", "--out", str(run)]
    assert main([*args, *SMALL, "--no-report"]) == 0
    assert vaelab.load_run(run).cfg.data.id_column == "who"
    assert load_with_data(run, device="cpu").model.data_dim == len(NAMES)  # not a feature
    out = tmp_path / "codes.csv"
    assert main(["encode", str(run), "--data", str(tmp_path / "t.csv"), "--out", str(out)]) == 0
    assert pa_csv.read_csv(out).column("id").to_pylist() == keys
    # new rows: columns reordered, the key last; the same rows score the same
    order = [4, 0, 3]
    new = [",".join(reversed(NAMES)) + ",who"] + [
        ",".join(f"{v:.6g}" for v in reversed(x[i])) + f",{keys[i]}" for i in order
    ]
    (tmp_path / "new.csv").write_text("\n".join(new) + "\n")
    capsys.readouterr()
    for name in ("new.csv", "t.csv"):
        assert main(["score", str(run), "--data", str(tmp_path / name), "--k", "200", "--out",
                     str(tmp_path / f"scores-{name}")]) == 0  # fmt: skip
    got = pa_csv.read_csv(tmp_path / "scores-new.csv").to_pydict()
    every = pa_csv.read_csv(tmp_path / "scores-t.csv").to_pydict()
    assert got["id"] == [keys[i] for i in order] and every["id"] == keys
    # the same rows, read in another column order, get the same estimate (independent draws)
    for j, i in enumerate(order):
        spread = 6 * math.hypot(got["log_px_stderr"][j], every["log_px_stderr"][i]) + 1e-3
        assert abs(got["log_px"][j] - every["log_px"][i]) < spread


def test_gaps_of_a_standardized_table_say_their_units(table_run, capsys):
    """The gaps' log p and ELBOs are in the model's (standardized) units: the printout says
    how far they are from the data's, the amount evaluate adds back to its NLL."""
    _, run = table_run
    plain = _evaluate_json(run, capsys)
    shift = plain["nll_original"] - plain["nll"]
    gaps = _evaluate_json(run, capsys, "--gaps", "--n", "3")
    assert gaps["log_jacobian"] == pytest.approx(shift, rel=1e-9)
    assert main(["evaluate", str(run), "--gaps", "--n", "3", "--k", "20"]) == 0
    assert f"subtract {shift:.3f} nats from log p and the ELBOs" in capsys.readouterr().out
