"""The hand-written step of the two-stochastic-layer VAE computes what autograd computes."""

import json

import pytest
import torch

from vaelab import VAE
from vaelab.config import TrainConfig
from vaelab.models.hierarchical import HierarchicalVAE
from vaelab.objectives import log_weights
from vaelab.training.steps import Objective
from vaelab.training.steps.fused_hierarchical import FusedHierarchicalStep, unsupported_reason

OBJECTIVES = [
    ("elbo", 1, "standard", 1.0),
    ("elbo", 3, "standard", 0.5),
    ("iwae", 5, "standard", 1.0),
    ("iwae", 5, "dreg", 1.0),
]
PAPER = dict(data_shape=(1, 28, 28))  # 784 → 200-200 → 100 → 100-100 → 50, tanh
ARCHS = {
    "tanh-two-hidden": dict(
        data_shape=(1, 4, 5), latent_dims=(4, 3), hidden=(9, 7), hidden2=(6, 5)
    ),
    "relu-one-hidden": dict(
        data_shape=(1, 4, 5),
        latent_dims=(3, 5),
        hidden=(8,),
        hidden2=(6,),
        activation="relu",
        prior_std=1.5,
        min_posterior_std=1e-2,
    ),
    # three hidden layers between x and z1, none (affine maps) between z1 and z2
    "relu-mixed-depth": dict(
        data_shape=(1, 4, 5), latent_dims=(3, 2), hidden=(5, 4, 3), hidden2=(), activation="relu"
    ),
}


def _model(arch: dict, batch: int, jitter: float = 0.3):
    """A float64 model with weights moved off their initialization, and binary data."""
    torch.manual_seed(0)
    model = HierarchicalVAE(**arch).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(jitter * torch.randn_like(p))
    x = (torch.rand(batch, *model.data_shape) < 0.4).double()
    return model, x


