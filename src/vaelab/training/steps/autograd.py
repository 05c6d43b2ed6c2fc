"""The training step for any model: the objective's forward pass, then autograd's backward.

The objective is the ELBO (β-weighted, ``k`` samples) or the IWAE bound with ``k`` importance
samples (standard or doubly-reparameterized gradient), per example, averaged over the batch.
"""

from __future__ import annotations

import math

import torch

from vaelab.config import TrainConfig
from vaelab.errors import InvalidArgumentError
from vaelab.objectives import elbo, log_weights
from vaelab.training.steps.output import StepOutput


class Objective:
    """The forward half: the loss and the batch statistics of ``model`` on ``x``."""

    def __init__(self, cfg: TrainConfig):
        self.kind = cfg.objective
        self.k = cfg.k
        self.estimator = cfg.estimator
        if self.kind == "iwae" and self.k < 2:
            raise InvalidArgumentError(f"the iwae objective needs k >= 2, got {self.k}")

    def terms(self, model, x: torch.Tensor, beta: float | torch.Tensor) -> StepOutput:
        if self.kind == "elbo":
            out = elbo(model, x, n_samples=self.k, beta=beta)
            total = out.elbo.sum()
            return StepOutput(-out.objective.mean(), total, total, out.log_px_z.sum(), out.kl.sum())
        lw = log_weights(model, x, self.k, dreg=self.estimator == "dreg")  # (k, B)
        bound = torch.logsumexp(lw, 0) - math.log(self.k)  # (B,)
        nan = torch.full((), float("nan"), device=lw.device)
        return StepOutput(-bound.mean(), bound.sum(), lw.mean(0).sum(), nan, nan)


class AutogradStep:
    """Forward under autocast (optionally ``torch.compile``d), then backward into ``.grad``."""

    def __init__(self, model, cfg: TrainConfig, optimizer, autocast, scaler=None):
        self.model = model
        self.objective = Objective(cfg)
        self.autocast = autocast
        self.scaler = scaler  # fp16: the loss is scaled, the gradients unscaled before the update
        self.optimizer = optimizer
        self.forward = torch.compile(self._forward) if cfg.compile else self._forward

    def _forward(self, x: torch.Tensor, beta: float) -> StepOutput:
        with self.autocast():
            return self.objective.terms(self.model, x, beta)

    def __call__(self, x: torch.Tensor, beta: float) -> StepOutput:
        out = self.forward(x, beta)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(out.loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            out.loss.backward()
        return out
