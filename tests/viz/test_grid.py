"""Image grids and saving them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.errors import InvalidArgumentError
from vaelab.viz import make_grid, save_images
from vaelab.viz.grid import enlarge


def numbered(n, c=1, h=8, w=6) -> torch.Tensor:
    """Image i is filled with the value i (uint8), so each tile's position can be checked."""
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, c, h, w).clone()


def test_layout_default_nrow():
    grid = make_grid(numbered(5), padding=2, pad_value=1.0)
    # nrow = ceil(sqrt(5)) = 3 columns, 2 rows.
    assert grid.shape == (2 * (8 + 2) + 2, 3 * (6 + 2) + 2) and grid.dtype == np.uint8
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = 2 + r * 10, 2 + c * 8
        assert np.all(grid[top : top + 8, left : left + 6] == i)
    # Padding (and the empty sixth cell) is pad_value * 255.
    assert np.all(grid[:2] == 255) and np.all(grid[:, :2] == 255)
    assert np.all(grid[12:20, 18:24] == 255)


def test_nrow_padding_and_more_columns_than_images():
    grid = make_grid(numbered(3), nrow=10, padding=0)
    assert grid.shape == (8, 18)
    assert make_grid(numbered(4), nrow=1, padding=1, pad_value=0.0).shape == (4 * 9 + 1, 8)
    assert make_grid(numbered(4), nrow=1, padding=1, pad_value=0.0)[0, 0] == 0


def test_float_input_scaled_and_clamped():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0, float("nan")]).view(6, 1, 1, 1)
    grid = make_grid(x, nrow=6, padding=0)
    assert grid.tolist() == [[0, 0, 128, 255, 255, 0]]


def test_uint8_and_float_agree():
    x = torch.randint(0, 256, (7, 1, 5, 5), dtype=torch.uint8)
    assert np.array_equal(make_grid(x), make_grid(x.float() / 255))


def test_rgb_and_nhw():
    rgb = torch.rand(4, 3, 5, 5)
    g = make_grid(rgb, nrow=2)
    assert g.shape == (2 * 7 + 2, 2 * 7 + 2, 3)
    assert make_grid(torch.rand(4, 5, 5)).shape == (16, 16)


@pytest.mark.parametrize(
    "images, kwargs, match",
    [
        (torch.rand(0, 1, 4, 4), {}, "no pixels"),
        (torch.rand(2, 2, 4, 4), {}, "1, 3 or 4 channels"),
        (torch.rand(4, 4), {}, "shape"),
        (torch.rand(2, 1, 4, 4), {"nrow": 0}, "nrow"),
        (torch.rand(2, 1, 4, 4), {"padding": -1}, "padding"),
        (torch.rand(2, 1, 4, 4), {"pad_value": 2.0}, "pad_value"),
        (torch.zeros(2, 1, 4, 4, dtype=torch.int32), {}, "uint8"),
        ([[1.0]], {}, "tensor or array"),
    ],
)
def test_bad_arguments(images, kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        make_grid(images, **kwargs)


def test_save_png_readable(tmp_path):
    x = torch.rand(6, 1, 28, 28)
    out = save_images(x, tmp_path / "samples.png", nrow=3, min_width=1)  # not enlarged
    assert out == tmp_path / "samples.png"
    with Image.open(out) as img:
        assert img.format == "PNG" and img.mode == "L"
        assert img.size == (3 * 30 + 2, 2 * 30 + 2)  # (width, height)
        pixels = np.asarray(img)
    assert np.array_equal(pixels, make_grid(x, nrow=3))
    assert np.array_equal(pixels[2:30, 2:30], (x[0, 0] * 255).round().to(torch.uint8).numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.png"]  # no temp left


def test_small_grids_are_enlarged_by_repeating_pixels(tmp_path):
    x = torch.rand(6, 1, 28, 28)
    with Image.open(save_images(x, tmp_path / "s.png", nrow=3)) as img:
        pixels = np.asarray(img)
    grid = make_grid(x, nrow=3)  # 92 pixels wide: ×3 reaches 256
    assert pixels.shape == (3 * grid.shape[0], 3 * grid.shape[1])
    assert np.array_equal(pixels[::3, ::3], grid) and np.array_equal(pixels[2::3, 1::3], grid)
    wide = torch.rand(2, 1, 200, 200)  # already wider than 256: left as it is
    with Image.open(save_images(wide, tmp_path / "w.png", nrow=2)) as img:
        assert img.size == make_grid(wide, nrow=2).shape[::-1]


def test_row_labels_sit_in_a_margin_beside_the_tiles(tmp_path):
    x = torch.ones(16, 1, 28, 28)  # white tiles: only the labels draw dark pixels
    path = save_images(x, tmp_path / "r.png", nrow=8, row_labels=["original", "reconstruction"])
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("L"))
    plain = enlarge(make_grid(x, nrow=8), 256)
    margin = pixels.shape[1] - plain.shape[1]
    assert margin > 0 and pixels.shape[0] == plain.shape[0]
    assert np.array_equal(pixels[:, margin:], plain)  # the grid itself is untouched
    top, bottom = pixels[: plain.shape[0] // 2, :margin], pixels[plain.shape[0] // 2 :, :margin]
    assert (top < 128).any() and (bottom < 128).any()  # a label in each row's margin


def test_save_png_rgb(tmp_path):
    with Image.open(save_images(torch.rand(2, 3, 4, 4), tmp_path / "c.PNG")) as img:
        assert img.mode == "RGB"


def test_save_npy_round_trip(tmp_path):
    x = torch.rand(5, 1, 7, 7) * 1.5  # raw values, not clamped
    path = save_images(x, tmp_path / "samples.npy")
    back = np.load(path, allow_pickle=False)
    assert back.dtype == np.float32 and np.array_equal(back, x.numpy())
    u = torch.randint(0, 256, (2, 1, 3, 3), dtype=torch.uint8)
    assert np.array_equal(np.load(save_images(u, tmp_path / "u.npy")), u.numpy())


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "g.png"
    save_images(torch.zeros(1, 1, 4, 4), path)
    save_images(torch.ones(1, 1, 4, 4), path)
    with Image.open(path) as img:
        assert np.asarray(img)[3, 3] == 255
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_save_bad_suffix_and_missing_folder(tmp_path):
    with pytest.raises(
        InvalidArgumentError, match="cannot save images as '.jpg'; use .png or .npy"
    ):
        save_images(torch.rand(1, 1, 4, 4), tmp_path / "a.jpg")
    with pytest.raises(InvalidArgumentError, match="'\\(no suffix\\)'"):
        save_images(torch.rand(1, 1, 4, 4), tmp_path / "a")
    missing = tmp_path / "nope" / "a.png"
    with pytest.raises(InvalidArgumentError, match=f"folder {tmp_path / 'nope'} does not exist"):
        save_images(torch.rand(1, 1, 4, 4), missing)
