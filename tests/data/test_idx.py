"""The IDX parser: round trips, every kind of corruption, and fuzzing."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab.data.idx import IDX_TYPES, gunzip_bounded, parse_idx, read_idx
from vaelab.errors import DataError

CODES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}


def make_idx(arr: np.ndarray, code: int) -> bytes:
    """An IDX file written by hand, independently of the parser: big-endian header and values."""
    big = arr.astype(np.dtype(CODES[code]).newbyteorder(">"))
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + big.tobytes()


def sample_array(code: int, shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(CODES[code])
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype) * 1e3
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2), (0, 28, 28)])
def test_round_trip_every_type(code, shape):
    arr = sample_array(code, shape)
    out = parse_idx(make_idx(arr, code))
    assert out.shape == shape
    assert out.dtype == np.dtype(CODES[code])  # native byte order
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable and out.flags.c_contiguous


def test_known_bytes_are_big_endian():
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + b"\x01\x02\xff\xfe"
    np.testing.assert_array_equal(parse_idx(data), np.array([0x0102, -2], dtype=np.int16))


def test_result_does_not_alias_input():
    data = bytearray(make_idx(np.arange(4, dtype=np.uint8), 0x08))
    out = parse_idx(data)
    data[-1] = 99
    assert out[-1] == 3


def test_all_type_codes_known():
    assert set(IDX_TYPES) == set(CODES)


GOOD = make_idx(np.arange(12, dtype=np.uint8).reshape(3, 4), 0x08)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "only 0 bytes"),
        (b"\x00\x00\x08", "only 3 bytes"),
        (b"\x01" + GOOD[1:], "not an IDX file"),
        (b"PK\x03\x04" + GOOD[4:], "not an IDX file"),
        (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown IDX type code 0x0a"),
        (GOOD[:2] + b"\xff" + GOOD[3:], "unknown IDX type code 0xff"),
        (GOOD[:3] + b"\x00", "claims 0 dimensions"),
        (GOOD[:3] + b"\x09" + b"\x00" * 36, "claims 9 dimensions"),
        (GOOD[:10], "truncated IDX header"),
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "trailing bytes"),
        (GOOD[:12], "truncated"),
    ],
)
def test_corruption_raises_data_error(data, match):
    with pytest.raises(DataError, match=match) as info:
        parse_idx(data, source="file.idx")
    message = str(info.value)
    assert message.startswith("file.idx: ") and "\n" not in message


def test_absurd_dims_fail_fast_without_allocating():
    # 16 bytes claiming 2^32-1 x 2^32-1 float64 values: ~147 exabytes.
    data = bytes([0, 0, 0x0E, 2]) + struct.pack(">II", 2**32 - 1, 2**32 - 1) + b"\x00" * 4
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(DataError, match=f"needs {(2**32 - 1) ** 2 * 8} .truncated"):
            parse_idx(data)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.1
    assert peak < 1 << 20


def test_read_idx_raw_and_gzip_detected_by_magic_not_name(tmp_path):
    arr = sample_array(0x0C, (4, 3), seed=1)
    raw = make_idx(arr, 0x0C)
    (tmp_path / "raw.gz").write_bytes(raw)  # misleading name: not compressed
    (tmp_path / "packed.idx").write_bytes(gzip.compress(raw))  # compressed, no .gz name
    np.testing.assert_array_equal(read_idx(tmp_path / "raw.gz"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed.idx"), arr)


def test_read_idx_multi_member_gzip(tmp_path):
    raw = make_idx(np.arange(100, dtype=np.uint8), 0x08)
    (tmp_path / "f").write_bytes(gzip.compress(raw[:50]) + gzip.compress(raw[50:]))
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), np.arange(100))


def test_read_idx_missing_file_names_path(tmp_path):
    path = tmp_path / "nope-idx1-ubyte.gz"
    with pytest.raises(DataError, match=f"{path}: IDX file not found"):
        read_idx(path)


def test_read_idx_folder(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        read_idx(tmp_path)


@pytest.mark.parametrize("cut", [5, 20, -9, -4, -1])
def test_truncated_gzip_names_file(tmp_path, cut):
    gz = gzip.compress(make_idx(sample_array(0x08, (50, 8)), 0x08))
    path = tmp_path / "cut.gz"
    path.write_bytes(gz[:cut])
    with pytest.raises(DataError, match=f"{path}: corrupt or truncated gzip"):
        read_idx(path)


def test_gzip_bad_crc_and_trailing_garbage(tmp_path):
    gz = bytearray(gzip.compress(make_idx(np.arange(10, dtype=np.uint8), 0x08)))
    gz[-8] ^= 0xFF  # CRC32 field
    (tmp_path / "crc.gz").write_bytes(bytes(gz))
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "crc.gz")
    good = gzip.compress(make_idx(np.arange(10, dtype=np.uint8), 0x08))
    (tmp_path / "tail.gz").write_bytes(good + b"garbage!")
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "tail.gz")


def test_gzip_bomb_stops_at_bound_with_bounded_memory(tmp_path):
    # 64 MiB of zeros behind a valid IDX header, compressed to ~64 KB.
    n = 64 * 2**20
    header = bytes([0, 0, 8, 1]) + struct.pack(">I", n)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(2**20)
    gz = comp.compress(header) + b"".join(comp.compress(zeros) for _ in range(64)) + comp.flush()
    path = tmp_path / "bomb.gz"
    path.write_bytes(gz)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=f"{path}: decompresses to more than 4194304 bytes"):
            read_idx(path, max_bytes=4 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    # With a sufficient bound the same file is fine (it is a genuine, if dull, IDX file).
    assert read_idx(path, max_bytes=n + 100).shape == (n,)


def test_raw_file_over_bound(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(make_idx(np.zeros(1000, np.uint8), 0x08))
    with pytest.raises(DataError, match="over the limit of 100 bytes"):
        read_idx(path, max_bytes=100)


def test_gunzip_bounded_exact_limit():
    data = b"x" * 1000
    assert gunzip_bounded(gzip.compress(data), max_bytes=1000) == data
    with pytest.raises(DataError):
        gunzip_bounded(gzip.compress(data), max_bytes=999)


def test_real_mnist_files(shared_mnist):
    images = read_idx(shared_mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared_mnist / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits


# ----------------------------------------------------------------------------- fuzzing


def _header_claims(data: bytes) -> tuple[np.dtype, tuple[int, ...]]:
    ndim = data[3]
    return IDX_TYPES[data[2]], struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])


@st.composite
def idx_like(draw):
    """Bytes shaped like IDX files: plausible or broken headers, payloads near the right size."""
    code = draw(st.sampled_from([*CODES, 0x00, 0x0A, 0xFF]))
    ndim = draw(st.integers(0, 10))
    dims = draw(
        st.lists(
            st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), min_size=ndim, max_size=ndim
        )
    )
    header = bytes([0, 0, code, ndim]) + struct.pack(f">{ndim}I", *dims)
    itemsize = np.dtype(CODES.get(code, "u1")).itemsize
    size = itemsize * int(np.prod(dims, dtype=object)) if dims else itemsize
    want = draw(st.sampled_from([size, size - 1, size + 1, 0])) if size < 4096 else 0
    payload = draw(st.binary(min_size=max(0, want), max_size=max(0, want)))
    data = header + payload
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return data if cut is None else data[:cut]


def _check_parse(data: bytes) -> None:
    try:
        arr = parse_idx(data)
    except DataError as e:
        assert "\n" not in str(e)
        return
    dtype, dims = _header_claims(data)
    assert arr.shape == dims
    assert arr.dtype == dtype.newbyteorder("=")
    assert arr.nbytes == len(data) - 4 - 4 * len(dims)


_FAST = settings(max_examples=200, deadline=None)
_SLOW = settings(max_examples=5000, deadline=None)


@_FAST
@given(st.one_of(st.binary(max_size=64), idx_like()))
def test_fuzz_parse_idx(data):
    _check_parse(data)


@pytest.mark.slow
@_SLOW
@given(st.one_of(st.binary(max_size=256), idx_like()))
def test_fuzz_parse_idx_slow(data):
    _check_parse(data)


def _check_read(tmp_dir, data: bytes, compress: bool, cut: int | None) -> None:
    blob = gzip.compress(data) if compress else data
    if cut is not None:
        blob = blob[: min(cut, len(blob))]
    path = tmp_dir / "fuzz.bin"
    path.write_bytes(blob)
    try:
        arr = read_idx(path, max_bytes=1 << 16)
    except DataError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert isinstance(arr, np.ndarray)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_idx")


@_FAST
@given(
    data=st.one_of(st.binary(max_size=64), idx_like()),
    compress=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 80)),
)
def test_fuzz_read_idx(fuzz_dir, data, compress, cut):
    _check_read(fuzz_dir, data, compress, cut)


@pytest.mark.slow
@_SLOW
@given(
    data=st.one_of(st.binary(max_size=256), idx_like()),
    compress=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 300)),
)
def test_fuzz_read_idx_slow(fuzz_dir, data, compress, cut):
    _check_read(fuzz_dir, data, compress, cut)
