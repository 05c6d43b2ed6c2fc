"""Building the model a run config names, with its data shape taken from the data."""

from __future__ import annotations

import torch

from vaelab.config import RunConfig, from_dict
from vaelab.errors import ConfigError, excerpt
from vaelab.memory import require_memory
from vaelab.models.base import MODEL_REGISTRY, SavableModel


def build_model(cfg: RunConfig, data_shape: tuple[int, ...], copies: int = 1) -> SavableModel:
    """The model named by ``cfg.model_class``, its ``data_shape`` taken from the data.

    Its sizes are laid out on the meta device first: a model whose parameters, held
    ``copies`` times (training keeps gradients, optimizer moments and a checkpoint's bytes
    beside the weights), would not fit in memory is refused before anything is allocated.
    """
    model_cls = MODEL_REGISTRY.get(cfg.model_class)
    if model_cls is None:
        raise ConfigError(
            f"model_class: unknown {excerpt(cfg.model_class)} "
            f"(known: {', '.join(sorted(MODEL_REGISTRY))})"
        )
    fields = dict(cfg.model)
    given = fields.get("data_shape")
    if given is not None and tuple(given) != tuple(data_shape):
        raise ConfigError(
            f"model.data_shape: {list(given)} does not match the data's {list(data_shape)}"
        )
    fields["data_shape"] = list(data_shape)
    model_config = from_dict(model_cls.config_class, fields, prefix="model.")
    with torch.device("meta"):
        skeleton = model_cls(model_config)
    count = sum(t.numel() for t in skeleton.state_dict().values())
    nbytes = sum(t.numel() * t.element_size() for t in skeleton.state_dict().values())
    held = f" ({copies} copies of its weights)" if copies > 1 else ""
    require_memory(copies * nbytes, f"a {cfg.model_class} of {count:,} parameters{held}")
    return model_cls(model_config)


def model_likelihood(cfg: RunConfig) -> str | None:
    """The likelihood the run config asks for; None: the data pipeline chooses it."""
    return cfg.model.get("likelihood")
