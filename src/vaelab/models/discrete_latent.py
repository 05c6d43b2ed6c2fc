"""A latent variable with finitely many values (a mixture model): exact by enumeration."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent

from vaelab.distributions import diagonal_normal, positive_scale
from vaelab.errors import InvalidArgumentError, excerpt
from vaelab.models.base import SavableModel


@dataclass
class DiscreteLatentConfig:
    n_components: int = 2
    data_dim: int = 2
    likelihood: str = "bernoulli"  # "bernoulli" or "gaussian"
    min_std: float = 1e-3

    def __post_init__(self):
        if self.n_components < 1:
            raise InvalidArgumentError(f"n_components must be >= 1, got {self.n_components}")
        if self.data_dim < 1:
            raise InvalidArgumentError(f"data_dim must be >= 1, got {self.data_dim}")
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise InvalidArgumentError(
                f"likelihood must be 'bernoulli' or 'gaussian', got {excerpt(self.likelihood)}"
            )


class DiscreteLatent(SavableModel):
    """``z ∈ {0..K−1}``, ``p(z) = π``, ``p(x|z)`` a product of Bernoullis or a diagonal Gaussian.

    With finitely many ``z``, ``log p(x) = logsumexp_z log p(x, z)`` and
    ``p(z|x) ∝ p(x, z)`` are exact sums, and ``elbo(..., n_samples=None)`` with a categorical
    ``q`` sums over every ``z`` too.
    """

    config_class = DiscreteLatentConfig

    def __init__(self, config: DiscreteLatentConfig | None = None, **kwargs):
        super().__init__()
        self.config = config if config is not None else DiscreteLatentConfig(**kwargs)
        k, d = self.config.n_components, self.config.data_dim
        self.n_components, self.data_dim = k, d
        self.mixing_logits = nn.Parameter(torch.zeros(k))
        # Bernoulli: logits; Gaussian: means. One row per component.
        self.component_params = nn.Parameter(torch.randn(k, d))
        if self.config.likelihood == "gaussian":
            self.component_raw_std = nn.Parameter(torch.zeros(k, d))

    @classmethod
    def random(
        cls,
        n_components: int,
        data_dim: int,
        likelihood: str = "bernoulli",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> DiscreteLatent:
        """A model with random mixing weights and components (for tests and examples)."""
        model = cls(DiscreteLatentConfig(n_components, data_dim, likelihood)).to(dtype)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=dtype))
        return model

    @property
    def prior(self) -> Categorical:
        return Categorical(logits=self.mixing_logits, validate_args=False)

    def _check_z(self, z: torch.Tensor) -> None:
        if z.dtype.is_floating_point:
            raise InvalidArgumentError(f"z must hold integer component indices, got {z.dtype}")

    def decode(self, z: torch.Tensor) -> Independent:
        """``p(x|z)`` for integer ``z`` of any shape; batch shape ``z.shape``."""
        self._check_z(z)
        params = self.component_params[z]  # (*z.shape, D)
        if self.config.likelihood == "bernoulli":
            return Independent(Bernoulli(logits=params, validate_args=False), 1)
        scale = positive_scale(self.component_raw_std[z], self.config.min_std)
        return diagonal_normal(params, scale)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(z) + self.decode(z).log_prob(x)

    def _all_log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x, z)`` for every z: shape ``(K, B)``."""
        if x.shape[-1] != self.data_dim:
            raise InvalidArgumentError(
                f"x must have {self.data_dim} features in its last axis, got {tuple(x.shape)}"
            )
        z = torch.arange(self.n_components, device=x.device).unsqueeze(-1)  # (K, 1)
        return self.log_joint(x, z)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x) = logsumexp_z log p(x, z)``, per example."""
        return torch.logsumexp(self._all_log_joint(x), 0)

    def posterior(self, x: torch.Tensor) -> Categorical:
        """Exact ``p(z|x)``, a categorical with batch shape ``(B,)``."""
        return Categorical(logits=self._all_log_joint(x).T, validate_args=False)
