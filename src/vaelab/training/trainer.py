"""The training loop: batches in, parameters moved, metrics and checkpoints out.

A run directory holds everything about a run:

* ``config.json`` — the model class and config (``VAE.load(run)`` works on it) and, under
  ``"run"``, the resolved run configuration;
* ``model.safetensors`` — the best weights so far (by validation ELBO);
* ``checkpoint.safetensors`` — the full training state, written atomically, for ``--resume``;
* ``metrics.jsonl`` — one JSON line per finished epoch;
* ``eval_test.json``, ``samples.png``, ``reconstructions.png`` after the run.

Determinism: every random draw comes from either the global torch generator (the
reparameterization noise) or the data generator (binarization/dequantization noise), and both
states are in the checkpoint together with the position in the epoch; the data order of an
epoch is a pure function of (seed, epoch). A resumed run therefore takes exactly the steps an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaelab._malloc import keep_freed_memory
from vaelab.config import from_dict, to_dict
from vaelab.errors import CheckpointError, ConfigError, DataError, VaelabError
from vaelab.io import (
    atomic_write_bytes,
    atomic_write_json,
    load_tensors,
    read_json,
    save_tensors,
)
from vaelab.models.base import CONFIG_FILE, MODEL_REGISTRY, WEIGHTS_FILE
from vaelab.objectives import elbo
from vaelab.rng import seeded
from vaelab.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from vaelab.training.config import RunConfig, validate
from vaelab.training.data import IN_MEMORY, DataPipeline
from vaelab.training.fused import FusedStep, unsupported_reason
from vaelab.training.fused_hierarchical import FusedHierarchicalStep
from vaelab.training.fused_hierarchical import unsupported_reason as hierarchical_unsupported
from vaelab.training.objective import STAT_NAMES, Objective
from vaelab.training.schedules import kl_weight, learning_rate

METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval_test.json"
RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, CHECKPOINT_FILE, METRICS_FILE, EVAL_FILE)
SYNC_EVERY = 25  # steps between reads of device-side statistics (progress bar, NaN checks)


# Settings a resumed run may change: none of them alters the trajectory of the parameters
# (more or fewer epochs only extends or ends it, and is refused for schedules whose shape
# depends on the number of epochs).
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.threads",
    "train.device",
    "train.checkpoint_every_s",
    "train.checkpoint_every_steps",
    "train.final_eval_k",
    "train.final_eval_n",
    "data.data_dir",
)


def _flat_keys(d: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in d.items():
        if isinstance(v, dict) and k != "model":
            keys |= _flat_keys(v, f"{prefix}{k}.")
        else:
            keys.add(prefix + k)
    return keys


def _lookup(d: dict, key: str):
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


class TrainingDiverged(VaelabError):
    """Non-finite steps persisted through every allowed rollback."""


class TrainingInterrupted(VaelabError):
    """SIGINT/SIGTERM arrived; a resumable checkpoint was written first."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_epoch: int | None
    best_val_elbo: float | None
    stopped_early: bool
    skipped_steps: int
    rollbacks: int
    test: dict | None = None


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """The resolved run config saved in a run directory."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    meta = read_json(path, "run config")
    if not isinstance(meta, dict) or "run" not in meta:
        raise CheckpointError(f"{path}: not a vaelab run (no 'run' section)")
    name = meta.get("class")
    if not isinstance(name, str) or name not in MODEL_REGISTRY:
        raise CheckpointError(
            f"{path}: unknown model class {name!r} (known: {', '.join(sorted(MODEL_REGISTRY))})"
        )
    try:
        return from_dict(RunConfig, meta["run"])
    except VaelabError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _stale_temp_files(run_dir: Path) -> list[Path]:
    """Temporary files of atomic writes a crash interrupted (``vaelab.io.atomic_write_bytes``)."""
    if not run_dir.is_dir():
        return []
    return [p for name in RUN_FILES for p in run_dir.glob(f".{name}.*.tmp")]


# The JSON training state of a checkpoint: key → accepted types (a tampered file is refused).
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "step_in_epoch": (int,),
    "global_step": (int,),
    "best_val_elbo": (int, float, type(None)),
    "best_epoch": (int, type(None)),
    "epochs_since_best": (int,),
    "skipped_steps": (int,),
    "rollbacks": (int,),
    "lr_scale": (int, float),
    "sums": (list,),
    "seen": (int,),
    "done": (bool,),
    "stopped_early": (bool,),
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name} requested but CUDA is not available")
    return device


def build_model(cfg: RunConfig, data_shape: tuple[int, ...]):
    """The model named by ``cfg.model_class``, its ``data_shape`` taken from the data."""
    model_cls = MODEL_REGISTRY.get(cfg.model_class)
    if model_cls is None:
        raise ConfigError(
            f"model_class: unknown {cfg.model_class!r} (known: {', '.join(sorted(MODEL_REGISTRY))})"
        )
    fields = dict(cfg.model)
    given = fields.get("data_shape")
    if given is not None and tuple(given) != tuple(data_shape):
        raise ConfigError(
            f"model.data_shape: {list(given)} does not match the data's {list(data_shape)}"
        )
    fields["data_shape"] = list(data_shape)
    model_config = from_dict(model_cls.config_class, fields, prefix="model.")
    return model_cls(model_config)


def model_likelihood(cfg: RunConfig) -> str:
    """The likelihood the run's model will use (needed before the data shape is known)."""
    model_cls = MODEL_REGISTRY.get(cfg.model_class)
    default = model_cls.config_class().likelihood if model_cls else "bernoulli"
    return cfg.model.get("likelihood", default)


