"""Bounded reads and allocations: a crafted file or an absurd size is one line, not a hang,
a MemoryError or the OOM killer.

Only regular files are read (FIFOs and devices are refused before they are opened); readers
allocate from the file's own size; an ``.npz`` is read from exactly the member that was
checked; decoding, sampling and evaluation work in chunks whose size includes the latent
space; sizes that cannot fit are refused up front with the memory they would need.

A read that blocked would hang the test: each case here runs under a 60 s alarm, so a
regression fails instead of hanging the suite.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.reliability import harness
from tests.reliability.checks import (
    assert_one_line_error,
    assert_unchanged,
    run_cli,
    snapshot,
)
from vaelab.data.arrays import load_array
from vaelab.evaluation.likelihood import DEFAULT_MAX_ELEMENTS, samples_per_chunk, values_per_sample
from vaelab.memory import available_bytes
from vaelab.models import VAE
from vaelab.viz import pictures

QUICK = harness.train_args(epochs=1)


@pytest.fixture(autouse=True)
def _no_hang():
    def fail(signum, frame):
        raise TimeoutError("blocked for 60 s: a read that should have been refused")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _replace(path: Path, kind: str) -> None:
    """Make ``path`` a FIFO, or a link to /dev/zero (endless bytes)."""
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


def _commands(run: Path, tmp_path: Path) -> dict[str, list[str]]:
    return {
        "sample": ["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")],
        "evaluate": ["evaluate", str(run), "--k", "5", "--n", "5"],
        "resume": ["train", "--out", str(run), "--resume", *harness.train_args(epochs=2)],
    }


# --------------------------------------------------------------------------------------------
# FIFOs and devices
# --------------------------------------------------------------------------------------------
RUN_FILES = {
    "config.json": ["sample", "evaluate", "resume"],
    "model.safetensors": ["sample", "evaluate", "resume"],
    "checkpoint.safetensors": ["resume"],
    "metrics.jsonl": ["resume"],
    "vaelab-run.json": ["resume"],
}


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize(
    "name, command", [(n, c) for n, commands in RUN_FILES.items() for c in commands]
)
def test_a_run_file_that_is_a_fifo_or_a_device_is_one_line(
    run, tmp_path, capsys, kind, name, command
):
    _replace(run / name, kind)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)[command])
    assert code == 2
    assert_one_line_error(err, str(run / name), "not a regular file")
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("what", ["config.yaml", "data.npy", "data.npz", "data.csv"])
def test_a_users_input_that_is_a_fifo_or_a_device_is_one_line(tmp_path, capsys, kind, what):
    path = tmp_path / what
    _replace(path, kind)
    flag = "--config" if what.startswith("config") else "--dataset"
    code, _, err = run_cli(capsys, ["train", "--out", str(tmp_path / "r"), flag, str(path)])
    assert code == 2
    assert_one_line_error(err, str(path), "not a regular file")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_an_idx_file_that_is_a_fifo_or_a_device_is_one_line(tmp_path, capsys, shared_mnist, kind):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in shared_mnist.glob("*-ubyte.gz"):
        shutil.copyfile(f, folder / f.name)
    _replace(folder / "train-images-idx3-ubyte.gz", kind)  # read, refused, never downloaded over
    argv = ["train", "--out", str(tmp_path / "r"), "--dataset", "mnist", "--data-dir", str(folder)]
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    assert_one_line_error(err, "train-images-idx3-ubyte.gz", "not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("reader", ["table", "image-folder"])
def test_the_table_and_image_readers_refuse_a_fifo_or_a_device(tmp_path, kind, reader):
    from vaelab.data.images import read_image_folder
    from vaelab.data.tables import read_table
    from vaelab.errors import DataError

    if reader == "table":
        path = tmp_path / "t.csv"
        _replace(path, kind)
        call = lambda: read_table(path)  # noqa: E731
    else:
        path = tmp_path / "images" / "a.png"
        path.parent.mkdir()
        _replace(path, kind)
        call = lambda: read_image_folder(path.parent)  # noqa: E731
    with pytest.raises(DataError, match="not a regular file") as info:
        call()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# sizes from the file, memory asked for first
# --------------------------------------------------------------------------------------------
def _sparse_weights(path: Path, nbytes: int) -> None:
    """A safetensors file whose header is honest about a tensor of ``nbytes`` zero bytes,
    written sparse (it takes no disk)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [nbytes], "data_offsets": [0, nbytes]}})
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode())
        f.truncate(8 + len(header) + nbytes)


def test_weights_larger_than_memory_are_refused_before_they_are_read(run, tmp_path, capsys):
    weights = run / "model.safetensors"
    _sparse_weights(weights, available_bytes() + 2**30)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)["sample"])
    assert code == 2
    assert_one_line_error(err, str(weights), "would need", "of memory", "is available")


