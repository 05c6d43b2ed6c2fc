"""The DReG estimator (Tucker et al. 2018) computes exactly the gradient its formula states."""

import pytest
import torch

from vaelab import VAE
from vaelab.distributions import diagonal_normal
from vaelab.models import HierarchicalVAE
from vaelab.objectives import log_weights


def _iwae_loss(lw):
    return -(torch.logsumexp(lw, 0)).mean()


def _params(module):
    return [p for p in module.parameters() if p.requires_grad]


def _dreg_grads(model, x, k, seed):
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    _iwae_loss(log_weights(model, x, k, dreg=True)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _check(model, x, reference, inference_names):
    got = _dreg_grads(model, x, 7, seed=11)
    for name, g in reference.items():
        torch.testing.assert_close(got[name], g, rtol=1e-9, atol=1e-12, msg=name)
    assert any(n.startswith(inference_names) for n in reference)


def test_dreg_single_layer_matches_the_formula():
    torch.manual_seed(0)
    m = VAE(data_shape=(12,), latent_dim=3, hidden=(10,), likelihood="gaussian").double()
    x = torch.randn(5, 12, dtype=torch.float64)
    torch.manual_seed(11)
    q = m.encode(x)
    z = q.rsample((7,))
    q_sg = diagonal_normal(q.base_dist.loc.detach(), q.base_dist.scale.detach())
    lw_sg = m.log_joint(x, z) - q_sg.log_prob(z)
    w = torch.softmax(lw_sg.detach(), 0)
    enc = _params(m.encoder)
    g_enc = torch.autograd.grad(-(w**2 * lw_sg).sum(0).mean(), enc, retain_graph=True)
    lw = m.log_joint(x, z) - q.log_prob(z)
    dec = _params(m.decoder) + _params(m.likelihood)
    g_dec = torch.autograd.grad(_iwae_loss(lw), dec)
    names = {id(p): n for n, p in m.named_parameters()}
    reference = {names[id(p)]: g for p, g in zip(enc + dec, g_enc + g_dec, strict=True)}
    _check(m, x, reference, ("encoder",))


def test_dreg_two_layers_matches_the_formula():
    torch.manual_seed(0)
    m = HierarchicalVAE(
        data_shape=(12,), latent_dims=(4, 2), hidden=(9,), hidden2=(6,), likelihood="gaussian"
    ).double()
    x = torch.randn(5, 12, dtype=torch.float64)
    torch.manual_seed(11)
    q1 = m.encode(x)
    z1 = q1.rsample((7,))
    q2 = m.encode2(z1)
    z2 = q2.rsample()
    detached = {n: p.detach() for n, p in m.q2.named_parameters()}
    q2_sg = m._gaussian(torch.func.functional_call(m.q2, detached, (z1,)))
    q1_sg = diagonal_normal(q1.base_dist.loc.detach(), q1.base_dist.scale.detach())
    lw_sg = m.log_joint(x, (z1, z2)) - q1_sg.log_prob(z1) - q2_sg.log_prob(z2)
    w = torch.softmax(lw_sg.detach(), 0)
    inf = _params(m.q1) + _params(m.q2)
    g_inf = torch.autograd.grad(-(w**2 * lw_sg).sum(0).mean(), inf, retain_graph=True)
    gen = _params(m.p1) + _params(m.decoder) + _params(m.likelihood)
    g_gen = torch.autograd.grad(_iwae_loss(lw_sg), gen)
    names = {id(p): n for n, p in m.named_parameters()}
    reference = {names[id(p)]: g for p, g in zip(inf + gen, g_inf + g_gen, strict=True)}
    _check(m, x, reference, ("q1", "q2"))


def test_dreg_leaves_the_values_unchanged():
    torch.manual_seed(0)
    m = HierarchicalVAE(data_shape=(12,), latent_dims=(4, 2), hidden=(9,), hidden2=(6,))
    x = (torch.rand(3, 12) < 0.5).float()
    torch.manual_seed(1)
    a = log_weights(m, x, 5, dreg=True)
    torch.manual_seed(1)
    b = log_weights(m, x, 5)
    torch.testing.assert_close(a, b)


def test_two_layer_model_evaluates():
    from vaelab.evaluation.metrics import evaluate_model

    torch.manual_seed(0)
    m = HierarchicalVAE(data_shape=(12,), latent_dims=(4, 2), hidden=(9,), hidden2=(6,))
    x = (torch.rand(30, 12) < 0.5).float()
    r = evaluate_model(m, x, k=20, batch_size=7)
    assert r["n"] == 30 and r["latent_dim"] == 4 and r["kl_per_dim"] is None
    assert r["nll"] <= -r["elbo"] + 3 * r["elbo_stderr"]
    assert r["elbo"] == pytest.approx(r["reconstruction"] - r["kl"], abs=1e-5)
