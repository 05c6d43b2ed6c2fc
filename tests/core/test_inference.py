"""Non-amortized VI reaches the best member of its family."""

import torch
from torch.distributions import Categorical, kl_divergence

from tests.core.helpers import as_mvn, random_linear_gaussian
from vaelab import VAE, DiscreteLatent, fit_posterior
from vaelab.distributions import diagonal_normal


def test_fit_posterior_linear_gaussian_reaches_the_optimal_diagonal_gaussian():
    m = random_linear_gaussian(d=6, l_=3, prior_std=1.3)
    x = torch.randn(5, 6, dtype=torch.float64) * 2
    fit = fit_posterior(m, x)
    post = m.posterior(x)
    # the KL-optimal diagonal Gaussian: the posterior mean, precision = diag of the posterior
    # precision (mean-field on a Gaussian: Bishop, PRML §10.1.2)
    prec = m.posterior_precision().diagonal()
    best = diagonal_normal(post.mean, prec.rsqrt().expand_as(post.mean))
    kl_best = kl_divergence(as_mvn(best), post)
    kl_fit = kl_divergence(as_mvn(fit.q), post)
    assert fit.exact
    assert (kl_fit - kl_best).abs().max() < 1e-4, (kl_fit, kl_best)
    assert (kl_fit >= kl_best - 1e-10).all()  # nothing in the family beats the optimum
    torch.testing.assert_close(fit.q.mean, post.mean, atol=1e-4, rtol=0)


def test_fit_posterior_discrete_latent_reaches_the_exact_posterior():
    g = torch.Generator().manual_seed(3)
    m = DiscreteLatent.random(6, 15, "bernoulli", generator=g, dtype=torch.float64)
    x = (torch.rand(8, 15, generator=g) < 0.4).double()
    fit = fit_posterior(m, x)
    assert isinstance(fit.q, Categorical)
    assert (kl_divergence(fit.q, m.posterior(x)) < 1e-6).all()
    torch.testing.assert_close(fit.elbo, m.log_marginal(x), atol=1e-6, rtol=0)


def test_fit_posterior_works_on_a_vae_and_leaves_it_untouched():
    torch.manual_seed(0)
    vae = VAE(data_shape=(10,), latent_dim=2, hidden=(16,), likelihood="gaussian")
    x = torch.randn(4, 10)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    amortized = vae.elbo(x, n_samples=256).elbo.detach()
    fit = fit_posterior(vae, x, steps=400, lr=0.05, init=vae.encode(x))
    after = vae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in vae.parameters())
    # starting from the encoder's q, per-example VI can only close the amortization gap
    assert (fit.elbo > amortized - 0.05).all()
    assert fit.elbo.mean() > amortized.mean()
