"""A user's own arrays: .npy/.npz/.csv loading that never unpickles, and seeded splits."""

from __future__ import annotations

import io
import pickle
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab.data import load_array, load_array_split, split_array
from vaelab.errors import DataError, InvalidArgumentError


class Planted:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# --------------------------------------------------------------------------- .npy / .npz


@pytest.mark.parametrize(
    "arr, shape",
    [
        (np.arange(12, dtype=np.float64).reshape(4, 3), (4, 3)),
        (np.arange(12, dtype=np.int16).reshape(4, 3), (4, 3)),
        (np.ones((2, 3, 4, 5), dtype=np.uint8), (2, 3, 4, 5)),
        (np.array([True, False, True]), (3, 1)),
        (np.arange(24, dtype=np.float32).reshape(2, 3, 4), (2, 1, 3, 4)),
        (np.asfortranarray(np.arange(6.0).reshape(2, 3)), (2, 3)),
        (np.arange(6.0).reshape(2, 3).astype(">f8"), (2, 3)),
    ],
)
def test_npy_round_trip(tmp_path, arr, shape):
    np.save(tmp_path / "x.npy", arr)
    x = load_array(tmp_path / "x.npy")
    # 8-bit data keeps its type (the pipeline binarizes or dequantizes it); the rest is float32
    assert x.dtype == (torch.uint8 if arr.dtype == np.uint8 else torch.float32)
    assert tuple(x.shape) == shape
    assert np.array_equal(x.numpy().reshape(arr.shape), arr.astype(x.numpy().dtype))


def test_npz_key_x_or_single(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 2)), rng.random((3, 2))
    np.savez(tmp_path / "one.npz", data=a)
    np.savez_compressed(tmp_path / "two.npz", y=b, x=a)
    np.savez(tmp_path / "many.npz", a=a, b=b)
    assert torch.allclose(load_array(tmp_path / "one.npz"), torch.from_numpy(a).float())
    assert torch.allclose(load_array(tmp_path / "two.npz"), torch.from_numpy(a).float())
    with pytest.raises(DataError, match=r"holds arrays \[a, b\].*named 'x'"):
        load_array(tmp_path / "many.npz")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_pickled_object_array_refused_and_never_run(tmp_path, suffix):
    marker = tmp_path / "code-ran"
    evil = np.array([Planted(marker), 1], dtype=object)
    path = tmp_path / f"evil{suffix}"
    if suffix == ".npy":
        np.save(path, evil, allow_pickle=True)
    else:
        np.savez(path, x=evil)
    # Sanity: the file really runs code when unpickled (numpy's opt-in path).
    if suffix == ".npy":
        np.load(path, allow_pickle=True)
    else:
        with np.load(path, allow_pickle=True) as npz:
            npz["x"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError, match="object array is a pickle.*refused"):
        load_array(path)
    assert not marker.exists()


def test_raw_pickle_named_npy_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(DataError, match="not a valid .npy file"):
        load_array(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.array(["a", "b"]), "non-numeric array of dtype <U1"),
        (np.array([1 + 2j]), "non-numeric"),
        (np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]), "non-numeric"),
        (np.zeros((0, 5)), "empty \\(0 examples\\)"),
        (np.zeros((3, 0)), "holds no values"),
        (np.float64(3.0), "single number"),
        (np.zeros((1, 1, 1, 1, 1)), "expected \\(N,\\), \\(N, D\\), \\(N, H, W\\)"),
        (np.array([1e300, 1.0]), "1 non-finite values"),
    ],
)
def test_bad_npy_contents(tmp_path, arr, match):
    path = tmp_path / "a.npy"
    np.save(path, arr)
    with pytest.raises(DataError, match=match) as e:
        load_array(path)
    assert str(e.value).startswith(str(path))


def test_nan_reports_count_and_first_index(tmp_path):
    arr = np.zeros((4, 3))
    arr[2, 1] = np.nan
    arr[3, 0] = np.inf
    np.save(tmp_path / "n.npy", arr)
    with pytest.raises(DataError, match=r"2 non-finite values .* first at index \(2, 1\)"):
        load_array(tmp_path / "n.npy")


