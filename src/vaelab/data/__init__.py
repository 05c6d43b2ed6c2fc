"""Data: registered image datasets (verified IDX files, fixed splits), a user's own arrays,
and the transforms that make a likelihood honest (binarization, dequantization, bits/dim)."""

from vaelab.data.arrays import load_array, load_array_split, split_array
from vaelab.data.builtin import Split, dataset_status, load_split
from vaelab.data.download import fetch
from vaelab.data.idx import parse_idx, read_idx
from vaelab.data.registry import (
    DATASETS,
    EMBEDDED_DIR,
    ROLES,
    SPLITS,
    DatasetInfo,
    RemoteFile,
    data_home,
    get_info,
)
from vaelab.data.transforms import (
    LOG2_256_CORRECTION,
    binarize_dynamic,
    binarize_fixed,
    bits_per_dim,
    dequantize,
    is_binary,
    to_unit,
)
from vaelab.data.verify import verify_file_bytes

__all__ = [
    "DATASETS",
    "EMBEDDED_DIR",
    "LOG2_256_CORRECTION",
    "ROLES",
    "SPLITS",
    "DatasetInfo",
    "RemoteFile",
    "Split",
    "binarize_dynamic",
    "binarize_fixed",
    "bits_per_dim",
    "data_home",
    "dataset_status",
    "dequantize",
    "fetch",
    "get_info",
    "is_binary",
    "load_array",
    "load_array_split",
    "load_split",
    "parse_idx",
    "read_idx",
    "split_array",
    "to_unit",
    "verify_file_bytes",
]
