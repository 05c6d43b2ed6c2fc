"""The identity log p(x) = ELBO(q) + KL(q ‖ p(z|x)) on the models where every term is exact."""

import math

import pytest
import torch
from torch.distributions import Categorical, MultivariateNormal, kl_divergence

from tests.core.helpers import as_mvn, random_diag_q, random_linear_gaussian
from vaelab import DiscreteLatent, LinearGaussian, elbo


@pytest.mark.parametrize("prior_std", [1.0, 1.7])
def test_linear_gaussian_posterior_and_marginal_obey_bayes(prior_std):
    m = random_linear_gaussian(prior_std=prior_std)
    x = torch.randn(5, 6, dtype=torch.float64)
    z = torch.randn(5, 3, dtype=torch.float64)
    # log p(x) = log p(x, z) - log p(z | x) for every z
    lhs = m.log_marginal(x)
    rhs = m.log_joint(x, z) - m.posterior(x).log_prob(z)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-10)
    # the marginal is N(b, σp² W Wᵀ + σ² I), checked against the sampling definition
    cov = prior_std**2 * m.weight @ m.weight.T + 0.49 * torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(m.marginal().covariance_matrix, cov)


@pytest.mark.parametrize("prior_std", [1.0, 0.6])
def test_linear_gaussian_elbo_identity_closed_form(prior_std):
    m = random_linear_gaussian(prior_std=prior_std)
    x = torch.randn(8, 6, dtype=torch.float64) * 2
    q = random_diag_q(8, 3)
    out = elbo(m, x, q=q, n_samples=None)
    gap = kl_divergence(as_mvn(q), m.posterior(x))
    torch.testing.assert_close(out.elbo + gap, m.log_marginal(x), rtol=1e-8, atol=0)
    assert (gap > 0).all()
    # the entropy form of the bound, E_q[log p(x,z)] + H(q), is the same number
    e = elbo(m, x, q=q, n_samples=20000, form="entropy")
    z_score = (e.elbo - out.elbo).abs() / _elbo_stderr(m, x, q, 20000)
    assert (z_score < 4).all(), z_score


def _elbo_stderr(m, x, q, n):
    z = q.sample((n,))
    terms = m.log_joint(x, z) - q.log_prob(z)
    return terms.std(0) / math.sqrt(n)


@pytest.mark.parametrize("kl", ["analytic", "sampled"])
@pytest.mark.parametrize("form", ["kl", "entropy"])
def test_linear_gaussian_elbo_identity_sampled(kl, form):
    torch.manual_seed(3)
    m = random_linear_gaussian()
    x = torch.randn(6, 6, dtype=torch.float64)
    q = random_diag_q(6, 3, seed=5)
    n = 4000
    out = elbo(m, x, q=q, n_samples=n, kl=kl, form=form)
    exact = m.log_marginal(x) - kl_divergence(as_mvn(q), m.posterior(x))
    z_score = (out.elbo - exact).abs() / _elbo_stderr(m, x, q, n)
    assert (z_score < 4).all(), z_score


def test_linear_gaussian_expected_log_likelihood_is_the_expectation():
    m = random_linear_gaussian()
    x = torch.randn(4, 6, dtype=torch.float64)
    q = random_diag_q(4, 3)
    z = q.sample((200000,))
    mc = m.decode(z).log_prob(x)
    stderr = mc.std(0) / math.sqrt(z.shape[0])
    assert ((m.expected_log_likelihood(x, q) - mc.mean(0)).abs() < 4 * stderr).all()


