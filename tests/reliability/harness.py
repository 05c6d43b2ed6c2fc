"""Crash-safety harness: run the real ``vaelab train``, SIGKILL it at random moments, resume.

Each *trial* starts ``vaelab train`` (the CLI, in a subprocess, on CPU with one thread) in a
fresh run directory and kills it with SIGKILL, then keeps restarting it until it finishes,
sometimes killing the restarted process again. After every kill it checks that

* ``checkpoint.safetensors``, when present, is readable (``read_checkpoint``) and finite;
* ``metrics.jsonl`` holds only whole JSON lines (no torn line);
* the run's writer lock is free (the kernel released it with the dead process; a kill while
  the process held it is counted, from the PID it wrote into the lock file);

and at the end that the final training state (weights, optimizer moments, RNG states,
counters), ``model.safetensors`` and the per-epoch metrics are bit-identical to an
uninterrupted run with the same seed, with each epoch in ``metrics.jsonl`` exactly once.

How a killed run is restarted: always ``vaelab train --resume --out DIR`` with the same
arguments, as a user would. With a checkpoint it continues from there; without one (killed
during start-up, before the first checkpoint was renamed into place, or even before the run
folder existed) it must start the run over, and the run must still end identical to the
uninterrupted one.

Kill moments (``MODES``):

* ``startup``: a delay drawn uniformly from [0, time to the reference run's first checkpoint];
  lands in interpreter start-up, imports, data loading, the first writes;
* ``train``: once the process has written its first checkpoint (it is in the training loop),
  a delay drawn uniformly from the time the reference run took for the steps still to do;
* ``ckpt-write``: poll the run folder and kill the moment the k-th new temporary checkpoint
  file ``.checkpoint.safetensors.*.tmp`` appears, i.e. during a checkpoint write. A kill
  counts as *during a checkpoint write* when such a temporary file is still on disk after the
  process is dead (the rename had not happened).

Run it standalone (prints the summary as JSON)::

    python -m tests.reliability.harness --trials 20 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vaelab.errors import CheckpointError
from vaelab.io import load_tensors
from vaelab.runs.lock import holder
from vaelab.runs.ownership import LOCK_FILE
from vaelab.training.checkpoint import read_checkpoint

EPOCHS = 3
STEPS_PER_EPOCH = 32  # mnist-mini: 8000 training images at batch 256
CKPT_EVERY = 3


def train_args(epochs: int = EPOCHS) -> list[str]:
    """A tiny model on the built-in mnist-mini: ~1.5 s of training after ~2.5 s of start-up."""
    return [
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--batch-size",
        "256",
        "--epochs",
        str(epochs),
        "--seed",
        "7",
        "--device",
        "cpu",
        "--quiet",
        # training only: no test evaluation and no report.html (written after training)
        "--no-report",
        "--set",
        "train.final_eval_n=0",
        "--set",
        f"train.checkpoint_every_steps={CKPT_EVERY}",
        "--set",
        "train.threads=1",
    ]


TRAIN_ARGS = train_args()
CKPT = "checkpoint.safetensors"
CKPT_TMP_PREFIX = f".{CKPT}."
MODES = ("startup", "train", "ckpt-write")
RUN_TIMEOUT_S = 180.0


def vaelab_cmd(*args: str) -> list[str]:
    """The ``vaelab`` command line, run by this interpreter (the console script's module)."""
    return [sys.executable, "-m", "vaelab", *args]


def child_env(data_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["VAELAB_DATA"] = str(data_home)
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env.pop("VAELAB_DEBUG", None)
    return env


def ckpt_tmp_names(run_dir: Path) -> set[str]:
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return set()
    return {n for n in names if n.startswith(CKPT_TMP_PREFIX) and n.endswith(".tmp")}


# --------------------------------------------------------------------------------------------
# the uninterrupted reference
# --------------------------------------------------------------------------------------------
@dataclass
class Reference:
    run_dir: Path
    data_home: Path
    wall_s: float  # start to exit
    first_ckpt_s: float  # start to the first checkpoint.safetensors on disk
    ckpt_writes_seen: int  # distinct temporary checkpoint files seen while polling


def make_reference(root: Path) -> Reference:
    root = Path(root)
    run_dir, data_home = root / "reference", root / "data-home"
    cmd = vaelab_cmd("train", "--out", str(run_dir), *TRAIN_ARGS)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        env=child_env(data_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = None
    seen: set[str] = set()
    while proc.poll() is None:
        seen |= ckpt_tmp_names(run_dir)
        if first is None and (run_dir / CKPT).exists():
            first = time.monotonic() - t0
        if time.monotonic() - t0 > RUN_TIMEOUT_S:
            proc.kill()
            raise RuntimeError("reference run timed out")
        time.sleep(0.0005)
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed ({proc.returncode}):\n{out}\n{err}")
    return Reference(
        run_dir=run_dir,
        data_home=data_home,
        wall_s=wall,
        first_ckpt_s=first if first is not None else wall / 2,
        ckpt_writes_seen=len(seen),
    )


# --------------------------------------------------------------------------------------------
# comparing runs
# --------------------------------------------------------------------------------------------
def metrics_rows(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def metrics_torn(run_dir: Path) -> str | None:
    """Why ``metrics.jsonl`` is not a sequence of whole JSON lines, or None when it is."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        return f"does not end with a newline: {text[-80:]!r}"
    for i, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return f"line {i} is not JSON: {line[:80]!r}"
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            return f"line {i} has no epoch: {line[:80]!r}"
    return None


def checkpoint_problem(run_dir: Path) -> str | None:
    """Why the run's checkpoint cannot be used, or None (also None when there is none)."""
    path = Path(run_dir) / CKPT
    if not path.exists():
        return None
    try:
        meta, tensors = read_checkpoint(path)
    except CheckpointError as e:
        return str(e)
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"{key} is not finite"
    if not isinstance(meta.get("state"), dict):
        return "no state in the checkpoint"
    return None


def differences(ref_dir: Path, run_dir: Path) -> list[str]:
    """Everything in which the finished run differs from the reference (empty: identical)."""
    diffs: list[str] = []
    meta_a, ta = read_checkpoint(Path(ref_dir) / CKPT)
    meta_b, tb = read_checkpoint(Path(run_dir) / CKPT)
    if meta_a != meta_b:
        diffs.append(f"checkpoint state: {meta_a['state']} != {meta_b['state']}")
    if ta.keys() != tb.keys():
        diffs.append(f"checkpoint keys: {sorted(ta.keys() ^ tb.keys())}")
    for key in sorted(ta.keys() & tb.keys()):
        if ta[key].dtype != tb[key].dtype or not torch.equal(ta[key], tb[key]):
            diffs.append(f"checkpoint tensor {key}")
    wa = load_tensors(Path(ref_dir) / "model.safetensors")
    wb = load_tensors(Path(run_dir) / "model.safetensors")
    if wa.keys() != wb.keys() or any(not torch.equal(wa[k], wb[k]) for k in wa):
        diffs.append("model.safetensors")
    ra, rb = metrics_rows(ref_dir), metrics_rows(run_dir)
    epochs = [r["epoch"] for r in rb]
    if epochs != list(range(1, EPOCHS + 1)):
        diffs.append(f"metrics epochs {epochs}, expected each of 1..{EPOCHS} once")
    for a, b in zip(ra, rb, strict=False):
        for key in ("step", "train_elbo", "train_kl", "val_elbo", "val_kl", "skipped_steps"):
            if a.get(key) != b.get(key):
                diffs.append(f"metrics epoch {a['epoch']} {key}: {a.get(key)} != {b.get(key)}")
    return diffs


# --------------------------------------------------------------------------------------------
# kill trials
# --------------------------------------------------------------------------------------------
@dataclass
class Summary:
    trials: int = 0
    identical: int = 0
    processes: int = 0
    kills: int = 0
    kills_during_checkpoint_write: int = 0
    kills_before_first_checkpoint: int = 0
    kills_while_locked: int = 0
    unreadable_checkpoints: int = 0
    torn_metrics: int = 0
    stale_tmp_files_at_end: int = 0
    seconds: float = 0.0
    kills_by_mode: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # one per process: how it ended

    def line(self) -> str:
        return (
            f"kill harness: {self.identical}/{self.trials} trials resumed to bit-identical final "
            f"weights; {self.kills} SIGKILLs ({self.kills_during_checkpoint_write} during a "
            f"checkpoint write, {self.kills_before_first_checkpoint} before the first "
            f"checkpoint, {self.kills_while_locked} while the process held the run's lock; by "
            f"mode {self.kills_by_mode}); {self.unreadable_checkpoints} "
            f"unreadable checkpoints; {self.torn_metrics} torn metrics files; "
            f"{self.stale_tmp_files_at_end} temporary files left in finished runs; "
            f"{self.processes} processes in {self.seconds:.0f} s"
        )


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def held_lock(run_dir: Path, pid: int) -> bool:
    """Whether process ``pid`` had taken the run's writer lock (it writes its PID on taking it)."""
    try:
        return (Path(run_dir) / LOCK_FILE).read_text().strip() == str(pid)
    except FileNotFoundError:
        return False


def _remaining(run_dir: Path) -> float:
    """The fraction of the run's steps still to do, by its checkpoint (1.0 without one)."""
    try:
        meta, _ = read_checkpoint(run_dir / CKPT)
        done = meta["state"]["global_step"] / (EPOCHS * STEPS_PER_EPOCH)
    except (CheckpointError, KeyError, TypeError):
        return 1.0
    return min(max(1.0 - done, 0.0), 1.0)


def _drive(proc, run_dir: Path, mode: str | None, rng: random.Random, ref: Reference, t0: float):
    """Let ``proc`` run, killing it as ``mode`` says. Returns True when it was killed.

    Delays scale with the work left (from the checkpoint the process resumes from), so a kill
    lands while the process still runs.
    """
    deadline = t0 + RUN_TIMEOUT_S
    left = _remaining(run_dir)
    if mode == "startup":
        delay = rng.uniform(0.0, ref.first_ckpt_s)
        while proc.poll() is None and time.monotonic() < t0 + delay:
            time.sleep(0.002)
    elif mode == "train":
        # from this process's first checkpoint write (it is in the loop), a delay within the
        # time the reference spent on the work that is left
        start_inode = _inode(run_dir / CKPT)
        while proc.poll() is None and time.monotonic() < deadline:
            if _inode(run_dir / CKPT) not in (None, start_inode):
                break
            time.sleep(0.0005)
        delay = rng.uniform(0.0, 0.9 * left * (ref.wall_s - ref.first_ckpt_s))
        until = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < until:
            time.sleep(0.002)
    elif mode == "ckpt-write":
        k = rng.randint(1, max(1, round(left * ref.ckpt_writes_seen) - 1))
        before = ckpt_tmp_names(run_dir)
        seen: set[str] = set()
        while proc.poll() is None and time.monotonic() < deadline:
            new = ckpt_tmp_names(run_dir) - before
            if new - seen:
                seen |= new
                if len(seen) >= k:
                    break
    else:
        try:
            proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if time.monotonic() > deadline:
        raise RuntimeError(f"{run_dir}: vaelab train ran over {RUN_TIMEOUT_S} s")
    return proc.returncode == -signal.SIGKILL


def run_trial(
    ref: Reference,
    run_dir: Path,
    rng: random.Random,
    summary: Summary,
    *,
    plan: list[str] | None = None,
    max_kills: int = 3,
) -> None:
    """One trial: kill ``vaelab train`` at least once, restart until it finishes, compare.

    ``plan`` fixes the kill modes in order (each restart is killed while the plan lasts);
    without it the first process is always killed and each restart is killed again with
    probability 1/2, up to ``max_kills`` kills, the modes drawn from ``MODES``.
    """
    run_dir = Path(run_dir)
    env = child_env(ref.data_home)
    kills = 0
    start = time.monotonic()
    for _attempt in range(4 * max_kills + 8):
        if plan is not None:
            mode = plan[kills] if kills < len(plan) else None
        elif kills == 0 or (kills < max_kills and rng.random() < 0.5):
            mode = rng.choice(MODES)
        else:
            mode = None
        had_ckpt = (run_dir / CKPT).exists()
        stale = ckpt_tmp_names(run_dir)
        args = ["--resume"] if kills else []
        t0 = time.monotonic()
        proc = subprocess.Popen(
            vaelab_cmd("train", "--out", str(run_dir), *args, *TRAIN_ARGS),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        summary.processes += 1
        try:
            killed = _drive(proc, run_dir, mode, rng, ref, t0)
        finally:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.stderr:
                proc.stderr.close()
        summary.events.append(
            f"{run_dir.name}: {' '.join(args) or 'start'} mode={mode} "
            f"{'killed' if killed else f'exit {proc.returncode}'} after "
            f"{time.monotonic() - t0:.2f} s"
        )
        if killed:
            kills += 1
            summary.kills += 1
            summary.kills_by_mode[mode] = summary.kills_by_mode.get(mode, 0) + 1
            if ckpt_tmp_names(run_dir) - stale:
                summary.kills_during_checkpoint_write += 1
            if not had_ckpt and not (run_dir / CKPT).exists():
                summary.kills_before_first_checkpoint += 1
            if held_lock(run_dir, proc.pid):
                summary.kills_while_locked += 1
            if run_dir.is_dir() and holder(run_dir) is not None:
                summary.failures.append(f"{run_dir}: the lock outlived its killed process")
            problem = checkpoint_problem(run_dir)
            if problem:
                summary.unreadable_checkpoints += 1
                summary.failures.append(f"{run_dir}: unreadable checkpoint after a kill: {problem}")
            torn = metrics_torn(run_dir)
            if torn:
                summary.torn_metrics += 1
                summary.failures.append(f"{run_dir}: metrics.jsonl after a kill {torn}")
            continue
        if proc.returncode != 0:
            summary.failures.append(
                f"{run_dir}: `vaelab train {' '.join(args)}` exited {proc.returncode} after "
                f"{kills} kills: {err.strip().splitlines()[-1:] or err!r}"
            )
            return
        if kills == 0:  # finished before the first kill landed: start the trial again
            shutil.rmtree(run_dir)
            continue
        break
    else:
        summary.failures.append(f"{run_dir}: did not finish in {4 * max_kills + 8} attempts")
        return
    summary.trials += 1
    summary.seconds += time.monotonic() - start
    summary.stale_tmp_files_at_end += len(ckpt_tmp_names(run_dir))
    problem = checkpoint_problem(run_dir)
    if problem:
        summary.unreadable_checkpoints += 1
        summary.failures.append(f"{run_dir}: final checkpoint: {problem}")
    diffs = differences(ref.run_dir, run_dir)
    if diffs:
        summary.failures.append(f"{run_dir}: differs from the reference: {diffs[:5]}")
    else:
        summary.identical += 1


def run_trials(
    ref: Reference, root: Path, n_trials: int, seed: int, *, plan: list[str] | None = None
) -> Summary:
    rng = random.Random(seed)
    summary = Summary()
    for i in range(n_trials):
        run_trial(ref, Path(root) / f"trial-{i:02d}", rng, summary, plan=plan)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="working folder (default: a temporary one)")
    args = p.parse_args(argv)
    root = Path(args.root or tempfile.mkdtemp(prefix="vaelab-kill-"))
    ref = make_reference(root)
    summary = run_trials(ref, root, args.trials, args.seed)
    print(json.dumps({**asdict(summary), "reference_wall_s": ref.wall_s}, indent=2))
    print(summary.line())
    ok = summary.identical == summary.trials == args.trials and not summary.failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
