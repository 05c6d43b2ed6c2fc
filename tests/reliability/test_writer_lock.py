"""One writer per run: a second ``vaelab train`` into a folder another one is writing is
refused with one line naming the writer's PID, and a lock left by a dead process never blocks.

The two writers are real processes (the lock is the kernel's ``flock``, which a test inside
one process could not show).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability import harness
from tests.reliability.checks import assert_one_line_error, snapshot
from vaelab.runs.lock import holder, run_lock
from vaelab.runs.ownership import LOCK_FILE
from vaelab.training.checkpoint import read_checkpoint

LONG = harness.train_args(epochs=500)  # runs for minutes: the lock is held throughout


def _train(run_dir: Path, data_home: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        harness.vaelab_cmd("train", "--out", str(run_dir), *extra),
        env=harness.child_env(data_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until_training(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + harness.RUN_TIMEOUT_S
    while not (run_dir / harness.CKPT).exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first writer did not start training"
        time.sleep(0.01)


@pytest.fixture
def writer(reference_run, tmp_path):
    """A `vaelab train` holding its run's lock (in its training loop), stopped afterwards."""
    run_dir = tmp_path / "run"
    proc = _train(run_dir, reference_run.data_home, *LONG)
    _wait_until_training(proc, run_dir)
    yield proc, run_dir
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.mark.parametrize(
    "flags", [[], ["--overwrite"], ["--resume"]], ids=["new", "over", "resume"]
)
def test_a_second_writer_is_refused_naming_the_first(writer, reference_run, tmp_path, flags):
    first, run_dir = writer
    second = _train(run_dir, reference_run.data_home, *flags, *LONG)
    _, err = second.communicate(timeout=harness.RUN_TIMEOUT_S)
    assert second.returncode == 2, err
    assert_one_line_error(err, str(run_dir), f"pid {first.pid}", "is writing this run")
    assert first.poll() is None, "the first writer must not be disturbed"
    # the first writer goes on and stops cleanly, its run intact
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=harness.RUN_TIMEOUT_S)
    assert first.returncode == 130, err
    assert harness.checkpoint_problem(run_dir) is None
    assert harness.metrics_torn(run_dir) is None


def test_a_lock_left_by_a_killed_writer_never_blocks_the_next(writer, reference_run, tmp_path):
    first, run_dir = writer
    first.kill()  # SIGKILL: no cleanup at all
    first.wait()
    assert (run_dir / LOCK_FILE).read_text().strip() == str(first.pid)  # its PID is still there
    assert holder(run_dir) is None  # but the kernel released the lock
    meta, _ = read_checkpoint(run_dir / harness.CKPT)
    finish = str(meta["state"]["epoch"] + 1)  # one more epoch than the checkpoint finished
    proc = _train(run_dir, reference_run.data_home, "--resume", *LONG, "--epochs", finish)
    _, err = proc.communicate(timeout=harness.RUN_TIMEOUT_S)
    assert proc.returncode == 0, err


def test_reading_commands_do_not_wait_for_the_writer(writer, tmp_path):
    """Evaluating or sampling a run while it trains reads its files; it takes no lock."""
    _, run_dir = writer
    out = tmp_path / "s.png"
    proc = subprocess.run(
        harness.vaelab_cmd("sample", str(run_dir), "-n", "4", "--out", str(out)),
        capture_output=True,
        text=True,
        timeout=harness.RUN_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


def test_the_lock_is_reentrant_within_one_process_and_released_after(tmp_path):
    run_dir = tmp_path / "run"
    with run_lock(run_dir):
        with run_lock(run_dir):  # the trainer and the test evaluation inside `vaelab train`
            assert holder(run_dir) is None  # this process is not "another writer"
        assert (run_dir / LOCK_FILE).is_file()
    assert holder(run_dir) is None
    with run_lock(run_dir):  # and it can be taken again
        pass


def test_checking_for_a_writer_creates_nothing(tmp_path):
    folder = tmp_path / "not-yet"
    assert holder(folder) is None
    assert not folder.exists()
    before = snapshot(tmp_path)
    (tmp_path / "plain").mkdir()
    assert holder(tmp_path / "plain") is None
    assert snapshot(tmp_path) == before
