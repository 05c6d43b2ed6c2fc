"""The evidence lower bound and the importance-weighted bound, one value per example.

Every function here returns per-example tensors of shape ``(B,)``; ``.mean()`` is taken only by
whoever forms a loss. A *model* is anything with

* ``prior`` — a distribution over ``z``,
* ``decode(z)`` — the distribution ``p(x|z)``,
* ``log_joint(x, z)`` — ``log p(x, z)``, broadcasting over leading sample axes of ``z``,

and optionally the capabilities of :mod:`vaelab.models.protocols`: an encoder
(``AmortizedPosterior``, used when ``q`` is not given), a closed-form ``E_q[log p(x|z)]``
(``ClosedFormExpectation``), or its own importance weights for posteriors that are not a single
distribution (``OwnImportanceWeights``, e.g. a hierarchy of stochastic layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, Normal

from vaelab.distributions.kl import kl_divergence
from vaelab.errors import InvalidArgumentError, positive_int
from vaelab.models.protocols import AmortizedPosterior, ClosedFormExpectation, OwnImportanceWeights

KL_MODES = ("analytic", "sampled")
ELBO_FORMS = ("kl", "entropy")


@dataclass
class ELBOOutput:
    """Per-example terms of the ELBO, each of shape ``(B,)``.

    ``elbo = log_px_z − kl`` is the true bound on ``log p(x)`` whatever ``beta`` was;
    ``objective = log_px_z − beta · kl`` is what a β-weighted training run maximizes.
    """

    elbo: torch.Tensor
    log_px_z: torch.Tensor  # E_q[log p(x|z)], the reconstruction term
    kl: torch.Tensor  # KL(q(z|x) ‖ p(z)), analytic or estimated
    objective: torch.Tensor


def _posterior(model, x: torch.Tensor, q: Distribution | None) -> Distribution:
    if q is not None:
        return q
    if not isinstance(model, AmortizedPosterior):
        raise InvalidArgumentError(
            f"{type(model).__name__} has no encoder: pass the variational distribution q"
        )
    return model.encode(x)


def elbo(
    model,
    x: torch.Tensor,
    q: Distribution | None = None,
    n_samples: int | None = 1,
    kl: str = "analytic",
    form: str = "kl",
    beta: float = 1.0,
) -> ELBOOutput:
    """The evidence lower bound ``ELBO(x) = E_q[log p(x|z)] − KL(q ‖ p(z))`` per example.

    Estimators:

    * ``form="kl"``: ``(1/S) Σ_s log p(x|z_s) − KL``, ``z_s ~ q`` reparameterized; the KL is
      the closed form (``kl="analytic"``, torch's registry) or ``(1/S) Σ_s log q(z_s)/p(z_s)``
      on the same samples (``kl="sampled"``).
    * ``form="entropy"``: ``(1/S) Σ_s log p(x, z_s) + H(q)`` with the entropy in closed form;
      the same bound written as the seed's ``E_q[log p(x,z)] + H(q)``. Its ``kl`` field is
      ``−(1/S) Σ_s log p(z_s) − H(q)``.
    * ``n_samples=None``: the expectation taken exactly — by summing over every value of a
      discrete ``q`` (``q.enumerate_support``), or via the model's closed-form
      ``expected_log_likelihood`` for a continuous one.

    ``q`` defaults to the model's encoder ``q(z|x)``. ``beta`` weights the KL only in
    ``objective``; ``elbo`` stays the true bound.
    """
    if kl not in KL_MODES:
        raise InvalidArgumentError(f"kl must be one of {KL_MODES}, got {kl!r}")
    if form not in ELBO_FORMS:
        raise InvalidArgumentError(f"form must be one of {ELBO_FORMS}, got {form!r}")
    if not (beta >= 0 and math.isfinite(beta)):
        raise InvalidArgumentError(f"beta must be a finite number >= 0, got {beta}")
    if q is None and isinstance(model, OwnImportanceWeights):
        # a posterior that is not one distribution (several stochastic layers): everything
        # from the model's own samples; the KL is estimated on them.
        positive_int("n_samples", n_samples)  # sampled: no closed form for this posterior
        log_px_z, log_ratio = model.log_weight_terms(x, n_samples)
        log_px_z, kl_term = log_px_z.mean(0), -log_ratio.mean(0)
        return ELBOOutput(log_px_z - kl_term, log_px_z, kl_term, log_px_z - beta * kl_term)
    q = _posterior(model, x, q)
    prior = model.prior
    if n_samples is None:
        log_px_z, kl_term = _exact_terms(model, x, q, prior)
    else:
        positive_int("n_samples", n_samples)
        z = q.rsample((n_samples,)) if q.has_rsample else q.sample((n_samples,))  # (S, B, L)
        log_px_z = model.decode(z).log_prob(x).mean(0)  # (B,)
        if form == "entropy":
            kl_term = -prior.log_prob(z).mean(0) - q.entropy()
        elif kl == "analytic":
            kl_term = kl_divergence(q, prior)
        else:
            kl_term = (q.log_prob(z) - prior.log_prob(z)).mean(0)
    return ELBOOutput(
        elbo=log_px_z - kl_term,
        log_px_z=log_px_z,
        kl=kl_term,
        objective=log_px_z - beta * kl_term,
    )


def _exact_terms(model, x, q, prior) -> tuple[torch.Tensor, torch.Tensor]:
    """``E_q[log p(x|z)]`` and ``KL(q‖p(z))`` with no sampling at all."""
    if q.has_enumerate_support:
        z = q.enumerate_support(expand=True)  # (K, B) every value of z, for every example
        probs = q.log_prob(z).exp()  # (K, B)
        log_px_z = (probs * model.decode(z).log_prob(x)).sum(0)
        return log_px_z, kl_divergence(q, prior)
    if isinstance(model, ClosedFormExpectation):
        return model.expected_log_likelihood(x, q), kl_divergence(q, prior)
    raise InvalidArgumentError(
        f"n_samples=None needs a discrete q or a model with a closed-form "
        f"expected_log_likelihood; {type(model).__name__} with {type(q).__name__} has neither"
    )


def log_weights(
    model, x: torch.Tensor, k: int, q: Distribution | None = None, dreg: bool = False
) -> torch.Tensor:
    """Importance log-weights ``log p(x, z_k) − log q(z_k|x)``, ``z_k ~ q``: shape ``(k, B)``.

    Samples are reparameterized where ``q`` allows, so the weights carry gradients.

    ``dreg=True`` prepares the doubly-reparameterized gradient of the IWAE bound (Tucker et
    al. 2018) for a loss ``−logsumexp_k(log w_k)``: ``log q`` is evaluated with its parameters
    cut from the graph (so ``q``'s parameters get gradient only through ``z``), and a hook scales
    the gradient reaching each ``z_k`` by its normalized weight ``w̃_k``. The encoder then
    receives ``Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ``, the decoder the usual ``Σ_k w̃_k ∂log w_k/∂θ``.
    The values returned are the same as without ``dreg``.
    """
    positive_int("k", k)
    if q is None and isinstance(model, OwnImportanceWeights):
        log_px_z, log_ratio = model.log_weight_terms(x, k, dreg=dreg)
        return log_px_z + log_ratio
    q = _posterior(model, x, q)
    z = q.rsample((k,)) if q.has_rsample else q.sample((k,))  # (k, B, L)
    if not dreg:
        return model.log_joint(x, z) - q.log_prob(z)
    lw = model.log_joint(x, z) - _detached(q).log_prob(z)
    if z.requires_grad:
        w = torch.softmax(lw.detach(), 0).unsqueeze(-1)  # (k, B, 1)
        z.register_hook(lambda g: g * w)
    return lw


def _detached(q: Distribution) -> Distribution:
    """The same diagonal Gaussian with its parameters cut from the autograd graph."""
    base = getattr(q, "base_dist", None)
    if not (isinstance(q, Independent) and isinstance(base, Normal)):
        raise InvalidArgumentError(
            f"the DReG estimator supports diagonal Gaussian posteriors, got {type(q).__name__}"
        )
    return Independent(
        Normal(base.loc.detach(), base.scale.detach(), validate_args=False),
        q.reinterpreted_batch_ndims,
        validate_args=False,
    )


def iwae_bound(model, x: torch.Tensor, k: int, q: Distribution | None = None) -> torch.Tensor:
    """The importance-weighted bound (Burda et al. 2015), per example ``(B,)``:

    ``L_k(x) = E[log (1/k) Σ_i p(x, z_i)/q(z_i|x)]``, estimated with one set of ``k`` samples.
    ``L_1`` is the ELBO; ``L_k`` does not decrease with ``k`` and tends to ``log p(x)``.
    """
    lw = log_weights(model, x, k, q)  # (k, B)
    return torch.logsumexp(lw, 0) - math.log(k)
