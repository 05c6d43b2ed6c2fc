"""The IDX file format of the MNIST family, parsed defensively.

Layout (Y. LeCun, http://yann.lecun.com/exdb/mnist/, section "FILE FORMATS"):

    byte 0-1   0x00 0x00
    byte 2     type code: 0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte 3     number of dimensions n
    4 .. 4n+3  n big-endian uint32 sizes
    then       the values in C order, multi-byte types big-endian

Every header field is checked against the payload *before* anything is allocated from it, so a
16-byte file that claims 2^32 x 2^32 values fails at once. gzip is recognized by its magic
bytes (1f 8b), never by the file name, and is decompressed under a size bound, so a gzip bomb is
an error rather than an exhausted machine.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib

import numpy as np

from vaelab.errors import DataError
from vaelab.io import read_regular

__all__ = ["IDX_TYPES", "MAX_NDIM", "gunzip_bounded", "parse_idx", "read_file_bounded", "read_idx"]

# type code -> big-endian dtype as stored in the file.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_NDIM = 8
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def parse_idx(data: bytes | bytearray | memoryview, *, source: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file held in memory into a native-byte-order array.

    The array is a fresh, writable copy (it does not alias ``data``). Raises :class:`DataError`
    naming ``source`` when the magic, the type code or the number of dimensions is invalid, or
    when the payload is not exactly as long as the header says (truncated or trailing bytes).
    """
    view = memoryview(data).cast("B")
    n = len(view)
    if n < 4:
        raise DataError(f"{source}: not an IDX file (only {n} bytes, a header needs at least 4)")
    if view[0] != 0 or view[1] != 0:
        raise DataError(
            f"{source}: not an IDX file (magic bytes {bytes(view[:4]).hex(' ')}, "
            "expected 00 00 08..0e NN)"
        )
    code, ndim = view[2], view[3]
    dtype = IDX_TYPES.get(code)
    if dtype is None:
        known = ", ".join(f"0x{c:02x}" for c in IDX_TYPES)
        raise DataError(f"{source}: unknown IDX type code 0x{code:02x} (known: {known})")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{source}: IDX header claims {ndim} dimensions (supported: 1..{MAX_NDIM})")
    header = 4 + 4 * ndim
    if n < header:
        raise DataError(
            f"{source}: truncated IDX header ({n} bytes; {ndim} dimensions need {header})"
        )
    dims = struct.unpack(f">{ndim}I", view[4:header])
    # Python integers: the product cannot overflow, and nothing is allocated from it.
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    payload = n - header
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes"
        raise DataError(
            f"{source}: IDX payload is {payload} bytes but the header "
            f"(dims {'x'.join(map(str, dims))}, {dtype.itemsize}-byte values) "
            f"needs {expected} ({what})"
        )
    # An empty array (a zero dim) may still claim other dims numpy cannot index.
    span = dtype.itemsize
    for d in dims:
        span *= max(d, 1)
    if span > np.iinfo(np.intp).max:
        raise DataError(f"{source}: IDX dims {'x'.join(map(str, dims))} are too large to index")
    arr = np.frombuffer(view, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def gunzip_bounded(
    raw: bytes | bytearray | memoryview, *, max_bytes: int, source: str = "<bytes>"
) -> bytearray:
    """Decompress gzip data (all members), refusing output longer than ``max_bytes``.

    Memory never exceeds ``max_bytes`` plus one chunk: the output is read a chunk at a time.
    A truncated stream, a bad CRC or garbage after the data raises :class:`DataError`.
    """
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") as f:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                out += chunk
                if len(out) > max_bytes:
                    raise DataError(
                        f"{source}: decompresses to more than {max_bytes} bytes "
                        "(a gzip bomb or the wrong file; raise max_bytes if it is genuine)"
                    )
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile is an OSError; a stream cut short is an EOFError.
        raise DataError(f"{source}: corrupt or truncated gzip data ({e})") from None
    return out


def read_file_bounded(path: str | os.PathLike, *, max_bytes: int, what: str = "file") -> bytes:
    """Read a whole regular file in one allocation of its size (:func:`vaelab.io.read_regular`):
    a missing, unreadable, oversized or non-regular file (a FIFO, a device) is a DataError."""
    return read_regular(path, what, max_bytes=max_bytes, error=DataError)


def read_idx(path: str | os.PathLike, *, max_bytes: int = 512 * 2**20) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (detected by its magic bytes, not its name).

    ``max_bytes`` bounds both the file and its decompressed content. Every failure, from a
    missing file to a corrupt header, is a one-line :class:`DataError` naming the path.
    """
    raw = read_file_bounded(path, max_bytes=max_bytes, what="IDX file")
    if raw[:2] == GZIP_MAGIC:
        content = gunzip_bounded(raw, max_bytes=max_bytes, source=str(path))
        return parse_idx(content, source=str(path))
    return parse_idx(raw, source=str(path))