def test_discrete_latent_elbo_identity_exact():
    g = torch.Generator().manual_seed(0)
    for lik in ["bernoulli", "gaussian"]:
        m = DiscreteLatent.random(5, 12, lik, generator=g, dtype=torch.float64)
        x = (torch.rand(7, 12, generator=g) < 0.5).double()
        if lik == "gaussian":
            x = torch.randn(7, 12, generator=g, dtype=torch.float64)
        q = Categorical(logits=torch.randn(7, 5, generator=g, dtype=torch.float64))
        out = elbo(m, x, q=q, n_samples=None)
        post = m.posterior(x)
        gap = kl_divergence(q, post)
        torch.testing.assert_close(out.elbo + gap, m.log_marginal(x), rtol=0, atol=1e-10)
        # the ELBO by the seed's own sum: Σ_z q(z) [log p(x, z) − log q(z)]
        z = torch.arange(5).unsqueeze(-1)
        by_sum = (q.probs.T * (m.log_joint(x, z) - q.log_prob(z))).sum(0)
        torch.testing.assert_close(out.elbo, by_sum, rtol=0, atol=1e-10)
        # with q the exact posterior the bound is tight
        tight = elbo(m, x, q=post, n_samples=None).elbo
        torch.testing.assert_close(tight, m.log_marginal(x), rtol=0, atol=1e-10)


def test_discrete_latent_marginal_sums_the_joint():
    m = DiscreteLatent.random(3, 4, "bernoulli", dtype=torch.float64)
    x = torch.tensor([[1.0, 0, 1, 1]], dtype=torch.float64)
    total = sum(m.prior.probs[k] * m.decode(torch.tensor(k)).log_prob(x).exp() for k in range(3))
    torch.testing.assert_close(m.log_marginal(x), total.log())
    # and p(x) sums to one over all 16 binary vectors
    grid = torch.tensor([[(i >> j) & 1 for j in range(4)] for i in range(16)], dtype=torch.float64)
    assert m.log_marginal(grid).exp().sum().item() == pytest.approx(1.0, abs=1e-12)


def test_fit_ppca_is_the_maximum_likelihood():
    g = torch.Generator().manual_seed(2)
    truth = random_linear_gaussian(d=8, l_=2, seed=4)
    z = torch.randn(3000, 2, generator=g, dtype=torch.float64)
    x = truth.decode(z).sample()
    fit = LinearGaussian.fit_ppca(x, 2)
    ll = fit.log_marginal(x).mean()
    # stationary point: the gradient of the mean log-likelihood w.r.t. W, b, σ is ~0
    ll.backward()
    for p in (fit.weight, fit.bias, fit.log_noise_std):
        assert p.grad.abs().max() < 1e-8
    # and a maximum: random perturbations only lower it
    for seed in range(5):
        gg = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            w = fit.weight + 1e-2 * torch.randn(fit.weight.shape, generator=gg, dtype=torch.float64)
        other = LinearGaussian.from_parameters(w, fit.bias.detach(), fit.noise_std.detach())
        assert other.log_marginal(x).mean() < ll
    # σ² is the mean of the discarded eigenvalues of the sample covariance
    evals = torch.linalg.eigvalsh(torch.cov(x.T, correction=0)).flip(0)
    assert fit.noise_std.item() ** 2 == pytest.approx(evals[2:].mean().item(), rel=1e-10)
    # with a non-unit prior the same marginal is reached with W scaled by 1/σp
    fit2 = LinearGaussian.fit_ppca(x, 2, prior_std=3.0)
    torch.testing.assert_close(fit2.log_marginal(x), fit.log_marginal(x))


def test_exact_models_refuse_bad_arguments():
    with pytest.raises(ValueError, match="latent_dim must be >= 1, got 0"):
        LinearGaussian(data_dim=4, latent_dim=0)
    with pytest.raises(ValueError, match="latent_dim must be in"):
        LinearGaussian.fit_ppca(torch.randn(10, 3), 3)
    m = random_linear_gaussian()
    with pytest.raises(ValueError, match=r"6 features.*\(2, 5\)"):
        m.log_marginal(torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_components must be >= 1, got 0"):
        DiscreteLatent(n_components=0, data_dim=3)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1, got 0"):
        elbo(m, torch.randn(2, 6).double(), q=random_diag_q(2, 3), n_samples=0)
    assert isinstance(m.posterior(torch.zeros(1, 6).double()), MultivariateNormal)
