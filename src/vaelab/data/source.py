"""What every data reader returns, and the one shape rule shared by image-like arrays.

A reader (:mod:`vaelab.data.tables`, :mod:`vaelab.data.images`, ...) turns a user's file into a
:class:`RawData`: the values *as stored* (integers stay integers; mapping them to a model's range
is a later, recorded step), optional labels and row ids, and one-line notices about every
decision the reader took for the user. :meth:`RawData.describe` is the JSON record of those
decisions, kept with a run so that new data can later be read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RawData", "first_line", "to_channels_first"]

# The channel counts an image array may have: grey, RGB, RGBA.
IMAGE_CHANNELS = (1, 3, 4)
# Distinct label values listed in describe(); beyond this only their number is kept (a
# continuous "label" would otherwise copy itself into every run's record).
MAX_LISTED_LABELS = 1000


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (or its type), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@dataclass
class RawData:
    """One file (or folder) of a user's data, read but not yet transformed.

    ``values`` is ``(N, D)`` float for tables, or ``(N, C, H, W)`` for images (uint8 as
    stored). ``labels`` is ``(N,)`` int64 or str, or None. ``columns`` names the D features of
    a table (None for images); ``label_name`` the column the labels came from. ``ids`` is
    ``(N,)`` row ids the file carried (a table's index column, an image's relative path), or
    None. ``rows`` is each value row's position in the file (0-based) where the reader dropped
    rows (``--drop-missing``), else None: row ``i`` is the file's row ``i``. ``notices`` are
    one-line messages about what the reader decided for the user.
    ``kind`` (``"table"`` or ``"images"``), ``file`` and ``details`` (the reader's own
    decisions) feed :meth:`describe`.
    """

    values: np.ndarray
    labels: np.ndarray | None
    columns: list[str] | None
    label_name: str | None
    ids: np.ndarray | None
    notices: list[str] = field(default_factory=list)
    kind: str = "array"
    file: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Readers build these; a mismatch is a bug in vaelab, not a user's mistake.
        n = self.values.shape[0]
        if self.values.ndim not in (2, 4):
            raise AssertionError(f"values must be (N, D) or (N, C, H, W), got {self.values.shape}")
        for name in ("labels", "ids", "rows"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise AssertionError(f"{name} has shape {arr.shape}, expected ({n},)")
        if self.columns is not None and len(self.columns) != self.values.shape[1]:
            raise AssertionError(f"{len(self.columns)} column names for {self.values.shape[1]}")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def describe(self) -> dict[str, Any]:
        """What was read and decided, as JSON-serializable data.

        Common keys: ``kind``, ``file``, ``shape``, ``dtype``, ``columns``, ``label_name``,
        ``labels`` (None, or ``{"dtype": "int64"|"str", "n_distinct": k, "values": [...]}``
        where ``values`` lists the sorted distinct labels when there are at most
        ``MAX_LISTED_LABELS``), ``has_ids`` and ``notices``; then the reader's own keys (see
        :func:`vaelab.data.tables.read_table` and
        :func:`vaelab.data.images.read_image_folder`).
        """
        labels = None
        if self.labels is not None:
            distinct = np.unique(self.labels)
            listed = distinct.tolist() if len(distinct) <= MAX_LISTED_LABELS else None
            labels = {
                "dtype": "str" if self.labels.dtype.kind == "U" else str(self.labels.dtype),
                "n_distinct": len(distinct),
                "values": listed,
            }
        return {
            "kind": self.kind,
            "file": self.file,
            "shape": list(self.values.shape),
            "dtype": str(self.values.dtype),
            "columns": None if self.columns is None else list(self.columns),
            "label_name": self.label_name,
            "labels": labels,
            "has_ids": self.ids is not None,
            "notices": list(self.notices),
            **self.details,
        }


def to_channels_first(arr: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``(N, H, W, C)`` images as ``(N, C, H, W)``, with a notice; anything else unchanged.

    The rule: a 4-d array is channels-last when its last axis has 1, 3 or 4 entries (grey,
    RGB, RGBA) and both other axes have more than 4. Then axis 1 cannot be a channel axis
    (those have at most 4 entries), so the reading is unambiguous. Every other 4-d array is
    taken as already ``(N, C, H, W)`` and returned as is, with no notice: in particular when
    axis 1 has 1, 3 or 4 entries (``(N, 3, 32, 32)``), and when both readings have a
    channel-sized axis but an image side of at most 4 (``(N, 3, 28, 3)`` is a 3-channel
    28×3 image, not a 3×28 RGB one, since a channels-last image must be larger than 4×4).
    Arrays of other ranks are returned unchanged. The transposed array is a C-contiguous
    copy, so it can become one tensor without a second copy.
    """
    if arr.ndim != 4:
        return arr, None
    n, h, w, c = arr.shape
    if c not in IMAGE_CHANNELS or h <= 4 or w <= 4:
        return arr, None
    out = np.ascontiguousarray(arr.transpose(0, 3, 1, 2))  # (N, C, H, W)
    notice = (
        f"read the {n}×{h}×{w}×{c} array as channels-last (N, H, W, C) images and transposed it "
        f"to (N, C, H, W) = {n}×{c}×{h}×{w}"
    )
    return out, notice
