"""A VAE with two stochastic layers (Burda et al. 2015, section 5).

Generative model ``p(z2) p(z1|z2) p(x|z1)``, inference model ``q(z1|x) q(z2|z1)``, every
conditional a diagonal Gaussian (the likelihood Bernoulli or Gaussian) whose parameters come
from an MLP. The paper's MNIST architecture is the default: x → 200-200 → z1 (100) →
100-100 → z2 (50), mirrored in the generative direction, tanh units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Independent

from vaelab.distributions import (
    GaussianPrior,
    diagonal_normal,
    positive_scale,
)
from vaelab.errors import InvalidArgumentError, excerpt, positive_int
from vaelab.models.base import LatentVariableModel
from vaelab.nn import ACTIVATIONS, MLP


@dataclass
class HierarchicalVAEConfig:
    data_shape: tuple[int, ...] = (1, 28, 28)
    latent_dims: tuple[int, ...] = (100, 50)  # (z1, z2)
    hidden: tuple[int, ...] = (200, 200)  # between x and z1
    hidden2: tuple[int, ...] = (100, 100)  # between z1 and z2
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    gaussian_variance: str = "per_dim"
    gaussian_std: float = 1.0
    gaussian_min_std: float = 1e-3
    prior_std: float = 1.0
    min_posterior_std: float = 1e-4

    def __post_init__(self):
        self.data_shape = tuple(self.data_shape)
        self.latent_dims = tuple(self.latent_dims)
        self.hidden = tuple(self.hidden)
        self.hidden2 = tuple(self.hidden2)
        if len(self.latent_dims) != 2 or min(self.latent_dims) < 1:
            raise InvalidArgumentError(
                f"latent_dims must be two sizes >= 1, got {list(self.latent_dims)}"
            )
        if any(h < 1 for h in (*self.hidden, *self.hidden2)):
            raise InvalidArgumentError("hidden sizes must be >= 1")
        if self.activation not in ACTIVATIONS:
            raise InvalidArgumentError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {excerpt(self.activation)}"
            )
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise InvalidArgumentError(
                f"likelihood must be 'bernoulli' or 'gaussian', got {excerpt(self.likelihood)}"
            )


class HierarchicalVAE(LatentVariableModel):
    """``p(z2) p(z1|z2) p(x|z1)`` with ``q(z1|x) q(z2|z1)``; ``z`` is the pair ``(z1, z2)``.

    The posterior is not one distribution, so the model supplies its own importance weights
    (:meth:`log_weight_terms`, the ``OwnImportanceWeights`` capability); the ELBO, the IWAE
    bound and the log-likelihood estimate all use them.
    """

    config_class = HierarchicalVAEConfig

    def __init__(self, config: HierarchicalVAEConfig | None = None, **kwargs):
        super().__init__()
        self.config = c = config if config is not None else HierarchicalVAEConfig(**kwargs)
        self.data_shape = c.data_shape
        l1, l2 = c.latent_dims
        self.latent_dim = l1 + l2
        self.likelihood = self.build_likelihood(c)
        act = c.activation
        self.q1 = MLP(self.data_dim, c.hidden, 2 * l1, act)  # q(z1|x)
        self.q2 = MLP(l1, c.hidden2, 2 * l2, act)  # q(z2|z1)
        self.p1 = MLP(l2, c.hidden2[::-1], 2 * l1, act)  # p(z1|z2)
        self.decoder = MLP(l1, c.hidden[::-1], self.likelihood.out_features, act)  # p(x|z1)
        self.prior_module = GaussianPrior(l2, c.prior_std)

    def _gaussian(self, out: torch.Tensor) -> Independent:
        loc, raw = out.chunk(2, dim=-1)
        return diagonal_normal(loc, positive_scale(raw, self.config.min_posterior_std))

    def encode(self, x: torch.Tensor) -> Independent:
        """``q(z1|x)`` (the first stochastic layer; ``q(z2|z1)`` is :meth:`encode2`)."""
        self._check_x(x)
        return self._gaussian(self.q1(x.flatten(1)))

    def encode2(self, z1: torch.Tensor) -> Independent:
        return self._gaussian(self.q2(z1))

    def prior1(self, z2: torch.Tensor) -> Independent:
        """``p(z1|z2)``."""
        return self._gaussian(self.p1(z2))

    def decode(self, z1: torch.Tensor) -> Independent:
        """``p(x|z1)``, batch shape ``z1.shape[:-1]``."""
        lead = z1.shape[:-1]
        out = self.decoder(z1.reshape(-1, z1.shape[-1]))
        return self.likelihood(out.reshape(*lead, out.shape[-1]))

    def log_joint(self, x: torch.Tensor, z: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        z1, z2 = z
        return self.prior.log_prob(z2) + self.prior1(z2).log_prob(z1) + self.decoder_log_prob(x, z1)

    def log_weight_terms(
        self, x: torch.Tensor, k: int, dreg: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts of the log-weights, each ``(k, B)``: ``log p(x|z1)`` and
        ``log p(z1, z2) − log q(z1, z2|x)`` (minus a one-sample estimate of the KL).

        ``dreg=True``: the doubly-reparameterized IWAE gradient (Tucker et al. 2018) for a
        loss ``−logsumexp_k``. ``log q`` is evaluated with the inference networks' parameters
        cut from the graph (``z1`` and ``z2`` stay attached), and the gradient reaching the
        inference parameters along each sample's reparameterization path is scaled by that
        sample's normalized weight ``w̃_k``, exactly once per path (see ``_ScaleGrad``).
        """
        q1 = self.encode(x)
        z1 = q1.rsample((k,))  # (k, B, L1)
        weights: dict[str, torch.Tensor] = {}
        if dreg:
            # q2's network sees z1 before its scaling: the path z2 → q2 → z1 → q1 is then
            # scaled once (at z2), not twice, and nothing divides by a weight that may be 0
            q2 = self.encode2(z1)
            z2 = _scale_grad(q2.rsample(), weights)
            z1 = _scale_grad(z1, weights)  # every other path into q1's parameters passes here
            # log q with the inference parameters detached, z1 and z2 attached
            detached = {n: p.detach() for n, p in self.q2.named_parameters()}
            q2 = self._gaussian(torch.func.functional_call(self.q2, detached, (z1,)))
            q1 = diagonal_normal(q1.base_dist.loc.detach(), q1.base_dist.scale.detach())
        else:
            q2 = self.encode2(z1)
            z2 = q2.rsample()  # (k, B, L2)
        log_px_z = self.decoder_log_prob(x, z1)
        log_ratio = (
            self.prior.log_prob(z2)
            + self.prior1(z2).log_prob(z1)
            - q1.log_prob(z1)
            - q2.log_prob(z2)
        )
        if dreg:
            weights["w"] = torch.softmax((log_px_z + log_ratio).detach(), 0).unsqueeze(-1)
        return log_px_z, log_ratio

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, generator: torch.Generator | None = None):
        positive_int("n", n)
        p = self.prior
        ref = p.base_dist.loc
        z2 = ref + p.base_dist.scale * torch.randn(
            n, ref.shape[-1], generator=generator, dtype=ref.dtype
        ).to(ref.device)
        p1 = self.prior1(z2)
        z1 = p1.base_dist.loc + p1.base_dist.scale * torch.randn(
            p1.base_dist.loc.shape, generator=generator, dtype=ref.dtype
        ).to(ref.device)
        px = self.decode(z1)
        return px.mean if mean else px.sample()


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by per-sample weights.

    The weights are read from a dict at backward time because they are only known after the
    forward pass has produced the log-weights.
    """

    @staticmethod
    def forward(ctx, z, weights):
        ctx.weights = weights
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.weights["w"], None


def _scale_grad(z: torch.Tensor, weights: dict) -> torch.Tensor:
    if not z.requires_grad:
        return z
    return _ScaleGrad.apply(z, weights)
