import json
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from vaelab import VAE, LinearGaussian, VAEConfig, log_likelihood
from vaelab.distributions.likelihoods import softplus_sum_
from vaelab.errors import CheckpointError
from vaelab.models import DiscreteLatent, HierarchicalVAE, SavableModel


def test_linear_vae_reaches_the_ppca_optimum():
    """Lucas et al. (2019): the linear VAE's global optimum is probabilistic PCA's."""
    g = torch.Generator().manual_seed(0)
    d, l_ = 10, 3
    truth = LinearGaussian.from_parameters(
        torch.randn(d, l_, generator=g), torch.randn(d, generator=g), 0.5
    )
    x = truth.decode(torch.randn(2000, l_, generator=g)).sample()
    ppca = LinearGaussian.fit_ppca(x.double(), l_)
    best = ppca.log_marginal(x.double()).mean().item()

    vae = VAE(
        data_shape=(d,), latent_dim=l_, hidden=(), likelihood="gaussian", gaussian_variance="scalar"
    )
    steps = 2000
    opt = torch.optim.Adam(vae.parameters(), lr=2e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        loss = -vae.elbo(x).elbo.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    # the VAE's generative model is linear-Gaussian: read it out and score it exactly
    dec = vae.decoder[0]
    learned = LinearGaussian.from_parameters(
        dec.weight.detach().double(),
        dec.bias.detach().double(),
        vae.likelihood.scale().detach().double(),
    )
    exact = learned.log_marginal(x.double()).mean().item()
    assert exact == pytest.approx(best, abs=0.02)
    assert exact <= best + 1e-9  # PPCA is the maximum
    # and at that optimum the ELBO is (nearly) tight
    tight = vae.elbo(x, n_samples=500).elbo.mean().item()
    assert tight == pytest.approx(best, abs=0.02)
    # the same principal subspace: largest principal angle below 0.05 rad
    q1, _ = torch.linalg.qr(learned.weight.detach())
    q2, _ = torch.linalg.qr(ppca.weight.detach())
    largest_angle = torch.arccos(torch.linalg.svdvals(q1.T @ q2).min().clamp(max=1.0))
    assert largest_angle < 0.05


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(arch="conv", hidden=(64,), latent_dim=4),
        dict(likelihood="gaussian", gaussian_variance="per_example", prior_std=0.5),
        dict(data_shape=(3, 32, 32), arch="conv", likelihood="gaussian", hidden=(32,)),
        dict(learn_prior_std=True, activation="tanh", hidden=(50, 30)),
    ],
)
def test_save_load_gives_identical_outputs(tmp_path, kwargs):
    torch.manual_seed(0)
    vae = VAE(**kwargs)
    with torch.no_grad():  # move every parameter off its initial value
        for p in vae.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.rand(3, *vae.data_shape)
    if vae.config.likelihood == "bernoulli":
        x = (x < 0.5).float()
    vae.save(tmp_path / "m")
    loaded = VAE.load(tmp_path / "m")
    assert loaded.config == vae.config
    for a, b in zip(vae.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    qa, qb = vae.encode(x), loaded.encode(x)
    assert torch.equal(qa.mean, qb.mean) and torch.equal(qa.stddev, qb.stddev)
    z = qa.mean
    assert torch.equal(vae.decode(z).log_prob(x), loaded.decode(z).log_prob(x))
    torch.manual_seed(5)
    la = log_likelihood(vae, x, k=7).log_px
    torch.manual_seed(5)
    lb = log_likelihood(loaded, x, k=7).log_px
    assert torch.equal(la, lb)
    # the generic loader knows the class from the config
    assert isinstance(SavableModel.load(tmp_path / "m"), VAE)


def test_exact_models_save_and_load(tmp_path):
    m = DiscreteLatent.random(3, 5)
    m.save(tmp_path / "d")
    x = (torch.rand(4, 5) < 0.5).float()
    assert torch.equal(SavableModel.load(tmp_path / "d").log_marginal(x), m.log_marginal(x))
    with pytest.raises(CheckpointError, match="holds a DiscreteLatent, not a VAE"):
        VAE.load(tmp_path / "d")


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    vae = VAE(latent_dim=2, hidden=(8,))
    run = vae.save(tmp_path / "m")
    marker = tmp_path / "pwned"
    (run / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="refusing to load a Python pickle"):
        VAE.load(run)
    assert not marker.exists()
    # a torch.save archive (a zip around a pickle) is refused by name too
    torch.save({"w": torch.zeros(1), "p": _Payload(marker)}, run / "model.safetensors")
    with pytest.raises(CheckpointError, match="zip archive"):
        VAE.load(run)
    assert not marker.exists()


def test_tampered_and_truncated_weights_are_refused(tmp_path):
    vae = VAE(latent_dim=2, hidden=(8,))
    run = vae.save(tmp_path / "m")
    path = run / "model.safetensors"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        VAE.load(run)
    path.write_bytes((10**12).to_bytes(8, "little") + good[8:])
    with pytest.raises(CheckpointError, match="header length"):
        VAE.load(run)
    path.write_bytes(good[:8] + b"\xff" * (len(good) - 8))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        VAE.load(run)


def test_config_naming_an_unknown_class_or_key_is_refused(tmp_path):
    run = VAE(latent_dim=2, hidden=(8,)).save(tmp_path / "m")
    meta = json.loads((run / "config.json").read_text())
    meta["class"] = "os.system"
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown model class 'os.system'"):
        VAE.load(run)
    meta["class"] = "VAE"
    meta["config"]["latent_dims"] = 3
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown config key latent_dims"):
        VAE.load(run)
    meta["config"].pop("latent_dims")
    meta["config"]["latent_dim"] = "2"
    (run / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="latent_dim: expected an integer, got '2'"):
        VAE.load(run)
    with pytest.raises(CheckpointError, match="no such model directory"):
        VAE.load(tmp_path / "nowhere")


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="latent_dim must be >= 1, got 0"):
        VAE(latent_dim=0)
    with pytest.raises(ValueError, match="latent_dim must be >= 1, got -3"):
        VAEConfig(latent_dim=-3)
    with pytest.raises(ValueError, match="arch must be 'mlp' or 'conv', got 'rnn'"):
        VAE(arch="rnn")
    with pytest.raises(ValueError, match="divisible by 4, got 30x30"):
        VAE(arch="conv", data_shape=(1, 30, 30))
    vae = VAE(latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 28, 28\), got \(4, 784\)"):
        vae.encode(torch.zeros(4, 784))
    with pytest.raises(ValueError, match=r"z must have 2 features.*\(4, 3\)"):
        vae.decode(torch.zeros(4, 3))
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        vae.log_likelihood(x, k=0)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got -5"):
        vae.log_likelihood(x, k=-5)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        vae.sample(0)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0, got -1"):
        vae.elbo(x, beta=-1.0)


