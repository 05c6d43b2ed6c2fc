"""Writing answers as files a user opens elsewhere: named columns as .csv, .parquet or .npy."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from vaelab.errors import InvalidArgumentError
from vaelab.io import atomic_write_bytes

TABLE_OUTPUTS = (".csv", ".parquet", ".npy")


def check_table_output(path: str | os.PathLike) -> Path:
    """``path`` if a table can be written there (a known suffix, an existing folder)."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_OUTPUTS:
        raise InvalidArgumentError(
            f"{path}: cannot write a table as {path.suffix or '(no suffix)'!r}; use "
            f"{', '.join(TABLE_OUTPUTS)}"
        )
    if not path.parent.is_dir():
        raise InvalidArgumentError(f"{path}: folder {path.parent} does not exist; create it first")
    return path


def write_table(
    path: str | os.PathLike,
    columns: dict[str, np.ndarray],
    keys: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write equal-length named columns, atomically, after the ``keys`` that say which row each
    is (ids, labels, positions). ``.npy`` holds the values only: ``columns`` as one float64
    ``(N, columns)`` array in the given order, without the keys (which need .csv/.parquet).
    """
    path = check_table_output(path)
    suffix = path.suffix.lower()
    buf = io.BytesIO()
    if suffix == ".npy":
        values = np.stack([np.asarray(v) for v in columns.values()], axis=1)
        np.save(buf, values.astype(np.float64), allow_pickle=False)
    else:
        both = {**(keys or {}), **columns}
        table = pa.table({name: pa.array(np.asarray(v)) for name, v in both.items()})
        if suffix == ".csv":
            pa_csv.write_csv(table, buf)
        else:
            pq.write_table(table, buf)
    return atomic_write_bytes(path, buf.getbuffer())
