"""Training steps: fill every parameter's ``.grad`` for one batch and return a :class:`StepOutput`.

:func:`make_step` chooses the step. The hand-written MLP step (:mod:`fused_mlp`) where the model
and settings allow it (faster, the same maths: ``tests/training/test_fused.py``), autograd
(:mod:`autograd`) for everything else.
"""

from __future__ import annotations

import torch

from vaelab.config import TrainConfig
from vaelab.training.steps.autograd import AutogradStep, Objective
from vaelab.training.steps.fused_mlp import FusedStep, unsupported_reason
from vaelab.training.steps.output import StepOutput
from vaelab.training.steps.update import OptimizerUpdate, make_optimizer

__all__ = [
    "AutogradStep",
    "FusedStep",
    "Objective",
    "OptimizerUpdate",
    "StepOutput",
    "make_optimizer",
    "make_step",
]


def make_step(model, cfg: TrainConfig, device: torch.device, optimizer, autocast, scaler=None):
    """The fastest step that computes ``cfg``'s objective for ``model`` exactly."""
    if cfg.fused and device.type == "cpu" and unsupported_reason(model, cfg) is None:
        return FusedStep(model, cfg)
    return AutogradStep(model, cfg, optimizer, autocast, scaler)