def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_npy_truncated_trailing_and_absurd_header(tmp_path):
    good = _npy_bytes(np.arange(10.0))
    path = tmp_path / "t.npy"
    path.write_bytes(good[:-3])
    with pytest.raises(DataError, match="truncated"):
        load_array(path)
    path.write_bytes(good + b"xx")
    with pytest.raises(DataError, match="trailing bytes"):
        load_array(path)
    # A header claiming 10^15 float64 values in a tiny file: refused before any allocation.
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000,), }"
    header = header.ljust(118) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    start = time.perf_counter()
    with pytest.raises(DataError, match="needs 8000000000000000 \\(truncated\\)"):
        load_array(path)
    assert time.perf_counter() - start < 0.5


def test_npz_member_claiming_more_than_it_holds(tmp_path):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000,), }".ljust(118)
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", 119) + header.encode() + b"\n" + bytes(80)
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as zf:
        zf.writestr("x.npy", member)
    with pytest.raises(DataError, match=r"z.npz\[x\]: .*truncated"):
        load_array(tmp_path / "z.npz")


def test_not_a_zip(tmp_path):
    (tmp_path / "z.npz").write_bytes(b"hello")
    with pytest.raises(DataError, match="not a readable .npz archive"):
        load_array(tmp_path / "z.npz")


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope.npy'}: file not found"):
        load_array(tmp_path / "nope.npy")
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unsupported data file type '.parquet'"):
        load_array(tmp_path / "d.parquet")
    with pytest.raises(DataError, match="not a regular file"):
        load_array(tmp_path)


# --------------------------------------------------------------------------- .csv


def _csv(tmp_path, text: str, name="d.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_and_without_header(tmp_path):
    a = load_array(_csv(tmp_path, "1,2,3\n4,5,6\n"))
    b = load_array(_csv(tmp_path, "x,y,z\n1,2,3\n4, 5 ,6\n\n", "h.csv"))
    c = load_array(_csv(tmp_path, "\ufeffa\n1.5\n-2e3\n", "bom.csv"))
    expected = torch.tensor([[1.0, 2, 3], [4, 5, 6]])
    assert torch.equal(a, expected) and torch.equal(b, expected)
    assert torch.equal(c, torch.tensor([[1.5], [-2000.0]]))


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty file"),
        ("\n\n  \n", "empty file"),
        ("a,b,c\n", "a header but no data rows"),
        ("1,2\n3,abc\n", "non-numeric column 'col1' .*'abc'.* row 2"),
        ("1,2\n3\n", "ragged rows: row 2"),
        ("1,2\n3,nan\n", "missing value .* column 'col1', row 2"),
        ("1,inf\n3,4\n", "infinite value inf in column 'col1', row 1"),
    ],
)
def test_bad_csv(tmp_path, text, match):
    path = _csv(tmp_path, text)
    with pytest.raises(DataError, match=match) as e:
        load_array(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"1,2\n\xff\xfe,3\n")
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_array(path)


# --------------------------------------------------------------------------- fuzzing


def _check_load(path: Path) -> None:
    try:
        x = load_array(path, max_bytes=1 << 20)
    except DataError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    assert x.dtype in (torch.float32, torch.uint8) and x.ndim in (2, 4) and x.shape[0] > 0
    assert torch.isfinite(x).all()


@st.composite
def npy_like(draw):
    """Valid .npy bytes of a small array, then possibly damaged."""
    dtype = draw(st.sampled_from(["<f8", ">f4", "<i2", "|u1", "|b1", "<U2", "|O", "<c8"]))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    if dtype == "|O":
        arr = np.empty(shape, dtype=object)
        arr[...] = 1
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        data = buf.getvalue()
    else:
        arr = np.zeros(shape, dtype=dtype)
        data = _npy_bytes(arr)
    mutation = draw(st.sampled_from(["none", "cut", "append", "flip"]))
    if mutation == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif mutation == "append":
        data += draw(st.binary(min_size=1, max_size=16))
    elif mutation == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    return data


