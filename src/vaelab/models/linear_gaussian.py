"""The linear-Gaussian latent-variable model (probabilistic PCA), where everything is exact."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal

from vaelab.distributions import GaussianPrior, diagonal_normal
from vaelab.errors import InvalidArgumentError
from vaelab.models.base import SavableModel


@dataclass
class LinearGaussianConfig:
    data_dim: int = 2
    latent_dim: int = 1
    prior_std: float = 1.0

    def __post_init__(self):
        if self.latent_dim < 1:
            raise InvalidArgumentError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.data_dim < 1:
            raise InvalidArgumentError(f"data_dim must be >= 1, got {self.data_dim}")
        if not (self.prior_std > 0 and math.isfinite(self.prior_std)):
            raise InvalidArgumentError(f"prior_std must be positive, got {self.prior_std}")


class LinearGaussian(SavableModel):
    """``p(z) = N(0, σ_p² I_L)``, ``p(x|z) = N(W z + b, σ² I_D)``.

    The marginal ``p(x) = N(b, σ_p² W Wᵀ + σ² I)`` and the posterior
    ``p(z|x) = N(M⁻¹ Wᵀ (x − b) / σ², M⁻¹)`` with ``M = Wᵀ W / σ² + I / σ_p²`` are closed-form,
    which makes this model the reference every variational identity is tested against.
    """

    config_class = LinearGaussianConfig

    def __init__(self, config: LinearGaussianConfig | None = None, **kwargs):
        super().__init__()
        self.config = config if config is not None else LinearGaussianConfig(**kwargs)
        d, l_ = self.config.data_dim, self.config.latent_dim
        self.data_dim, self.latent_dim = d, l_
        self.weight = nn.Parameter(torch.randn(d, l_) / math.sqrt(l_))
        self.bias = nn.Parameter(torch.zeros(d))
        self.log_noise_std = nn.Parameter(torch.zeros(()))
        self.prior_module = GaussianPrior(l_, self.config.prior_std)

    @classmethod
    def from_parameters(
        cls,
        weight: torch.Tensor,
        bias: torch.Tensor,
        noise_std: float | torch.Tensor,
        prior_std: float = 1.0,
    ) -> LinearGaussian:
        """A model with the given ``W (D, L)``, ``b (D,)`` and noise scale ``σ``, in W's dtype."""
        if weight.ndim != 2:
            raise InvalidArgumentError(f"weight must be (D, L), got shape {tuple(weight.shape)}")
        d, l_ = weight.shape
        if tuple(bias.shape) != (d,):
            raise InvalidArgumentError(f"bias must have shape ({d},), got {tuple(bias.shape)}")
        noise_std = torch.as_tensor(noise_std, dtype=weight.dtype)
        if not (noise_std > 0 and torch.isfinite(noise_std)):
            raise InvalidArgumentError(f"noise_std must be positive, got {noise_std.item()}")
        model = cls(LinearGaussianConfig(data_dim=d, latent_dim=l_, prior_std=prior_std))
        model = model.to(weight.dtype)
        with torch.no_grad():
            model.weight.copy_(weight)
            model.bias.copy_(bias)
            model.log_noise_std.copy_(noise_std.log())
        return model

    @classmethod
    def fit_ppca(cls, x: torch.Tensor, latent_dim: int, prior_std: float = 1.0) -> LinearGaussian:
        """Closed-form maximum-likelihood probabilistic PCA (Tipping & Bishop 1999).

        With ``S`` the sample covariance (divided by N), eigenvalues ``λ_1 ≥ … ≥ λ_D`` and
        eigenvectors ``U``: ``b`` = the sample mean, ``σ²`` = the mean of the ``D − L``
        discarded eigenvalues, ``W = U_L (Λ_L − σ² I)^½ / σ_p`` (the rotation chosen as I).
        """
        if x.ndim != 2:
            raise InvalidArgumentError(f"x must be (N, D), got shape {tuple(x.shape)}")
        n, d = x.shape
        if not 1 <= latent_dim < d:
            raise InvalidArgumentError(
                f"latent_dim must be in [1, {d - 1}] for {d}-dimensional data, got {latent_dim}"
            )
        if n < 2:
            raise InvalidArgumentError(f"need at least 2 examples, got {n}")
        mean = x.mean(0)
        xc = x - mean
        cov = xc.T @ xc / n
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0), evecs.flip(1)
        sigma2 = evals[latent_dim:].mean()
        if not sigma2 > 0:
            raise InvalidArgumentError("the data has no variance outside the latent subspace")
        scale = (evals[:latent_dim] - sigma2).clamp_min(0).sqrt()
        weight = evecs[:, :latent_dim] * scale / prior_std
        return cls.from_parameters(weight, mean, sigma2.sqrt(), prior_std)

    @property
    def noise_std(self) -> torch.Tensor:
        return self.log_noise_std.exp()

    @property
    def prior(self) -> Independent:
        return self.prior_module()

    def decode(self, z: torch.Tensor) -> Independent:
        """``p(x|z) = N(W z + b, σ² I)``, batch shape ``z.shape[:-1]``."""
        loc = z @ self.weight.T + self.bias
        return diagonal_normal(loc, self.noise_std.expand_as(loc))

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(z) + self.decode(z).log_prob(x)

    def marginal(self) -> MultivariateNormal:
        """``p(x) = N(b, σ_p² W Wᵀ + σ² I)``."""
        sp2 = self.prior_module.std**2
        cov = sp2 * self.weight @ self.weight.T
        cov = cov + self.noise_std**2 * torch.eye(self.data_dim, dtype=cov.dtype, device=cov.device)
        return MultivariateNormal(self.bias, covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)``, per example."""
        self._check_x(x)
        return self.marginal().log_prob(x)

    def posterior_precision(self) -> torch.Tensor:
        """``M = Wᵀ W / σ² + I / σ_p²`` (the same for every x)."""
        eye = torch.eye(self.latent_dim, dtype=self.weight.dtype, device=self.weight.device)
        return self.weight.T @ self.weight / self.noise_std**2 + eye / self.prior_module.std**2

    def posterior(self, x: torch.Tensor) -> MultivariateNormal:
        """Exact ``p(z|x) = N(M⁻¹ Wᵀ (x − b) / σ², M⁻¹)``, batch shape ``(B,)``."""
        self._check_x(x)
        precision = self.posterior_precision()
        cov = torch.linalg.inv(precision)
        mean = (x - self.bias) @ self.weight @ cov.T / self.noise_std**2
        return MultivariateNormal(mean, scale_tril=torch.linalg.cholesky(cov))

    def expected_log_likelihood(self, x: torch.Tensor, q) -> torch.Tensor:
        """``E_q[log p(x|z)]`` for a diagonal Gaussian ``q``, in closed form:

        ``log N(x; W m + b, σ² I) − Σ_i (W² s²)_i / (2σ²)`` with ``m, s`` the mean and scale of q.
        """
        base = getattr(q, "base_dist", None)
        if not isinstance(q, Independent) or not hasattr(base, "scale"):
            raise InvalidArgumentError(
                f"expected_log_likelihood needs a diagonal Gaussian q, got {type(q).__name__}"
            )
        trace = (base.scale**2) @ (self.weight**2).sum(0)  # (B,)
        return self.decode(base.loc).log_prob(x) - trace / (2 * self.noise_std**2)

    def _check_x(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.data_dim:
            raise InvalidArgumentError(
                f"x must have {self.data_dim} features in its last axis, got {tuple(x.shape)}"
            )
