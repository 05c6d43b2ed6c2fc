"""Seeded blocks that leave the caller's random state untouched."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def seeded(device: torch.device | str, seed: int):
    """Run a block with torch's global generator seeded with ``seed``, then restore it.

    Evaluation uses this so that its numbers are reproducible and so that evaluating in the
    middle of training does not change the training run's random draws.
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield
