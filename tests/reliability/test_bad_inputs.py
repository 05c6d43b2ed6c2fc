"""A catalogue of bad inputs at the command line.

Each case must be answered with exactly one ``vaelab: error: ...`` line on stderr that names
the problem, exit status 2, no traceback (``--debug`` shows one), and no file written before
(a finished run, the user's data and configs, all under ``tmp_path``) changed. A failed
``train`` writes no run files.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.reliability import harness
from tests.reliability.checks import (
    assert_error_after_log,
    assert_no_run_files,
    assert_one_line_error,
    assert_unchanged,
    run_cli,
    snapshot,
)
from vaelab.cli import main
from vaelab.errors import DataError
from vaelab.training.checkpoint import read_checkpoint

QUICK = harness.train_args(epochs=1)
# The same without the flags that would override a --set/--config value of the same key.
QUICK_NO_MODEL_FLAGS = ["--epochs", "1", "--quiet", "--set", "train.final_eval_n=0"]


@pytest.fixture
def prev(finished_run, tmp_path) -> Path:
    """A finished run that must survive every failed command untouched."""
    return shutil.copytree(finished_run, tmp_path / "prev")


def _npy(tmp_path: Path, name: str, arr) -> str:
    path = tmp_path / name
    np.save(path, np.asarray(arr))
    return str(path)


def _text(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _binary(n=200, d=10, seed=0):
    return (np.random.default_rng(seed).random((n, d)) < 0.5).astype(np.float32)


# name → builder(tmp_path, new_out) -> (argv, needles in the error line)
Case = Callable[[Path, str], tuple[list[str], list[str]]]


def _train(*argv: str) -> list[str]:
    return ["train", *argv]


def _empty_data_dir(t: Path, o: str):
    (t / "emptydir").mkdir()
    argv = _train("--out", o, "--dataset", "mnist", "--data-dir", str(t / "emptydir"), *QUICK)
    return argv, ["mnist", "train-images-idx3-ubyte.gz", str(t / "emptydir")]


def _foreign_folder(t: Path, o: str):
    (t / "mine").mkdir()
    (t / "mine" / "thesis.tex").write_text("precious")
    argv = _train("--out", str(t / "mine"), "--overwrite", *QUICK)
    return argv, [str(t / "mine"), "not a vaelab run directory"]


def _device(command: str, name: str) -> Case:
    """``--device NAME`` for train (key train.device) or evaluate (key device)."""

    def case(t: Path, o: str):
        if command == "train":
            return _train("--out", o, *QUICK, "--device", name), ["train.device", f"'{name}'"]
        argv = ["evaluate", str(t / "prev"), "--k", "5", "--device", name]
        return argv, ["device: must be auto, cpu, cuda or cuda:N", f"'{name}'"]

    return case


CASES: dict[str, Case] = {
    **{
        f"{command}-device-{name}": _device(command, name)
        for command in ("train", "evaluate")
        for name in ("foo", "meta", "cuda:x")
    },
    # ---- missing paths
    "missing-npy": lambda t, o: (
        _train("--out", o, "--dataset", str(t / "nope.npy"), *QUICK),
        [str(t / "nope.npy"), "file not found"],
    ),
    "missing-config": lambda t, o: (
        _train("--out", o, "--config", str(t / "nope.yaml"), *QUICK),
        [str(t / "nope.yaml"), "config file not found"],
    ),
    "missing-data-dir": lambda t, o: (
        _train("--out", o, "--dataset", "mnist", "--data-dir", str(t / "nodir"), *QUICK),
        ["mnist", "train-images-idx3-ubyte.gz", str(t / "nodir")],
    ),
    "empty-data-dir": lambda t, o: _empty_data_dir(t, o),
    "evaluate-missing-run": lambda t, o: (
        ["evaluate", str(t / "norun"), "--k", "5"],
        [str(t / "norun"), "no such run directory"],
    ),
    "sample-missing-run": lambda t, o: (
        ["sample", str(t / "norun"), "--out", str(t / "s.png")],
        [str(t / "norun"), "no such"],
    ),
    "reconstruct-missing-run": lambda t, o: (
        ["reconstruct", str(t / "norun"), "--out", str(t / "r.png")],
        [str(t / "norun"), "no such run directory"],
    ),
    "sample-into-missing-folder": lambda t, o: (
        ["sample", str(t / "prev"), "--out", str(t / "nodir" / "s.png")],
        [str(t / "nodir"), "does not exist"],
    ),
    # ---- the user's own arrays: NaN/inf, empty, non-binary, shapes
    "nan-in-npy": lambda t, o: (
        _train(
            "--out",
            o,
            "--dataset",
            _npy(t, "nan.npy", np.where(np.arange(2000).reshape(200, 10) == 57, np.nan, _binary())),
            *QUICK,
        ),
        ["nan.npy", "1 non-finite values", "(5, 7)"],
    ),
    "inf-in-npy": lambda t, o: (
        _train(
            "--out",
            o,
            "--dataset",
            _npy(t, "inf.npy", np.where(np.arange(2000).reshape(200, 10) == 3, -np.inf, _binary())),
            *QUICK,
        ),
        ["inf.npy", "non-finite", "(0, 3)"],
    ),
    "nan-in-csv": lambda t, o: (
        _train("--out", o, "--dataset", _text(t, "nan.csv", "a,b\n0,1\n1,nan\n"), *QUICK),
        ["nan.csv", "missing value", "--drop-missing"],
    ),
    "empty-npy": lambda t, o: (
        _train(
            "--out", o, "--dataset", _npy(t, "empty.npy", np.zeros((0, 10), np.float32)), *QUICK
        ),
        ["empty.npy", "empty (0 examples)"],
    ),
    "empty-csv": lambda t, o: (
        _train("--out", o, "--dataset", _text(t, "empty.csv", ""), *QUICK),
        ["empty.csv", "empty"],
    ),
    "header-only-csv": lambda t, o: (
        _train("--out", o, "--dataset", _text(t, "head.csv", "a,b,c\n"), *QUICK),
        ["head.csv", "no data rows"],
    ),
    "grey-npy-bernoulli-no-binarize": lambda t, o: (
        _train(
            "--out",
            o,
            "--dataset",
            _npy(t, "grey.npy", np.full((200, 10), 0.3, np.float32)),
            "--likelihood",  # a table's default is gaussian since tables came in
            "bernoulli",
            "--binarize",
            "none",
            *QUICK,
        ),
        ["grey.npy", "values other than 0/1", "bernoulli", "--binarize"],
    ),
    "grey-mnist-bernoulli-no-binarize": lambda t, o: (
        _train("--out", o, "--binarize", "none", *QUICK),
        ["mnist-mini", "grey pixels", "--binarize dynamic"],
    ),
    "out-of-range-npy-binarized": lambda t, o: (
        _train(
            "--out",
            o,
            "--dataset",
            _npy(t, "big.npy", np.full((200, 10), 3.0, np.float32)),
            "--likelihood",
            "bernoulli",
            *QUICK,
        ),
        ["big.npy", "[0, 1]"],
    ),
    "data-shape-mismatch": lambda t, o: (
        _train("--out", o, "--set", "model.data_shape=[1,32,32]", *QUICK),
        ["model.data_shape", "[1, 32, 32]", "does not match", "[1, 28, 28]"],
    ),
    "conv-on-flat-data": lambda t, o: (
        _train("--out", o, "--dataset", _npy(t, "flat.npy", _binary()), "--arch", "conv", *QUICK),
        ["conv", "(C, H, W)", "(10,)"],
    ),
    # ---- configuration: unknown keys, wrong types, impossible values
    "unknown-key-set": lambda t, o: (
        _train("--out", o, "--set", "train.learning_rate=0.1", *QUICK),
        ["unknown config key train.learning_rate"],
    ),
    "unknown-key-yaml": lambda t, o: (
        _train("--out", o, "--config", _text(t, "c.yaml", "train:\n  epoch: 3\n"), *QUICK),
        ["unknown config key train.epoch"],
    ),
    "unknown-section-json": lambda t, o: (
        _train("--out", o, "--config", _text(t, "c.json", '{"optim": {"lr": 1}}'), *QUICK),
        ["unknown config key optim"],
    ),
    "wrong-type-yaml": lambda t, o: (
        _train("--out", o, "--config", _text(t, "c.yaml", "train:\n  lr: fast\n"), *QUICK),
        ["train.lr", "expected a number", "'fast'"],
    ),
    "wrong-type-set-int": lambda t, o: (
        _train("--out", o, "--set", "train.seed=1.5", *QUICK_NO_MODEL_FLAGS),
        ["train.seed", "expected an integer", "1.5"],
    ),
    "wrong-type-section": lambda t, o: (
        _train("--out", o, "--config", _text(t, "c.yaml", "train: 3\n"), "--quiet"),
        ["train", "expected a mapping"],
    ),
    "config-not-a-mapping": lambda t, o: (
        _train("--out", o, "--config", _text(t, "c.yaml", "- 1\n- 2\n"), *QUICK),
        ["c.yaml", "must hold a mapping"],
    ),
    "config-bad-yaml": lambda t, o: (
        _train("--out", o, "--config", _text(t, "c.yaml", "train: [1, 2\n"), *QUICK),
        ["c.yaml", "not a valid config file"],
    ),
    "config-bad-json": lambda t, o: (
        _train("--out", o, "--config", _text(t, "c.json", '{"train": {"lr": }'), *QUICK),
        ["c.json", "not a valid config file"],
    ),
    "latent-0-flag": lambda t, o: (
        _train("--out", o, *QUICK, "--latent-dim", "0"),
        ["latent_dim must be >= 1, got 0"],
    ),
    "latent-0-yaml": lambda t, o: (
        _train(
            "--out",
            o,
            "--config",
            _text(t, "c.yaml", "model:\n  latent_dim: 0\n"),
            *QUICK_NO_MODEL_FLAGS,
        ),
        ["latent_dim must be >= 1, got 0"],
    ),
    "hidden-0": lambda t, o: (
        _train("--out", o, *QUICK, "--hidden", "0"),
        ["hidden sizes must be >= 1", "[0]"],
    ),
    "k-0-train": lambda t, o: (
        _train("--out", o, *QUICK, "--k", "0"),
        ["train.k: must be > 0, got 0"],
    ),
    "k-0-evaluate": lambda t, o: (
        ["evaluate", str(t / "prev"), "--k", "0"],
        ["k must be an integer >= 1, got 0"],
    ),
    "iwae-k-1": lambda t, o: (
        _train("--out", o, *QUICK, "--objective", "iwae", "--k", "1"),
        ["iwae", "k >= 2", "1"],
    ),
    "negative-lr": lambda t, o: (
        _train("--out", o, *QUICK, "--lr", "-0.001"),
        ["train.lr: must be > 0, got -0.001"],
    ),
    "zero-lr-yaml": lambda t, o: (
        _train(
            "--out", o, "--config", _text(t, "c.yaml", "train:\n  lr: 0\n"), *QUICK_NO_MODEL_FLAGS
        ),
        ["train.lr: must be > 0, got 0"],
    ),
    "nan-lr": lambda t, o: (
        _train("--out", o, "--set", "train.lr=.nan", *QUICK_NO_MODEL_FLAGS),
        ["train.lr", "nan"],
    ),
    "inf-lr": lambda t, o: (
        _train("--out", o, "--set", "train.lr=.inf", *QUICK_NO_MODEL_FLAGS),
        ["train.lr: must be > 0, got inf"],
    ),
    "zero-batch": lambda t, o: (
        _train("--out", o, *QUICK, "--batch-size", "0"),
        ["train.batch_size: must be > 0, got 0"],
    ),
    "zero-epochs": lambda t, o: (
        _train("--out", o, *QUICK, "--epochs", "0"),
        ["train.epochs: must be > 0, got 0"],
    ),
    "negative-beta": lambda t, o: (
        _train("--out", o, *QUICK, "--beta", "-1"),
        ["train.beta: must be >= 0, got -1"],
    ),
    "bad-choice-set": lambda t, o: (
        _train("--out", o, *QUICK, "--set", "data.binarize=maybe"),
        ["data.binarize", "must be one of", "'maybe'"],
    ),
    "unknown-dataset": lambda t, o: (
        _train("--out", o, *QUICK, "--dataset", "nmist"),
        ["unknown dataset 'nmist'"],
    ),
    "cuda-missing": lambda t, o: (
        _train("--out", o, *QUICK, "--device", "cuda:7"),
        ["train.device", "cuda:7"],
    ),
    "seed-negative": lambda t, o: (
        _train("--out", o, *QUICK, "--seed", "-1"),
        ["train.seed", "must be in [0, 4294967295]", "-1"],
    ),
    "seed-overflows-the-data-order": lambda t, o: (
        _train("--out", o, *QUICK, "--seed", str(2**62)),
        ["train.seed", "must be in"],
    ),
    "threads-absurd": lambda t, o: (
        _train("--out", o, *QUICK, "--threads", "100000"),
        ["train.threads", "must be in [1, 1024]", "100000"],
    ),
    "rollbacks-absurd": lambda t, o: (
        _train("--out", o, *QUICK, "--set", "train.max_rollbacks=1000"),
        ["train.max_rollbacks", "must be in [0, 100]"],
    ),
    # ---- run folders
    "run-dir-exists": lambda t, o: (
        _train("--out", str(t / "prev"), *QUICK),
        [str(t / "prev"), "run directory exists", "--resume", "--overwrite"],
    ),
    "out-is-a-file": lambda t, o: (
        _train("--out", _text(t, "afile", "x"), *QUICK),
        ["afile", "not a directory"],
    ),
    "overwrite-a-foreign-folder": lambda t, o: _foreign_folder(t, o),
    "resume-and-overwrite": lambda t, o: (
        _train("--out", str(t / "prev"), "--resume", "--overwrite", *QUICK),
        ["--resume and --overwrite exclude each other"],
    ),
    "resume-without-out": lambda t, o: (
        _train("--resume", *QUICK),
        ["--resume needs --out"],
    ),
    "evaluate-n-0": lambda t, o: (
        ["evaluate", str(t / "prev"), "--split", "valid", "--n", "0"],
        ["n must be >= 1, got 0"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_touches_nothing(prev, tmp_path, capsys, case):
    new = tmp_path / "new"
    argv, needles = CASES[case](tmp_path, str(new))
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, argv)
    assert code == 2, (out, err)
    assert_one_line_error(err, *needles)
    assert_unchanged(before, tmp_path)
    assert_no_run_files(new)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        main(
            [
                "--debug",
                "train",
                "--out",
                str(tmp_path / "r"),
                "--dataset",
                str(tmp_path / "nope.npy"),
                *QUICK,
            ]
        )


# ---- registered datasets: truncated, corrupt, wrong-magic and mismatching IDX/gzip files
def _corrupt_truncate_gz(folder: Path) -> Path:
    p = folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:4_000_000])
    return p


def _corrupt_crc(folder: Path) -> Path:
    p = folder / "train-images-idx3-ubyte.gz"
    data = bytearray(p.read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer's CRC32
    p.write_bytes(bytes(data))
    return p


def _corrupt_deflate(folder: Path) -> Path:
    p = folder / "train-labels-idx1-ubyte.gz"
    data = bytearray(p.read_bytes())
    for i in range(40, 60):
        data[i] ^= 0x5A
    p.write_bytes(bytes(data))
    return p


def _wrong_magic_idx(folder: Path) -> Path:
    gz = folder / "train-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(gz.read_bytes()))
    raw[2] = 0x77  # not an IDX type code
    gz.unlink()
    p = folder / "train-images-idx3-ubyte"
    p.write_bytes(bytes(raw))
    return p


def _truncated_raw_idx(folder: Path) -> Path:
    gz = folder / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(gz.read_bytes())
    gz.unlink()
    p = folder / "train-labels-idx1-ubyte"
    p.write_bytes(raw[:1000])
    return p


def _not_gzip(folder: Path) -> Path:
    p = folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(b"<html>404 Not Found</html>\n" * 10)
    return p


def _checksum_mismatch(folder: Path) -> Path:
    p = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(p.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label file; one label changed
    p.write_bytes(gzip.compress(bytes(raw)))
    return p


def _empty_file(folder: Path) -> Path:
    p = folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(b"")
    return p


IDX_CASES = {
    "truncated-gzip": (_corrupt_truncate_gz, "corrupt or truncated gzip"),
    "gzip-crc": (_corrupt_crc, "corrupt or truncated gzip"),
    "gzip-deflate-stream": (_corrupt_deflate, "gzip"),
    "wrong-magic-idx": (_wrong_magic_idx, "checksum mismatch"),
    "truncated-idx": (_truncated_raw_idx, "checksum mismatch"),
    "not-gzip": (_not_gzip, "checksum mismatch"),
    "checksum-mismatch": (_checksum_mismatch, "checksum mismatch"),
    "empty-file": (_empty_file, ""),
}


@pytest.mark.parametrize("case", sorted(IDX_CASES))
def test_bad_dataset_file_is_one_line_naming_the_file(prev, tmp_path, capsys, shared_mnist, case):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in shared_mnist.glob("*-ubyte.gz"):
        shutil.copyfile(f, folder / f.name)  # never touch the shared copy
    corrupt, needle = IDX_CASES[case]
    bad = corrupt(folder)
    new = tmp_path / "new"
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys,
        ["train", "--out", str(new), "--dataset", "mnist", "--data-dir", str(folder), *QUICK],
    )
    assert code == 2
    assert_one_line_error(err, str(bad), needle)
    assert_unchanged(before, tmp_path)
    assert_no_run_files(new)


def test_overwrite_with_a_bad_input_keeps_the_old_run(prev, tmp_path, capsys):
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys,
        [
            "train",
            "--out",
            str(prev),
            "--overwrite",
            "--dataset",
            str(tmp_path / "nope.npy"),
            *QUICK,
        ],
    )
    assert code == 2
    assert_one_line_error(err, "nope.npy", "file not found")
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--latent-dim", "abc"], "--latent-dim: invalid int value: 'abc'"),
        (["train", "--likelihood", "poisson"], "--likelihood: invalid choice: 'poisson'"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["evaluate"], "RUN"),
    ],
)
def test_wrong_flag_types_are_one_line(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0]


@pytest.mark.parametrize("how", ["set", "yaml"])
def test_scientific_notation_is_a_number(tmp_path, capsys, how):
    out = tmp_path / "run"
    if how == "set":
        extra = ["--set", "train.lr=3e-4"]
    else:
        extra = ["--config", _text(tmp_path, "c.yaml", "train:\n  lr: 3e-4\n")]
    code, _, err = run_cli(
        capsys,
        [
            "train",
            "--out",
            str(out),
            *extra,
            *QUICK_NO_MODEL_FLAGS,
            "--hidden",
            "16",
            "--latent-dim",
            "2",
        ],
    )
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["run"]["train"]["lr"] == 3e-4


def test_evaluate_data_that_does_not_fit_the_model_names_both(tmp_path, capsys):
    data = _npy(tmp_path, "d.npy", _binary(d=10))
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--dataset", data, *QUICK]) == 0
    np.save(data, _binary(d=12))  # the user's file changed since training
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["evaluate", str(run), "--k", "5"])
    assert code == 2
    line = assert_one_line_error(err, "d.npy", "model")
    assert "12" in line and "10" in line
    assert_unchanged(before, tmp_path)


# ---- a full disk
class _FullDiskFile:
    """A file whose write puts half the bytes on disk, then fails with ENOSPC."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False


