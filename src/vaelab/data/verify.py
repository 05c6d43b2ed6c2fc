"""Checking a built-in dataset's file against the registry's sha256 before anything trusts it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from vaelab.data.idx import GZIP_MAGIC, gunzip_bounded, parse_idx, read_file_bounded
from vaelab.data.registry import DATASETS, DatasetInfo, RemoteFile
from vaelab.errors import DataError

MAX_IDX_BYTES = 512 * 2**20  # bound on a dataset file and on its decompressed content


def _sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _identify(content_sha256: str) -> str:
    """`` (it is the <dataset> <file>)`` when a registered file has this content, else ``""``."""
    for info in DATASETS.values():
        for rf in info.files.values():
            if rf.sha256 == content_sha256:
                return f" (it is the {info.name} file {rf.raw_name})"
    return ""


def verify_file_bytes(
    rf: RemoteFile,
    raw: bytes | bytearray,
    *,
    source: str,
    dataset: str,
    max_bytes: int = MAX_IDX_BYTES,
) -> bytes | bytearray:
    """Check a file's bytes against the registry and return its decompressed content.

    A .gz whose own sha256 is ``rf.gz_sha256`` is accepted as is. Otherwise the decompressed
    content (gzip is recognized by its magic bytes) must hash to ``rf.sha256``; when that is not
    published, only the canonical .gz can be verified and anything else is refused.
    """
    is_gz = bytes(raw[:2]) == GZIP_MAGIC
    if is_gz:
        gz_digest = _sha256(raw)
        if rf.gz_sha256 is not None and gz_digest == rf.gz_sha256:
            return gunzip_bounded(raw, max_bytes=max_bytes, source=source)
        content = gunzip_bounded(raw, max_bytes=max_bytes, source=source)
        if rf.sha256 is None:
            raise DataError(
                f"{source}: cannot verify {dataset} {rf.filename}: its sha256 is {gz_digest}, "
                f"not the canonical .gz's {rf.gz_sha256}, and only that .gz has a published "
                f"checksum{_identify(_sha256(content))}; replace it with the original "
                f"{rf.filename} from the dataset's site"
            )
    else:
        if rf.sha256 is None:
            raise DataError(
                f"{source}: cannot verify the uncompressed {dataset} file {rf.raw_name}: only the "
                f"canonical {rf.filename} has a published checksum (sha256 {rf.gz_sha256})"
                f"{_identify(_sha256(raw))}; put that original .gz file in its place"
            )
        content = raw
    digest = _sha256(content)
    if digest != rf.sha256:
        raise DataError(
            f"{source}: checksum mismatch for {dataset} {rf.raw_name}: expected sha256 "
            f"{rf.sha256} of the decompressed content, got {digest}{_identify(digest)}; the "
            "file is corrupt, truncated or of another dataset (delete it and download it again)"
        )
    return content


def load_verified(info: DatasetInfo, role: str, path: Path) -> np.ndarray:
    rf = info.files[role]
    what = f"{info.name} {role.replace('_', ' ')} file"
    raw = read_file_bounded(path, max_bytes=MAX_IDX_BYTES, what=what)
    content = verify_file_bytes(rf, raw, source=str(path), dataset=info.name)
    arr = parse_idx(content, source=str(path))
    n = info.count(role)
    if role.endswith("images"):
        hw = tuple(info.image_shape[1:])
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != hw or len(arr) != n:
            raise DataError(
                f"{path}: expected {n} uint8 images of {hw[0]}x{hw[1]}, "
                f"got {arr.dtype} of shape {arr.shape}"
            )
    else:
        if arr.dtype != np.uint8 or arr.shape != (n,):
            raise DataError(
                f"{path}: expected {n} uint8 labels, got {arr.dtype} of shape {arr.shape}"
            )
        if n and int(arr.max()) >= info.num_classes:
            raise DataError(
                f"{path}: label {int(arr.max())} out of range for {info.num_classes} classes"
            )
    return arr
