"""Where training stands: the counters a checkpoint holds, as one typed dataclass; and where
it ended (:class:`TrainResult`).

The JSON part of a checkpoint is :meth:`TrainState.to_json`; :meth:`TrainState.from_json`
reads it back with every field's type and range checked, so a tampered checkpoint is refused
with the field and its value instead of steering the run. The random generators' states are
tensors and travel beside it (``rng``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vaelab.config import from_dict, to_dict
from vaelab.errors import CheckpointError, VaelabError

STAT_NAMES = ("bound", "elbo", "reconstruction", "kl")  # the order of ``sums``


@dataclass
class TrainState:
    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # optimizer steps taken in it
    global_step: int = 0
    best_val_elbo: float | None = None
    best_epoch: int | None = None  # 1-based, as in metrics.jsonl
    epochs_since_best: int = 0
    skipped_steps: int = 0  # non-finite steps skipped so far
    rollbacks: int = 0
    lr_scale: float = 1.0  # lowered ×0.1 by each rollback
    sums: list[float] = field(default_factory=lambda: [0.0] * len(STAT_NAMES))  # this epoch's
    seen: int = 0  # examples in ``sums``
    done: bool = False
    stopped_early: bool = False
    # generator states (tensors, saved beside the JSON): "torch", "data", optionally "cuda"
    rng: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict:
        return {k: v for k, v in to_dict(self).items() if k != "rng"}

    @classmethod
    def from_json(
        cls, data, *, steps_per_epoch: int, epochs: int, where: str = "checkpoint"
    ) -> TrainState:
        """Parse and check the JSON part of a checkpoint (``steps_per_epoch`` and ``epochs`` of
        its run)."""
        if isinstance(data, dict) and "rng" in data:
            raise CheckpointError(f"{where}: training state holds an 'rng' entry; tampered")
        try:
            state = from_dict(cls, data)
        except VaelabError as e:
            raise CheckpointError(f"{where}: training state is not valid ({e}); tampered") from None
        state.check(steps_per_epoch=steps_per_epoch, epochs=epochs, where=where)
        return state

    def check(self, *, steps_per_epoch: int, epochs: int, where: str) -> None:
        """Ranges types cannot express, and the counters' agreement with each other and with
        the run (``epochs`` of it, ``steps_per_epoch`` each); a value out of range names the
        field."""

        def bad(name: str, rule: str):
            value = getattr(self, name)
            raise CheckpointError(
                f"{where}: training state {name}={str(value)[:60]} is not valid ({rule}); tampered"
            )

        counts = ("epoch", "step_in_epoch", "global_step", "epochs_since_best")
        for name in (*counts, "skipped_steps", "rollbacks", "seen"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        if self.epoch > epochs:
            bad("epoch", f"the run has {epochs} epochs")
        if self.step_in_epoch > steps_per_epoch:
            bad("step_in_epoch", f"an epoch has {steps_per_epoch} steps")
        if self.global_step != self.epoch * steps_per_epoch + self.step_in_epoch:
            bad("global_step", "must equal epoch × steps per epoch + step_in_epoch")
        if self.best_epoch is not None and not 1 <= self.best_epoch <= self.epoch:
            bad("best_epoch", "must be a finished epoch")
        if self.epochs_since_best > self.epoch:
            bad("epochs_since_best", "must be at most the epochs finished")
        if (self.best_epoch is None) != (self.best_val_elbo is None):
            bad("best_epoch", "a best epoch and its validation ELBO come together")
        if not (0 < self.lr_scale <= 1 and math.isfinite(self.lr_scale)):
            bad("lr_scale", "must be in (0, 1]")
        # each rollback, and nothing else, multiplies the scale by 0.1
        if not math.isclose(self.lr_scale, 0.1**self.rollbacks, rel_tol=1e-6):
            bad("lr_scale", f"must be 0.1 ** rollbacks, {0.1**self.rollbacks:g}")
        if self.stopped_early and not self.done:
            bad("stopped_early", "a run that stopped early is done")
        if self.step_in_epoch == 0 and self.seen != 0:
            bad("seen", "no example is counted before the epoch's first step")
        if len(self.sums) != len(STAT_NAMES):
            bad("sums", f"must hold {len(STAT_NAMES)} numbers")
        if self.best_val_elbo is not None and not math.isfinite(self.best_val_elbo):
            bad("best_val_elbo", "must be finite")

    def replace(self, **changes) -> TrainState:
        return dataclasses.replace(self, **changes)


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_epoch: int | None
    best_val_elbo: float | None
    stopped_early: bool
    skipped_steps: int
    rollbacks: int
