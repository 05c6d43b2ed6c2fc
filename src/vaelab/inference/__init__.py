"""Non-amortized variational inference: fit q(z) per example with the model fixed."""

from vaelab.inference.fit import PosteriorFit, fit_posterior

__all__ = ["PosteriorFit", "fit_posterior"]
