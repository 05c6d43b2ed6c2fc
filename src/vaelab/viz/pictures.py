"""What a model learned, as images: samples, reconstructions, interpolations.

Samples and interpolations are decoded in chunks of at most :data:`CHUNK_VALUES` values, so
their memory is the output's own and does not otherwise grow with ``n`` or ``steps``; an
output that would not fit in memory is refused before anything is decoded.
"""

from __future__ import annotations

import math

import torch

from vaelab.errors import InvalidArgumentError, positive_int
from vaelab.evaluation.likelihood import LATENT_COPIES
from vaelab.memory import require_memory
from vaelab.rng import seeded

# Values a chunk holds per tensor (2**23 float32 are 32 MiB): a grid of a few hundred images
# is one chunk, and no -n or --steps makes a chunk larger.
CHUNK_VALUES = 2**23


def _chunk(model) -> int:
    """Images decoded at once: the latent draw, the decoder's outputs and the image, each."""
    per_image = (
        LATENT_COPIES * model.latent_dim + model.output_features + math.prod(model.data_shape)
    )
    return max(1, CHUNK_VALUES // per_image)


def _output(model, n: int, what: str) -> None:
    """Refuse ``n`` decoded images that would not fit in memory as float32."""
    shape = "×".join(map(str, model.data_shape))
    require_memory(4 * n * math.prod(model.data_shape), f"{what}: {n:,} images of {shape}")


def _decode_in_chunks(model, n: int, decode_rows) -> torch.Tensor:
    """``decode_rows(start, stop)`` for consecutive ranges of ``n`` rows, into one tensor."""
    step = _chunk(model)
    out = None
    for start in range(0, n, step):
        part = decode_rows(start, min(start + step, n))
        if out is None:
            out = part.new_empty((n, *part.shape[1:]))
        out[start : start + part.shape[0]] = part
    return out


@torch.no_grad()
def samples(model, n: int, seed: int = 0, mean: bool = True) -> torch.Tensor:
    """``n`` decoded prior samples ``(n, *data_shape)``: likelihood means, or draws."""
    positive_int("n", n)
    _output(model, n, "sampling")
    g = torch.Generator().manual_seed(seed)
    with seeded("cpu", seed):
        return _decode_in_chunks(model, n, lambda i, j: model.sample(j - i, mean=mean, generator=g))


def grid_width(n: int, most: int = 8) -> int:
    """Columns of a reconstruction grid for ``n`` examples: ``most``, or ``n`` when fewer (a
    handful of examples then fills one row of each kind, with no blank cells)."""
    return min(most, n)


@torch.no_grad()
def reconstructions(model, x: torch.Tensor, per_row: int = 8, blank: float = 1.0) -> torch.Tensor:
    """Originals and the decoded means of their posterior means, in rows of ``per_row``.

    Returns ``(2 · ceil(N / per_row) · per_row, *data_shape)`` ordered so that a grid of
    ``per_row`` columns shows each row of originals above the row of their reconstructions.
    The last row of each kind is filled out with ``blank`` cells (white, as the grid's padding)
    when ``per_row`` does not divide N: otherwise that row would run on into the next kind's
    and a grid's "original" / "reconstruction" row labels would name the wrong cells. Pass
    ``per_row=min(8, N)`` to have no blank cells for a handful of examples.
    """
    positive_int("per_row", per_row)
    recon = model.decode(model.encode(x).mean).mean.to(x.dtype)
    rows = []
    for i in range(0, x.shape[0], per_row):
        for part in (x[i : i + per_row], recon[i : i + per_row]):
            rows.append(part)
            if part.shape[0] < per_row:
                rows.append(part.new_full((per_row - part.shape[0], *part.shape[1:]), blank))
    return torch.cat(rows)


@torch.no_grad()
def interpolations(model, a: torch.Tensor, b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Decode straight lines between the posterior means of ``a[i]`` and ``b[i]``.

    Returns ``(N · steps, *data_shape)``: one row per pair, ``steps`` columns from ``a`` to ``b``.
    """
    positive_int("steps", steps)
    if steps < 2:
        raise InvalidArgumentError(f"steps must be >= 2, got {steps}")
    _output(model, a.shape[0] * steps, "interpolating")
    za, zb = model.encode(a).mean, model.encode(b).mean  # (N, L)

    def rows(i: int, j: int) -> torch.Tensor:  # rows i..j of the (N · steps) outputs
        idx = torch.arange(i, j, device=za.device)
        t = (idx % steps).to(za.dtype).div_(steps - 1).unsqueeze(1)  # (j - i, 1)
        pair = idx // steps
        return model.decode(za[pair] * (1 - t) + zb[pair] * t).mean  # (j - i, *data_shape)

    return _decode_in_chunks(model, a.shape[0] * steps, rows)
