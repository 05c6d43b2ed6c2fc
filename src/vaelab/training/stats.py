"""The epoch's running statistics, summed on the device so that steps never wait for the host."""

from __future__ import annotations

import torch

from vaelab.training.state import TrainState
from vaelab.training.steps.output import StepOutput


class DeviceStats:
    """Running sums of the steps' statistics, kept on the device between host syncs."""

    def __init__(self, sums: list[float], device: torch.device):
        self.sums = torch.tensor(sums, dtype=torch.float64, device=device)
        self.examples = torch.zeros((), dtype=torch.float64, device=device)
        self.skipped = torch.zeros((), device=device)
        self.bad_run = torch.zeros((), device=device)  # consecutive non-finite steps

    def add(self, out: StepOutput, found_inf: torch.Tensor, batch: int) -> None:
        ok = 1.0 - found_inf
        self.sums += torch.nan_to_num(out.sums().double()) * ok
        self.examples += ok * batch
        self.skipped += found_inf
        self.bad_run = (self.bad_run + 1) * found_inf

    def fold_into(self, state: TrainState) -> int:
        """Move the counts into ``state`` (one host sync); return the current bad run."""
        state.sums = self.sums.tolist()
        state.seen += int(self.examples.item())
        state.skipped_steps += int(self.skipped.item())
        self.examples.zero_()
        self.skipped.zero_()
        return int(self.bad_run.item())
