"""Where a run's examples come from: one small contract, one class per kind of source.

A *source* turns what the user named (``--dataset``) into raw splits: examples as stored
(uint8 images stay uint8, everything else float32) with their labels when it has any. The data
pipeline (:mod:`vaelab.data.pipeline`) then applies the transforms the likelihood needs. A new
kind of data is one more class with ``split`` and ``describe``, and one more line in
:func:`open_source`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from vaelab.data.arrays import load_array, split_array
from vaelab.data.builtin import Split, load_split
from vaelab.data.registry import check_split, get_info
from vaelab.errors import DataError

ARRAY_SUFFIXES = (".npy", ".npz", ".csv")
IN_MEMORY = "<tensors>"  # the dataset name of data handed over as tensors


class Source(Protocol):
    """What every source provides."""

    name: str

    def split(self, split: str) -> Split:
        """``split`` ("train", "valid" or "test") as stored, with labels if the source has any."""
        ...

    def describe(self) -> dict:
        """How the data was read, as JSON: saved with the run beside the preprocessing."""
        ...


class BuiltinSource:
    """A registered dataset (verified IDX files, the standard fixed split)."""

    def __init__(self, name: str, data_dir: str | None = None):
        self.name, self.data_dir = name, data_dir

    def split(self, split: str) -> Split:
        return load_split(self.name, split, data_dir=self.data_dir)

    def describe(self) -> dict:
        return {"kind": "builtin", "name": self.name}


class ArraySource:
    """A user's ``.npy``/``.npz``/``.csv`` file, split 90/5/5 by a seeded permutation."""

    def __init__(self, path: str, seed: int = 0):
        self.name, self.seed = path, seed
        self._all: torch.Tensor | None = None

    def split(self, split: str) -> Split:
        check_split(split)
        if self._all is None:
            self._all = load_array(self.name)
        x = split_array(self._all, split, seed=self.seed)
        return Split(images=x, labels=None, name=self.name, split=split)

    def describe(self) -> dict:
        return {"kind": "array", "path": self.name, "split_seed": self.seed}


class TensorSource:
    """Splits handed over in memory (the Python API and the benchmarks)."""

    name = IN_MEMORY

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def split(self, split: str) -> Split:
        check_split(split)
        if split not in self.tensors:
            raise DataError(f"no {split} split was given to the in-memory dataset")
        return Split(images=self.tensors[split], labels=None, name=IN_MEMORY, split=split)

    def describe(self) -> dict:
        return {"kind": "tensors"}


def is_array_path(dataset: str) -> bool:
    return Path(dataset).suffix.lower() in ARRAY_SUFFIXES


def open_source(
    dataset: str, data_dir: str | None = None, seed: int = 0, tensors=None
) -> BuiltinSource | ArraySource | TensorSource:
    """The source ``dataset`` names: a registered name, a data file, or tensors in memory."""
    if tensors is not None:
        return TensorSource(tensors)
    if dataset == IN_MEMORY:
        raise DataError("this run was trained on tensors in memory; pass the data again")
    if is_array_path(dataset):
        return ArraySource(dataset, seed)
    return BuiltinSource(get_info(dataset).name, data_dir)  # unknown names: an error listing them
