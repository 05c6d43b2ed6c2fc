"""Evaluation: the importance-sampled log-likelihood and the metrics built on it.

``likelihood`` is the estimator of ``log p(x)``; ``metrics`` computes every number for a model
on prepared data; ``evaluate`` does it for a run's model on a split of its data.
"""

from vaelab.evaluation.likelihood import LogLikelihoodOutput, log_likelihood

__all__ = ["LogLikelihoodOutput", "log_likelihood"]
