"""Training steps: fill every parameter's ``.grad`` for one batch and return a :class:`StepOutput`.

:func:`make_step` chooses the step: a hand-written one where the model and settings allow it
(:mod:`fused_mlp` for the one-layer MLP VAE, :mod:`fused_hierarchical` for two stochastic
layers; faster, the same maths, checked against autograd in ``tests/training``), autograd
(:mod:`autograd`) for everything else.
"""

from __future__ import annotations

import torch

from vaelab.config import TrainConfig
from vaelab.training.steps import fused_hierarchical
from vaelab.training.steps.autograd import AutogradStep, Objective
from vaelab.training.steps.fused_hierarchical import FusedHierarchicalStep
from vaelab.training.steps.fused_mlp import FusedStep, unsupported_reason
from vaelab.training.steps.output import StepOutput
from vaelab.training.steps.update import OptimizerUpdate, make_optimizer

__all__ = [
    "AutogradStep",
    "FusedHierarchicalStep",
    "FusedStep",
    "Objective",
    "OptimizerUpdate",
    "StepOutput",
    "make_optimizer",
    "make_step",
]


def make_step(model, cfg: TrainConfig, device: torch.device, optimizer, autocast, scaler=None):
    """The fastest step that computes ``cfg``'s objective for ``model`` exactly."""
    if cfg.fused and device.type == "cpu":
        if unsupported_reason(model, cfg) is None:
            return FusedStep(model, cfg)
        if fused_hierarchical.unsupported_reason(model, cfg) is None:
            return FusedHierarchicalStep(model, cfg)
    return AutogradStep(model, cfg, optimizer, autocast, scaler)
