"""vaelab: variational auto-encoders with exact maths and honest numbers."""

from vaelab._version import __version__
from vaelab.evaluation import LogLikelihoodOutput, log_likelihood
from vaelab.inference import PosteriorFit, fit_posterior
from vaelab.models import VAE, DiscreteLatent, LinearGaussian, VAEConfig
from vaelab.objectives import ELBOOutput, elbo, iwae_bound

__all__ = [
    "VAE",
    "DiscreteLatent",
    "ELBOOutput",
    "LinearGaussian",
    "LogLikelihoodOutput",
    "PosteriorFit",
    "VAEConfig",
    "__version__",
    "elbo",
    "fit_posterior",
    "iwae_bound",
    "log_likelihood",
]
