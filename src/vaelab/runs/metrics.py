"""``metrics.jsonl``: one JSON line per finished epoch, appended whole and fsynced (and, when
the optional ``tensorboard`` package is installed, the same numbers as TensorBoard events)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vaelab.errors import CheckpointError
from vaelab.io import atomic_write_bytes, dumps_json, json_safe, read_regular
from vaelab.runs import ownership
from vaelab.runs.layout import METRICS_FILE, TENSORBOARD_DIR

# A line per epoch is ~500 bytes: 2**28 is half a million epochs. A larger file (or a FIFO,
# a device) in a run folder is not vaelab's metrics and is refused.
MAX_METRICS_BYTES = 2**28


class MetricsLog:
    """The metrics file of ``run_dir``."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE
        self.tb = None

    def open_tensorboard(self) -> str | None:
        """Write the metrics as TensorBoard events too, where the package is installed.

        Returns why they are not written when the reason is worth a line: a ``tensorboard/``
        folder of the user's own is theirs, and the run goes on without events rather than
        writing into it.
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        try:
            ownership.claim(self.path.parent, [f"{TENSORBOARD_DIR}/"])
        except CheckpointError as e:
            return f"no TensorBoard events for this run: {e}"
        self.tb = SummaryWriter(str(self.path.parent / TENSORBOARD_DIR))
        return None

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def rows(self) -> list[dict[str, Any]]:
        """The whole, parseable epoch lines (a crash may leave a torn last line)."""
        if not self.path.exists():
            return []
        out = []
        for line in self._text().splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # torn or tampered: not an epoch
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
        if kept != self._text():
            atomic_write_bytes(self.path, kept.encode())

    def _text(self) -> str:
        raw = read_regular(self.path, "metrics file", max_bytes=MAX_METRICS_BYTES)
        return raw.decode("utf-8", errors="replace")

    def append(self, row: dict[str, Any]) -> None:
        """Append one line in one write, then fsync (an epoch's line is whole or absent).

        NaN and ±inf are not JSON: they are written as null."""
        row = json_safe(row)
        line = (dumps_json(row, sort_keys=True) + "\n").encode()
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
