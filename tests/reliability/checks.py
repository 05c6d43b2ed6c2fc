"""Assertions shared by the reliability tests: one-line errors, files left untouched."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

from tests.reliability import harness
from vaelab.cli import main
from vaelab.runs.ownership import LOCK_FILE


def snapshot(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` (relative path → sha256 of its bytes), but the
    writer lock's file: a command that takes the lock writes its PID there, before it has
    read what it then refuses."""
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def assert_unchanged(before: dict[str, str], root: Path) -> None:
    """Each file of ``before`` is still there with the same bytes (new files are allowed)."""
    after = snapshot(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"files changed or removed: {changed}"


def assert_one_line_error(err: str, *needles: str) -> str:
    """``err`` is exactly one ``vaelab: error: ...`` line holding every needle."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("vaelab: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def assert_error_after_log(err: str, *needles: str) -> str:
    """Training got under way: the per-epoch log lines, then exactly one error line."""
    assert "Traceback" not in err, err
    *log, last = err.strip().splitlines()
    for line in log:
        assert line.startswith(("epoch ", "resuming ")), f"not a log line: {line!r}\n{err}"
    return assert_one_line_error(last, *needles)


def assert_no_run_files(out: Path) -> None:
    """A failed train leaves no run files (an empty folder is tolerated)."""
    if out.exists():
        assert [p.name for p in out.iterdir()] == [], list(out.iterdir())


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class Payload:
    """Unpickling this creates ``marker``: the proof that a loader ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def tiny_run(root: Path, name: str = "run", epochs: int = 1, *extra: str) -> Path:
    """A finished tiny run (no test evaluation) made by ``vaelab train``."""
    out = Path(root) / name
    assert main(["train", "--out", str(out), *harness.train_args(epochs), *extra]) == 0
    return out
