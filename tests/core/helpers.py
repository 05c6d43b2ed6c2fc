"""Small builders shared by the core tests."""

import torch
from torch.distributions import MultivariateNormal

from vaelab import LinearGaussian
from vaelab.distributions import diagonal_normal


def random_linear_gaussian(d=6, l_=3, prior_std=1.0, seed=0) -> LinearGaussian:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, l_, generator=g, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    return LinearGaussian.from_parameters(w, b, noise_std=0.7, prior_std=prior_std)


def random_diag_q(b, l_, seed=1):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(b, l_, generator=g, dtype=torch.float64)
    scale = 0.2 + torch.rand(b, l_, generator=g, dtype=torch.float64)
    return diagonal_normal(loc, scale)


def as_mvn(q) -> MultivariateNormal:
    """A diagonal ``Independent(Normal)`` as a full-covariance MultivariateNormal."""
    return MultivariateNormal(q.base_dist.loc, scale_tril=torch.diag_embed(q.base_dist.scale))
