"""The epoch's running statistics, summed on the device so that steps never wait for the host,
and the host sync that reads them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from vaelab.distributed import SINGLE, World
from vaelab.training.state import TrainState
from vaelab.training.steps.output import StepOutput


class DeviceStats:
    """Running sums of the steps' statistics, kept on the device between host syncs.

    In one process ``sums`` starts from the state's and runs on. Under data parallelism each
    rank sums only its own rows, from zero, and each sync adds the sum over ranks to the state.
    """

    def __init__(self, sums: list[float], device: torch.device, world: World = SINGLE):
        self.world = world
        start = [0.0] * len(sums) if world.active else sums
        self.sums = torch.tensor(start, dtype=torch.float64, device=device)
        self.examples = torch.zeros((), dtype=torch.float64, device=device)
        self.skipped = torch.zeros((), device=device)
        self.bad_run = torch.zeros((), device=device)  # consecutive non-finite steps

    def add(self, out: StepOutput, found_inf: torch.Tensor, batch: int) -> None:
        """Count a step of ``batch`` examples (0: a rank that only stood in, see Shard.rows)."""
        ok = 1.0 - found_inf
        if batch:
            self.sums += torch.nan_to_num(out.sums().double()) * ok
            self.examples += ok * batch
        self.skipped += found_inf  # found_inf is the same on every rank: counted, not reduced
        self.bad_run = (self.bad_run + 1) * found_inf

    def sync(
        self,
        state: TrainState,
        signalled: Callable[[], bool],
        finite: Callable[[], bool],
        max_bad: int,
    ) -> tuple[int, bool, bool]:
        """Move the counts into ``state`` (the host sync). Returns the current run of
        non-finite steps, whether the weights overflowed (``not finite()``, asked only while
        that run is short of ``max_bad``) and whether to stop (``signalled()``).

        Under data parallelism one all-reduce carries the sums, the example count and each
        rank's two answers, so that every rank reaches the same decisions at the same step.
        """
        if not self.world.active:
            state.sums = self.sums.tolist()
            state.seen += int(self.examples.item())
            bad = self._fold(state)
            return bad, bad < max_bad and not finite(), signalled()
        votes = torch.tensor([signalled(), not finite()], dtype=torch.float64)
        local = torch.cat([self.sums, self.examples.reshape(1), votes.to(self.sums.device)])
        total = self.world.all_reduce(local).tolist()
        n = len(state.sums)
        state.sums = [a + b for a, b in zip(state.sums, total[:n], strict=True)]
        state.seen += int(total[n])
        self.sums.zero_()
        bad = self._fold(state)
        stops, overflows = total[n + 1 :]
        return bad, bad < max_bad and overflows > 0, stops > 0

    def _fold(self, state: TrainState) -> int:
        state.skipped_steps += int(self.skipped.item())
        self.examples.zero_()
        self.skipped.zero_()
        return int(self.bad_run.item())
