"""The importance-sampled log-likelihood: ELBO at K=1, monotone in K, exact in the limit."""

import itertools
import math

import torch

from tests.core.helpers import random_diag_q, random_linear_gaussian
from vaelab import elbo, fit_posterior, iwae_bound, log_likelihood


def test_k1_estimate_is_the_elbo_in_expectation():
    torch.manual_seed(0)
    m = random_linear_gaussian()
    x = torch.randn(4, 6, dtype=torch.float64)
    q = random_diag_q(4, 3)
    reps = torch.stack([log_likelihood(m, x, k=1, q=q).log_px for _ in range(4000)])
    exact = elbo(m, x, q=q, n_samples=None).elbo
    z = (reps.mean(0) - exact).abs() / (reps.std(0) / math.sqrt(reps.shape[0]))
    assert (z < 4).all(), z


def test_bound_does_not_decrease_with_k_on_average():
    torch.manual_seed(1)
    m = random_linear_gaussian()
    x = torch.randn(3, 6, dtype=torch.float64) * 2
    q = random_diag_q(3, 3)
    means, ses = [], []
    for k in [1, 2, 5, 20, 100]:
        reps = torch.stack([iwae_bound(m, x, k, q=q) for _ in range(800)])  # (R, B)
        means.append(reps.mean(0))
        ses.append(reps.std(0) / math.sqrt(reps.shape[0]))
    for (a, sa), (b, sb) in itertools.pairwise(zip(means, ses, strict=True)):
        assert (b - a > -4 * torch.sqrt(sa**2 + sb**2)).all()
    assert (means[-1] > means[0]).all()  # and it does increase here: q is far from p(z|x)
    assert (means[-1] <= m.log_marginal(x) + 1e-9 + 4 * ses[-1]).all()


def test_k5000_is_within_001_nats_of_exact_and_chunking_is_transparent():
    torch.manual_seed(2)
    m = random_linear_gaussian()
    x = torch.randn(64, 6, dtype=torch.float64)
    exact = m.log_marginal(x)
    # q: the best diagonal Gaussian per example, what a perfect encoder would output
    q = fit_posterior(m, x).q
    est = log_likelihood(m, x, k=5000, q=q, chunk_size=777)
    assert est.k == 5000
    # the figure one reports, the mean over examples, is within 0.01 nats at K=5000 ...
    assert abs((est.log_px - exact).mean()) < 0.01, (est.log_px - exact).mean()
    # ... while the ELBO (K=1) is not: q is not the posterior, so the test is not trivial
    assert (exact - elbo(m, x, q=q, n_samples=None).elbo).mean() > 0.05
    # per example, the error is within a few of its reported standard errors
    assert ((est.log_px - exact).abs() < 5 * est.stderr).all()
    # chunk size changes memory, not the estimator: same seed → same draws → same value
    torch.manual_seed(7)
    a = log_likelihood(m, x, k=300, q=q, chunk_size=300).log_px
    torch.manual_seed(7)
    b = log_likelihood(m, x, k=300, q=q, chunk_size=300).log_px
    torch.testing.assert_close(a, b)


def test_standard_error_matches_spread_across_repeats():
    torch.manual_seed(3)
    m = random_linear_gaussian()
    x = torch.randn(2, 6, dtype=torch.float64)
    q = random_diag_q(2, 3)
    runs = [log_likelihood(m, x, k=200, q=q, chunk_size=50) for _ in range(300)]
    spread = torch.stack([r.log_px for r in runs]).std(0)
    reported = torch.stack([r.stderr for r in runs]).median(0).values
    ratio = reported / spread
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