@st.composite
def npz_like(draw):
    """A small .npz (stored or deflated), then possibly damaged."""
    arr = np.arange(draw(st.integers(0, 6)), dtype=draw(st.sampled_from(["<f8", "|u1"])))
    buf = io.BytesIO()
    (np.savez_compressed if draw(st.booleans()) else np.savez)(buf, x=arr)
    data = buf.getvalue()
    i = draw(st.integers(0, len(data) - 1))
    mutation = draw(st.sampled_from(["none", "cut", "flip"]))
    if mutation == "cut":
        data = data[:i]
    elif mutation == "flip":
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    return data


_csv_text = st.lists(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.integers(-1000, 1000).map(str),
            st.text(max_size=4),
        ),
        min_size=1,
        max_size=4,
    ).map(",".join),
    max_size=5,
).map("\n".join)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_arrays")


def _fuzz_once(fuzz_dir, data: bytes, suffix: str) -> None:
    path = fuzz_dir / f"fuzz{suffix}"
    path.write_bytes(data)
    _check_load(path)


_FAST = settings(max_examples=200, deadline=None)
_SLOW = settings(max_examples=3000, deadline=None)
_bytes_for = st.one_of(
    st.tuples(st.binary(max_size=200), st.sampled_from([".npy", ".csv", ".npz"])),
    st.tuples(npy_like(), st.just(".npy")),
    st.tuples(npz_like(), st.just(".npz")),
    st.tuples(_csv_text.map(lambda t: t.encode("utf-8", "surrogatepass")), st.just(".csv")),
)


@_FAST
@given(_bytes_for)
def test_fuzz_load_array(fuzz_dir, case):
    _fuzz_once(fuzz_dir, *case)


@pytest.mark.slow
@_SLOW
@given(_bytes_for)
def test_fuzz_load_array_slow(fuzz_dir, case):
    _fuzz_once(fuzz_dir, *case)


# --------------------------------------------------------------------------- split_array


def test_split_array_partition_and_determinism():
    x = torch.arange(1000).float().unsqueeze(1)
    parts = {s: split_array(x, s, seed=3) for s in ("train", "valid", "test")}
    assert [len(p) for p in parts.values()] == [900, 50, 50]
    ids = torch.cat(list(parts.values())).squeeze(1).long()
    assert torch.equal(ids.sort().values, torch.arange(1000))  # each example exactly once
    for s, p in parts.items():
        assert torch.equal(p, split_array(x, s, seed=3))
        assert torch.all(p[1:, 0] > p[:-1, 0])  # original order kept within a split
    assert not torch.equal(parts["test"], split_array(x, "test", seed=4))
    # Not just the tail: the split is a random draw.
    assert parts["test"].max() - parts["test"].min() > 500


def test_split_array_small_and_invalid():
    x = torch.arange(3.0).unsqueeze(1)
    assert [len(split_array(x, s)) for s in ("train", "valid", "test")] == [1, 1, 1]
    with pytest.raises(DataError, match="2 examples are too few"):
        split_array(torch.zeros(2, 1), "train")
    with pytest.raises(InvalidArgumentError, match="fractions"):
        split_array(x, "train", fractions=(0.5, 0.5, 0.0))
    with pytest.raises(InvalidArgumentError, match="fractions"):
        split_array(x, "train", fractions=(0.5, 0.2, 0.2))
    with pytest.raises(InvalidArgumentError, match="split must be one of"):
        split_array(x, "val")


def test_load_array_split(tmp_path):
    np.save(tmp_path / "d.npy", np.random.default_rng(0).random((40, 3)))
    s = load_array_split(tmp_path / "d.npy", "valid", seed=1)
    assert len(s) == 2 and s.labels is None and s.split == "valid" and s.info is None