def test_sample_and_beta_objective():
    torch.manual_seed(0)
    vae = VAE(latent_dim=3, hidden=(16,))
    s = vae.sample(5)
    assert s.shape == (5, 1, 28, 28) and ((s >= 0) & (s <= 1)).all()
    binary = vae.sample(5, mean=False)
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    x = (torch.rand(4, 1, 28, 28) < 0.5).float()
    out = vae.elbo(x, beta=0.25)
    torch.testing.assert_close(out.elbo, out.log_px_z - out.kl)
    torch.testing.assert_close(out.objective, out.log_px_z - 0.25 * out.kl)
    assert math.isfinite(out.elbo.sum().item())


def test_bernoulli_fast_log_px_z_is_the_likelihood():
    torch.manual_seed(0)
    vae = VAE(latent_dim=3, hidden=(16, 8)).double()
    x = (torch.rand(4, 1, 28, 28) < 0.3).double()
    z = torch.randn(5, 4, 3, dtype=torch.float64)
    fast = vae.log_px_z(x, z)
    assert fast.shape == (5, 4)
    torch.testing.assert_close(fast, vae.decode(z).log_prob(x), rtol=1e-12, atol=1e-9)
    with torch.no_grad():  # the evaluation's form: softplus summed as the log of products
        torch.testing.assert_close(vae.log_px_z(x, z), fast.detach(), rtol=1e-12, atol=1e-9)


def test_two_layer_decoder_uses_the_same_bernoulli_terms():
    torch.manual_seed(1)
    model = HierarchicalVAE(latent_dims=(4, 2), hidden=(16,), hidden2=(8,)).double()
    x = (torch.rand(3, 1, 28, 28) < 0.3).double()
    z1 = torch.randn(6, 3, 4, dtype=torch.float64)
    plain = model.decode(z1).log_prob(x)
    torch.testing.assert_close(model.decoder_log_prob(x, z1), plain, rtol=1e-12, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(model.decoder_log_prob(x, z1), plain, rtol=1e-12, atol=1e-9)


def test_bernoulli_log_px_z_in_cache_blocks_is_the_likelihood():
    from vaelab.models.base import CACHE_BLOCK

    torch.manual_seed(2)
    vae = VAE(latent_dim=3, hidden=(16, 8)).double()
    x = (torch.rand(8, 1, 28, 28) < 0.3).double()
    samples = 3 * CACHE_BLOCK // (8 * 784) + 5  # three full blocks and a partial one
    z = torch.randn(samples, 8, 3, dtype=torch.float64)
    plain = vae.decode(z).log_prob(x)
    with torch.no_grad():
        blocked = vae.log_px_z(x, z)
        # one latent for every example broadcasts against the batch, in one block as before
        shared = vae.log_px_z(x, z[:, :1])
    assert blocked.shape == (samples, 8)
    torch.testing.assert_close(blocked, plain, rtol=1e-12, atol=1e-9)
    with torch.no_grad():  # one latent per example, no sample axis: z's shape less its last
        single = vae.log_px_z(x, z[0])
    assert single.shape == (8,)
    torch.testing.assert_close(single, plain[0], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(shared, vae.decode(z[:, :1]).log_prob(x), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("d", [1, 7, 120, 121, 784, 3072])
def test_softplus_sum_is_the_sum_of_softplus(d):
    torch.manual_seed(d)
    # typical logits, confident ones far beyond exp's float32 range, and exact zeros
    logits = torch.cat(
        [torch.randn(50, d) * 6 - 2, torch.randn(3, d) * 200, torch.zeros(1, d)]
    ).double()
    truth = torch.logaddexp(logits, torch.zeros(())).sum(-1)  # F.softplus is ℓ above 20
    torch.testing.assert_close(softplus_sum_(logits.clone()), truth, rtol=1e-12, atol=1e-10)
    # float32: within the rounding of a float32 sum of the same values
    got = softplus_sum_(logits.float()).double()
    plain = F.softplus(logits.float()).sum(-1).double()
    tol = 4e-7 * truth.abs().clamp_min(1) + 2e-7 * d**0.5
    assert ((got - truth).abs() <= tol).all(), (got - truth).abs().max()
    assert ((plain - truth).abs() <= tol).all()  # the yardstick holds the plain sum too


def test_softplus_sum_keeps_batch_axes():
    logits = torch.randn(4, 3, 784)
    out = softplus_sum_(logits.clone())
    assert out.shape == (4, 3)
    torch.testing.assert_close(out, F.softplus(logits).sum(-1), rtol=1e-5, atol=1e-3)
    empty = softplus_sum_(torch.zeros(0, 784))
    assert empty.shape == (0,)
