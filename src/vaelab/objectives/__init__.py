"""Variational objectives, per example: the ELBO (two forms), the IWAE bound."""

from vaelab.objectives.elbo import ELBOOutput, elbo, iwae_bound, log_weights

__all__ = ["ELBOOutput", "elbo", "iwae_bound", "log_weights"]
