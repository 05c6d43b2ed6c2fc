"""Files that cannot run code: atomic writes, safetensors weights and JSON, checked on read.

Nothing here unpickles. A weights file is accepted when it *parses* as safetensors (a header
that describes exactly the bytes the file holds); only a file that fails the parse is described
("a Python pickle", "a zip archive from torch.save", "truncated") in the one-line refusal.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from vaelab.errors import CheckpointError


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed
    over ``path``. On any error (a full disk included) the temporary file is removed and the
    previous ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would have.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file, turning a missing or malformed file into one clear error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read {what}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({e})") from None


def save_tensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata=None
) -> Path:
    """Write tensors as safetensors, atomically. Tensors are copied to contiguous CPU memory."""
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    # safetensors 0.8 writes `{},"__metadata__":{}}` (not JSON) for no tensors and an empty
    # metadata mapping; an empty mapping and none mean the same, so pass none.
    return atomic_write_bytes(path, _st_save(plain, metadata=dict(metadata) if metadata else None))


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file's tensors; anything else is refused (see ``read_safetensors``)."""
    return read_safetensors(path)[0]


# A safetensors file is a little-endian u64 header length n, n bytes of JSON, then the tensors'
# bytes. The JSON names every tensor's dtype, shape and [begin, end) offsets into that data.
_MAX_HEADER = 100 * 2**20
_HEADER_KEYS = {"dtype", "shape", "data_offsets"}
# safetensors dtype names → bytes per element (the dtypes torch can hold).
_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


class _NotSafetensors(Exception):
    """The bytes do not parse as safetensors; the message says why, for the one-line error."""

    kind = "not a safetensors file"


class _CorruptHeader(_NotSafetensors):
    """A JSON header that breaks the format's rules (a damaged or tampered file)."""

    kind = "corrupt safetensors file"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(header, data_bytes: int) -> dict[str, str]:
    """Check a parsed header against the spec; return its string metadata.

    Every tensor entry must be ``{"dtype", "shape", "data_offsets"}`` with a known dtype,
    non-negative integer sizes and offsets whose length is the shape's byte size, and the
    entries sorted by offset must tile the ``data_bytes`` that follow the header exactly.
    """
    if not isinstance(header, dict):
        raise _CorruptHeader("its header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _CorruptHeader("its metadata is not a mapping of strings")
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != _HEADER_KEYS:
            raise _CorruptHeader(f"tensor {name!r} is not described by dtype, shape and offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
            raise _CorruptHeader(f"tensor {name!r} has an unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise _CorruptHeader(f"tensor {name!r} has an invalid shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise _CorruptHeader(f"tensor {name!r} has invalid data offsets")
        if offsets[1] - offsets[0] != math.prod(shape) * _ITEMSIZE[dtype]:
            raise _CorruptHeader(
                f"tensor {name!r} of shape {shape} ({dtype}) spans "
                f"{offsets[1] - offsets[0]} bytes, not {math.prod(shape) * _ITEMSIZE[dtype]}"
            )
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise _CorruptHeader(f"tensor {name!r} does not start where the one before it ends")
        end = stop
    if end != data_bytes:
        if end > data_bytes:
            raise _CorruptHeader(
                f"truncated: its header describes {end} bytes of tensor data, the file holds "
                f"{data_bytes}"
            )
        raise _CorruptHeader(f"{data_bytes - end} bytes after the last tensor")
    return metadata


def _parse_safetensors(f, size: int) -> tuple[bytes, dict[str, str]]:
    """The whole file as bytes and its metadata, if ``f`` (``size`` bytes) is safetensors.

    Reads the 8-byte length and the header first and checks them; the tensor data is read
    only once the header has been found to describe exactly the bytes the file holds.
    """
    if size < 8:
        raise _NotSafetensors(f"only {size} bytes")
    head = f.read(8)
    (n,) = struct.unpack("<Q", head)
    if n > min(size - 8, _MAX_HEADER):
        raise _NotSafetensors(
            f"its header length {n} exceeds the file's {size} bytes; truncated or tampered"
        )
    text = f.read(n)
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise _NotSafetensors("its header is not valid JSON; tampered") from None
    metadata = _check_header(header, size - 8 - n)
    rest = f.read(size - 8 - n)
    if len(rest) != size - 8 - n:
        raise _NotSafetensors("the file shrank while it was read")
    return head + text + rest, metadata


def _looks_like(head: bytes) -> str | None:
    """What a file that failed to parse as safetensors appears to be, from its first bytes."""
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle"  # the PROTO opcode of pickle protocols 2-5
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save output, which holds a pickle)"
    return None


def open_regular(path: Path, what: str):
    """Open ``path`` for reading if it is a regular file (FIFOs and devices are refused before
    they are opened, so nothing blocks or streams forever); return (file, size)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} not found") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: {what} is not a regular file")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    size = os.fstat(f.fileno()).st_size
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced between stat and open
        f.close()
        raise CheckpointError(f"{path}: {what} is not a regular file")
    return f, size


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file's tensors and its string metadata.

    The file is *parsed*, never sniffed: it is safetensors if its header length fits the
    file, its header is JSON naming known dtypes, valid shapes and offsets that tile the
    data exactly. Only a file that fails that parse is described in the error ("a Python
    pickle", "a zip archive from torch.save", "truncated", ...). Parsing never runs code.
    """
    path = Path(path)
    f, size = open_regular(path, "weights file")
    with f:
        try:
            data, metadata = _parse_safetensors(f, size)
        except _NotSafetensors as e:
            f.seek(0)
            unsafe = _looks_like(f.read(8))
            if unsafe:
                raise CheckpointError(
                    f"{path}: refusing to load {unsafe}; vaelab reads weights only as safetensors"
                ) from None
            raise CheckpointError(f"{path}: {e.kind} ({e})") from None
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read weights: {e.strerror or e}") from None
    try:
        return _st_load(data), metadata
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e})") from None
