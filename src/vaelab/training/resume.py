"""What a resumed run may change: settings that do not alter the parameters' trajectory."""

from __future__ import annotations

from pathlib import Path

from vaelab.config import RunConfig, to_dict
from vaelab.errors import ConfigError

# More or fewer epochs only extends or ends a run (refused for schedules laid out over the
# run's length); the rest changes where or how fast it runs, or what is done after it.
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.threads",
    "train.device",
    "train.checkpoint_every_s",
    "train.checkpoint_every_steps",
    "train.final_eval_k",
    "train.final_eval_n",
    "data.data_dir",
)
_SCHEDULES_OVER_THE_RUN = ("cosine", "burda")


def _flat_keys(d: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in d.items():
        if isinstance(v, dict) and k != "model":
            keys |= _flat_keys(v, f"{prefix}{k}.")
        else:
            keys.add(prefix + k)
    return keys


def _lookup(d: dict, key: str):
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def check_resumable(saved: RunConfig, given: RunConfig, run_dir: Path) -> None:
    """Refuse ``given`` if it differs from the saved run in anything but ``RESUMABLE_CHANGES``."""
    old, new = to_dict(saved), to_dict(given)
    schedule = new["train"]["schedule"]
    if old["train"]["epochs"] != new["train"]["epochs"] and schedule in _SCHEDULES_OVER_THE_RUN:
        raise ConfigError(
            f"train.epochs: the {schedule} schedule is laid out over the run's "
            f"{old['train']['epochs']} epochs, so a resumed run cannot change them "
            "(start a new run, or use the constant or step schedule)"
        )
    changed = [
        key
        for key in _flat_keys(old) | _flat_keys(new)
        if _lookup(old, key) != _lookup(new, key) and key not in RESUMABLE_CHANGES
    ]
    if changed:
        raise ConfigError(
            f"--resume continues {run_dir} as it was configured; these settings differ "
            f"from the saved run: {', '.join(sorted(changed))} (only "
            f"{', '.join(RESUMABLE_CHANGES)} may change)"
        )
