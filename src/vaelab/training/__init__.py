"""Training: the loop (``trainer``), its state and checkpoints, resume rules, schedules, and
the steps that compute gradients (``steps``)."""

from vaelab.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "TrainingInterrupted"]
