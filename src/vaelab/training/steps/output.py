"""What one training step returns: the loss and its statistics, named."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab.training.state import STAT_NAMES


@dataclass
class StepOutput:
    """The loss (a scalar to minimize) and batch *sums* of the bound and its terms.

    Every field stays on the device, so the training loop never waits for the host to read a
    number. ``bound`` is what the objective maximizes (the ELBO, or the IWAE bound); for the
    IWAE objective ``elbo`` is the mean log-weight and the two terms are NaN (the bound does
    not split into them).
    """

    loss: torch.Tensor
    bound: torch.Tensor
    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor

    def sums(self) -> torch.Tensor:
        """The four sums in ``STAT_NAMES`` order, one tensor, detached."""
        return torch.stack([getattr(self, name) for name in STAT_NAMES]).detach()
