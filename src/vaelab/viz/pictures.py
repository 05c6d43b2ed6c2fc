"""What a model learned, as images: samples, reconstructions, interpolations."""

from __future__ import annotations

import torch

from vaelab.errors import InvalidArgumentError, positive_int
from vaelab.rng import seeded


@torch.no_grad()
def samples(model, n: int, seed: int = 0, mean: bool = True) -> torch.Tensor:
    """``n`` decoded prior samples ``(n, *data_shape)``: likelihood means, or draws."""
    positive_int("n", n)
    g = torch.Generator().manual_seed(seed)
    with seeded("cpu", seed):
        return model.sample(n, mean=mean, generator=g)


@torch.no_grad()
def reconstructions(model, x: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """Originals and the decoded means of their posterior means, rows interleaved.

    Returns ``(2N, *data_shape)`` ordered so that a grid of ``per_row`` columns shows a row of
    originals above the row of their reconstructions.
    """
    positive_int("per_row", per_row)
    recon = model.decode(model.encode(x).mean).mean.to(x.dtype)
    rows = []
    for i in range(0, x.shape[0], per_row):
        rows += [x[i : i + per_row], recon[i : i + per_row]]
    return torch.cat(rows)


@torch.no_grad()
def interpolations(model, a: torch.Tensor, b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Decode straight lines between the posterior means of ``a[i]`` and ``b[i]``.

    Returns ``(N · steps, *data_shape)``: one row per pair, ``steps`` columns from ``a`` to ``b``.
    """
    positive_int("steps", steps)
    if steps < 2:
        raise InvalidArgumentError(f"steps must be >= 2, got {steps}")
    za, zb = model.encode(a).mean, model.encode(b).mean  # (N, L)
    t = torch.linspace(0, 1, steps, dtype=za.dtype, device=za.device).view(1, steps, 1)
    z = za.unsqueeze(1) * (1 - t) + zb.unsqueeze(1) * t  # (N, steps, L)
    out = model.decode(z).mean  # (N, steps, *data_shape)
    return out.reshape(-1, *out.shape[2:])
