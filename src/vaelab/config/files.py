"""Where a run configuration comes from: defaults → a YAML/JSON file → ``--set`` → flags.

Every layer is type-checked by :func:`vaelab.config.from_dict`, so an unknown key or a wrong
type is an error that names the key; :func:`resolve` ends with :func:`validate`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from vaelab.config.fields import from_dict
from vaelab.config.schema import RunConfig, validate
from vaelab.errors import ConfigError, excerpt
from vaelab.io import read_regular

MAX_CONFIG_BYTES = 16 * 2**20  # recipes are a few hundred bytes


class _Loader(yaml.SafeLoader):
    """The safe loader, reading 1e-3 as a number as YAML 1.2 and JSON do (YAML 1.1 wants 1.0e-3),
    without aliases.

    An alias (``*name``) makes one node appear many times; nine nested ones expand nine bytes
    into 9^9 list items (the "billion laughs"), which every later step (type checks, error
    messages) would walk. A config has no use for them, so they are refused where they appear.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"found the alias *{event.anchor}; aliases are not allowed in a vaelab config",
                event.start_mark,
            )
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
# What a malformed document can raise besides YAMLError: PyYAML's constructors convert tagged
# scalars with int()/float()/regexes (`!!int a`, `!!float`), and nesting recurses.
_PARSE_ERRORS = (
    yaml.YAMLError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no tags, no code


def load_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON config file (YAML via the safe loader: no tags, no code)."""
    path = Path(path)
    raw = read_regular(path, "config file", max_bytes=MAX_CONFIG_BYTES, error=ConfigError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: cannot read config file: not UTF-8 text ({e.reason})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else _yaml_load(text)
    except _PARSE_ERRORS as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{path}: not a valid config file ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` → ``(["train", "lr"], 3e-4)``; values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {excerpt(text)}")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects key=value, got {excerpt(text)}")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except _PARSE_ERRORS:
        value = raw
    return key.split("."), value


def merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``base[path[0]][path[1]]… = value``, creating mappings on the way."""
    node = base
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: {part} is not a section")
        node = child
    node[path[-1]] = value


def deep_update(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def resolve(
    file: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults (or ``base``) → file → ``--set`` overrides → explicit flags, checked."""
    data: dict[str, Any] = json.loads(json.dumps(base)) if base else {}
    if file is not None:
        deep_update(data, load_file(file))
    for text in overrides or []:
        merge(data, *parse_override(text))
    for key, value in (flags or {}).items():
        merge(data, key.split("."), value)
    return validate(from_dict(RunConfig, data))
