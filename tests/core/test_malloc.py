"""vaelab keeps freed buffers for reuse (glibc), so repeated temporaries do not fault pages."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's"
)

# Allocate and drop three 40 MiB tensors 20 times over and count the minor page faults of
# the last 10 rounds. 40 MiB is above the largest mmap threshold glibc adapts to by itself
# (32 MiB), so with its defaults every round maps and faults fresh pages; smaller buffers
# fault only some of the time, depending on the heap's history.
_PROBE = """
import resource, sys, torch
from vaelab._malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
def step():
    bufs = [torch.ones(10240, 1024) for _ in range(3)]
    return sum(float(b[0, 0]) for b in bufs)
for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(mode: str, **env) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    return out[0], int(out[1])


def test_kept_memory_is_reused_without_page_faults():
    applied, faults = _probe("keep")
    assert applied == "True"
    # 10 rounds of 120 MiB at 4 KiB a page would be ~300,000 faults if the memory went back
    assert faults < 2_000
    _, faults_default = _probe("default")
    assert faults_default > 50 * max(faults, 100)


def test_a_users_own_malloc_setting_is_left_alone():
    applied, _ = _probe("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False"
