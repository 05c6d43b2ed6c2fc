import math

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from vaelab.distributions import (
    BernoulliLikelihood,
    GaussianLikelihood,
    GaussianPrior,
    diagonal_normal,
    kl_divergence,
    kl_monte_carlo,
    positive_scale,
)
from vaelab.distributions.normal import inverse_positive_scale
from vaelab.errors import InvalidArgumentError


@pytest.mark.parametrize("prior_std", [1.0, 0.3, 2.5])
def test_analytic_kl_matches_monte_carlo(prior_std):
    torch.manual_seed(1)
    b, l_ = 6, 4
    q = diagonal_normal(torch.randn(b, l_, dtype=torch.float64), torch.rand(b, l_).double() + 0.2)
    p = GaussianPrior(l_, std=prior_std).double()()
    analytic = kl_divergence(q, p)
    mc = kl_monte_carlo(q, p, n_samples=20000)
    assert analytic.shape == (b,)
    z = (analytic - mc.kl).abs() / mc.stderr
    assert (z < 4).all(), z
    # and the closed form itself, written out: KL = Σ log(σp/σ) + (σ² + μ²)/(2σp²) − 1/2
    mu, s = q.base_dist.loc, q.base_dist.scale
    by_hand = (math.log(prior_std) - s.log() + (s**2 + mu**2) / (2 * prior_std**2) - 0.5).sum(-1)
    torch.testing.assert_close(analytic, by_hand, rtol=1e-12, atol=1e-12)


def test_kl_falls_back_to_monte_carlo_for_unregistered_pairs():
    class Shifted(torch.distributions.Distribution):
        """A distribution type torch has no KL registration for."""

        arg_constraints: dict = {}  # noqa: RUF012
        has_rsample = True

        def __init__(self, base):
            self.base = base
            super().__init__(base.batch_shape, base.event_shape, validate_args=False)

        def rsample(self, sample_shape=()):
            return self.base.rsample(sample_shape)

        def log_prob(self, value):
            return self.base.log_prob(value)

    q = diagonal_normal(torch.zeros(3, 2).double(), torch.ones(3, 2).double())
    p = diagonal_normal(torch.ones(2).double(), 2 * torch.ones(2).double())
    expected = torch_kl(q, p)
    got = kl_divergence(Shifted(q), p, n_samples=40000)
    assert ((got - expected).abs() < 0.05).all()


def test_positive_scale_is_safe_at_extremes():
    raw = torch.tensor([-1e30, -50.0, 0.0, 50.0, 1e30])
    s = positive_scale(raw, 1e-4)
    assert torch.isfinite(s).all()
    assert (s >= 1e-4).all()
    assert s[0] == pytest.approx(1e-4)
    assert s[3] == pytest.approx(50.0 + 1e-4, rel=1e-6)
    # the gradient is a sigmoid: bounded whatever the input
    r = raw.clone().requires_grad_()
    positive_scale(r).sum().backward()
    assert ((r.grad >= 0) & (r.grad <= 1)).all()
    assert inverse_positive_scale(0.7, 1e-4) == pytest.approx(
        math.log(math.expm1(0.7 - 1e-4)), rel=1e-12
    )
    assert positive_scale(torch.tensor(inverse_positive_scale(0.7))).item() == pytest.approx(0.7)


def test_bernoulli_likelihood_is_the_product_of_pixels():
    lik = BernoulliLikelihood((1, 2, 3))
    logits = torch.randn(5, 6, dtype=torch.float64)
    x = (torch.rand(5, 1, 2, 3) < 0.5).double()
    p = torch.sigmoid(logits).reshape(5, 1, 2, 3)
    by_hand = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(-1)
    torch.testing.assert_close(lik(logits).log_prob(x), by_hand)


@pytest.mark.parametrize("variance", ["fixed", "scalar", "per_dim", "per_example"])
def test_gaussian_likelihood_variance_modes(variance):
    d = 7
    lik = GaussianLikelihood((d,), variance=variance, std=0.5).double()
    assert lik.out_features == (2 if variance == "per_example" else 1) * d
    out = torch.randn(3, lik.out_features, dtype=torch.float64)
    px = lik(out)
    x = torch.randn(3, d, dtype=torch.float64)
    mean = out[:, :d]
    if variance == "per_example":
        scale = positive_scale(out[:, d:], lik.min_scale)
    else:
        scale = torch.full((3, d), 0.5, dtype=torch.float64)
    expected = Normal(mean, scale).log_prob(x).sum(-1)
    torch.testing.assert_close(px.log_prob(x), expected)
    learned = [n for n, p in lik.named_parameters()]
    assert learned == ([] if variance in ("fixed", "per_example") else ["raw_scale"])
    if variance == "per_dim":
        assert lik.raw_scale.shape == (d,)


def test_likelihood_rejects_bad_settings_naming_the_value():
    with pytest.raises(ValueError, match="sometimes"):
        GaussianLikelihood((3,), variance="sometimes")
    with pytest.raises(ValueError, match="-1"):
        GaussianLikelihood((3,), std=-1.0)
    with pytest.raises(InvalidArgumentError, match="12 features"):
        BernoulliLikelihood((5,))(torch.zeros(2, 12))


def test_prior_std_setting_and_learnable():
    p = GaussianPrior(3, std=2.0)
    assert p().stddev.tolist() == pytest.approx([2.0] * 3)
    assert not list(p.parameters())
    learn = GaussianPrior(3, std=0.5, learnable=True)
    assert len(list(learn.parameters())) == 1
    with pytest.raises(ValueError, match="latent_dim must be >= 1, got 0"):
        GaussianPrior(0)
    with pytest.raises(ValueError, match="got 0.0"):
        GaussianPrior(2, std=0.0)
