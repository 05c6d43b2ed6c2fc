"""Ask glibc's allocator to keep freed buffers of a few MiB for reuse instead of unmapping them.

Why. torch takes CPU tensors from the C allocator. glibc serves a request above its mmap
threshold with fresh pages from the kernel and gives heap memory above its trim threshold
back on ``free``; both thresholds adapt upwards but stop at 32/64 MiB. A training step or an
evaluation chunk that makes and drops tens of MiB of temporaries (the IWAE bound with
``k=50``: five 16 MiB logit-sized buffers per step) therefore gets new pages every step and
pays a page fault per 4 KiB. ``benchmarks/allocator.py`` (a fresh process per run, torch
2.13, 2-core VM): the ``k=50`` IWAE step of ``configs/iwae/iwae-1layer-k50-fast.yaml`` took
126 ms with glibc's defaults and 99 ms with the thresholds below on one thread (73 vs 55 ms
on two); K=5000 evaluation in 2**22-element chunks 61 vs 44 ms per image on one thread (no
difference on two).

The setting is process-wide, so vaelab applies it only when it is about to do such work
(training, evaluation), only on glibc, and never over a choice the user made with glibc's
own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` variables. The cost: up to
``TRIM_THRESHOLD`` of freed memory stays in the process for reuse rather than going back to
the system.
"""

from __future__ import annotations

import ctypes
import os
import platform

MMAP_THRESHOLD = 64 * 2**20  # requests below this come from the reusable heap
TRIM_THRESHOLD = 256 * 2**20  # free heap memory kept before any is given back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_USER_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True if they are in force (False: left alone)."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if any(v in os.environ for v in _USER_VARS) or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success. The mmap threshold goes first: a fixed trim threshold
    # alone switches off the adaptive mmap threshold and is slower than the defaults.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
