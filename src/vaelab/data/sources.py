"""Where a run's examples come from: one small contract, one class per kind of source.

A *source* turns what the user named (``--dataset``) into raw splits: examples as stored
(uint8 images stay uint8, everything else float32) with their labels and row ids when it has
any. The data pipeline (:mod:`vaelab.data.pipeline`) then applies the preprocessing the run
records. A new kind of data is one more reader returning a
:class:`~vaelab.data.source.RawData` and one more line in :func:`open_source`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from vaelab.config import DataConfig
from vaelab.data.arrays import read_array, split_indices
from vaelab.data.builtin import Split, load_split
from vaelab.data.images import read_image_folder
from vaelab.data.registry import check_split, get_info
from vaelab.data.source import RawData
from vaelab.data.tables import TABLE_SUFFIXES, read_table
from vaelab.errors import DataError

ARRAY_SUFFIXES = (".npy", ".npz")
IN_MEMORY = "<tensors>"  # the dataset name of data handed over as tensors


class Source(Protocol):
    """What every source provides."""

    name: str
    kind: str  # "images" (C, H, W examples) or "table" (D features)
    notices: list[str]

    def split(self, split: str) -> Split:
        """``split`` ("train", "valid" or "test") as stored, with labels if the source has any."""
        ...

    def describe(self) -> dict:
        """How the data was read, as JSON: saved with the run beside the preprocessing."""
        ...


class BuiltinSource:
    """A registered dataset (verified IDX files, the standard fixed split)."""

    kind = "images"

    def __init__(self, name: str, data_dir: str | None = None):
        self.name, self.data_dir = name, data_dir
        self.notices: list[str] = []
        self._cache: dict = {}  # each file read once for every split in it (see load_split)

    def split(self, split: str) -> Split:
        return load_split(self.name, split, data_dir=self.data_dir, cache=self._cache)

    def describe(self) -> dict:
        return {"kind": "builtin", "name": self.name}


class FileSource:
    """A user's file or folder, read once by its reader and split 90/5/5 by a seeded
    permutation of its rows."""

    def __init__(self, path: str, cfg: DataConfig):
        self.name = str(path)
        self.path = Path(os.path.abspath(Path(path).expanduser()))
        self.seed = cfg.eval_seed
        self.raw = read_data(self.path, cfg)
        self.kind = "images" if self.raw.values.ndim == 4 else "table"
        self.notices = list(self.raw.notices)
        self._values = torch.from_numpy(self.raw.values)

    def split(self, split: str) -> Split:
        try:
            idx = split_indices(len(self.raw), split, seed=self.seed)
        except DataError as e:  # too few rows: say which file has them
            raise DataError(f"{self.path}: {e}") from None
        pick = idx.numpy()
        return Split(
            images=self._values[idx],
            labels=_labels(self.raw.labels, pick, self.raw.details.get("classes")),
            name=self.name,
            split=split,
            ids=None if self.raw.ids is None else self.raw.ids[pick],
            rows=pick if self.raw.rows is None else self.raw.rows[pick],  # rows of the file
        )

    @functools.cached_property
    def sha256(self) -> str:
        """The file's (or folder's) digest, read once: every report of the source and the
        check that a run's file is unchanged share it."""
        return file_sha256(self.path)

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "split": "90/5/5 seeded permutation",
            "split_seed": self.seed,
            **self.raw.describe(),
        }


class TensorSource:
    """Splits handed over in memory (the Python API and the benchmarks)."""

    name = IN_MEMORY

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.notices: list[str] = []
        first = next(iter(tensors.values()))
        self.kind = "images" if first.ndim == 4 else "table"

    def split(self, split: str) -> Split:
        check_split(split)
        if split not in self.tensors:
            raise DataError(f"no {split} split was given to the in-memory dataset")
        return Split(images=self.tensors[split], labels=None, name=IN_MEMORY, split=split)

    def describe(self) -> dict:
        return {"kind": "tensors"}


