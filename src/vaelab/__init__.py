"""vaelab: variational auto-encoders with exact maths and honest numbers."""

import os as _os

# torch's OpenMP workers (libgomp) spin for a long time before they sleep. When another process
# holds one of the cores, each parallel region then waits on a descheduled spinner: on 2 cores
# with one busy, training fell from ~16,000 to ~310 images/s. A short spin brings it back to
# ~11,000 and costs nothing we could measure when the cores are free. libgomp reads this when
# torch is first imported, so it only takes effect if vaelab is imported first (as the CLI
# does); a value the user has set wins.
_os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from vaelab._version import __version__
from vaelab.evaluation import LogLikelihoodOutput, log_likelihood
from vaelab.inference import PosteriorFit, fit_posterior
from vaelab.models import VAE, DiscreteLatent, LinearGaussian, VAEConfig
from vaelab.objectives import ELBOOutput, elbo, iwae_bound
from vaelab.use import Run, load_run

__all__ = [
    "VAE",
    "DiscreteLatent",
    "ELBOOutput",
    "LinearGaussian",
    "LogLikelihoodOutput",
    "PosteriorFit",
    "Run",
    "VAEConfig",
    "__version__",
    "elbo",
    "fit_posterior",
    "iwae_bound",
    "load_run",
    "log_likelihood",
]
