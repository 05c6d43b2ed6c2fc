"""The hand-written training step computes what autograd computes."""

import json

import pytest
import torch

from vaelab import VAE
from vaelab.config import TrainConfig
from vaelab.training.steps import Objective
from vaelab.training.steps.fused_mlp import FusedStep, unsupported_reason


def _autograd(model, cfg, x, beta, seed):
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    out = Objective(cfg).terms(model, x, beta)
    out.loss.backward()
    return out.loss.detach(), out.sums(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _fused(model, cfg, x, beta, seed):
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    out = FusedStep(model, cfg)(x, beta)
    return out.loss, out.sums(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "objective, k, estimator, beta",
    [
        ("elbo", 1, "standard", 1.0),
        ("elbo", 3, "standard", 0.3),
        ("iwae", 4, "standard", 1.0),
        ("iwae", 5, "dreg", 1.0),
    ],
)
@pytest.mark.parametrize(
    "arch",
    [
        dict(activation="relu", hidden=(16,)),
        dict(activation="tanh", hidden=(12, 10), prior_std=1.5),
        dict(activation="relu", hidden=(16,), posterior_scale="logvar"),
    ],
)
def test_fused_step_matches_autograd(objective, k, estimator, beta, arch):
    torch.manual_seed(0)
    model = VAE(data_shape=(1, 4, 5), latent_dim=3, **arch).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = (torch.rand(6, 1, 4, 5) < 0.4).double()
    cfg = TrainConfig(objective=objective, k=k, estimator=estimator)
    assert unsupported_reason(model, cfg) is None
    la, sa, ga = _autograd(model, cfg, x, beta, seed=3)
    lf, sf, gf = _fused(model, cfg, x, beta, seed=3)
    torch.testing.assert_close(lf, la, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sf, sa, rtol=1e-10, atol=1e-10, equal_nan=True)
    assert ga.keys() == gf.keys()
    for name in ga:
        torch.testing.assert_close(gf[name], ga[name], rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_second_step_overwrites_the_gradients_of_the_first(precision):
    # the step writes into the same .grad tensors every time: nothing may carry over
    torch.manual_seed(0)
    model = VAE(data_shape=(1, 4, 5), latent_dim=3, hidden=(16,))
    cfg = TrainConfig(objective="elbo", k=2, precision=precision)
    step = FusedStep(model, cfg)
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


def test_unsupported_models_are_named():
    cfg = TrainConfig()
    assert "conv" in unsupported_reason(VAE(arch="conv", hidden=(8,)), cfg)
    assert "gaussian" in unsupported_reason(VAE(likelihood="gaussian"), cfg)
    assert "gelu" in unsupported_reason(VAE(activation="gelu"), cfg)
    with pytest.raises(ValueError, match="does not support"):
        FusedStep(VAE(arch="conv", hidden=(8,)), cfg)


def test_trainer_takes_the_fused_step_and_learns_the_same(tmp_path):
    from vaelab.config import resolve
    from vaelab.training import Trainer

    x = (torch.rand(2000, 1, 28, 28) < 0.2).float()
    rows = {}
    for fused in (True, False):
        cfg = resolve(
            None,
            [],
            {
                "model.hidden": [64],
                "model.latent_dim": 8,
                "data.binarize": "none",
                "train.epochs": 2,
                "train.final_eval_n": 0,
                "train.fused": fused,
            },
        )
        trainer = Trainer(
            cfg,
            tmp_path / str(fused),
            progress=False,
            log=lambda m: None,
            tensors={"train": x, "valid": x[:200]},
        )
        assert isinstance(trainer.step, FusedStep) == fused
        trainer.run()
        rows[fused] = [
            json.loads(line)
            for line in (tmp_path / str(fused) / "metrics.jsonl").read_text().splitlines()
        ]
    for a, b in zip(rows[True], rows[False], strict=True):
        assert a["train_elbo"] == pytest.approx(b["train_elbo"], rel=1e-3)
        assert a["val_elbo"] == pytest.approx(b["val_elbo"], rel=1e-3)