def test_a_csv_read_allocates_the_files_size_not_a_fixed_reserve(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n" + "0,1\n" * 100)
    load_array(path)  # the first read imports pyarrow: its modules are not the read's memory
    tracemalloc.start()
    try:
        load_array(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak  # a 404-byte file (the 4 GiB reserve showed as a 4 GiB peak)


def _npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _huge_header() -> bytes:
    """A .npy header declaring 2**40 float64 values, with no data behind it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)}
    )
    return b"\x93NUMPY\x01\x00" + buf.getvalue()[8:]


@pytest.mark.parametrize(
    "other",
    [b"raw bytes, not an array", "huge-header", "another-array"],
    ids=["raw-bytes", "huge-header", "another-array"],
)
def test_npz_reads_exactly_the_member_it_checked(tmp_path, other):
    """numpy's loader, asked for "x", reads a member named plain ``x`` before ``x.npy``."""
    x = (np.random.default_rng(0).random((50, 6)) < 0.5).astype(np.float32)
    if other == "huge-header":
        other = _huge_header()
    elif other == "another-array":
        other = _npy_bytes(np.zeros((3, 3), np.float32))
    path = _npz(tmp_path / "d.npz", {"x.npy": _npy_bytes(x), "x": other})
    assert torch.equal(load_array(path), torch.from_numpy(x))


def test_npz_member_declaring_terabytes_it_lacks_is_refused_without_allocating(tmp_path):
    path = _npz(tmp_path / "d.npz", {"x.npy": _huge_header() + b"\0" * 64})
    with pytest.raises(Exception, match="d.npz") as info:
        load_array(path, max_bytes=2**50)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["sample", "{run}", "-n", "100000000", "--out", "{tmp}/s.png"], ["s.png", "100,000,000"]),
        (["sample", "{run}", "-n", "100000000", "--out", "{tmp}/s.npy"], ["s.npy", "would need"]),
        (["interpolate", "{run}", "--steps", "100000000", "--out", "{tmp}/i.png"], ["i.png"]),
        (["train", "--out", "{tmp}/r", "--latent-dim", "1000000000"], ["parameters", "would need"]),
    ],
    ids=["sample-png", "sample-npy", "interpolate", "latent-dim"],
)
def test_impossible_sizes_are_refused_up_front_with_the_memory_needed(
    run, tmp_path, capsys, argv, needles
):
    argv = [a.format(run=run, tmp=tmp_path) for a in argv]
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    assert_one_line_error(err, *needles, "of memory", "is available")
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "r").exists()


# The child's own high-water mark, read by the child itself: ru_maxrss from wait4 would also
# count the pages it shared with this (by then large) pytest process between fork and exec.
_HWM = """
import atexit, re, runpy, sys
out = sys.argv.pop(1)
def _hwm():
    status = open("/proc/self/status").read()
    open(out, "w").write(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
atexit.register(_hwm)
sys.argv[0] = "vaelab"
runpy.run_module("vaelab", run_name="__main__")
"""


def _peak_rss_mb(argv: list[str], tmp_path: Path) -> tuple[int, str, float]:
    """Run ``vaelab argv`` in a child process; its exit status, stderr and peak RSS in MB."""
    hwm = tmp_path / "hwm.txt"
    proc = subprocess.run(
        [sys.executable, "-c", _HWM, str(hwm), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=harness.child_env(Path(os.environ["VAELAB_DATA"])),
        timeout=120,
    )
    return proc.returncode, proc.stderr.decode(), int(hwm.read_text()) / 1024


def test_sample_of_a_hundred_million_is_refused_in_bounded_memory(run, tmp_path):
    code, err, peak = _peak_rss_mb(
        ["sample", str(run), "-n", str(10**8), "--out", str(tmp_path / "s.png")], tmp_path
    )
    assert code == 2
    assert_one_line_error(err, "s.png", "would need")
    assert peak < 1024, f"peak resident memory {peak:.0f} MB"
    assert not (tmp_path / "s.png").exists()


def test_many_samples_are_decoded_in_chunks(monkeypatch):
    model = VAE(latent_dim=4, hidden=(8,), data_shape=(1, 4, 4))
    monkeypatch.setattr(pictures, "CHUNK_VALUES", 1000)
    sizes = []
    original = model.sample
    monkeypatch.setattr(model, "sample", lambda n, **kw: sizes.append(n) or original(n, **kw))
    out = pictures.samples(model, 500)
    assert out.shape == (500, 1, 4, 4)
    step = pictures._chunk(model)
    assert max(sizes) == step < 500 and sum(sizes) == 500


def test_interpolations_in_chunks_equal_one_pass(monkeypatch):
    torch.manual_seed(0)
    model = VAE(latent_dim=3, hidden=(8,), data_shape=(1, 4, 4))
    a, b = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    whole = pictures.interpolations(model, a, b, steps=7)
    monkeypatch.setattr(pictures, "CHUNK_VALUES", 50)  # a few rows per chunk
    assert torch.allclose(pictures.interpolations(model, a, b, steps=7), whole, atol=1e-6)
    assert whole.shape == (21, 1, 4, 4)


def test_evaluation_chunks_count_the_latent_space():
    x = torch.zeros(100, 1, 28, 28)
    narrow = VAE(latent_dim=20, hidden=(8,))
    wide = VAE(latent_dim=100_000, hidden=(8,))
    assert samples_per_chunk(narrow, x, 5000, DEFAULT_MAX_ELEMENTS) > 1  # as before: many samples
    assert samples_per_chunk(wide, x, 5000, DEFAULT_MAX_ELEMENTS) == 1
    # one sample of the wide model is already over the budget: it is the floor, not 26 of them
    assert values_per_sample(wide, x) > DEFAULT_MAX_ELEMENTS
