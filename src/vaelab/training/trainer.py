"""The training loop: batches in, parameters moved, metrics and checkpoints out.

The run directory's files are :mod:`vaelab.runs`; the counters a checkpoint holds are
:class:`~vaelab.training.state.TrainState`; the step is chosen by
:func:`~vaelab.training.steps.make_step`. What is left here is the loop, validation, the
end of an epoch and the rollback after non-finite steps.

Determinism: every random draw comes from either the global torch generator (the
reparameterization noise) or the data generator (binarization/dequantization noise), and both
states are in the checkpoint together with the position in the epoch; the data order of an
epoch is a pure function of (seed, epoch). A resumed run therefore takes exactly the steps an
uninterrupted one would.

Under torchrun (``world``, :mod:`vaelab.distributed`) each rank computes its rows of every
global batch, drawing the whole batch's noise; the update, the host sync and validation reduce
over ranks, and rank 0 alone writes. Without torchrun each of those is the identity.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from vaelab._malloc import keep_freed_memory
from vaelab.config import RunConfig, validate
from vaelab.device import autocast, resolve_device
from vaelab.distributed import SINGLE, DistributedError, World
from vaelab.errors import ConfigError, VaelabError
from vaelab.io import load_tensors, save_tensors
from vaelab.models.base import LatentVariableModel
from vaelab.models.build import build_model, model_likelihood
from vaelab.runs import layout
from vaelab.runs.config_file import write_run_config
from vaelab.runs.lock import run_lock
from vaelab.runs.metrics import MetricsLog
from vaelab.training import checkpoint
from vaelab.training.diagnosis import divergence_cause
from vaelab.training.progress import EpochBar
from vaelab.training.resume import check_epochs_left, open_data, start_config
from vaelab.training.schedules import epoch_permutation, kl_weight, learning_rate
from vaelab.training.signals import StopFlag
from vaelab.training.state import STAT_NAMES, TrainResult, TrainState
from vaelab.training.stats import DeviceStats
from vaelab.training.steps import OptimizerUpdate, StepOutput, make_optimizer, make_step
from vaelab.training.steps.update import weights_finite
from vaelab.training.validation import validation_elbo

SYNC_EVERY = 25  # steps between reads of device-side statistics (progress bar, NaN checks)
# The weights, their gradients, Adam's two moments, and a checkpoint's bytes of all three.
TRAINING_COPIES = 7


class TrainingDiverged(VaelabError):
    """Non-finite steps persisted through every allowed rollback."""


class TrainingInterrupted(VaelabError):
    """SIGINT/SIGTERM arrived; a resumable checkpoint was written first."""


class Trainer:
    """Trains the model of a :class:`RunConfig` into a run directory.

    ``resume=True`` continues from ``checkpoint.safetensors``; ``overwrite=True`` replaces an
    existing run's files (:mod:`vaelab.runs.ownership`). Without either, an existing run is an
    error and nothing in it is touched. :meth:`run` holds the run's writer lock (rank 0).
    ``tensors``: train/valid(/test) data in memory instead of ``cfg.data.dataset``.
    ``world``: this process's place in a torchrun job (only its rank 0 logs and writes).
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        tensors: dict[str, torch.Tensor] | None = None,
        world: World = SINGLE,
    ):
        self.run_dir = Path(run_dir)
        self.world = world
        self.progress = progress and world.writer
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        if not world.writer:
            self.log = lambda msg: None  # rank 0 speaks for the job
        # Everything that can fail on bad input (config, data, model) happens before the run
        # directory is touched, so a mistake never costs an earlier run its files.
        cfg, saved = start_config(self.run_dir, cfg, resume, overwrite, tensors is not None)
        self.resuming, self.overwrite, self.resume = saved is not None, overwrite, resume
        if resume and saved is None:
            self.log(f"{self.run_dir}: no checkpoint yet, starting the run from the beginning")
        self.saved_epochs = saved.train.epochs if saved else None  # bounds the checkpoint's epoch
        self.cfg = validate(cfg)
        t = self.cfg.train
        if world.active and t.precision == "fp16":
            # GradScaler decides each rank's skip from its own gradients, before they are
            # averaged, so ranks could disagree; bf16 needs no scaler
            raise ConfigError("train.precision: fp16 is not supported under torchrun; use bf16")
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = world.device or resolve_device(t.device, "train.device")
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults on each step's temporaries (see _malloc)
        self.data = open_data(
            self.run_dir, self.cfg.data, model_likelihood(self.cfg), self.device, tensors, saved
        )
        # the likelihood the data called for is part of the run's model from here on
        self.cfg.model = {**self.cfg.model, "likelihood": self.data.likelihood}
        torch.manual_seed(t.seed)
        self.model = build_model(self.cfg, self.data.data_shape, copies=TRAINING_COPIES).to(
            self.device
        )
        self.optimizer = make_optimizer(self.model, t)
        self.autocast = autocast(self.device, t.precision)
        scaler = torch.amp.GradScaler(self.device.type) if t.precision == "fp16" else None
        self.step = make_step(self.model, t, self.device, self.optimizer, self.autocast, scaler)
        reduce = world.all_reduce if world.active else None  # the gradients' one all-reduce
        params = list(self.model.parameters())
        self.update = OptimizerUpdate(self.optimizer, params, t.grad_clip, scaler, reduce)
        self._finite = partial(weights_finite, params, self.optimizer)  # weights and moments
        self.train_x = self.data.train_source()
        self.n_train = self.train_x.shape[0]
        self.steps_per_epoch = math.ceil(self.n_train / t.batch_size)
        self.total_steps = self.steps_per_epoch * t.epochs
        self.data_gen = torch.Generator(device=self.device).manual_seed(t.seed + 1)
        self.state = TrainState()
        self.metrics = MetricsLog(self.run_dir)
        for notice in self.data.notices:  # now that nothing can refuse the run: one-line errors
            self.log(notice)
        world.barrier()  # every rank has looked at the run directory before rank 0 changes it

    # -- the run -------------------------------------------------------------------------
    def run(self) -> TrainResult:
        writer = self.world.writer
        # one writer: a second one is refused, naming this process (rank 0 alone writes)
        with run_lock(self.run_dir) if writer else contextlib.nullcontext():
            if self.resuming:
                self._start_resumed()
            else:
                if writer:
                    layout.start_new_run(self.run_dir, overwrite=self.overwrite, resume=self.resume)
                self._init_output_bias()
                self._write_config()
                self._save_best()  # a usable model exists from the start
                self.save_checkpoint()
            if not self.state.done:
                if writer and (why := self.metrics.open_tensorboard()):
                    self.log(why)
                try:
                    with StopFlag() as stop:
                        self._loop(stop)
                except DistributedError as e:
                    raise DistributedError(
                        f"{e}; continue with: {self._resume_command()}"
                    ) from None
                finally:
                    self.metrics.close()
        self.world.barrier()  # rank 0's last writes are done before any rank reads the run
        s = self.state
        return TrainResult(
            self.run_dir, s.epoch, s.best_epoch, s.best_val_elbo, s.stopped_early,
            s.skipped_steps, s.rollbacks,
        )  # fmt: skip

    def _start_resumed(self) -> None:
        self._restore(self.saved_epochs)
        check_epochs_left(self.state.epoch, self.cfg)
        if (self.run_dir / layout.WEIGHTS_FILE).exists():
            load_tensors(self.run_dir / layout.WEIGHTS_FILE)  # a pickle or tampered file is refused
        if self.world.writer:
            layout.continue_run(self.run_dir)  # checked first: no write if it cannot go on
            self.metrics.keep_epochs(self.state.epoch)
        s = self.state
        if s.done and not s.stopped_early and s.epoch < self.cfg.train.epochs:
            s.done = False  # more epochs were asked for: the old evaluation is stale
            if self.world.writer:
                (self.run_dir / layout.EVAL_FILE).unlink(missing_ok=True)
        self._write_config()  # records the settings that may change on resume
        where = f"at epoch {s.epoch + 1}, step {s.step_in_epoch}/{self.steps_per_epoch}"
        self.log(f"resuming {self.run_dir} {'(complete: nothing to train)' if s.done else where}")

    def _loop(self, stop: StopFlag) -> None:
        t = self.cfg.train
        last_ckpt = time.monotonic()
        while self.state.epoch < t.epochs and not self.state.done:
            s = self.state  # a rollback replaces it with the checkpoint's
            perm = epoch_permutation(t.seed, s.epoch, self.n_train, self.device)
            acc = DeviceStats(s.sums, self.device, self.world)
            t0, images = time.perf_counter(), 0
            bar = EpochBar(
                self.progress, s.epoch, t.epochs, self.steps_per_epoch, s.step_in_epoch,
                iwae=t.objective == "iwae",
            )  # fmt: skip
            # set before the first step: a run resumed after an epoch's last step takes none
            lr, beta = self._schedules()
            for step in range(s.step_in_epoch, self.steps_per_epoch):
                idx = perm[step * t.batch_size : (step + 1) * t.batch_size]
                # the whole global batch, noise included, on every rank: the data generator
                # advances as in one process, and each rank then computes its own rows
                x = self.data.train_batch(self.train_x.index_select(0, idx), self.data_gen)
                lr, beta = self._schedules()
                out, found_inf = self._train_step(x, beta)
                acc.add(out, found_inf, self.world.shard(x.shape[0]).count)
                s.global_step, s.step_in_epoch = s.global_step + 1, step + 1
                images += x.shape[0]
                last = step + 1 == self.steps_per_epoch
                every = t.checkpoint_every_steps
                due_n = bool(every) and s.global_step % every == 0
                due = (step + 1) % SYNC_EVERY == 0 or last or due_n
                # The sync is a collective under torchrun, where no rank may sync alone: a
                # signal is then looked at only where every rank syncs anyway.
                if not (due or (not self.world.active and stop.signal is not None)):
                    continue
                bad, overflow, stopping = acc.sync(
                    s, lambda: stop.signal is not None, self._finite, t.max_bad_steps
                )
                if bad >= t.max_bad_steps or overflow:
                    bar.close()
                    self._rollback(bad, "the weights overflowed" if overflow else None)
                    break
                bar.update(s, images / (time.perf_counter() - t0), lr)
                due_s = time.monotonic() - last_ckpt >= t.checkpoint_every_s
                if (due_s or due_n or stopping) and not last:
                    self.save_checkpoint()
                    last_ckpt = time.monotonic()
                if stopping:
                    bar.close()
                    self._stop_for_signal(last)
            else:
                bar.close()
                seconds = max(time.perf_counter() - t0, 1e-9)
                self._end_epoch(images / seconds, seconds, lr, beta)
                last_ckpt = time.monotonic()

    def _schedules(self) -> tuple[float, float]:
        """Set this step's learning rate; return it and β (pure functions of the position)."""
        t, s = self.cfg.train, self.state
        lr = learning_rate(t, s.global_step, s.epoch, self.total_steps) * s.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr, kl_weight(t, s.global_step, self.steps_per_epoch)

    def _train_step(self, x: torch.Tensor, beta: float) -> tuple[StepOutput, torch.Tensor]:
        """One optimizer step on this rank's rows of the batch ``x`` (one process: all of them).
        Returns (statistics, found_inf) as device tensors; never syncs."""
        shard = self.world.shard(x.shape[0])
        with shard.draws():
            out = self.step(x[shard.rows], beta)  # every parameter's .grad filled
        return out, self.update(out.loss, shard.weight)

    def _stop_for_signal(self, last_step_of_epoch: bool) -> None:
        if last_step_of_epoch:
            self.save_checkpoint()
        s = self.state
        raise TrainingInterrupted(
            f"interrupted at epoch {s.epoch + 1}, step {s.step_in_epoch}; checkpoint saved, "
            f"continue with: {self._resume_command()}"
        )

    def _resume_command(self) -> str:
        again = f"vaelab train --resume --out {self.run_dir}"
        if self.world.active:  # a checkpoint continues on any number of ranks
            again = f"torchrun --nproc-per-node N -m {again} (any N; or {again} alone)"
        return again

    def validate(self) -> dict[str, float]:
        """The validation ELBO (and its terms), per example, with a fixed noise seed."""
        return validation_elbo(
            self.model,
            self.data.eval_data("valid"),
            samples=self.cfg.train.val_samples,
            seed=self.cfg.data.eval_seed,
            autocast=self.autocast,
            world=self.world,
        )

    def _end_epoch(self, images_per_s: float, seconds: float, lr: float, beta: float) -> None:
        t, s = self.cfg.train, self.state
        train = {k: v / max(s.seen, 1) for k, v in zip(STAT_NAMES, s.sums, strict=True)}
        if t.objective == "iwae":  # the IWAE objective does not split into the two terms
            train["reconstruction"] = train["kl"] = float("nan")
        val = self.validate()
        improved = math.isfinite(val["val_elbo"]) and (
            s.best_val_elbo is None or val["val_elbo"] > s.best_val_elbo
        )
        if improved:
            s.best_val_elbo, s.best_epoch, s.epochs_since_best = val["val_elbo"], s.epoch + 1, 0
            self._save_best()
        else:
            s.epochs_since_best += 1
        row = {
            "epoch": s.epoch + 1,
            "step": s.global_step,
            "train_elbo": train["elbo"],
            "train_reconstruction": train["reconstruction"],
            "train_kl": train["kl"],
            **({"train_iwae_bound": train["bound"]} if t.objective == "iwae" else {}),
            **val,
            "best": improved,
            "train_images_per_s": images_per_s,
            "epoch_seconds": seconds,
            "lr": lr,
            "beta": beta,
            "skipped_steps": s.skipped_steps,
            "time": time.time(),
        }
        if self.world.writer:
            self.metrics.append(row)
        self.log(
            f"epoch {s.epoch + 1}/{t.epochs}: train ELBO {train['elbo']:.2f}  "
            f"val ELBO {val['val_elbo']:.2f}{'  (best)' if improved else ''}  "
            f"{images_per_s:,.0f} {'images' if self.data.kind == 'images' else 'rows'}/s"
        )
        s.epoch, s.step_in_epoch, s.sums, s.seen = s.epoch + 1, 0, [0.0] * len(STAT_NAMES), 0
        if t.early_stopping and s.epochs_since_best >= t.early_stopping:
            s.done = s.stopped_early = True
            self.log(f"early stopping: no better validation ELBO for {t.early_stopping} epochs")
        if s.epoch >= t.epochs:
            s.done = True
        self.save_checkpoint()

    # -- non-finite steps ----------------------------------------------------------------
    def _rollback(self, bad: int, why: str | None = None) -> None:
        why = why or f"{bad} non-finite steps in a row"
        s = self.state
        if s.rollbacks >= self.cfg.train.max_rollbacks:
            self._restore()  # judged at the last good weights, not at the ones that blew up
            x = self.data.eval_data("valid")[:100]
            cause = divergence_cause(self.model, x, self.autocast, self.cfg.data.eval_seed)
            raise TrainingDiverged(
                f"training diverged: {why} after {s.rollbacks} rollbacks (lr scale "
                f"{s.lr_scale:g}){cause}; the best model so far (epoch {s.best_epoch or 0}) is "
                f"in {self.run_dir / layout.WEIGHTS_FILE}"
            )
        rollbacks, skipped = s.rollbacks + 1, s.skipped_steps
        self._restore()
        s = self.state
        s.rollbacks, s.skipped_steps, s.lr_scale = rollbacks, skipped, s.lr_scale * 0.1
        self.log(
            f"{why}: rolled back to the last checkpoint (epoch {s.epoch + 1}, step "
            f"{s.step_in_epoch}), learning rate ×{s.lr_scale:g}"
        )
        self.save_checkpoint()

    # -- files ---------------------------------------------------------------------------
    def _write_config(self) -> None:
        if self.world.writer:
            write_run_config(self.run_dir, self.model, self.cfg, self.data.describe())

    def save_checkpoint(self) -> None:
        if not self.world.writer:
            return  # rank 0's checkpoint is every rank's: all hold the same state
        self.state.rng = checkpoint.generator_states(self.device, self.data_gen)
        checkpoint.save_checkpoint(
            self.run_dir / layout.CHECKPOINT_FILE, self.model, self.optimizer, self.state
        )

    def _restore(self, epochs: int | None = None) -> None:
        """Load the checkpoint, its epoch counter bounded by ``epochs`` (default: the run's)."""
        path = self.run_dir / layout.CHECKPOINT_FILE
        epochs = epochs if epochs is not None else self.cfg.train.epochs
        state = checkpoint.load_checkpoint(
            path, self.model, self.optimizer, self.steps_per_epoch, epochs
        )
        checkpoint.set_generator_states(state.rng, self.device, self.data_gen, path)
        self.state = state

    def _save_best(self) -> None:
        if not self.world.writer:
            return
        path = self.run_dir / layout.WEIGHTS_FILE
        try:
            save_tensors(path, self.model.state_dict())
        except OSError as e:
            raise VaelabError(
                f"{path}: could not write the model ({e.strerror or e}); the previous file is "
                "intact"
            ) from None

    def _init_output_bias(self) -> None:
        if not (self.cfg.train.init_output_bias and isinstance(self.model, LatentVariableModel)):
            return
        try:
            self.model.init_output_bias(self.data.model_mean())
        except VaelabError:
            pass  # a decoder without an output bias to set (conv) starts as it is
        self.model.init_output_scale(self.data.model_std())