def _fill_disk_on(monkeypatch, prefix: str, nth: int) -> dict:
    """From the ``nth`` atomic write of a file named ``prefix``*, the disk is full."""
    import vaelab.io as io_mod

    seen = {"n": 0}
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        f = real(fd, *args, **kwargs)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(prefix):
            seen["n"] += 1
            if seen["n"] >= nth:
                return _FullDiskFile(f)
        return f

    proxy = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    proxy.fdopen = fdopen
    monkeypatch.setattr(io_mod, "os", proxy)
    return seen


def _tmp_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(
    reference_run, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    # checkpoints: #1 at the start, then every 3 steps; #5 (step 12) meets a full disk
    with monkeypatch.context() as m:
        seen = _fill_disk_on(m, ".checkpoint.safetensors.", nth=5)
        code, _, err = run_cli(capsys, ["train", "--out", str(run), *harness.TRAIN_ARGS])
    assert seen["n"] == 5
    assert code == 2
    assert_one_line_error(
        err,
        str(run / "checkpoint.safetensors"),
        "could not write checkpoint",
        "No space left on device",
        "the previous checkpoint is intact",
    )
    meta, _ = read_checkpoint(run / "checkpoint.safetensors")
    assert meta["state"]["global_step"] == 9
    assert harness.checkpoint_problem(run) is None
    assert _tmp_files(run) == []
    # space freed: the run resumes and ends as if nothing had happened
    assert main(["train", "--out", str(run), "--resume", *harness.TRAIN_ARGS]) == 0
    assert harness.differences(reference_run.run_dir, run) == []


def test_full_disk_writing_the_best_model_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        seen = _fill_disk_on(m, ".model.safetensors.", nth=2)  # #1 is at the start
        code, _, err = run_cli(capsys, ["train", "--out", str(run), *QUICK])
    assert seen["n"] == 2
    assert code == 2
    assert_one_line_error(err, str(run / "model.safetensors"), "No space left on device", "intact")
    assert _tmp_files(run) == []
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.npy")]) == 0


def test_full_disk_at_the_start_is_one_line(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    _fill_disk_on(monkeypatch, ".config.json.", nth=1)
    code, _, err = run_cli(capsys, ["train", "--out", str(run), *QUICK])
    assert code == 2
    assert_one_line_error(err, "config.json", "No space left on device")
    assert _tmp_files(run) == []


def _metrics_write(monkeypatch, behaviour: str, on_epoch: int) -> None:
    """Make the os.write of epoch ``on_epoch``'s metrics line fail (ENOSPC) or come up short."""
    from vaelab.runs import metrics as metrics_mod

    real = os.write
    done = []

    def is_the_line(fd, data) -> bool:
        if done or not os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            return False
        try:
            return json.loads(bytes(data))["epoch"] == on_epoch
        except ValueError:
            return False

    def write(fd, data):
        if is_the_line(fd, data):
            done.append(True)
            if behaviour == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, bytes(data)[: len(data) // 2])  # short, as on a nearly full disk
        return real(fd, data)

    proxy = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    proxy.write = write
    monkeypatch.setattr(metrics_mod, "os", proxy)


def test_full_disk_appending_metrics_is_one_line(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    _metrics_write(monkeypatch, "enospc", on_epoch=2)
    code, _, err = run_cli(capsys, ["train", "--out", str(run), *harness.TRAIN_ARGS])
    assert code == 2
    assert_error_after_log(err, "metrics.jsonl", "No space left on device")
    assert harness.metrics_torn(run) is None
    assert harness.checkpoint_problem(run) is None


def test_short_write_of_a_metrics_line_never_leaves_a_torn_line(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    _metrics_write(monkeypatch, "short", on_epoch=2)
    code, _, err = run_cli(capsys, ["train", "--out", str(run), *harness.TRAIN_ARGS])
    assert code in (0, 2), err
    assert harness.metrics_torn(run) is None
    if code == 2:
        assert_error_after_log(err, "metrics.jsonl")
    else:
        assert [r["epoch"] for r in harness.metrics_rows(run)] == [1, 2, 3]
