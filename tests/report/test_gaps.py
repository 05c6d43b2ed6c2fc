"""The inference gaps where the truth is known in closed form (linear-Gaussian models), and
the identity that ties them to the ELBO and log p(x) on a VAE."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab import VAE, LinearGaussian
from vaelab.distributions import diagonal_normal
from vaelab.evaluation.gaps import inference_gaps, summarize_gaps
from vaelab.objectives import elbo


def _model() -> LinearGaussian:
    """PPCA with correlated columns of W: its posterior covariance is not diagonal, so the
    best diagonal Gaussian q* stays a measurable KL away from it."""
    w = torch.tensor(
        [[1.0, 0.8], [0.9, 1.0], [0.5, 0.7], [1.2, 0.9], [0.3, 0.4]], dtype=torch.float64
    )
    bias = torch.linspace(-1, 1, 5, dtype=torch.float64)
    return LinearGaussian.from_parameters(w, bias, 0.5)


def _best_diagonal_kl(model: LinearGaussian) -> float:
    """KL(q* ‖ p(z|x)) for q* = N(m, diag(1/diag M)), the KL(q‖p)-best diagonal Gaussian of
    p(z|x) = N(m, M⁻¹): ½(Σ log M_ii − log det M), the same for every x."""
    m = model.posterior_precision()
    return 0.5 * (m.diagonal().log().sum() - torch.logdet(m)).item()


def _kl_to_posterior(model, q, x) -> torch.Tensor:
    """KL(N(μ, diag s²) ‖ N(m, M⁻¹)) per example, in closed form."""
    post = model.posterior(x)
    m = model.posterior_precision()
    mu, var = q.base_dist.loc, q.base_dist.scale**2
    d = post.mean - mu
    quad = torch.einsum("bi,ij,bj->b", d, m, d)
    return 0.5 * (
        (m.diagonal() * var).sum(-1) + quad - model.latent_dim - var.log().sum(-1) - torch.logdet(m)
    )


class LinearEncoder(torch.nn.Module):
    """A linear VAE's encoder: q(z|x) = N(A(x − b) + c, diag exp(2s)), one scale for all x."""

    def __init__(self, d: int, l_: int, bias: torch.Tensor):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(l_, d, dtype=torch.float64))
        self.c = torch.nn.Parameter(torch.zeros(l_, dtype=torch.float64))
        self.s = torch.nn.Parameter(torch.zeros(l_, dtype=torch.float64))
        self.b = bias

    def forward(self, x):
        loc = (x - self.b) @ self.a.T + self.c
        return diagonal_normal(loc, self.s.exp().expand_as(loc))


def _train_encoder(model, x) -> LinearEncoder:
    """The encoder trained to convergence on the exact ELBO (closed form, L-BFGS)."""
    enc = LinearEncoder(model.data_dim, model.latent_dim, model.bias.detach())
    for p in model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.LBFGS(
        enc.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = -elbo(model, x, q=enc(x), n_samples=None).elbo.mean()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return enc


@pytest.fixture
def ppca_data():
    model = _model()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        x = model.decode(z).base_dist.loc
    x = x + 0.5 * torch.randn(2000, 5, generator=g, dtype=torch.float64)  # the model's σ
    return model, x


def test_linear_vae_at_convergence_has_no_amortization_gap_and_the_closed_form_approximation_gap(
    ppca_data,
):
    model, x = ppca_data
    enc = _train_encoder(model, x)
    xs = x[:200]
    with torch.no_grad():
        q = enc(xs)
    g = inference_gaps(model, xs, q=q, k=5000, seed=3)
    s = summarize_gaps(g)
    assert g.elbo_samples is None  # the model's ELBO is exact: the amortization gap has no noise
    # the linear encoder can represent the best diagonal q of every x: nothing lost to amortizing
    assert abs(s["amortization_gap"]) < 1e-5, s
    truth = _best_diagonal_kl(model)
    assert truth > 0.1  # the test means something: q* is visibly not the posterior
    # the per-example truth: log p(x) exactly minus ELBO(q*) exactly
    exact = model.log_marginal(xs) - g.elbo_best
    assert torch.allclose(exact, torch.full_like(exact, truth), atol=1e-6)
    # the importance-sampled estimate agrees within its Monte Carlo error
    assert abs(s["approximation_gap"] - truth) < 4 * s["log_likelihood_mc_stderr"] + 1e-3, (
        s["approximation_gap"], truth, s["log_likelihood_mc_stderr"],
    )  # fmt: skip
    assert s["log_likelihood_mc_stderr"] < 0.01


def test_a_poor_encoders_amortization_gap_is_the_kl_difference_in_closed_form(ppca_data):
    model, x = ppca_data
    xs = x[:100]
    post = model.posterior(xs)
    # deliberately poor: means shrunk towards 0 and shifted, scales twice the posterior's
    q = diagonal_normal(0.5 * post.mean + 0.3, 2 * post.stddev)
    g = inference_gaps(model, xs, q=q, k=2000, seed=4)
    # log p(x) − ELBO(q) = KL(q ‖ p(z|x)); so ELBO(q*) − ELBO(q) = KL(q‖p) − KL(q*‖p)
    expected = _kl_to_posterior(model, q, xs) - _best_diagonal_kl(model)
    assert expected.min() > 0.5
    assert torch.allclose(g.amortization_gap, expected, atol=1e-6, rtol=1e-6)


def test_gaps_and_elbo_add_up_to_the_log_likelihood_for_every_example():
    torch.manual_seed(0)
    vae = VAE(latent_dim=3, hidden=(16,), data_shape=(1, 4, 4))
    x = (torch.rand(12, 1, 4, 4) < 0.4).float()
    g = inference_gaps(vae, x, k=200, elbo_samples=20, fit_steps=150)
    total = g.elbo_encoder + g.amortization_gap + g.approximation_gap
    assert torch.allclose(total, g.log_px, rtol=0, atol=1e-9)
    s = summarize_gaps(g)
    assert math.isclose(
        s["elbo"] + s["amortization_gap"] + s["approximation_gap"], s["log_likelihood"],
        abs_tol=1e-9,
    )  # fmt: skip
    # an encoder that has learned nothing: fitting each q improves on it by a clear margin
    assert s["amortization_gap"] > 3 * s["amortization_gap_stderr"]
    assert s["approximation_gap"] > -3 * s["approximation_gap_stderr"]
