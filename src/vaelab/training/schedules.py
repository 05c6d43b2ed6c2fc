"""The data order, learning-rate and KL-weight schedules: pure functions of the position in
training.

Being pure functions of (step, epoch) they need no state of their own in a checkpoint, and a
resumed run computes exactly the values an uninterrupted one would.
"""

from __future__ import annotations

import math

import torch

from vaelab.config import TrainConfig

# Burda et al. (2015), section 5: 3^i epochs at lr 1e-3 · 10^(-i/7) for i = 0..7 (3,280 in all).
BURDA_STAGES = 8
BURDA_EPOCHS = sum(3**i for i in range(BURDA_STAGES))  # 3280


def burda_stage(epoch: int, epochs: int) -> int:
    """The stage of ``epoch`` when the paper's 8 stages are stretched or shrunk to ``epochs``."""
    done = (epoch + 0.5) * BURDA_EPOCHS / epochs  # position on the paper's time axis
    total = 0
    for i in range(BURDA_STAGES):
        total += 3**i
        if done < total:
            return i
    return BURDA_STAGES - 1


def learning_rate(cfg: TrainConfig, step: int, epoch: int, total_steps: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based) taken during ``epoch``."""
    lr = cfg.lr
    if cfg.schedule == "cosine":
        lr *= 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    elif cfg.schedule == "step":
        lr *= cfg.gamma ** (epoch // cfg.step_epochs)
    elif cfg.schedule == "burda":
        lr *= 10 ** (-burda_stage(epoch, cfg.epochs) / 7)
    if cfg.warmup_steps and step < cfg.warmup_steps:
        lr *= (step + 1) / cfg.warmup_steps
    return lr


def kl_weight(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """β, ramped linearly from 0 over ``kl_warmup_epochs`` (Bowman et al. 2016; Sønderby 2016)."""
    if cfg.kl_warmup_epochs <= 0:
        return cfg.beta
    ramp = cfg.kl_warmup_epochs * steps_per_epoch
    return cfg.beta * min(1.0, (step + 1) / ramp)


def epoch_permutation(seed: int, epoch: int, n: int, device) -> torch.Tensor:
    """The data order of ``epoch``: a pure function of (seed, epoch), so resuming needs no state."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).to(device)
