"""The optimizer and the update that follows a step: clip or check, then step without a sync."""

from __future__ import annotations

import torch

from vaelab.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel updates all parameters in one pass and honours `found_inf`, which
    # lets a non-finite step be skipped without the host ever reading the loss.
    return cls(
        model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, fused=True
    )


class OptimizerUpdate:
    """Apply the gradients a step left in ``.grad``; skip the step if any is not finite."""

    def __init__(self, optimizer, params: list, grad_clip: float | None, scaler=None):
        self.optimizer = optimizer
        self.params = params  # built once: walking the modules each step costs ~1%
        self.grad_clip = grad_clip
        self.scaler = scaler

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        """Step the optimizer; return 1.0 (a device tensor) if the step was skipped, else 0."""
        params = [p for p in self.params if p.grad is not None]
        if self.grad_clip is not None:
            total = torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
        else:
            # any inf or nan in any gradient makes this sum non-finite; a plain sum reads
            # each gradient once, half the cost of a norm (~3% of a W1 step)
            total = torch.stack([p.grad.sum() for p in params]).sum()
        found_inf = (~torch.isfinite(total) | ~torch.isfinite(loss.detach())).float()
        if self.scaler is not None:
            # the scaler's own skip logic handles fp16 overflow; it also needs to see ours
            self.optimizer.found_inf = None
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.found_inf = found_inf
            self.optimizer.step()
        return found_inf
