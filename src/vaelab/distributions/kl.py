"""KL divergence: analytic where a closed form is registered, Monte Carlo otherwise.

torch registers the closed form for Normal/Normal pairs (any two scales, so a prior with
σ_p ≠ 1 is exact) and for ``Independent`` wrappers of them; ``kl_divergence`` uses it and falls
back to sampling for any other pair, e.g. a learned flow posterior against a mixture prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution
from torch.distributions import kl_divergence as _registered_kl

from vaelab.errors import InvalidArgumentError


@dataclass
class KLEstimate:
    """A Monte Carlo estimate of ``KL(q‖p)`` per example, with its standard error."""

    kl: torch.Tensor  # (B,)
    stderr: torch.Tensor  # (B,)
    n_samples: int


def kl_monte_carlo(q: Distribution, p: Distribution, n_samples: int) -> KLEstimate:
    """``KL(q‖p) ≈ (1/S) Σ_s [log q(z_s) − log p(z_s)]``, ``z_s ~ q`` (reparameterized if possible).

    Unbiased; the standard error is the sample standard deviation over ``sqrt(S)``.
    """
    if n_samples < 1:
        raise InvalidArgumentError(f"n_samples must be >= 1, got {n_samples}")
    z = q.rsample((n_samples,)) if q.has_rsample else q.sample((n_samples,))  # (S, B, D)
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (S, B)
    if n_samples > 1:
        stderr = log_ratio.std(0) / math.sqrt(n_samples)
    else:
        stderr = torch.full_like(log_ratio[0], float("nan"))
    return KLEstimate(log_ratio.mean(0), stderr, n_samples)


def kl_divergence(q: Distribution, p: Distribution, n_samples: int = 1) -> torch.Tensor:
    """``KL(q‖p)`` per example: the closed form if registered, else an ``n_samples`` MC estimate."""
    try:
        return _registered_kl(q, p)
    except NotImplementedError:
        return kl_monte_carlo(q, p, n_samples).kl
