"""The ``vaelab`` command's start and end: pyarrow is imported only by a command that reads a
table, and the quick exit (``vaelab.cli.command``) keeps the exit status and the output of an
ordinary exit, and lets a profiler wrapped around it write its report."""

from __future__ import annotations

import subprocess
import sys


def _vaelab(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_output_is_whole_and_the_status_kept(tmp_path):
    done = _vaelab("-m", "vaelab", "datasets", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    # every dataset's line reached the pipe: nothing was left in a buffer at the exit
    assert done.stdout.endswith("\n") and "fashion-mnist" in done.stdout
    refused = _vaelab("-m", "vaelab", "evaluate", str(tmp_path / "no-such-run"))
    assert refused.returncode == 2
    assert refused.stderr.startswith("vaelab: error:") and refused.stderr.endswith("\n")


def test_a_profiler_still_writes_its_report(tmp_path):
    report = tmp_path / "profile.out"
    done = _vaelab(
        "-m", "cProfile", "-o", str(report), "-m", "vaelab", "datasets", "--data-dir",
        str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert report.stat().st_size > 0


def test_the_command_line_starts_without_pyarrow():
    done = _vaelab("-c", "import sys, vaelab.cli; print('pyarrow' in sys.modules)")
    assert done.stdout.strip() == "False", done.stderr
