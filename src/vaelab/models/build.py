"""Building the model a run config names, with its data shape taken from the data."""

from __future__ import annotations

from vaelab.config import RunConfig, from_dict
from vaelab.errors import ConfigError
from vaelab.models.base import MODEL_REGISTRY, SavableModel


def build_model(cfg: RunConfig, data_shape: tuple[int, ...]) -> SavableModel:
    """The model named by ``cfg.model_class``, its ``data_shape`` taken from the data."""
    model_cls = MODEL_REGISTRY.get(cfg.model_class)
    if model_cls is None:
        raise ConfigError(
            f"model_class: unknown {cfg.model_class!r} (known: {', '.join(sorted(MODEL_REGISTRY))})"
        )
    fields = dict(cfg.model)
    given = fields.get("data_shape")
    if given is not None and tuple(given) != tuple(data_shape):
        raise ConfigError(
            f"model.data_shape: {list(given)} does not match the data's {list(data_shape)}"
        )
    fields["data_shape"] = list(data_shape)
    model_config = from_dict(model_cls.config_class, fields, prefix="model.")
    return model_cls(model_config)


def model_likelihood(cfg: RunConfig) -> str | None:
    """The likelihood the run config asks for; None: the data pipeline chooses it."""
    return cfg.model.get("likelihood")
