"""What a training step maximizes, per example, and the statistics it reports.

``terms(model, x, beta)`` returns the loss (a scalar to minimize) and a small tensor of sums
over the batch — ``[bound, elbo, reconstruction, kl]`` — that stays on the device, so the
training loop never waits for the host to read a number.
"""

from __future__ import annotations

import math

import torch

from vaelab.errors import InvalidArgumentError
from vaelab.objectives import elbo, log_weights
from vaelab.training.config import TrainConfig

STAT_NAMES = ("bound", "elbo", "reconstruction", "kl")


class Objective:
    """The ELBO (β-weighted, ``k`` samples) or the IWAE bound with ``k`` importance samples."""

    def __init__(self, cfg: TrainConfig):
        self.kind = cfg.objective
        self.k = cfg.k
        self.estimator = cfg.estimator
        if self.kind == "iwae" and self.k < 2:
            raise InvalidArgumentError(f"the iwae objective needs k >= 2, got {self.k}")

    def terms(self, model, x: torch.Tensor, beta: float | torch.Tensor):
        if self.kind == "elbo":
            out = elbo(model, x, n_samples=self.k, beta=beta)
            stats = torch.stack(
                [out.elbo.sum(), out.elbo.sum(), out.log_px_z.sum(), out.kl.sum()]
            ).detach()
            return -out.objective.mean(), stats
        lw = log_weights(model, x, self.k, dreg=self.estimator == "dreg")  # (k, B)
        bound = torch.logsumexp(lw, 0) - math.log(self.k)  # (B,)
        nan = torch.full((), float("nan"), device=lw.device)
        stats = torch.stack([bound.sum(), lw.mean(0).sum(), nan, nan]).detach()
        return -bound.mean(), stats
