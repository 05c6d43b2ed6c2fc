"""Observation models ``p(x|z)``: turn a decoder's output into a distribution over ``x``.

A likelihood module knows how many numbers the decoder must produce per data dimension
(``n_params``) and owns any parameters that do not depend on ``z`` (a learned noise scale).
Calling it on the decoder output gives an ``Independent`` distribution whose event is one
whole data point, so ``log_prob(x)`` is per example.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent
from torch.nn import functional as F

from vaelab.distributions.normal import (
    diagonal_normal,
    inverse_positive_scale,
    positive_scale,
)
from vaelab.errors import InvalidArgumentError

GAUSSIAN_VARIANCES = ("fixed", "scalar", "per_dim", "per_example")
# How many σ(|ℓ|) ∈ [½, 1) softplus_sum_ multiplies before one logarithm: their product is at
# least 2^-g, a normal float32 for g ≤ 126, and its rounding error grows with g.
SOFTPLUS_GROUP = 120


def _check_shape(data_shape) -> tuple[int, ...]:
    shape = tuple(int(s) for s in data_shape)
    if not shape or any(s < 1 for s in shape):
        raise InvalidArgumentError(f"data_shape must be non-empty positive sizes, got {shape}")
    return shape


@torch.no_grad()
def softplus_sum_(logits: torch.Tensor) -> torch.Tensor:
    """``Σ_d softplus(ℓ_d)`` over the last axis (the log-normalizer of independent Bernoulli
    pixels), overwriting ``logits``; no gradient.

    ``softplus(ℓ) = relu(ℓ) − log σ(|ℓ|)``, and the logarithms of ``σ(|ℓ|) ∈ [½, 1)`` are summed
    as the logarithm of their product over groups of up to :data:`SOFTPLUS_GROUP` values. That
    is one logarithm per group instead of a ``log1p(exp(·))`` per value, and torch's CPU
    sigmoid is its cheapest transcendental; it is about twice as fast as
    ``softplus(ℓ).sum(-1)`` and agrees with it to float32's rounding of the sum. It is the inner
    loop of the importance-sampled log-likelihood (``benchmarks/w2_loglik.py``).
    """
    d = logits.shape[-1]
    groups = -(-d // SOFTPLUS_GROUP)
    size = -(-d // groups)
    out = logits.clamp_min(0).sum(-1)
    factors = logits.abs_().sigmoid_()
    if groups * size != d:
        factors = F.pad(factors, (0, groups * size - d), value=1.0)  # σ = 1 adds nothing
    product = factors.view(*factors.shape[:-1], groups, size).prod(-1)
    return out.sub_(product.log_().sum(-1))


class Likelihood(nn.Module):
    """Base for observation models; subclasses set ``n_params`` and define ``forward``."""

    n_params: int = 1

    def __init__(self, data_shape):
        super().__init__()
        self.data_shape = _check_shape(data_shape)
        self.data_dim = math.prod(self.data_shape)

    @property
    def out_features(self) -> int:
        """How many numbers the decoder must output per example."""
        return self.n_params * self.data_dim

    def _split(self, out: torch.Tensor) -> list[torch.Tensor]:
        """Split a decoder output ``(*batch, n_params * D)`` into ``n_params`` data-shaped parts."""
        if out.shape[-1] != self.out_features:
            raise InvalidArgumentError(
                f"decoder output has {out.shape[-1]} features, the likelihood needs "
                f"{self.out_features}"
            )
        batch = out.shape[:-1]
        parts = out.reshape(*batch, self.n_params, *self.data_shape).unbind(len(batch))
        return list(parts)


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels parameterized by logits. Only for binary data."""

    n_params = 1

    def forward(self, out: torch.Tensor) -> Independent:
        (logits,) = self._split(out)
        return Independent(
            Bernoulli(logits=logits, validate_args=False),
            len(self.data_shape),
            validate_args=False,
        )


class GaussianLikelihood(Likelihood):
    """``N(mean(z), diag scale^2)`` with the scale fixed, learned or predicted.

    ``variance``:
      * ``"fixed"``: ``scale = std`` everywhere, not trained;
      * ``"scalar"``: one learned scale shared by all dimensions (``scale = σ``, ``Σ = σ² I``);
      * ``"per_dim"``: one learned scale per data dimension, shared by all examples;
      * ``"per_example"``: the decoder predicts a scale for every dimension of every example
        (heteroscedastic); it then outputs two numbers per dimension.

    Learned scales use the safe map ``softplus(raw) + min_scale`` (see ``normal.py``).
    """

    def __init__(
        self,
        data_shape,
        variance: str = "scalar",
        std: float = 1.0,
        min_scale: float = 1e-3,
    ):
        super().__init__(data_shape)
        if variance not in GAUSSIAN_VARIANCES:
            raise InvalidArgumentError(
                f"variance must be one of {GAUSSIAN_VARIANCES}, got {variance!r}"
            )
        if not (std > 0 and math.isfinite(std)):
            raise InvalidArgumentError(f"likelihood std must be positive and finite, got {std}")
        if not min_scale >= 0:
            raise InvalidArgumentError(f"min_scale must be >= 0, got {min_scale}")
        self.variance = variance
        self.min_scale = float(min_scale)
        self.n_params = 2 if variance == "per_example" else 1
        if variance == "fixed":
            self.register_buffer("scale_value", torch.tensor(float(std)))
        elif variance in ("scalar", "per_dim"):
            shape = () if variance == "scalar" else self.data_shape
            raw = inverse_positive_scale(std, self.min_scale)
            self.raw_scale = nn.Parameter(torch.full(shape, raw))

    def scale(self, raw: torch.Tensor | None = None) -> torch.Tensor:
        """The standard deviation (broadcastable to the data shape)."""
        if self.variance == "fixed":
            return self.scale_value
        if self.variance == "per_example":
            if raw is None:
                raise InvalidArgumentError("per_example variance needs the decoder's raw scale")
            return positive_scale(raw, self.min_scale)
        return positive_scale(self.raw_scale, self.min_scale)

    def forward(self, out: torch.Tensor) -> Independent:
        parts = self._split(out)
        mean = parts[0]
        scale = self.scale(parts[1] if self.variance == "per_example" else None)
        return diagonal_normal(mean, scale.expand_as(mean), len(self.data_shape))


def make_likelihood(kind: str, data_shape, **options) -> Likelihood:
    """Build a likelihood by name: ``"bernoulli"`` or ``"gaussian"`` (options go to it)."""
    if kind == "bernoulli":
        if options:
            raise InvalidArgumentError(
                f"the bernoulli likelihood takes no options, got {sorted(options)}"
            )
        return BernoulliLikelihood(data_shape)
    if kind == "gaussian":
        return GaussianLikelihood(data_shape, **options)
    raise InvalidArgumentError(f"likelihood must be 'bernoulli' or 'gaussian', got {kind!r}")
