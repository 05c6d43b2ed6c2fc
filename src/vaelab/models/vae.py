"""The variational auto-encoder: an amortized posterior, a prior and a likelihood."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Independent

from vaelab.distributions import (
    GAUSSIAN_VARIANCES,
    GaussianPrior,
    diagonal_normal,
    positive_scale,
)
from vaelab.errors import InvalidArgumentError, excerpt, positive_int
from vaelab.models.base import LatentVariableModel
from vaelab.nn import ACTIVATIONS, MLP, ConvDecoder, ConvEncoder

LOGVAR_LIMIT = 30.0  # |log σ²| bound of the "logvar" scale: σ within [3e-7, 3.3e6]


@dataclass
class VAEConfig:
    """Everything needed to rebuild a :class:`VAE`; saved as JSON beside the weights."""

    data_shape: tuple[int, ...] = (1, 28, 28)
    latent_dim: int = 20
    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"
    arch: str = "mlp"  # "mlp" or "conv"
    conv_channels: tuple[int, ...] = (32, 64)
    likelihood: str = "bernoulli"  # "bernoulli" or "gaussian"
    gaussian_variance: str = "per_dim"  # fixed | scalar | per_dim | per_example
    gaussian_std: float = 1.0  # the fixed scale, or the initial value of a learned one
    gaussian_min_std: float = 1e-3
    prior_std: float = 1.0
    learn_prior_std: bool = False
    min_posterior_std: float = 1e-4
    # How the encoder's second head becomes q's scale: "softplus" (σ = softplus(r) + min,
    # vaelab's default, see distributions/normal.py) or "logvar" (σ = exp(r/2), r clamped to
    # ±LOGVAR_LIMIT: the parameterization of pytorch/examples and Pythae, for their weights).
    posterior_scale: str = "softplus"

    def __post_init__(self):
        self.data_shape = tuple(self.data_shape)
        self.hidden = tuple(self.hidden)
        self.conv_channels = tuple(self.conv_channels)
        if not self.data_shape or any(s < 1 for s in self.data_shape):
            raise InvalidArgumentError(f"data_shape must be positive sizes, got {self.data_shape}")
        if self.latent_dim < 1:
            raise InvalidArgumentError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise InvalidArgumentError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        if self.activation not in ACTIVATIONS:
            raise InvalidArgumentError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {excerpt(self.activation)}"
            )
        if self.arch not in ("mlp", "conv"):
            raise InvalidArgumentError(f"arch must be 'mlp' or 'conv', got {excerpt(self.arch)}")
        if self.arch == "conv" and (not self.conv_channels or min(self.conv_channels) < 1):
            raise InvalidArgumentError(
                f"conv_channels must be positive sizes, got {list(self.conv_channels)}"
            )
        if self.posterior_scale not in ("softplus", "logvar"):
            raise InvalidArgumentError(
                "posterior_scale must be 'softplus' or 'logvar', "
                f"got {excerpt(self.posterior_scale)}"
            )
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise InvalidArgumentError(
                f"likelihood must be 'bernoulli' or 'gaussian', got {excerpt(self.likelihood)}"
            )
        if self.gaussian_variance not in GAUSSIAN_VARIANCES:
            raise InvalidArgumentError(
                f"gaussian_variance must be one of {GAUSSIAN_VARIANCES}, "
                f"got {excerpt(self.gaussian_variance)}"
            )
        for name in ("gaussian_std", "prior_std", "min_posterior_std"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise InvalidArgumentError(f"{name} must be positive and finite, got {value}")
        if not (0 <= self.gaussian_min_std < self.gaussian_std):
            raise InvalidArgumentError(
                f"gaussian_min_std must be in [0, gaussian_std={self.gaussian_std}), "
                f"got {self.gaussian_min_std}"
            )


class VAE(LatentVariableModel):
    """``p(z) = N(0, σ_p² I)``, ``q(z|x) = N(μ(x), diag σ²(x))``, ``p(x|z)`` Bernoulli or Gaussian.

    ``encode(x)`` gives ``q(z|x)``, ``decode(z)`` gives ``p(x|z)``, ``prior`` gives ``p(z)``;
    ``z`` may carry leading sample axes ``(S, B, L)``, and ``decode`` keeps them.
    """

    config_class = VAEConfig

    def __init__(self, config: VAEConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = VAEConfig(**kwargs)
        elif kwargs:
            raise InvalidArgumentError("pass either a VAEConfig or keyword arguments, not both")
        self.config = config
        c = config
        self.data_shape = c.data_shape
        self.latent_dim = c.latent_dim
        self.likelihood = self.build_likelihood(c)
        out = self.likelihood.out_features
        if c.arch == "mlp":
            self.encoder = nn.Sequential(
                nn.Flatten(), MLP(self.data_dim, c.hidden, 2 * c.latent_dim, c.activation)
            )
            self.decoder = MLP(c.latent_dim, c.hidden[::-1], out, c.activation)
        else:
            self.encoder = ConvEncoder(
                c.data_shape, c.conv_channels, c.hidden, 2 * c.latent_dim, c.activation
            )
            self.decoder = ConvDecoder(
                c.latent_dim,
                c.data_shape,
                c.conv_channels,
                c.hidden[::-1],
                self.likelihood.n_params,
                c.activation,
            )
        self.prior_module = GaussianPrior(c.latent_dim, c.prior_std, c.learn_prior_std)

    def mlp_linears(self) -> tuple[list[nn.Linear], list[nn.Linear]]:
        """The encoder's and the decoder's linear layers, input to output (MLP architecture).

        The hand-written training step multiplies by these directly.
        """
        if self.config.arch != "mlp":
            raise InvalidArgumentError(f"the {self.config.arch} architecture has no MLP layers")
        return self.encoder[1].linears(), self.decoder.linears()  # encoder[0] is the Flatten

    def encode(self, x: torch.Tensor) -> Independent:
        """``q(z|x)``: a diagonal Gaussian with batch shape ``(B,)`` and event ``(L,)``."""
        self._check_x(x)
        loc, raw = self.encoder(x).chunk(2, dim=-1)  # (B, L) each
        if self.config.posterior_scale == "logvar":
            scale = (0.5 * raw.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)).exp()
        else:
            scale = positive_scale(raw, self.config.min_posterior_std)
        return diagonal_normal(loc, scale)

    def decode(self, z: torch.Tensor) -> Independent:
        """``p(x|z)`` with batch shape ``z.shape[:-1]`` and event shape ``data_shape``."""
        if z.shape[-1] != self.latent_dim:
            raise InvalidArgumentError(
                f"z must have {self.latent_dim} features in its last axis, got {tuple(z.shape)}"
            )
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, self.latent_dim))  # (N, out)
        return self.likelihood(out.reshape(*lead, out.shape[-1]))

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x, z) = log p(z) + log p(x|z)``, shape ``z.shape[:-1]``."""
        return self.prior.log_prob(z) + self.log_px_z(x, z)

    def log_px_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)``, shape ``z.shape[:-1]`` (see :meth:`decoder_log_prob`)."""
        if z.shape[-1] != self.latent_dim:
            raise InvalidArgumentError(
                f"z must have {self.latent_dim} features in its last axis, got {tuple(z.shape)}"
            )
        return self.decoder_log_prob(x, z)

    def elbo(self, x: torch.Tensor, **kwargs):
        """Per-example ELBO; see :func:`vaelab.objectives.elbo` for the options."""
        from vaelab.objectives import elbo

        return elbo(self, x, **kwargs)

    def log_likelihood(self, x: torch.Tensor, k: int = 5000, **kwargs):
        """Importance-sampled ``log p(x)`` with ``k`` samples; see :func:`vaelab.log_likelihood`."""
        from vaelab.evaluation import log_likelihood

        return log_likelihood(self, x, k, **kwargs)

    @torch.no_grad()
    def sample(
        self, n: int, mean: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Decode ``n`` prior draws: the likelihood's mean, or ``x ~ p(x|z)`` if not ``mean``."""
        positive_int("n", n)
        p = self.prior
        ref = p.base_dist.loc
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=ref.dtype)
        z = p.base_dist.loc + p.base_dist.scale * eps.to(ref.device)
        px = self.decode(z)
        return px.mean if mean else px.sample()
