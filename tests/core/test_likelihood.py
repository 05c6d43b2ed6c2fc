"""The importance-sampled log-likelihood: ELBO at K=1, monotone in K, exact in the limit."""

import itertools
import math

import torch

from tests.core.helpers import random_diag_q, random_linear_gaussian
from vaelab import VAE, elbo, fit_posterior, iwae_bound, log_likelihood


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
    # (chunks of a multiple of 16 draws: torch's normal_ fills 16 values at a time)
    torch.manual_seed(7)
    a = log_likelihood(m, x, k=300, q=q, chunk_size=300).log_px
    torch.manual_seed(7)
    b = log_likelihood(m, x, k=300, q=q, chunk_size=100).log_px
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.manual_seed(8)
    c = log_likelihood(m, x, k=300, q=q, chunk_size=300).log_px
    assert (a - c).abs().max() > 1e-6  # and other draws give another value


def test_effective_sample_size_is_kish_of_the_same_weights_and_flags_a_dominated_estimate():
    """ess = (Σw)²/Σw² of the very weights the estimate used (carried across chunks), in
    [1, k]; a q far from the posterior leaves a handful of weights to carry the estimate."""
    from vaelab.objectives.elbo import log_weights

    torch.manual_seed(3)
    m = random_linear_gaussian()
    x = torch.randn(16, 6, dtype=torch.float64)
    q = fit_posterior(m, x).q
    torch.manual_seed(7)
    est = log_likelihood(m, x, k=320, q=q, chunk_size=64)
    torch.manual_seed(7)
    lw = log_weights(m, x, 320, q)  # (k, B), the same draws in one go
    kish = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
    torch.testing.assert_close(est.ess, kish, rtol=1e-10, atol=0)
    assert ((est.ess >= 1) & (est.ess <= 320)).all() and est.ess.median() > 100  # a good q
    far = random_diag_q(16, 3)  # not fitted: the posterior sits in q's tail
    bad = log_likelihood(m, x * 3, k=320, q=far)
    assert bad.ess.median() < 0.1 * est.ess.median()


def test_vae_estimate_is_the_straightforward_one_in_float32():
    """The Bernoulli VAE's fast terms (Wᵀx, softplus summed as log-products) change float32
    rounding only: the estimate is the textbook one to 1e-6 of its value."""
    torch.manual_seed(4)
    vae = VAE(latent_dim=20, hidden=(400,)).eval()
    x = (torch.rand(6, 1, 28, 28) < 0.2).float()
    k = 500
    torch.manual_seed(9)
    fast = log_likelihood(vae, x, k=k, chunk_size=k).log_px
    torch.manual_seed(9)
    with torch.no_grad():
        q = vae.encode(x)
        z = q.rsample((k,))
        lw = vae.prior.log_prob(z) + vae.decode(z).log_prob(x) - q.log_prob(z)
        plain = torch.logsumexp(lw, 0) - math.log(k)
    assert ((fast - plain).abs() <= 1e-6 * plain.abs()).all(), (fast - plain).abs().max()


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


def _evaluated_on(threads: int, model, x, calls: list[str]) -> dict:
    """evaluate_model with ``threads`` torch threads, noting the thread of each encoding
    (and that none of them builds an autograd graph: grad mode is a thread's own)."""
    import threading

    from vaelab.evaluation.metrics import evaluate_model

    encode = model.encode

    def noted(*args, **kwargs):
        calls.append(threading.current_thread().name)
        assert not torch.is_grad_enabled()
        return encode(*args, **kwargs)

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.encode = noted
    try:
        out = evaluate_model(model, x, k=60, batch_size=24, per_example=True, seed=3)
        assert torch.get_num_threads() == threads  # put back after the parts set theirs
    finally:
        del model.encode
        torch.set_num_threads(before)
    return out


def test_threads_share_each_batch_and_change_nothing_but_rounding():
    """On a CPU the threads each take a part of every batch (at least 8 rows); each part
    draws the whole batch's noise and keeps its rows, so every example's estimate is the one
    thread's, up to float32 rounding, batch after batch (the second batch's noise depends on
    where the first left the generator)."""
    from vaelab.models import HierarchicalVAE

    torch.manual_seed(0)
    x = (torch.rand(40, 1, 28, 28) < 0.3).float()  # batches of 24 and 16 rows
    models = (VAE(latent_dim=4, hidden=(32,)), HierarchicalVAE(latent_dims=(4, 2), hidden=(32,)))
    for model in models:
        one_calls, calls = [], {2: [], 3: []}
        one = _evaluated_on(1, model.eval(), x, one_calls)
        assert not any(c.startswith("vaelab-eval") for c in one_calls)
        per_part = len(one_calls) // 2  # encodings of one batch in one thread
        for threads, names in calls.items():
            out = _evaluated_on(threads, model, x, names)
            # batch 1 in min(threads, 24 // 8) parts, batch 2 in 2, each in its own thread
            parts = min(threads, 3) + 2
            assert sum(n.startswith("vaelab-eval") for n in names) == per_part * parts
            got, want = out["per_example"], one["per_example"]
            for key in ("log_px", "elbo"):  # the estimates: the same to 1e-6
                a, b = got[key], want[key]
                assert ((a - b).abs() <= 1e-6 * b.abs() + 1e-9).all(), (type(model), key)
            # kl and stderr are small numbers made of differences and spreads of per-sample
            # terms of |log p(x)|'s size, so they keep those terms' absolute rounding (a float32
            # ulp of 540 is 6e-5; the products' kernels differ with the rows a thread gets, on
            # AMX CPUs most): 16 such ulps. Other noise would move log_px, checked above.
            ulps = 16 * 2.0**-23 * want["log_px"].abs()
            for key in ("kl", "stderr"):
                assert ((got[key] - want[key]).abs() <= ulps).all(), (type(model), key)
            assert out["active_units"] == one["active_units"]
