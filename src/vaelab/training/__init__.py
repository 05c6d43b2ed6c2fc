"""Training: run configs, the loop, checkpoints, schedules."""

from vaelab.training.config import DataConfig, RunConfig, TrainConfig, resolve
from vaelab.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult

__all__ = [
    "DataConfig",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "resolve",
]
