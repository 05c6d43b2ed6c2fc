"""Crash safety of `vaelab train`: SIGKILL at random moments, Ctrl-C, SIGTERM, start-up kills.

The SIGKILL harness itself is in ``harness.py`` (also runnable on its own); these tests drive it
(a quick variant of 3 kills here, 20 trials under ``-m slow``) and check the states a crash can
leave behind.
"""

from __future__ import annotations

import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability import harness
from tests.reliability.checks import assert_one_line_error, run_cli
from vaelab.cli import main
from vaelab.training.checkpoint import read_checkpoint

INTERRUPTED = re.compile(
    r"^vaelab: interrupted at epoch (\d+), step (\d+); checkpoint saved, continue with: "
    r"(vaelab train --resume --out \S+.*)$"
)


def _report(capsys, summary: harness.Summary) -> None:
    with capsys.disabled():
        print("\n" + summary.line())


# --------------------------------------------------------------------------------------------
# SIGKILL
# --------------------------------------------------------------------------------------------
def test_sigkill_quick_three_kills_resume_bit_identical(reference_run, tmp_path, capsys):
    """Three SIGKILLs (two during a checkpoint write, one mid-training) on one run, then resume."""
    rng = random.Random(1234)
    summary = harness.Summary()
    plan = ["ckpt-write", "train", "ckpt-write"]
    for i in range(3):  # a kill can miss when the process finishes first: then another trial
        harness.run_trial(reference_run, tmp_path / f"t{i}", rng, summary, plan=plan)
        if summary.kills >= 3 or summary.failures:
            break
    _report(capsys, summary)
    assert not summary.failures, summary.failures
    assert summary.kills >= 3
    assert summary.kills_while_locked >= 2  # the training and checkpoint-write kills
    assert summary.identical == summary.trials >= 1
    assert summary.unreadable_checkpoints == 0
    assert summary.torn_metrics == 0


@pytest.mark.slow
def test_sigkill_twenty_trials_resume_bit_identical(reference_run, tmp_path, capsys):
    """The acceptance run: 20 trials, 1-3 SIGKILLs each at random moments (start-up, training,
    checkpoint writes); all must resume to bit-identical final weights, no checkpoint may ever
    be unreadable, and metrics.jsonl must have each epoch once."""
    summary = harness.run_trials(reference_run, tmp_path, n_trials=20, seed=20240601)
    _report(capsys, summary)
    assert not summary.failures, summary.failures
    assert summary.trials == 20
    assert summary.identical == 20
    assert summary.unreadable_checkpoints == 0
    assert summary.torn_metrics == 0
    assert summary.kills >= 20
    assert summary.kills_during_checkpoint_write >= 1
    assert summary.kills_while_locked >= 1  # and the next --resume was never blocked by it


# --------------------------------------------------------------------------------------------
# SIGINT / SIGTERM
# --------------------------------------------------------------------------------------------
def _start(run_dir: Path, data_home: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        harness.vaelab_cmd("train", "--out", str(run_dir), *extra, *harness.TRAIN_ARGS),
        env=harness.child_env(data_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_training(proc: subprocess.Popen, run_dir: Path, rewrites: int = 2) -> None:
    """Return once the checkpoint has been replaced ``rewrites`` times (the loop is running)."""
    path = run_dir / harness.CKPT
    inodes: set[int] = set()
    deadline = time.monotonic() + harness.RUN_TIMEOUT_S
    while len(inodes) <= rewrites:
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        assert time.monotonic() < deadline, "training did not start"
        try:
            inodes.add(path.stat().st_ino)
        except FileNotFoundError:
            pass
        time.sleep(0.001)


def _interrupt(tmp_path: Path, reference_run, signals: list[int]):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, reference_run.data_home)
    _wait_for_training(proc, run_dir)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.002)
    out, err = proc.communicate(timeout=harness.RUN_TIMEOUT_S)
    return run_dir, proc.returncode, out, err


def _resume_to_end(run_dir: Path, reference_run) -> None:
    proc = _start(run_dir, reference_run.data_home, "--resume")
    _, err = proc.communicate(timeout=harness.RUN_TIMEOUT_S)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert harness.differences(reference_run.run_dir, run_dir) == []


