"""Image grids: many small images tiled into one picture, and saving them."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab.errors import InvalidArgumentError
from vaelab.io import atomic_write_bytes

__all__ = ["enlarge", "grid_png", "label_rows", "make_grid", "save_images"]

_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA
_CONVERT_CHUNK = 1024  # images turned into uint8 at once


def _as_nchw(images) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise InvalidArgumentError(
            f"images must be a tensor or array of shape (N, C, H, W), got {type(images).__name__}"
        )
    images = images.detach().cpu()
    if images.ndim == 3:  # (N, H, W): grey
        images = images.unsqueeze(1)
    if images.ndim != 4:
        raise InvalidArgumentError(
            f"images must have shape (N, C, H, W) or (N, H, W), got {tuple(images.shape)}"
        )
    n, c, h, w = images.shape
    if n == 0 or h == 0 or w == 0:
        raise InvalidArgumentError(f"no pixels to draw in images of shape {tuple(images.shape)}")
    if c not in _CHANNELS:
        raise InvalidArgumentError(f"images must have 1, 3 or 4 channels, got {c}")
    return images


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images
    if images.dtype == torch.bool:
        return images.to(torch.uint8) * 255
    if not images.is_floating_point():
        raise InvalidArgumentError(
            f"images must be uint8 (0..255) or floating point (0..1), got {images.dtype}"
        )
    x = torch.nan_to_num(images.to(torch.float32), nan=0.0).clamp_(0.0, 1.0)
    return (x * 255.0).round_().to(torch.uint8)


def make_grid(
    images: torch.Tensor,
    nrow: int | None = None,
    padding: int = 2,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images into one uint8 picture, ``nrow`` images per row.

    Floats are taken as intensities in [0, 1] (clamped; NaN drawn as 0), uint8 as 0..255.
    ``nrow`` defaults to ``ceil(sqrt(N))``; images fill rows left to right, the last row may be
    partial; ``padding`` pixels of ``pad_value`` (in [0, 1]) separate and surround them.
    Returns ``(height, width)`` for one channel, ``(height, width, C)`` otherwise.
    """
    x = _as_nchw(images)
    n, c, h, w = x.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise InvalidArgumentError(f"nrow must be a positive integer, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise InvalidArgumentError(f"padding must be a non-negative integer, got {padding!r}")
    if not 0.0 <= float(pad_value) <= 1.0:
        raise InvalidArgumentError(f"pad_value must be in [0, 1], got {pad_value!r}")
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    fill = round(float(pad_value) * 255)
    grid = np.full(
        (rows * (h + padding) + padding, cols * (w + padding) + padding, c), fill, dtype=np.uint8
    )
    # converted a chunk at a time: the float temporaries of a whole batch would be larger
    # than the grid itself
    for start in range(0, n, _CONVERT_CHUNK):
        tiles = _to_uint8(x[start : start + _CONVERT_CHUNK]).permute(0, 2, 3, 1).numpy()
        for i, tile in enumerate(tiles, start):  # tile: (H, W, C)
            r, col = divmod(i, cols)
            top, left = padding + r * (h + padding), padding + col * (w + padding)
            grid[top : top + h, left : left + w] = tile
    return grid[:, :, 0] if c == 1 else grid


def label_rows(grid: np.ndarray, labels: list[str], tile_height: int, padding: int) -> np.ndarray:
    """The grid with a white margin on its left naming each row of tiles (``labels`` cycles:
    ``["original", "reconstruction"]`` names alternate rows)."""
    from PIL import ImageDraw

    img = Image.fromarray(grid).convert("RGB")
    draw = ImageDraw.Draw(img)
    width = max(int(draw.textlength(text)) for text in labels) + 8
    out = Image.new("RGB", (img.width + width, img.height), "white")
    out.paste(img, (width, 0))
    draw = ImageDraw.Draw(out)
    rows = (grid.shape[0] - padding) // (tile_height + padding)
    for r in range(rows):
        middle = padding + r * (tile_height + padding) + tile_height // 2
        draw.text((4, middle), labels[r % len(labels)], fill="black", anchor="lm")
    return np.asarray(out)


def enlarge(picture: np.ndarray, min_width: int) -> np.ndarray:
    """Repeat every pixel (nearest neighbour) until the picture is at least ``min_width`` wide:
    a grid of 28×28 digits is otherwise too small to read."""
    factor = max(1, math.ceil(min_width / picture.shape[1]))
    return picture.repeat(factor, 0).repeat(factor, 1) if factor > 1 else picture


def grid_png(
    images: torch.Tensor,
    nrow: int | None = None,
    row_labels: list[str] | None = None,
    min_width: int = 256,
) -> bytes:
    """The :func:`make_grid` picture as PNG bytes, enlarged (nearest neighbour) to at least
    ``min_width`` pixels, with ``row_labels`` in a margin when given."""
    x = _as_nchw(images)
    grid = make_grid(x, nrow=nrow)
    factor = max(1, math.ceil(min_width / grid.shape[1]))
    grid = enlarge(grid, min_width)
    if row_labels:
        grid = label_rows(grid, row_labels, x.shape[2] * factor, 2 * factor)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    return buf.getvalue()


def save_images(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int | None = None,
    row_labels: list[str] | None = None,
    min_width: int = 256,
) -> Path:
    """Write images to ``path``, atomically, and return the path.

    ``.png``: the :func:`make_grid` picture, enlarged (nearest neighbour) to at least
    ``min_width`` pixels, with ``row_labels`` in a margin when given. ``.npy``: the images
    themselves, unscaled, as an ``(N, C, H, W)`` array (float32 for floating point input,
    uint8 for uint8), readable with ``np.load(path)``. The parent folder must exist.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise InvalidArgumentError(
            f"{path}: cannot save images as {suffix or '(no suffix)'!r}; use .png or .npy"
        )
    if not path.parent.is_dir():
        raise InvalidArgumentError(f"{path}: folder {path.parent} does not exist; create it first")
    buf = io.BytesIO()
    if suffix == ".png":
        buf.write(grid_png(images, nrow=nrow, row_labels=row_labels, min_width=min_width))
    else:
        x = _as_nchw(images)
        if x.dtype != torch.uint8:
            if not (x.is_floating_point() or x.dtype == torch.bool):
                raise InvalidArgumentError(f"images must be uint8 or floating point, got {x.dtype}")
            x = x.to(torch.float32)
        np.save(buf, x.numpy(), allow_pickle=False)
    return atomic_write_bytes(path, buf.getbuffer())  # the buffer itself, not a copy of it
