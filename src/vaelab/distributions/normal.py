"""Diagonal Gaussians: the posterior family, the prior, and the one safe scale map.

Scale parameterization. Networks output an unconstrained ``raw`` value and the standard
deviation is ``softplus(raw) + min_scale``. Compared with the common ``exp(0.5 * logvar)``:

* it cannot overflow: softplus grows linearly, so a large ``raw`` (an unlucky step, a big
  learning rate) gives a large but finite scale instead of ``inf``;
* it cannot collapse: the scale is at least ``min_scale``, so ``log_prob`` and the KL stay
  finite even when the network drives ``raw`` to -inf;
* its gradient is a sigmoid, bounded in (0, 1), so one bad step cannot explode through it.

``positive_scale`` is the inverse-free forward map; ``inverse_positive_scale`` recovers ``raw``
from a scale (used to initialise a raw parameter at a chosen scale).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal

from vaelab.errors import InvalidArgumentError
from vaelab.rng import standard_normal

DEFAULT_MIN_SCALE = 1e-4


def positive_scale(raw: torch.Tensor, min_scale: float = DEFAULT_MIN_SCALE) -> torch.Tensor:
    """Map an unconstrained tensor to a standard deviation ``softplus(raw) + min_scale``."""
    return nn.functional.softplus(raw) + min_scale


def inverse_positive_scale(scale, min_scale: float = DEFAULT_MIN_SCALE):
    """The ``raw`` with ``positive_scale(raw, min_scale) == scale``: a float or a tensor."""
    if isinstance(scale, torch.Tensor):
        y = (scale - min_scale).clamp_min(torch.finfo(scale.dtype).tiny)
        return y + torch.log(-torch.expm1(-y))
    if not scale > min_scale:
        raise InvalidArgumentError(f"scale must be > min_scale={min_scale}, got {scale}")
    y = scale - min_scale
    # softplus^{-1}(y) = log(expm1(y)), written to stay finite for large y.
    return y + math.log(-math.expm1(-y))


class _Normal(Normal):
    """torch's ``Normal`` whose reparameterized draws come from :func:`vaelab.rng.standard_normal`.

    In one process that is torch's own draw, number for number; under data parallelism it is
    this rank's rows of the whole batch's draw (see :mod:`vaelab.rng`).
    """

    def rsample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        return self.loc + standard_normal(shape, self.loc.dtype, self.loc.device) * self.scale


def diagonal_normal(loc: torch.Tensor, scale: torch.Tensor, event_dims: int = 1) -> Independent:
    """``N(loc, diag scale^2)`` whose last ``event_dims`` dimensions form one event."""
    return Independent(_Normal(loc, scale, validate_args=False), event_dims, validate_args=False)


class GaussianPrior(nn.Module):
    """The prior ``p(z) = N(0, std^2 I)`` over ``latent_dim`` dimensions.

    ``std`` is a setting (default 1). With ``learnable=True`` its logarithm is a parameter
    (one scalar shared by all dimensions).
    """

    def __init__(self, latent_dim: int, std: float = 1.0, learnable: bool = False):
        super().__init__()
        if latent_dim < 1:
            raise InvalidArgumentError(f"latent_dim must be >= 1, got {latent_dim}")
        if not (std > 0 and math.isfinite(std)):
            raise InvalidArgumentError(f"prior std must be a positive finite number, got {std}")
        self.latent_dim = latent_dim
        self.fixed_std = None if learnable else float(std)
        # The mean is a buffer so that the prior follows the module's dtype and device.
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        if learnable:
            self.log_std = nn.Parameter(torch.tensor(math.log(std)))

    @property
    def std(self) -> torch.Tensor:
        if self.fixed_std is None:
            return self.log_std.exp()
        # Built from the Python float each time: exact in float64 as well as float32.
        return torch.tensor(self.fixed_std, dtype=self.loc.dtype, device=self.loc.device)

    def forward(self) -> Independent:
        return diagonal_normal(self.loc, self.std.expand(self.latent_dim))
