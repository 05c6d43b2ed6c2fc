"""Options shared by several commands, and defaults read from the config dataclasses.

A flag's help text states its default; for settings that live in a run config the default is
read from the dataclass that defines it, so the help cannot drift from the code.
"""

from __future__ import annotations

import argparse
import math

from vaelab.config import DataConfig, TrainConfig
from vaelab.models.vae import VAEConfig

SPLITS = ("train", "valid", "test")
_DEFAULTS = {"data": DataConfig(), "train": TrainConfig(), "model": VAEConfig()}


def config_default(key: str) -> str:
    """The default of a run-config key (``model.*``: the VAE's), as the help shows it."""
    section, _, name = key.partition(".")
    value = getattr(_DEFAULTS[section], name)
    if value is None:
        return "off"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def int_list(text: str) -> list[int]:
    parts = [v.strip() for v in text.split(",")] if "," in text else text.split()
    try:
        if not parts or not all(parts):  # "8,,8" or "8," is a slip, not [8, 8]
            raise ValueError
        return [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes like 400 or 200,200, got {text!r}"
        ) from None


def name_list(text: str) -> list[str]:
    """``a,b,c`` → the column names, in order (spaces around a name are dropped)."""
    names = [v.strip() for v in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected column names like a,b,c, got {text!r}")
    return names


def number_pair(text: str) -> list[float]:
    """``LO,HI`` → two numbers."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected LO,HI like 0,16, got {text!r}")
    return values


def flag_value(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")


def add_split(p: argparse.ArgumentParser, default: str = "test") -> None:
    p.add_argument("--split", default=default, choices=SPLITS, help=f"(default: {default})")


def add_data_dir(p: argparse.ArgumentParser) -> None:
    """Where the run's data is now, if it moved: a built-in set's folder, or the user's file."""
    p.add_argument(
        "--data-dir",
        default=None,
        help="where a built-in dataset's files are (default: as in training)",
    )
    p.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="the run's own data file or folder, if it moved (default: as in training)",
    )


def add_json(p: argparse.ArgumentParser, what: str = "a table") -> None:
    p.add_argument("--json", action="store_true", help=f"print JSON (default: {what})")