def _autograd(model, cfg, x, beta, seed):
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    out = Objective(cfg).terms(model, x, beta)
    out.loss.backward()
    return out.loss.detach(), out.sums(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _fused(model, cfg, x, beta, seed):
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    out = FusedHierarchicalStep(model, cfg)(x, beta)
    return out.loss, out.sums(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _check_equal(model, objective, k, estimator, beta, x):
    cfg = TrainConfig(objective=objective, k=k, estimator=estimator)
    assert unsupported_reason(model, cfg) is None
    la, sa, ga = _autograd(model, cfg, x, beta, seed=3)
    lf, sf, gf = _fused(model, cfg, x, beta, seed=3)
    torch.testing.assert_close(lf, la, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sf, sa, rtol=1e-10, atol=1e-10, equal_nan=True)
    assert ga.keys() == gf.keys()
    for name in ga:
        # the gradients are O(0.1-10); atol covers entries that cancel to ~0
        torch.testing.assert_close(gf[name], ga[name], rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("objective, k, estimator, beta", OBJECTIVES)
@pytest.mark.parametrize("arch", ARCHS.values(), ids=ARCHS.keys())
def test_fused_step_matches_autograd(objective, k, estimator, beta, arch):
    model, x = _model(arch, batch=6)
    _check_equal(model, objective, k, estimator, beta, x)


@pytest.mark.parametrize("objective, k, estimator, beta", OBJECTIVES)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fused_step_matches_autograd_on_the_papers_network(
    objective, k, estimator, beta, activation
):
    model, x = _model({**PAPER, "activation": activation}, batch=3, jitter=0.02)
    _check_equal(model, objective, k, estimator, beta, x)


def test_dreg_changes_only_the_inference_networks_gradients():
    # what makes the DReG check above a check: with the same draws, the generative networks
    # get the standard IWAE gradient and the inference networks a different one
    model, x = _model(ARCHS["tanh-two-hidden"], batch=6)
    _, _, std = _fused(model, TrainConfig(objective="iwae", k=5), x, 1.0, seed=3)
    _, _, dreg = _fused(model, TrainConfig(objective="iwae", k=5, estimator="dreg"), x, 1.0, 3)
    for name in std:
        if name.startswith(("p1.", "decoder.")):
            torch.testing.assert_close(dreg[name], std[name], rtol=1e-12, atol=1e-14)
        else:
            assert (dreg[name] - std[name]).abs().max() > 1e-3 * std[name].abs().max(), name


def test_dreg_stays_finite_when_a_normalized_weight_underflows():
    # In float32 a sample 104 nats below the best one has w̃ = 0 exactly (it happens in the
    # first epoch of iwae-2layer-k5-fast). Neither step divides by w̃ (the autograd path once
    # did, and skipped 17% of that epoch's steps as non-finite), so every gradient is finite
    # and the two steps agree.
    torch.manual_seed(0)
    model = HierarchicalVAE(**ARCHS["tanh-two-hidden"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.6 * torch.randn_like(p))
    x = (torch.rand(6, *model.data_shape) < 0.4).float()
    cfg = TrainConfig(objective="iwae", k=5, estimator="dreg")
    torch.manual_seed(3)
    with torch.no_grad():
        assert (torch.softmax(log_weights(model, x, 5), 0) == 0).any()
    loss_a, _, ga = _autograd(model, cfg, x, 1.0, seed=3)
    loss_f, _, gf = _fused(model, cfg, x, 1.0, seed=3)
    torch.testing.assert_close(loss_f, loss_a)
    for name, g in gf.items():
        assert torch.isfinite(g).all() and torch.isfinite(ga[name]).all(), name
        # float32 rounding: ≤ 3e-6 in norm observed
        assert (g - ga[name]).norm() <= 3e-5 * ga[name].norm(), name


@pytest.mark.parametrize("objective, k, estimator", [("elbo", 1, "standard"), ("iwae", 5, "dreg")])
def test_bf16_products_stay_close_to_float32(objective, k, estimator):
    # bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2%) in every product; what
    # reaches the optimizer must still be the float32 gradient to a few percent (observed:
    # loss 2e-5, gradients ≤ 1% relative in norm; allowed: 1e-3 and 5%)
    model, x = _model(PAPER, batch=16, jitter=0.02)
    model.float()
    x = x.float()
    grads, losses = {}, {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(objective=objective, k=k, estimator=estimator, precision=precision)
        torch.manual_seed(3)
        model.zero_grad(set_to_none=True)
        losses[precision] = FusedHierarchicalStep(model, cfg)(x, 1.0).loss
        grads[precision] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert all(g.dtype == torch.float32 for g in grads["bf16"].values())
    torch.testing.assert_close(losses["bf16"], losses["fp32"], rtol=1e-3, atol=0)
    for name, g32 in grads["fp32"].items():
        err = (grads["bf16"][name] - g32).norm() / g32.norm()
        assert err < 0.05, (name, float(err))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("estimator", ["standard", "dreg"])
def test_a_second_step_overwrites_the_gradients_of_the_first(precision, estimator):
    # the step writes into the same .grad tensors every time: nothing may carry over
    torch.manual_seed(0)
    model = HierarchicalVAE(**ARCHS["tanh-two-hidden"])
    cfg = TrainConfig(objective="iwae", k=3, estimator=estimator, precision=precision)
    step = FusedHierarchicalStep(model, cfg)
    x1, x2 = ((torch.rand(6, 1, 4, 5) < p).float() for p in (0.2, 0.7))
    torch.manual_seed(1)
    step(x1, 1.0)
    first = [p.grad for p in model.parameters()]
    torch.manual_seed(2)
    step(x2, 1.0)
    again = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert all(p.grad is g for p, g in zip(model.parameters(), first, strict=True))
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    step(x2, 1.0)
    for n, p in model.named_parameters():
        torch.testing.assert_close(again[n], p.grad, rtol=0, atol=0, msg=n)


def test_what_the_fused_step_accepts_and_refuses():
    small = dict(data_shape=(1, 4, 5), latent_dims=(3, 2), hidden=(8,), hidden2=(4,))
    for activation in ("tanh", "relu"):
        for cfg in (
            TrainConfig(),
            TrainConfig(objective="elbo", k=4, beta=0.2, precision="bf16"),
            TrainConfig(objective="iwae", k=5),
            TrainConfig(objective="iwae", k=5, estimator="dreg"),
        ):
            model = HierarchicalVAE(**small, activation=activation, prior_std=2.0)
            assert unsupported_reason(model, cfg) is None
    cfg = TrainConfig()
    assert "VAE is not" in unsupported_reason(VAE(hidden=(8,)), cfg)
    gaussian = HierarchicalVAE(**small, likelihood="gaussian")
    assert "gaussian" in unsupported_reason(gaussian, cfg)
    assert "gelu" in unsupported_reason(HierarchicalVAE(**small, activation="gelu"), cfg)
    fp16 = TrainConfig(precision="fp16")
    assert "fp16" in unsupported_reason(HierarchicalVAE(**small), fp16)
    with pytest.raises(ValueError, match="does not support the gaussian likelihood"):
        FusedHierarchicalStep(gaussian, cfg)


def test_vaelab_train_takes_the_fused_step_and_learns_the_same(tmp_path, monkeypatch):
    from vaelab.cli import main

    steps = []
    call = FusedHierarchicalStep.__call__
    monkeypatch.setattr(
        FusedHierarchicalStep,
        "__call__",
        lambda self, x, beta: steps.append(1) or call(self, x, beta),
    )
    args = [
        "train",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--quiet",
        "--set",
        "model_class=HierarchicalVAE",
        "--set",
        "model.hidden=[32]",
        "--set",
        "model.hidden2=[16]",
        "--set",
        "model.latent_dims=[8,4]",
        "--set",
        "train.objective=iwae",
        "--set",
        "train.k=3",
        "--set",
        "train.estimator=dreg",
        "--set",
        "train.final_eval_n=0",
    ]
    rows = {}
    for fused in (True, False):
        steps.clear()
        out = tmp_path / f"fused-{fused}"
        assert main([*args, "--out", str(out), "--set", f"train.fused={fused}"]) == 0
        rows[fused] = json.loads((out / "metrics.jsonl").read_text())
        assert len(steps) == (rows[fused]["step"] if fused else 0)
    # the same seeds give the same draws; what differs is float32 rounding through 32 Adam
    # steps (observed: 1e-7 relative, ~3e-5 nats; allowed: 1e-5 relative, ~2e-3 nats)
    for key in ("val_elbo", "train_elbo", "train_iwae_bound"):
        assert rows[True][key] == pytest.approx(rows[False][key], rel=1e-5), key
