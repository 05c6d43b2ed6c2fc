"""The run directory: what a run leaves behind and how every command reads it.

Training writes runs; evaluation, the pictures, the report and the command line read them,
through :func:`load_run`. Nothing reads a run through :mod:`vaelab.training`.
"""

from vaelab.runs.config_file import read_run_config, write_run_config
from vaelab.runs.layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    EVAL_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
)
from vaelab.runs.load import LoadedRun, load_run
from vaelab.runs.metrics import MetricsLog

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "EVAL_FILE",
    "METRICS_FILE",
    "WEIGHTS_FILE",
    "LoadedRun",
    "MetricsLog",
    "load_run",
    "read_run_config",
    "write_run_config",
]