def _labels(labels: np.ndarray | None, pick: np.ndarray, classes: list[str] | None = None):
    """The picked rows' labels: an image folder's class names (not its codes, which are
    positions in the sorted names), a table's numbers as a tensor, or its text."""
    if labels is None:
        return None
    out = labels[pick]
    if classes:
        return np.asarray(classes)[out]
    return torch.from_numpy(out) if out.dtype.kind in "iu" else out


def file_sha256(path: Path) -> str:
    """The sha256 of a file, or of a folder: every regular file under it, in sorted order, each
    its relative path then its bytes (linked folders followed once each, as the reader does)."""
    h = hashlib.sha256()
    if not path.is_dir():
        _hash_into(h, path)
        return h.hexdigest()
    seen: set[str] = set()
    for root, dirs, files in os.walk(path, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            f = Path(root) / name
            if f.is_file():
                h.update(f.relative_to(path).as_posix().encode() + b"\0")
                _hash_into(h, f)
    return h.hexdigest()


def _hash_into(h, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)


def read_data(path: Path, cfg: DataConfig, every_row: bool = False) -> RawData:
    """A user's file or folder read by its reader, with the run's column and image choices
    (``every_row``: new rows to answer, see :func:`~vaelab.data.tables.read_table`)."""
    if path.is_dir():
        return read_image_folder(path, image_size=cfg.image_size)
    suffix = path.suffix.lower()
    table = (
        cfg.columns is not None
        or cfg.label_column is not None
        or cfg.id_column is not None
        or cfg.drop_missing
    )
    header = {"auto": None, "yes": True, "no": False}[cfg.header]
    if suffix in TABLE_SUFFIXES:
        if header is not None and suffix in (".parquet", ".pq"):
            if not every_row:
                raise DataError(
                    f"{path}: --header applies to text tables; a Parquet file's column names "
                    "are in its schema"
                )
            header = None  # new rows for a run that read a text table: its choice is for those
        return read_table(
            path,
            cfg.columns,
            cfg.label_column,
            cfg.drop_missing,
            header=header,
            every_row=every_row,
            id_column=cfg.id_column,
        )
    if table or header is not None:
        raise DataError(
            f"{path}: --columns, --label-column, --id-column, --drop-missing and --header apply "
            f"to tables ({', '.join(TABLE_SUFFIXES)}), not to {suffix or 'this file'}"
        )
    if suffix not in ARRAY_SUFFIXES and path.is_file():
        raise DataError(
            f"{path}: unsupported data file type {suffix or '(no suffix)'!r} (use "
            f"{', '.join((*ARRAY_SUFFIXES, *TABLE_SUFFIXES))}, or a folder of PNG/JPEG/BMP images)"
        )
    return read_array(path)


def is_data_path(dataset: str) -> bool:
    """Whether ``dataset`` names a file or folder of the user's rather than a built-in set."""
    p = Path(dataset).expanduser()
    return p.suffix.lower() in (*ARRAY_SUFFIXES, *TABLE_SUFFIXES) or p.is_dir() or p.exists()


def absolute_dataset(dataset: str) -> str:
    """A user's file as an absolute path (a run must work from any folder); names as given."""
    # absolute, not resolved: a symlink keeps the name the user gave
    return os.path.abspath(Path(dataset).expanduser()) if is_data_path(dataset) else dataset


def open_source(cfg: DataConfig, tensors=None) -> BuiltinSource | FileSource | TensorSource:
    """The source ``cfg.dataset`` names: a registered name, a file or folder, or tensors."""
    if tensors is not None:
        return TensorSource(tensors)
    if cfg.dataset == IN_MEMORY:
        raise DataError("this run was trained on tensors in memory; pass the data again")
    if is_data_path(cfg.dataset):
        return FileSource(cfg.dataset, cfg)
    return BuiltinSource(get_info(cfg.dataset).name, cfg.data_dir)  # unknown: lists the names
