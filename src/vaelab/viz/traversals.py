"""Latent traversals: what one latent dimension does to the decoded mean, the others held."""

from __future__ import annotations

import torch

from vaelab.errors import InvalidArgumentError, positive_int


@torch.no_grad()
def traversals(
    model, z0: torch.Tensor, dims: list[int], steps: int = 9, span: float = 3.0
) -> torch.Tensor:
    """Decoded means as each of ``dims`` sweeps ``[−span, span]`` prior standard deviations.

    ``z0 (E, L)`` holds the other coordinates (the posterior means of ``E`` examples). Returns
    ``(len(dims) · E · steps, *data_shape)``: for each dimension, ``E`` rows of ``steps`` images,
    the swept coordinate set to the same values in every row.
    """
    positive_int("steps", steps)
    if steps < 2:
        raise InvalidArgumentError(f"steps must be >= 2, got {steps}")
    if z0.ndim != 2:
        raise InvalidArgumentError(f"z0 must be (examples, latent_dim), got {tuple(z0.shape)}")
    latent = z0.shape[1]
    if any(not 0 <= d < latent for d in dims):
        raise InvalidArgumentError(f"dims must be in [0, {latent}), got {dims}")
    prior_std = float(getattr(model.config, "prior_std", 1.0))
    values = torch.linspace(-span, span, steps, dtype=z0.dtype, device=z0.device) * prior_std
    z = z0.repeat_interleave(steps, 0).repeat(len(dims), 1)  # (D · E · steps, L)
    rows = torch.arange(z.shape[0], device=z.device)
    swept = torch.tensor(dims, device=z.device).repeat_interleave(z0.shape[0] * steps)
    z[rows, swept] = values.repeat(len(dims) * z0.shape[0])
    return model.decode(z).mean
