"""What a request needs against what the machine has: impossible sizes are refused up front.

Allocating first and failing later ends in an allocator traceback, the kernel's OOM killer, or
a machine that swaps for minutes. Readers and commands whose memory grows with their input
(a file's size, ``-n``, ``--steps``, a model's parameters) call :func:`require_memory` with
what they will hold, and a request that cannot fit is one line naming what it would need.
"""

from __future__ import annotations

import os
from pathlib import Path

from vaelab.errors import InvalidArgumentError

# cgroup limits (containers, CI runners) are lower than what /proc/meminfo reports for the host;
# "max" or a huge number means no limit.
_CGROUP_V2 = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current"))
_CGROUP_V1 = (
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    Path("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)
_NO_LIMIT = 2**60


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):  # absent, "max", or not readable here
        return None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that says
        return None


def available_bytes() -> int | None:
    """Memory this process could still allocate (free RAM, within a cgroup's limit), or None
    where the system does not say."""
    candidates = [_meminfo_available()]
    for limit_path, usage_path in (_CGROUP_V2, _CGROUP_V1):
        limit, usage = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and usage is not None and limit < _NO_LIMIT:
            candidates.append(max(limit - usage, 0))
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


def format_bytes(n: float) -> str:
    """``313.6 GB``: decimal units, as disks and ``free -h --si`` count them."""
    if n < 1000:
        return f"{n:.0f} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} PB"


def require_memory(nbytes: int, what: str) -> None:
    """Refuse ``what`` with one line if it needs more than the memory available now."""
    free = available_bytes()
    if free is not None and nbytes > free:
        raise InvalidArgumentError(
            f"{what} would need {format_bytes(nbytes)} of memory; {format_bytes(free)} is available"
        )