def epoch_permutation(seed: int, epoch: int, n: int, device) -> torch.Tensor:
    """The data order of ``epoch``: a pure function of (seed, epoch), so resuming needs no state."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).to(device)


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop stops between steps, never inside one."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class Trainer:
    """Trains the model of a :class:`RunConfig` into a run directory.

    ``resume=True`` continues from ``checkpoint.safetensors``; ``overwrite=True`` replaces an
    existing run. Without either, an existing run directory is an error and nothing in it is
    touched.
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | os.PathLike,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        tensors: dict[str, torch.Tensor] | None = None,
    ):
        """``tensors``: train/valid(/test) data in memory instead of ``cfg.data.dataset``."""
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        self.resuming = resume
        if tensors is not None:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=IN_MEMORY))
        if resume:
            cfg = self._config_for_resume(cfg)
        else:
            self._check_new_run_dir(overwrite)
        # Everything that can fail on bad input (config, data, model) happens before the run
        # directory is touched, so a mistake never costs an earlier run its files.
        self.cfg = validate(cfg)
        t = self.cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = resolve_device(t.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults on each step's temporaries (see _malloc)
        self.data = DataPipeline(
            self.cfg.data, model_likelihood(self.cfg), self.device, tensors=tensors
        )
        torch.manual_seed(t.seed)
        self.model = build_model(self.cfg, self.data.data_shape).to(self.device)
        self.params = list(self.model.parameters())  # walking the modules each step costs ~1%
        self.objective = Objective(t)
        self.fused = None
        if t.fused and self.device.type == "cpu":
            if unsupported_reason(self.model, t) is None:
                self.fused = FusedStep(self.model, t)
            elif hierarchical_unsupported(self.model, t) is None:
                self.fused = FusedHierarchicalStep(self.model, t)
        self.step_fn = self._autograd_terms
        if t.compile:
            self.step_fn = torch.compile(self._autograd_terms)
        self.optimizer = self._make_optimizer()
        self.train_x = self.data.train_source()
        self.n_train = self.train_x.shape[0]
        self.steps_per_epoch = math.ceil(self.n_train / t.batch_size)
        self.total_steps = self.steps_per_epoch * t.epochs
        self.data_gen = torch.Generator(device=self.device).manual_seed(t.seed + 1)
        self.autocast = self._autocast_context()
        self.scaler = torch.amp.GradScaler(self.device.type) if t.precision == "fp16" else None
        self.state: dict[str, Any] = self._fresh_state()
        self.tb = None

    # -- run directory -------------------------------------------------------------------
    def _check_new_run_dir(self, overwrite: bool) -> None:
        d = self.run_dir
        if d.exists() and not d.is_dir():
            raise CheckpointError(f"{d}: exists and is not a directory")
        stale = set(_stale_temp_files(d))
        if d.is_dir() and any(p not in stale for p in d.iterdir()):
            if not overwrite:
                raise CheckpointError(
                    f"{d}: run directory exists; pass --resume to continue it or --overwrite "
                    "to replace it"
                )
            if not any((d / f).exists() for f in (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE)):
                raise CheckpointError(f"{d}: not a vaelab run directory; refusing to overwrite it")

    def _prepare_new_run_dir(self) -> None:
        """Empty an old run's files out of the run directory (checked before) and create it."""
        d = self.run_dir
        if d.is_dir():
            for name in RUN_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (d / name).unlink()
            for extra in [*d.glob("*.png"), *_stale_temp_files(d)]:
                extra.unlink()
            shutil.rmtree(d / "tensorboard", ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)

    def _config_for_resume(self, cfg: RunConfig) -> RunConfig:
        """Check ``cfg`` against the saved run: only settings that do not change the maths
        (``RESUMABLE_CHANGES``) may differ. Without a checkpoint (the run was stopped before
        its first one) the run starts over."""
        if not (self.run_dir / CHECKPOINT_FILE).exists():
            self.log(f"{self.run_dir}: no checkpoint yet, starting the run from the beginning")
            self.resuming = False
            self._check_new_run_dir(overwrite=True)
            return cfg
        saved = to_dict(read_run_config(self.run_dir))
        given = to_dict(cfg)
        changed = [
            key
            for key in _flat_keys(saved) | _flat_keys(given)
            if _lookup(saved, key) != _lookup(given, key) and key not in RESUMABLE_CHANGES
        ]
        schedule = given["train"]["schedule"]
        if saved["train"]["epochs"] != given["train"]["epochs"] and schedule in ("cosine", "burda"):
            raise ConfigError(
                f"train.epochs: the {schedule} schedule is laid out over the run's "
                f"{saved['train']['epochs']} epochs, so a resumed run cannot change them "
                "(start a new run, or use the constant or step schedule)"
            )
        if changed:
            raise ConfigError(
                f"--resume continues {self.run_dir} as it was configured; these settings differ "
                f"from the saved run: {', '.join(sorted(changed))} (only "
                f"{', '.join(RESUMABLE_CHANGES)} may change)"
            )
        return cfg

    def _write_config(self) -> None:
        try:
            self._write_config_file()
        except OSError as e:
            raise CheckpointError(
                f"{self.run_dir / CONFIG_FILE}: could not write the run config ({e.strerror or e})"
            ) from None

    def _write_config_file(self) -> None:
        meta = {**self.model.describe(), "run": to_dict(self.cfg), "data": self.data.describe()}
        atomic_write_json(self.run_dir / CONFIG_FILE, meta)

    # -- pieces --------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        # The fused kernel updates all parameters in one pass and honours `found_inf`, which
        # lets a non-finite step be skipped without the host ever reading the loss.
        return cls(
            self.model.parameters(),
            lr=t.lr,
            eps=t.adam_eps,
            weight_decay=t.weight_decay,
            fused=True,
        )

    def _autocast_context(self):
        p = self.cfg.train.precision
        if p == "fp32":
            return contextlib.nullcontext
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    def _fresh_state(self) -> dict[str, Any]:
        return {
            "epoch": 0,  # the epoch in progress (0-based)
            "step_in_epoch": 0,
            "global_step": 0,
            "best_val_elbo": None,
            "best_epoch": None,
            "epochs_since_best": 0,
            "skipped_steps": 0,
            "rollbacks": 0,
            "lr_scale": 1.0,
            "sums": [0.0] * len(STAT_NAMES),  # running sums over the epoch so far
            "seen": 0,  # examples in those sums
            "done": False,
            "stopped_early": False,
        }

    def _rng_state(self) -> dict[str, torch.Tensor]:
        rng = {"torch": torch.get_rng_state(), "data": self.data_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def _set_rng_state(self, rng: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(rng["torch"])
        self.data_gen.set_state(rng["data"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def save_checkpoint(self) -> None:
        try:
            save_checkpoint(
                self.run_dir / CHECKPOINT_FILE,
                self.model,
                self.optimizer,
                self.state,
                self._rng_state(),
            )
        except OSError as e:
            raise CheckpointError(
                f"{self.run_dir / CHECKPOINT_FILE}: could not write checkpoint "
                f"({e.strerror or e}); "
                "the previous checkpoint is intact"
            ) from None

    def _restore(self) -> None:
        path = self.run_dir / CHECKPOINT_FILE
        state, rng = load_checkpoint(path, self.model, self.optimizer)
        for key, value in state.items():
            types = _STATE_TYPES.get(key)
            if types is None or not isinstance(value, types):
                raise CheckpointError(
                    f"{path}: training state {key}={value!r} is not valid; tampered"
                )
        sums = state.get("sums", [0.0] * len(STAT_NAMES))
        if len(sums) != len(STAT_NAMES) or not all(isinstance(v, (int, float)) for v in sums):
            raise CheckpointError(f"{path}: training state sums={sums!r} is not valid; tampered")
        # in place: the loop holds a reference to this dict
        fresh = {**self._fresh_state(), **state}
        self.state.clear()
        self.state.update(fresh)
        try:
            self._set_rng_state(rng)
        except (KeyError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"{path}: RNG state missing or invalid ({e}); tampered") from None

    def _save_best(self) -> None:
        try:
            save_tensors(self.run_dir / WEIGHTS_FILE, self.model.state_dict())
        except OSError as e:
            raise CheckpointError(
                f"{self.run_dir / WEIGHTS_FILE}: could not write the model ({e.strerror or e}); "
                "the previous file is intact"
            ) from None

    # -- metrics -------------------------------------------------------------------------
    def _clean_metrics(self, completed_epochs: int) -> None:
        """Keep whole lines of checkpointed epochs (a crash may leave more, or a torn line)."""
        path = self.run_dir / METRICS_FILE
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("epoch"), int):
                if row["epoch"] <= completed_epochs:
                    kept.append(line)
        text = "".join(kept)
        if text != path.read_text(encoding="utf-8", errors="replace"):
            atomic_write_bytes(path, text.encode())

    def _append_metrics(self, row: dict[str, Any]) -> None:
        line = (json.dumps(row, sort_keys=True) + "\n").encode()
        path = self.run_dir / METRICS_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:  # one write of the whole line, unless the kernel writes less
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise CheckpointError(
                f"{path}: could not append the epoch's metrics ({e.strerror or e}); "
                "the checkpoint is intact, continue with --resume"
            ) from None
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    # -- the loop ------------------------------------------------------------------------
    def _train_step(self, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step. Returns (stats, found_inf) as device tensors; never syncs."""
        t = self.cfg.train
        if self.fused is not None:
            loss, stats = self.fused(x, beta)  # sets every .grad itself
        else:
            loss, stats = self.step_fn(x, beta)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
        params = [p for p in self.params if p.grad is not None]
        grads = [p.grad for p in params]
        if t.grad_clip is not None:
            total = torch.nn.utils.clip_grad_norm_(params, t.grad_clip, foreach=True)
        else:
            # any inf or nan in any gradient makes this sum non-finite; a plain sum reads
            # each gradient once, half the cost of a norm (~3% of a W1 step)
            total = torch.stack([g.sum() for g in grads]).sum()
        found_inf = (~torch.isfinite(total) | ~torch.isfinite(loss.detach())).float()
        if self.scaler is not None:
            # the scaler's own skip logic handles fp16 overflow; it also needs to see ours
            self.optimizer.found_inf = None
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.found_inf = found_inf
            self.optimizer.step()
        return stats, found_inf

    def _autograd_terms(self, x: torch.Tensor, beta: float):
        with self.autocast():
            return self.objective.terms(self.model, x, beta)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The validation ELBO (and its terms), per example, with a fixed noise seed."""
        x_all = self.data.eval_data("valid")
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        with seeded(self.device, self.cfg.data.eval_seed):
            for i in range(0, x_all.shape[0], 1000):
                x = x_all[i : i + 1000]
                with self.autocast():
                    out = elbo(self.model, x, n_samples=self.cfg.train.val_samples)
                sums += torch.stack([v.double().sum() for v in (out.elbo, out.log_px_z, out.kl)])
        self.model.train()
        n = x_all.shape[0]
        elbo_, rec, kl = (sums / n).tolist()
        return {"val_elbo": elbo_, "val_reconstruction": rec, "val_kl": kl}

    def run(self) -> TrainResult:
        if self.resuming:
            self._restore()
            if (self.run_dir / WEIGHTS_FILE).exists():
                load_tensors(self.run_dir / WEIGHTS_FILE)  # a pickle or tampered file is refused
            for stale in _stale_temp_files(self.run_dir):
                stale.unlink()
            self._clean_metrics(self.state["epoch"])
            s = self.state
            if s["done"] and not s["stopped_early"] and s["epoch"] < self.cfg.train.epochs:
                s["done"] = False  # more epochs were asked for: the old report is stale
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / EVAL_FILE).unlink()
            self._write_config()  # records the settings that may change on resume
            self.log(
                f"resuming {self.run_dir} at epoch {self.state['epoch'] + 1}, "
                f"step {self.state['step_in_epoch']}/{self.steps_per_epoch}"
            )
        else:
            self._prepare_new_run_dir()
            self._init_model()
            self._write_config()
            self._save_best()  # a usable model exists from the start
            self.save_checkpoint()
        if not self.state["done"]:
            self._open_tensorboard()
            try:
                with _StopFlag() as stop:
                    self._loop(stop)
            finally:
                if self.tb is not None:
                    self.tb.close()
        result = self._result()
        result.test = self.final_report()
        return result

    def final_report(self) -> dict | None:
        """Evaluate the best model on the test split and draw pictures (once per run)."""
        t = self.cfg.train
        path = self.run_dir / EVAL_FILE
        if path.exists():
            return read_json(path, "evaluation")
        if t.final_eval_n == 0:
            return None
        try:
            self.data.raw("test")
        except DataError:
            return None  # in-memory data without a test split
        from vaelab.evaluation.report import evaluate_split
        from vaelab.models.base import SavableModel
        from vaelab.viz.run_pictures import write_run_pictures

        self.log(f"evaluating the best model (epoch {self.state['best_epoch']}) on the test split")
        best = SavableModel.load(self.run_dir, map_location=self.device)
        report = evaluate_split(
            best, self.data, "test", k=t.final_eval_k, n=t.final_eval_n, progress=self.progress
        )
        atomic_write_json(path, {"run": str(self.run_dir), **report})
        write_run_pictures(self.run_dir, best, self.data.eval_data("test"))
        return report

    def _init_model(self) -> None:
        init = getattr(self.model, "init_output_bias", None)
        if init is not None and self.cfg.train.init_output_bias:
            x = self.data.raw("train")
            # E[x] of the data the model sees: grey/255 is the probability of a 1 under
            # binarization, and the mean of (x + u)/256 is (x + 1/2)/256 under dequantization
            if x.dtype == torch.uint8:
                mean = x.float().mean(0)
                mean = (mean + 0.5) / 256 if self.data.dequantized else mean / 255
            else:
                mean = x.float().mean(0)
            with contextlib.suppress(VaelabError):
                init(mean)

    def _loop(self, stop: _StopFlag) -> None:
        t = self.cfg.train
        s = self.state
        last_ckpt = time.monotonic()
        while s["epoch"] < t.epochs and not s["done"]:
            epoch = s["epoch"]
            perm = epoch_permutation(t.seed, epoch, self.n_train, self.device)
            acc = _DeviceStats(s["sums"], self.device)
            start_step = s["step_in_epoch"]
            images = 0
            t0 = time.perf_counter()
            bar = self._progress_bar(epoch, start_step)
            # defined before the first step: a run resumed at the very end of an epoch
            # (interrupted after its last step) takes no step before closing the epoch
            lr = learning_rate(t, s["global_step"], epoch, self.total_steps) * s["lr_scale"]
            beta = kl_weight(t, s["global_step"], self.steps_per_epoch)
            for step in range(start_step, self.steps_per_epoch):
                idx = perm[step * t.batch_size : (step + 1) * t.batch_size]
                x = self.data.train_batch(self.train_x[idx], self.data_gen)
                lr = learning_rate(t, s["global_step"], epoch, self.total_steps) * s["lr_scale"]
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                beta = kl_weight(t, s["global_step"], self.steps_per_epoch)
                stats, found_inf = self._train_step(x, beta)
                acc.add(stats, found_inf, x.shape[0])
                s["global_step"] += 1
                s["step_in_epoch"] = step + 1
                images += x.shape[0]
                last = step + 1 == self.steps_per_epoch
                due_n = bool(t.checkpoint_every_steps) and (
                    s["global_step"] % t.checkpoint_every_steps == 0
                )
                if (step + 1) % SYNC_EVERY == 0 or last or due_n or stop.signal is not None:
                    bad = acc.fold_into(s)  # the only host sync: every SYNC_EVERY steps
                    overflow = bad < t.max_bad_steps and not self._state_finite()
                    if bad >= t.max_bad_steps or overflow:
                        if bar is not None:
                            bar.close()
                        self._rollback(bad, "the weights overflowed" if overflow else None)
                        break
                    if bar is not None:
                        rate = images / (time.perf_counter() - t0)
                        self._update_bar(bar, s, rate, lr)
                    due_s = time.monotonic() - last_ckpt >= t.checkpoint_every_s
                    if (due_s or due_n or stop.signal is not None) and not last:
                        self.save_checkpoint()
                        last_ckpt = time.monotonic()
                    if stop.signal is not None:
                        if bar is not None:
                            bar.close()
                        if last:
                            self.save_checkpoint()
                        raise TrainingInterrupted(
                            f"interrupted at epoch {epoch + 1}, step {step + 1}; checkpoint "
                            f"saved, continue with: vaelab train --resume --out {self.run_dir}"
                        )
            else:
                if bar is not None:
                    bar.close()
                seconds = max(time.perf_counter() - t0, 1e-9)
                self._end_epoch(epoch, images / seconds, seconds, lr, beta)
                last_ckpt = time.monotonic()

    def _end_epoch(self, epoch, images_per_s, epoch_seconds, lr, beta) -> None:
        t, s = self.cfg.train, self.state
        seen = max(s["seen"], 1)
        train = {k: v / seen for k, v in zip(STAT_NAMES, s["sums"], strict=True)}
        if t.objective == "iwae":  # the IWAE objective does not split into the two terms
            train["reconstruction"] = train["kl"] = float("nan")
        val = self.validate()
        improved = math.isfinite(val["val_elbo"]) and (
            s["best_val_elbo"] is None or val["val_elbo"] > s["best_val_elbo"]
        )
        if improved:
            s["best_val_elbo"] = val["val_elbo"]
            s["best_epoch"] = epoch + 1
            s["epochs_since_best"] = 0
            self._save_best()
        else:
            s["epochs_since_best"] += 1
        row = {
            "epoch": epoch + 1,
            "step": s["global_step"],
            "train_elbo": train["elbo"],
            "train_reconstruction": train["reconstruction"],
            "train_kl": train["kl"],
            **({"train_iwae_bound": train["bound"]} if t.objective == "iwae" else {}),
            **val,
            "best": improved,
            "train_images_per_s": images_per_s,
            "epoch_seconds": epoch_seconds,
            "lr": lr,
            "beta": beta,
            "skipped_steps": s["skipped_steps"],
            "time": time.time(),
        }
        row = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()
        }
        self._append_metrics(row)
        self.log(
            f"epoch {epoch + 1}/{t.epochs}: train ELBO {train['elbo']:.2f}  "
            f"val ELBO {val['val_elbo']:.2f}{'  (best)' if improved else ''}  "
            f"{images_per_s:,.0f} images/s"
        )
        s["epoch"] = epoch + 1
        s["step_in_epoch"] = 0
        s["sums"] = [0.0] * len(STAT_NAMES)
        s["seen"] = 0
        if t.early_stopping and s["epochs_since_best"] >= t.early_stopping:
            s["done"] = s["stopped_early"] = True
            self.log(f"early stopping: no better validation ELBO for {t.early_stopping} epochs")
        if s["epoch"] >= t.epochs:
            s["done"] = True
        self.save_checkpoint()

    def _state_finite(self) -> bool:
        """Whether every parameter and optimizer moment is finite (one host sync)."""
        tensors = [p.detach() for p in self.model.parameters()]
        for st in self.optimizer.state.values():
            tensors += [v for v in st.values() if torch.is_tensor(v) and v.is_floating_point()]
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors))).all())

    def _rollback(self, bad: int, why: str | None = None) -> None:
        why = why or f"{bad} non-finite steps in a row"
        s = self.state
        if s["rollbacks"] >= self.cfg.train.max_rollbacks:
            raise TrainingDiverged(
                f"training diverged: {why} after {s['rollbacks']} "
                f"rollbacks (lr scale {s['lr_scale']:g}); the best model so far "
                f"(epoch {s['best_epoch'] or 0}) is in {self.run_dir / WEIGHTS_FILE}"
            )
        rollbacks, skipped = s["rollbacks"] + 1, s["skipped_steps"]
        self._restore()
        s = self.state
        s["rollbacks"] = rollbacks
        s["skipped_steps"] = skipped
        s["lr_scale"] *= 0.1
        self.log(
            f"{why}: rolled back to the last checkpoint "
            f"(epoch {s['epoch'] + 1}, step {s['step_in_epoch']}), learning rate ×{s['lr_scale']:g}"
        )
        self.save_checkpoint()

    # -- progress ------------------------------------------------------------------------
    def _progress_bar(self, epoch: int, start: int):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.steps_per_epoch,
            initial=start,
            desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}",
            unit="step",
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def _update_bar(self, bar, s, images_per_s, lr) -> None:
        bound, elbo_, rec, kl = (v / max(s["seen"], 1) for v in s["sums"])
        post = {"elbo": f"{elbo_:.2f}", "rec": f"{rec:.2f}", "kl": f"{kl:.2f}"}
        if self.cfg.train.objective == "iwae":
            post = {"iwae": f"{bound:.2f}", "elbo": f"{elbo_:.2f}"}
        post["img/s"] = f"{images_per_s:,.0f}"
        post["lr"] = f"{lr:.2g}"
        bar.n = s["step_in_epoch"]
        bar.set_postfix(post, refresh=True)

    def _result(self) -> TrainResult:
        s = self.state
        return TrainResult(
            run_dir=self.run_dir,
            epochs_done=s["epoch"],
            best_epoch=s["best_epoch"],
            best_val_elbo=s["best_val_elbo"],
            stopped_early=s["stopped_early"],
            skipped_steps=s["skipped_steps"],
            rollbacks=s["rollbacks"],
        )


class _DeviceStats:
    """Running sums of a step's statistics, kept on the device between host syncs."""

    def __init__(self, sums: list[float], device: torch.device):
        self.sums = torch.tensor(sums, dtype=torch.float64, device=device)
        self.examples = torch.zeros((), dtype=torch.float64, device=device)
        self.skipped = torch.zeros((), device=device)
        self.bad_run = torch.zeros((), device=device)  # consecutive non-finite steps

    def add(self, stats: torch.Tensor, found_inf: torch.Tensor, batch: int) -> None:
        ok = 1.0 - found_inf
        self.sums += torch.nan_to_num(stats.double()) * ok
        self.examples += ok * batch
        self.skipped += found_inf
        self.bad_run = (self.bad_run + 1) * found_inf

    def fold_into(self, state: dict) -> int:
        """Move the counts into ``state`` (one host sync); return the current bad run."""
        state["sums"] = self.sums.tolist()
        state["seen"] += int(self.examples.item())
        state["skipped_steps"] += int(self.skipped.item())
        self.examples.zero_()
        self.skipped.zero_()
        return int(self.bad_run.item())
