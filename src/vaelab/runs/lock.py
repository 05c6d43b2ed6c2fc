"""One writer per run folder: an exclusive lock, held by every command that writes a run.

The lock is ``flock`` on ``.vaelab-run.lock`` inside the run folder. The kernel releases it
when the process ends, however it ends (SIGKILL included), so a lock left by a dead process
never blocks anyone. The holder writes its PID into the file, and a second writer is refused
with one line naming that PID. Within one process the lock is re-entrant: ``vaelab train``
holds it from its first write to its last picture, across the trainer and the test
evaluation, which each take it too (a library caller of either is covered as well).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from vaelab.errors import CheckpointError
from vaelab.runs.ownership import LOCK_FILE

# Locks this process holds: the run folder's real path -> the lock file's descriptor.
_HELD: dict[str, int] = {}
# `holder` takes the lock shared for an instant to test it, and the holder writes its PID just
# after taking it: a writer retries this long before it believes another process is there.
_RETRIES, _RETRY_S = 20, 0.01


def _open(path: Path, flags: int) -> int:
    """Open the lock file without following a link, and never blocking (on a planted FIFO)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: the run's lock file is not a regular file")
    return fd


def _pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def busy_error(run_dir: Path, pid: int | None) -> CheckpointError:
    who = f"another vaelab process (pid {pid})" if pid else "another vaelab process"
    return CheckpointError(
        f"{run_dir}: {who} is writing this run; wait for it to end or stop it, then run "
        "this command again"
    )


def holder(run_dir: Path) -> int | None:
    """The PID of another process writing ``run_dir`` now (0 if it has not said), or None.

    Creates nothing: a command can refuse early, before it reads its data, without touching
    the folder.
    """
    path = Path(run_dir) / LOCK_FILE
    if os.path.realpath(run_dir) in _HELD:
        return None
    try:
        fd = _open(path, os.O_RDONLY)
    except OSError:  # no lock file yet (or none readable): nobody has written here
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _pid(fd)
        os.close(fd)
        return pid or 0
    os.close(fd)  # closing drops the shared lock just taken
    return None


def _acquire(fd: int, run_dir: Path) -> None:
    for attempt in range(_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt + 1 == _RETRIES:
                raise busy_error(run_dir, _pid(fd)) from None
            time.sleep(_RETRY_S)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the writer lock of ``run_dir`` (created if needed) for the ``with`` block."""
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    if key in _HELD:  # this process holds it already: the outer block releases it
        yield
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    except OSError as e:
        raise CheckpointError(
            f"{run_dir}: cannot lock the run folder ({e.strerror or e})"
        ) from None
    try:
        _acquire(fd, run_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = fd
    try:
        yield
    finally:
        del _HELD[key]
        os.close(fd)  # releases the lock
