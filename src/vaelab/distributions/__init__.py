"""Priors, posteriors and likelihoods as ``torch.distributions`` objects, and the KL."""

from vaelab.distributions.kl import KLEstimate, kl_divergence, kl_monte_carlo
from vaelab.distributions.likelihoods import (
    GAUSSIAN_VARIANCES,
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    make_likelihood,
)
from vaelab.distributions.normal import (
    DEFAULT_MIN_SCALE,
    GaussianPrior,
    diagonal_normal,
    positive_scale,
)

__all__ = [
    "DEFAULT_MIN_SCALE",
    "GAUSSIAN_VARIANCES",
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "GaussianPrior",
    "KLEstimate",
    "Likelihood",
    "diagonal_normal",
    "kl_divergence",
    "kl_monte_carlo",
    "make_likelihood",
    "positive_scale",
]
