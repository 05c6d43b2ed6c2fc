"""Evaluation: importance-sampled log-likelihood and the metrics built on it."""

from vaelab.evaluation.likelihood import LogLikelihoodOutput, log_likelihood

__all__ = ["LogLikelihoodOutput", "log_likelihood"]
