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
from vaelab.memory import require_memory


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


def _naming(e: OSError, path: Path) -> OSError:
    """The same error, naming the file the caller asked for instead of the temporary file."""
    return OSError(e.errno, e.strerror or str(e), str(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed
    over ``path``. On any error (a full disk included) the temporary file is removed and the
    previous ``path`` is untouched; an :class:`OSError` names ``path`` itself, the file the
    user knows, never the temporary one.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from None
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would have.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _naming(e, path) from None
        raise
    fsync_dir(path.parent)
    return path


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN and ±inf replaced by None: they are not JSON, null is."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps_json(obj: Any, **kwargs) -> str:
    """Strict JSON text of ``obj`` (non-finite numbers as null, see :func:`json_safe`)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (dumps_json(obj, indent=2, sort_keys=True) + "\n").encode())


MAX_JSON_BYTES = 64 * 2**20  # a run's JSON files are kilobytes; a crafted one is refused


def read_json(
    path: str | os.PathLike, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES
) -> Any:
    """Parse a JSON file, turning a missing, oversized, non-regular or malformed file into one
    clear error."""
    path = Path(path)
    raw = read_regular(path, what, max_bytes=max_bytes)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: cannot read {what}: not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: {what} is nested too deeply; tampered") from None


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


def _parse_safetensors(f, size: int, path: Path) -> tuple[bytes, dict[str, str]]:
    """The whole file as bytes and its metadata, if ``f`` (``size`` bytes) is safetensors.

    Reads the 8-byte length and the header first and checks them; the file is read whole, in
    one allocation of its own size, only once the header has been found to describe exactly
    the bytes the file holds and the memory for it (and the tensors made from it) is there.
    """
    if size < 8:
        raise _NotSafetensors(f"only {size} bytes")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > min(size - 8, _MAX_HEADER):
        raise _NotSafetensors(
            f"its header length {n} exceeds the file's {size} bytes; truncated or tampered"
        )
    try:
        header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise _NotSafetensors("its header is not valid JSON; tampered") from None
    metadata = _check_header(header, size - 8 - n)
    require_memory(2 * size, f"{path}: loading these weights")  # the bytes, then the tensors
    f.seek(0)
    data = f.read(size)
    if len(data) != size:
        raise _NotSafetensors("the file shrank while it was read")
    return data, metadata


def _looks_like(head: bytes) -> str | None:
    """What a file that failed to parse as safetensors appears to be, from its first bytes."""
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle"  # the PROTO opcode of pickle protocols 2-5
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save output, which holds a pickle)"
    return None


def open_regular(path: Path, what: str, error: type[Exception] = CheckpointError):
    """Open ``path`` for reading if it is a regular file (FIFOs and devices are refused before
    they are opened, so nothing blocks or streams forever); return (file, size).

    Problems are ``error`` (a :class:`CheckpointError` for a run's files, a data or config
    error for the user's) naming ``path``.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, not a regular file (expected a {what})")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: {what} is not a regular file (a FIFO, device or socket)")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):  # replaced between stat and open
        f.close()
        raise error(f"{path}: {what} is not a regular file")
    return f, st.st_size


def read_regular(
    path: str | os.PathLike, what: str, *, max_bytes: int, error: type[Exception] = CheckpointError
) -> bytes:
    """The bytes of a regular file, read in one allocation of the file's own size.

    A FIFO, device or folder is refused before it is opened; a file over ``max_bytes`` or
    larger than the memory available is refused before anything is allocated.
    """
    path = Path(path)
    f, size = open_regular(path, what, error)
    with f:
        if size > max_bytes:
            raise error(f"{path}: {what} is {size} bytes, over the limit of {max_bytes} bytes")
        require_memory(size, f"{path}: reading this {what}")
        try:
            data = f.read(size)
            grew = f.read(1)
        except OSError as e:
            raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if len(data) != size or grew:
        raise error(f"{path}: {what} changed size while it was read")
    return data


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
            data, metadata = _parse_safetensors(f, size, path)
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