@pytest.mark.parametrize(
    "sig",
    [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
    ids=["SIGINT", "SIGTERM"],
)
def test_signal_during_training_saves_resumable_checkpoint(reference_run, tmp_path, sig):
    run_dir, code, _, err = _interrupt(tmp_path, reference_run, [sig])
    assert code == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    m = INTERRUPTED.match(last)
    assert m, err
    epoch, step = int(m.group(1)), int(m.group(2))
    assert m.group(3).split()[:5] == ["vaelab", "train", "--resume", "--out", str(run_dir)]
    # no other error line: everything else on stderr is the per-epoch log
    for line in err.strip().splitlines()[:-1]:
        assert line.startswith("epoch "), line
    # the checkpoint is at the point the message names
    meta, _ = read_checkpoint(run_dir / harness.CKPT)
    assert (meta["state"]["epoch"] + 1, meta["state"]["step_in_epoch"]) == (epoch, step)
    assert harness.ckpt_tmp_names(run_dir) == set()
    assert harness.metrics_torn(run_dir) is None
    _resume_to_end(run_dir, reference_run)


@pytest.mark.slow
def test_second_ctrl_c_still_leaves_a_resumable_run(reference_run, tmp_path):
    """Two Ctrl-C in quick succession: the second may land inside the checkpoint write."""
    run_dir, code, _, err = _interrupt(tmp_path, reference_run, [signal.SIGINT, signal.SIGINT])
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("vaelab: interrupted")
    assert harness.checkpoint_problem(run_dir) is None
    _resume_to_end(run_dir, reference_run)


class _StopAfter:
    """Stands in for the trainer's signal flag: reports SIGINT after ``n`` looks."""

    def __init__(self, n: int):
        self.n = n

    @property
    def signal(self):
        self.n -= 1
        return signal.SIGINT if self.n < 0 else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_printed_resume_command_finishes_the_run_as_configured(
    reference_run, tmp_path, capsys, monkeypatch
):
    from vaelab.training import trainer as trainer_mod

    run_dir = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(trainer_mod, "StopFlag", lambda: _StopAfter(20))
        assert main(["train", "--out", str(run_dir), *harness.TRAIN_ARGS]) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    m = INTERRUPTED.match(last)
    assert m, last
    argv = shlex.split(m.group(3))
    assert argv[0] == "vaelab"
    assert main([*argv[1:], "--quiet"]) == 0
    rows = harness.metrics_rows(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert harness.differences(reference_run.run_dir, run_dir) == []


# --------------------------------------------------------------------------------------------
# what a kill before the first checkpoint leaves behind
# --------------------------------------------------------------------------------------------
def _killed_before_first_checkpoint(tmp_path: Path) -> Path:
    """A run folder as a kill between the first writes and the first checkpoint leaves it."""
    run_dir = tmp_path / "run"
    assert main(["train", "--out", str(run_dir), *harness.TRAIN_ARGS]) == 0
    (run_dir / harness.CKPT).unlink()
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"\0" * 100)  # a torn write
    return run_dir


def test_resume_after_a_kill_before_the_first_checkpoint_starts_over(
    reference_run, tmp_path, capsys
):
    run_dir = _killed_before_first_checkpoint(tmp_path)
    code, _, err = run_cli(capsys, ["train", "--out", str(run_dir), *harness.TRAIN_ARGS])
    assert code == 2
    assert_one_line_error(err, "run directory exists", "--resume", "--overwrite")
    code, _, err = run_cli(
        capsys, ["train", "--out", str(run_dir), "--resume", *harness.TRAIN_ARGS]
    )
    assert code == 0, err
    assert "starting the run from the beginning" in err
    assert harness.differences(reference_run.run_dir, run_dir) == []


def test_resume_of_a_run_killed_before_its_folder_existed_starts_it(
    reference_run, tmp_path, capsys
):
    run_dir = tmp_path / "never-created"
    code, _, err = run_cli(
        capsys, ["train", "--out", str(run_dir), "--resume", *harness.TRAIN_ARGS]
    )
    assert code == 0, err
    assert harness.differences(reference_run.run_dir, run_dir) == []


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_killed_during_first_write_can_be_started_again(tmp_path, capsys, flag):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".config.json.x1y2z3.tmp").write_text('{"class": "VA')
    code, _, err = run_cli(capsys, ["train", "--out", str(run_dir), flag, *harness.TRAIN_ARGS])
    assert code == 0, err


def test_resume_removes_temporary_files_of_a_killed_write(tmp_path, monkeypatch):
    from vaelab.training import trainer as trainer_mod

    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(trainer_mod, "StopFlag", lambda: _StopAfter(20))
        assert main(["train", "--out", str(run_dir), *harness.TRAIN_ARGS]) == 130
    stale = run_dir / ".checkpoint.safetensors.k9j8h7.tmp"  # what a SIGKILL mid-write leaves
    stale.write_bytes(b"\0" * 1000)
    assert main(["train", "--out", str(run_dir), "--resume", *harness.TRAIN_ARGS]) == 0
    assert not stale.exists()


def test_resume_with_more_epochs_extends_a_finished_run(reference_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--out", str(run_dir), *harness.train_args(epochs=1)]) == 0
    assert main(["train", "--out", str(run_dir), "--resume", *harness.TRAIN_ARGS]) == 0
    assert [r["epoch"] for r in harness.metrics_rows(run_dir)] == [1, 2, 3]
    assert harness.differences(reference_run.run_dir, run_dir) == []


def test_metrics_lines_beyond_the_checkpoint_are_dropped_on_resume(
    reference_run, tmp_path, monkeypatch
):
    """A kill after epoch 2's metrics line but before its checkpoint, plus a torn line."""
    from vaelab.training import trainer as trainer_mod

    run_dir = tmp_path / "run"
    original = trainer_mod.Trainer.save_checkpoint

    def crash_at_end_of_epoch_2(self):
        if self.state.epoch == 2 and self.state.step_in_epoch == 0:
            raise SystemExit("simulated kill")
        original(self)

    with monkeypatch.context() as m, pytest.raises(SystemExit):
        m.setattr(trainer_mod.Trainer, "save_checkpoint", crash_at_end_of_epoch_2)
        main(["train", "--out", str(run_dir), *harness.TRAIN_ARGS])
    meta, _ = read_checkpoint(run_dir / harness.CKPT)
    assert meta["state"]["epoch"] == 1  # the checkpoint is mid epoch 2 ...
    assert [r["epoch"] for r in harness.metrics_rows(run_dir)] == [1, 2]  # ... metrics past it
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "val_el')  # and a torn line
    assert main(["train", "--out", str(run_dir), "--resume", *harness.TRAIN_ARGS]) == 0
    assert [r["epoch"] for r in harness.metrics_rows(run_dir)] == [1, 2, 3]
    assert harness.differences(reference_run.run_dir, run_dir) == []


def test_harness_runs_the_real_cli():
    """The harness's command is the installed CLI (same as the `vaelab` console script)."""
    out = subprocess.run(
        harness.vaelab_cmd("--version"), capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("vaelab ")
    assert Path(sys.executable).exists()
