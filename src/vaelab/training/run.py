"""Open a finished (or running) run directory: its config, best model and data pipeline."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from vaelab.errors import DataError
from vaelab.models.base import SavableModel
from vaelab.training.config import RunConfig
from vaelab.training.data import DataPipeline
from vaelab.training.trainer import read_run_config, resolve_device


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    model: SavableModel
    data: DataPipeline
    device: torch.device

    @property
    def likelihood(self) -> str:
        return getattr(self.model.config, "likelihood", "bernoulli")


def load_run(
    run_dir: str | Path,
    device: str = "auto",
    data_dir: str | None = None,
    split: str = "test",
) -> LoadedRun:
    """The run's best model (``model.safetensors``) and its data, prepared as in training.

    ``data_dir`` overrides where the dataset's files are looked up (the run may have been made
    on another machine).
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=data_dir))
    dev = resolve_device(device)
    model = SavableModel.load(run_dir, map_location=dev)
    model.eval()
    likelihood = getattr(model.config, "likelihood", "bernoulli")
    data = DataPipeline(cfg.data, likelihood, dev, primary=split)
    want = getattr(model.config, "data_shape", None)
    if want is not None and tuple(data.data_shape) != tuple(want):
        raise DataError(
            f"{cfg.data.dataset}: the {split} data have shape {list(data.data_shape)} per "
            f"example, but the model in {run_dir} expects {list(want)}"
        )
    return LoadedRun(run_dir=run_dir, cfg=cfg, model=model, data=data, device=dev)
