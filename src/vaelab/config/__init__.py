"""Configs are data: typed dataclasses, read from files and overrides, checked on the way in.

``fields`` turns plain mappings into dataclasses and back; ``schema`` is what a run is made of
(data, training, the model's fields); ``files`` resolves a run config from defaults, a file,
``--set`` overrides and flags.
"""

from vaelab.config.fields import coerce, from_dict, to_dict
from vaelab.config.files import load_file, resolve
from vaelab.config.schema import DataConfig, RunConfig, TrainConfig, validate

__all__ = [
    "DataConfig",
    "RunConfig",
    "TrainConfig",
    "coerce",
    "from_dict",
    "load_file",
    "resolve",
    "to_dict",
    "validate",
]
