"""Reconstruction grids: every row is all originals or all their reconstructions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vaelab.errors import InvalidArgumentError
from vaelab.viz import make_grid
from vaelab.viz.pictures import reconstructions

BLANK = 1.0


class Shift:
    """A stand-in model whose reconstruction of image ``v`` is ``v + offset``: with originals
    ``10 + i`` and offset 100, each cell says whether it is an original (``10 + i``), the
    reconstruction of original i (``110 + i``) or blank."""

    def __init__(self, offset: float = 100.0):
        self.offset = offset

    def encode(self, x):
        return SimpleNamespace(mean=x)

    def decode(self, z):
        return SimpleNamespace(mean=z + self.offset)


def originals(n: int) -> torch.Tensor:
    return (10.0 + torch.arange(n, dtype=torch.float32)).view(n, 1, 1, 1).expand(n, 1, 2, 3)


def cells(rows: torch.Tensor, per_row: int) -> np.ndarray:
    """The value of each cell, laid out as a grid of ``per_row`` columns."""
    assert rows.shape[0] % per_row == 0  # whole rows only: nothing runs on into the next row
    values = rows.flatten(1)
    assert torch.all(values == values[:, :1])  # each cell is one value
    return values[:, 0].view(-1, per_row).numpy()


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, [[10, *[BLANK] * 7], [110, *[BLANK] * 7]]),
        (5, [[10, 11, 12, 13, 14, *[BLANK] * 3], [110, 111, 112, 113, 114, *[BLANK] * 3]]),
        (8, [list(range(10, 18)), list(range(110, 118))]),
        (
            12,
            [
                list(range(10, 18)),
                list(range(110, 118)),
                [18, 19, 20, 21, *[BLANK] * 4],
                [118, 119, 120, 121, *[BLANK] * 4],
            ],
        ),
    ],
)
def test_rows_alternate_originals_and_their_reconstructions(n, expected):
    grid = cells(reconstructions(Shift(), originals(n), per_row=8), 8)
    np.testing.assert_array_equal(grid, np.array(expected, dtype=np.float32))


@pytest.mark.parametrize("n", [1, 5, 8, 12])
def test_a_row_width_of_min_8_n_has_no_blank_cells_for_a_handful(n):
    width = min(8, n)
    grid = cells(reconstructions(Shift(), originals(n), per_row=width), width)
    assert (grid == BLANK).sum() == (0 if n <= 8 else 2 * (8 - n % 8))
    # originals on even rows, their reconstructions (the same cell + 100) on the odd row below
    np.testing.assert_array_equal(
        grid[1::2][grid[0::2] != BLANK], grid[0::2][grid[0::2] != BLANK] + 100
    )
    assert np.all(grid[0::2][grid[0::2] != BLANK] < 100)


def test_the_drawn_grid_puts_each_kind_in_its_own_row():
    """What a labelled picture shows: N = 5 drawn 8 to a row; one pixel per cell."""
    rows = reconstructions(Shift(100 / 255), originals(5) / 255, per_row=8)
    picture = make_grid(rows, nrow=8, padding=0)[::2, ::3]
    np.testing.assert_array_equal(
        picture, [[10, 11, 12, 13, 14, 255, 255, 255], [110, 111, 112, 113, 114, 255, 255, 255]]
    )


def test_per_row_must_be_positive():
    with pytest.raises(InvalidArgumentError, match="per_row"):
        reconstructions(Shift(), originals(3), per_row=0)
    assert reconstructions(Shift(), originals(3), per_row=1).shape[0] == 6
