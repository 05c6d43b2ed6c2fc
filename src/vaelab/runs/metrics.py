"""``metrics.jsonl``: one JSON line per finished epoch, appended whole and fsynced (and, when
the optional ``tensorboard`` package is installed, the same numbers as TensorBoard events)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from vaelab.errors import CheckpointError
from vaelab.io import atomic_write_bytes
from vaelab.runs.layout import METRICS_FILE, TENSORBOARD_DIR


class MetricsLog:
    """The metrics file of ``run_dir``."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE
        self.tb = None

    def open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tb = SummaryWriter(str(self.path.parent / TENSORBOARD_DIR))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def rows(self) -> list[dict[str, Any]]:
        """The whole, parseable epoch lines (a crash may leave a torn last line)."""
        if not self.path.exists():
            return []
        out = []
        text = self.path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("epoch"), int):
                out.append(row)
        return out

    def keep_epochs(self, completed: int) -> None:
        """Keep whole lines of the first ``completed`` epochs: a resumed run rewrites the rest."""
        if not self.path.exists():
            return
        kept = "".join(
            json.dumps(row, sort_keys=True) + "\n"
            for row in self.rows()
            if row["epoch"] <= completed
        )
        if kept != self.path.read_text(encoding="utf-8", errors="replace"):
            atomic_write_bytes(self.path, kept.encode())

    def append(self, row: dict[str, Any]) -> None:
        """Append one line in one write, then fsync (an epoch's line is whole or absent).

        NaN and ±inf are not JSON: they are written as null."""
        row = {
            k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()
        }
        line = (json.dumps(row, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:  # one write of the whole line, unless the kernel writes less
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise CheckpointError(
                f"{self.path}: could not append the epoch's metrics ({e.strerror or e}); "
                "the checkpoint is intact, continue with --resume"
            ) from None
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()


def _json_number(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v
