"""Fit a variational distribution to each example by maximizing its ELBO, the model held fixed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Categorical, Distribution

from vaelab.distributions import diagonal_normal, positive_scale
from vaelab.distributions.normal import inverse_positive_scale
from vaelab.errors import InvalidArgumentError, positive_int
from vaelab.models.protocols import ClosedFormExpectation
from vaelab.objectives.elbo import elbo

FAMILIES = ("auto", "gaussian", "categorical")


@dataclass
class PosteriorFit:
    """The fitted ``q`` (batch shape ``(B,)``, detached), its final ELBO per example, and steps."""

    q: Distribution
    elbo: torch.Tensor
    steps: int
    exact: bool  # whether the objective was the exact ELBO (no sampling)


def _has_exact_elbo(model, family: str) -> bool:
    return family == "categorical" or isinstance(model, ClosedFormExpectation)


def fit_posterior(
    model,
    x: torch.Tensor,
    family: str = "auto",
    steps: int | None = None,
    lr: float = 0.05,
    n_samples: int = 8,
    init: Distribution | None = None,
    min_scale: float = 1e-6,
) -> PosteriorFit:
    """Maximize ``ELBO(q_φ) = E_q[log p(x, z)] + H(q)`` over a separate ``q_φ(z)`` per example.

    The seed's "pick φ so that q_φ(z) is as close as possible to p(z|x)": since
    ``log p(x) = ELBO(q) + KL(q ‖ p(z|x))`` and ``log p(x)`` does not depend on φ, maximizing the
    ELBO minimizes that KL within the family. Works on any model with ``prior``, ``decode`` and
    ``log_joint`` (a VAE too: this is how its amortization gap is measured).

    ``family``: ``"gaussian"`` (diagonal; the default for continuous z) or ``"categorical"``
    (the default when the prior has finite support). When the ELBO is exact (a categorical q,
    or a model with a closed-form ``expected_log_likelihood``) it is optimized by L-BFGS to
    convergence; otherwise by Adam on an ``n_samples`` reparameterized estimate.
    The model's parameters are neither changed nor given gradients.
    """
    if family not in FAMILIES:
        raise InvalidArgumentError(f"family must be one of {FAMILIES}, got {family!r}")
    if not lr > 0:
        raise InvalidArgumentError(f"lr must be > 0, got {lr}")
    positive_int("n_samples", n_samples)
    prior = model.prior
    if family == "auto":
        family = "categorical" if prior.has_enumerate_support else "gaussian"
    batch = x.shape[0]
    dtype = x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()

    if family == "categorical":
        k = prior.probs.shape[-1]
        start = init.logits if init is not None else prior.logits.expand(batch, k)
        params = [start.detach().clone().to(dtype).requires_grad_()]

        def make_q():
            return Categorical(logits=params[0], validate_args=False)

    else:
        latent_dim = prior.event_shape[-1]
        if init is not None:
            loc0 = init.mean.detach()
            raw0 = inverse_positive_scale(init.stddev.detach(), min_scale)
        else:
            loc0 = torch.zeros(batch, latent_dim, dtype=dtype, device=x.device)
            raw0 = torch.full_like(loc0, inverse_positive_scale(1.0, min_scale))
        params = [loc0.clone().to(dtype).requires_grad_(), raw0.clone().to(dtype).requires_grad_()]

        def make_q():
            return diagonal_normal(params[0], positive_scale(params[1], min_scale))

    exact = _has_exact_elbo(model, family)

    def loss_fn():
        q = make_q()
        out = elbo(model, x, q=q, n_samples=None if exact else n_samples, form="kl")
        return -out.elbo.sum(), out.elbo

    def set_grads():
        loss, _ = loss_fn()
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        return loss

    if exact:
        steps = 200 if steps is None else steps
        opt = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=20,
            tolerance_grad=1e-12,
            tolerance_change=1e-15,
            history_size=50,
            line_search_fn="strong_wolfe",
        )
        for _ in range(steps):
            opt.step(set_grads)
    else:
        steps = 2000 if steps is None else steps
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(steps):
            set_grads()
            opt.step()
            sched.step()

    with torch.no_grad():
        q = make_q()
        final = elbo(model, x, q=q, n_samples=None if exact else 64).elbo
    for p in params:
        p.requires_grad_(False)
    return PosteriorFit(q=make_q(), elbo=final.detach(), steps=steps, exact=exact)
