"""RawData's record of a read, and the channels-last rule for image arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vaelab.data.source import MAX_LISTED_LABELS, RawData, to_channels_first


@pytest.mark.parametrize(
    "shape",
    [(2, 28, 28, 1), (2, 32, 32, 3), (2, 5, 5, 4), (1, 64, 48, 3)],
)
def test_channels_last_is_transposed_with_a_notice(shape):
    arr = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    out, notice = to_channels_first(arr)
    n, h, w, c = shape
    assert out.shape == (n, c, h, w) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr.transpose(0, 3, 1, 2))
    assert notice == (
        f"read the {n}×{h}×{w}×{c} array as channels-last (N, H, W, C) images and transposed "
        f"it to (N, C, H, W) = {n}×{c}×{h}×{w}"
    )


@pytest.mark.parametrize(
    "shape",
    [
        (2, 1, 28, 28),  # channels-first grey
        (2, 3, 32, 32),  # channels-first RGB
        (2, 3, 28, 3),  # ambiguous: channels-last would be a 3x28 image (sides must be > 4)
        (2, 4, 4, 3),  # both sides too small for channels-last
        (2, 28, 4, 3),  # one side too small
        (2, 28, 28, 2),  # 2 is not a channel count
        (2, 5, 5, 5),  # neither axis is a channel count: not an image layout we change
        (2, 28, 28),  # 3-d: (N, H, W), the caller adds the channel
        (2, 10),  # a table
    ],
)
def test_other_shapes_are_left_alone(shape):
    arr = np.zeros(shape, dtype=np.float32)
    out, notice = to_channels_first(arr)
    assert out is arr and notice is None


def test_describe_is_json_and_lists_labels():
    raw = RawData(
        values=np.zeros((3, 2), dtype=np.float32),
        labels=np.array(["b", "a", "b"]),
        columns=["x", "y"],
        label_name="lab",
        ids=None,
        notices=["something"],
        kind="table",
        file="t.csv",
        details={"format": "csv"},
    )
    d = json.loads(json.dumps(raw.describe()))
    assert d == {
        "kind": "table",
        "file": "t.csv",
        "shape": [3, 2],
        "dtype": "float32",
        "columns": ["x", "y"],
        "label_name": "lab",
        "labels": {"dtype": "str", "n_distinct": 2, "values": ["a", "b"]},
        "has_ids": False,
        "notices": ["something"],
        "format": "csv",
    }


def test_describe_does_not_copy_a_continuous_label():
    n = MAX_LISTED_LABELS + 1
    raw = RawData(np.zeros((n, 1)), np.arange(n), None, "y", None)
    assert raw.describe()["labels"] == {"dtype": "int64", "n_distinct": n, "values": None}


def test_inconsistent_parts_are_a_bug():
    with pytest.raises(AssertionError, match="labels has shape"):
        RawData(np.zeros((3, 2)), np.zeros(2), None, None, None)
    with pytest.raises(AssertionError, match="column names"):
        RawData(np.zeros((3, 2)), None, ["a"], None, None)
    with pytest.raises(AssertionError, match="values must be"):
        RawData(np.zeros(3), None, None, None, None)
