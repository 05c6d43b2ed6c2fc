"""A user's own arrays: ``.npy`` and ``.npz`` files, read without unpickling, and the seeded
train/valid/test split of rows (``.csv`` goes to :mod:`vaelab.data.tables`)."""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from vaelab.data.builtin import Split
from vaelab.data.registry import check_split
from vaelab.data.source import RawData, to_channels_first
from vaelab.data.tables import read_table
from vaelab.errors import DataError, InvalidArgumentError
from vaelab.io import open_regular
from vaelab.memory import require_memory

MAX_ARRAY_BYTES = 4 * 2**30  # bound on a user's array file (and on one .npz member)


def _check_numeric_dtype(dtype: np.dtype, source: str) -> None:
    if dtype.hasobject:
        raise DataError(
            f"{source}: holds Python objects (an object array is a pickle, which can run code "
            "when loaded); refused: save plain numeric arrays"
        )
    if dtype.kind not in "biuf":
        raise DataError(
            f"{source}: non-numeric array of dtype {dtype} (expected integers, floats or bools)"
        )


def _npy_header(fp, source: str, available: int) -> tuple[tuple[int, ...], np.dtype]:
    """Read and check a .npy header from ``fp`` without reading (or allocating) the data.

    ``available`` is the file's total size: the data that follows the header must be exactly
    as long as the header says.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise DataError(f"{source}: unsupported .npy format version {version}")
    except DataError:
        raise
    except Exception as e:
        # numpy parses the (at most 10 kB) header text with ast/tokenize, whose errors on a
        # malformed header are ValueError, SyntaxError, tokenize.TokenError, ...: all mean
        # "not a .npy file". No data has been read or allocated yet.
        raise DataError(f"{source}: not a valid .npy file ({_first_line(e)})") from None
    _check_numeric_dtype(dtype, source)
    expected = math.prod(shape) * dtype.itemsize
    payload = available - fp.tell()
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes"
        raise DataError(
            f"{source}: .npy data is {payload} bytes but its header (shape {shape}, {dtype}) "
            f"needs {expected} ({what})"
        )
    return shape, dtype


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _read_checked_npy(fp, source: str, available: int) -> np.ndarray:
    """Check the .npy header at ``fp``'s position, then read the array from that same stream.

    Reading from the stream that was checked (never by name again) means the data loaded are
    the data whose header was checked; the array is allocated from the checked header only.
    """
    start = fp.tell()
    shape, dtype = _npy_header(fp, source, available)
    require_memory(math.prod(shape) * dtype.itemsize, f"{source}: loading this array")
    fp.seek(start)
    try:
        return np.lib.format.read_array(fp, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{source}: cannot load .npy ({_first_line(e)})") from None


def _load_npy(path: Path, max_bytes: int) -> np.ndarray:
    f, size = open_regular(path, ".npy file", DataError)
    with f:
        if size > max_bytes:
            raise DataError(f"{path}: {size} bytes, over the limit of {max_bytes} bytes")
        try:
            return _read_checked_npy(f, str(path), size)
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _npz_member(zf: zipfile.ZipFile, path: Path) -> tuple[str, zipfile.ZipInfo]:
    """The array vaelab reads from an archive: ``x.npy``, else the only ``.npy`` member.

    Members are matched by their full names: a member called plain ``x`` beside ``x.npy`` is
    not an array of the archive (numpy's own loader would read it for ``"x"``).
    """
    members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
    if "x" in members:
        return "x", members["x"]
    if len(members) == 1:
        return next(iter(members.items()))
    keys = ", ".join(sorted(members)) or "none"
    raise DataError(
        f"{path}: holds arrays [{keys}]; vaelab reads the array named 'x' or the only "
        "array of a file (np.savez(path, x=data))"
    )


def _load_npz(path: Path, max_bytes: int) -> np.ndarray:
    f, _ = open_regular(path, ".npz file", DataError)
    try:
        with f, zipfile.ZipFile(f) as zf:
            key, info = _npz_member(zf, path)
            if info.file_size > max_bytes:
                raise DataError(
                    f"{path}: array {key!r} is {info.file_size} bytes, over the limit of "
                    f"{max_bytes} bytes"
                )
            with zf.open(info) as member:  # exactly the member whose header is checked
                return _read_checked_npy(member, f"{path}[{key}]", info.file_size)
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({_first_line(e)})") from None
    except (NotImplementedError, RuntimeError) as e:  # zipfile: unsupported compression/encryption
        raise DataError(f"{path}: unsupported .npz archive ({_first_line(e)})") from None


def as_examples(arr: np.ndarray, path: Path | str) -> tuple[np.ndarray, list[str]]:
    """``arr`` as examples along axis 0: ``(N, D)`` or ``(N, C, H, W)``, and notices."""
    layouts = "(N,), (N, D), (N, H, W), (N, C, H, W) or (N, H, W, C)"
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: values must be numbers, got an array of {arr.dtype}")
    if arr.ndim == 0:
        raise DataError(f"{path}: holds a single number; expected {layouts}")
    if arr.ndim > 4:
        raise DataError(f"{path}: array of shape {arr.shape}; expected {layouts}")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: empty (0 examples)")
    if arr.size == 0:
        raise DataError(f"{path}: array of shape {arr.shape} holds no values")
    notices = []
    if arr.dtype == np.uint8:
        # 8-bit data stays 8-bit: the pipeline then binarizes it (Bernoulli) or dequantizes it
        # (Gaussian, with the bits/dim correction) exactly as it does the built-in images
        x = np.ascontiguousarray(arr)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.dtype.kind in "biu" and not np.array_equal(x, arr):
            raise DataError(f"{path}: {arr.dtype} values beyond 2**24 lose precision as float32")
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), x.shape))
        raise DataError(
            f"{path}: {int(bad.sum())} non-finite values (NaN, inf, or too large for float32); "
            f"the first at index {first}"
        )
    if x.ndim == 1:
        x = x.reshape(-1, 1)  # (N,) -> (N, 1): one feature per example
    elif x.ndim == 3:
        x = x.reshape(x.shape[0], 1, *x.shape[1:])  # (N, H, W) -> (N, 1, H, W)
    else:
        x, notice = to_channels_first(x)
        notices += [notice] if notice else []
    return x, notices


def read_array(path: str | os.PathLike, *, max_bytes: int = MAX_ARRAY_BYTES) -> RawData:
    """Read a user's ``.npy``/``.npz`` array (or a ``.csv`` table) as examples, as stored.

    ``.npz``: the array named ``x``, or the only array. ``(N,)`` is read as ``(N, 1)``,
    ``(N, H, W)`` as ``(N, 1, H, W)`` and channels-last ``(N, H, W, C)`` images are transposed
    to ``(N, C, H, W)`` with a notice (:func:`~vaelab.data.source.to_channels_first`). uint8
    stays uint8 (8-bit images); everything else becomes float32, the stored dtype kept in
    ``details``. Never unpickles: object arrays are refused before anything is deserialized.
    Missing, empty, non-numeric, non-finite or malformed data raises :class:`DataError`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_table(path)
    if suffix == ".npy":
        arr = _load_npy(path, max_bytes)
    elif suffix == ".npz":
        arr = _load_npz(path, max_bytes)
    else:
        raise DataError(
            f"{path}: unsupported data file type {suffix or '(no suffix)'!r} "
            "(use .npy, .npz or .csv, or a registered dataset name)"
        )
    x, notices = as_examples(arr, path)
    return RawData(
        values=x,
        labels=None,
        columns=None,
        label_name=None,
        ids=None,
        notices=notices,
        kind="images" if x.ndim == 4 else "array",
        file=str(path),
        details={"format": suffix[1:], "stored_dtype": str(arr.dtype)},
    )


def load_array(path: str | os.PathLike, *, max_bytes: int = MAX_ARRAY_BYTES) -> torch.Tensor:
    """:func:`read_array`'s values as a tensor: ``(N, D)`` or ``(N, C, H, W)``; uint8 stays
    uint8, everything else is float32."""
    return torch.from_numpy(read_array(path, max_bytes=max_bytes).values)


def split_indices(
    n: int, split: str, *, seed: int = 0, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
) -> torch.Tensor:
    """The rows of ``split`` in a seeded random train/valid/test partition of ``n`` rows.

    Deterministic in ``seed``; every row lands in exactly one split; the valid and test sizes
    are ``round(n * fraction)`` (at least 1) and train gets the rest. Rows keep their original
    order within a split. Raises DataError when a split would be empty.
    """
    check_split(split)
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or not all(math.isfinite(f) and f > 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise InvalidArgumentError(
            f"fractions must be three positive numbers summing to 1, got {tuple(fractions)}"
        )
    n_valid = max(1, round(n * fr[1]))
    n_test = max(1, round(n * fr[2]))
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise DataError(
            f"{n} example{'s are' if n != 1 else ' is'} too few to split into train/valid/test "
            f"with fractions {fr}: give at least 3"
        )
    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=generator)
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n - n_test, n)}
    lo, hi = bounds[split]
    return perm[lo:hi].sort().values


def split_array(
    x: torch.Tensor,
    split: str,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
) -> torch.Tensor:
    """The ``split`` part of a seeded random partition of ``x``'s rows (:func:`split_indices`)."""
    check_split(split)
    if not isinstance(x, torch.Tensor):
        raise InvalidArgumentError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise DataError("cannot split a 0-d tensor; expected examples along the first axis")
    idx = split_indices(int(x.shape[0]), split, seed=seed, fractions=fractions)
    return x[idx.to(x.device)]


def load_array_split(
    path: str | os.PathLike,
    split: str,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
) -> Split:
    """:func:`load_array` then :func:`split_array`, as a :class:`Split` with no labels."""
    check_split(split)
    x = split_array(load_array(path), split, seed=seed, fractions=fractions)
    return Split(images=x, labels=None, name=str(path), split=split, info=None)
