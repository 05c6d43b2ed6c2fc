"""The run configuration's schema: model, data and training settings, all plain data.

Every field is JSON/YAML-serializable and type-checked by :func:`vaelab.config.from_dict`;
:func:`validate` checks what types cannot (ranges, choices) and names the key. Where values
come from (defaults → file → ``--set`` → flags) is :mod:`vaelab.config.files`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vaelab.errors import ConfigError, excerpt

MODEL_CLASSES = ("VAE", "HierarchicalVAE")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "burda")
OBJECTIVES = ("elbo", "iwae")
ESTIMATORS = ("standard", "dreg")
BINARIZE = ("dynamic", "fixed", "none")
STANDARDIZE = ("auto", "on", "off")
HEADER = ("auto", "yes", "no")
PRECISIONS = ("fp32", "bf16", "fp16")
SEED_LIMIT = 2**32
# Each rollback scales the learning rate by 0.1: past ~300 the scale is no longer a positive
# float (and 100 rollbacks already mean a step size of 1e-100 times the setting).
MAX_ROLLBACKS = 100
# torch starts as many OpenMP threads as asked: 10**5 of them hang the first matrix product.
MAX_THREADS = 1024


@dataclass
class DataConfig:
    # a built-in name (see `vaelab datasets`), a .npy/.npz array, a .csv/.tsv/.txt/.parquet
    # table, or a folder of images; a run stores the file's absolute path
    dataset: str = "mnist-mini"
    data_dir: str | None = None  # where a built-in dataset's files are; default $VAELAB_DATA
    columns: list[str] | None = None  # table features (default: every numeric column)
    label_column: str | None = None  # a table column kept as each row's label, never a feature
    # a table column kept as each row's id, never a feature (default: a pandas index, or a
    # column named "id", when there is one)
    id_column: str | None = None
    drop_missing: bool = False  # drop table rows with missing cells (default: an error)
    # text tables: whether the first row names the columns. auto: it does when any of its
    # fields is not a number (the choice is printed); the run's every table is read this way
    header: str = "auto"
    image_size: int | None = None  # image folders: side in pixels (default: the most common)
    # integer data (images stored as 0..16 or 0..65535, ...) is mapped to [0, 1] from this
    # [lo, hi]; default: the dtype's range for uint8/uint16, else the data's min/max (every split)
    value_range: list[float] | None = None
    # per-column standardization of continuous data (statistics of the training split):
    # auto = tables, on, off. Reported NLLs add its log-Jacobian back (original units).
    standardize: str = "auto"
    # Bernoulli likelihood: how grey pixels become binary. "dynamic" draws a fresh Bernoulli
    # sample every time an image is seen in training (validation/test use one fixed-seed draw,
    # each image's from its own values: the same image gets the same pixels wherever it is);
    # "fixed" uses the fixed-seed draw for training too; "none" requires binary data.
    binarize: str = "dynamic"
    eval_seed: int = 0  # seed of the fixed binarization of validation and test data
    # Gaussian likelihood on 8-bit data: model (x + u)/256, u ~ U(0,1), so densities are
    # normalized and bits/dim mean something. Turning it off is refused for 8-bit data.
    dequantize: bool = True


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    # constant | cosine (to 0 over the run) | step (×gamma every step_epochs) |
    # burda (Burda et al. 2015: stage i lasts 3^i epochs at lr·10^(-i/7), i = 0..7)
    schedule: str = "constant"
    step_epochs: int = 10
    gamma: float = 0.5
    warmup_steps: int = 0  # linear learning-rate warm-up
    grad_clip: float | None = None  # max global gradient norm
    init_output_bias: bool = True  # start the decoder's output bias at the data mean (logit)
    beta: float = 1.0  # weight of the KL term
    kl_warmup_epochs: float = 0.0  # β grows linearly from 0 over this many epochs
    objective: str = "elbo"  # "elbo" or "iwae" (the importance-weighted bound)
    k: int = 1  # samples per example: ELBO samples, or importance samples for "iwae"
    estimator: str = "standard"  # gradient estimator for iwae: "standard" or "dreg"
    early_stopping: int | None = None  # stop after this many epochs without a better val ELBO
    val_samples: int = 1  # samples per example for the validation ELBO
    seed: int = 0
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:N"
    precision: str = "fp32"  # "bf16"/"fp16" autocast the networks; bounds stay float32
    compile: bool = False  # torch.compile the training step (autograd path only)
    # the hand-written forward/backward of training/steps/fused_mlp.py (MLP VAE) or
    # fused_hierarchical.py (HierarchicalVAE) where the model allows it (Bernoulli, ReLU/tanh;
    # not fp16), taken instead of `compile`; the same maths as the autograd path, faster
    # (MLP VAE about 2x; two-layer VAE about 1.3x, bounded by its matrix products)
    fused: bool = True
    threads: int | None = None  # torch CPU threads (default: torch's choice)
    checkpoint_every_s: float = 60.0  # also checkpoint mid-epoch at this interval
    checkpoint_every_steps: int | None = None  # or every this many steps
    max_bad_steps: int = 20  # consecutive non-finite steps before a rollback
    max_rollbacks: int = 3  # rollbacks (each lowers the lr ×0.1) before giving up
    final_eval_k: int = 1000  # importance samples for the end-of-training test evaluation
    final_eval_n: int | None = None  # test examples for it (None: the whole split; 0: skip)


@dataclass
class RunConfig:
    """Everything that defines a run; saved in the run directory."""

    model_class: str = "VAE"
    model: dict[str, Any] = field(default_factory=dict)  # the model's own config fields
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def validate(cfg: RunConfig) -> RunConfig:
    """Check values that types alone cannot (ranges, choices). Raises ConfigError naming the key."""
    t, d = cfg.train, cfg.data

    def choice(key, value, options):
        if value not in options:
            raise ConfigError(f"{key}: must be one of {list(options)}, got {excerpt(value)}")

    def positive(key, value, allow_zero=False):
        ok = value >= 0 if allow_zero else value > 0
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"{key}: must be {bound}, got {excerpt(value)}")

    def at_most(key, value, low, high):
        if not low <= value <= high:
            raise ConfigError(f"{key}: must be in [{low}, {high}], got {excerpt(value)}")

    choice("model_class", cfg.model_class, MODEL_CLASSES)
    choice("data.binarize", d.binarize, BINARIZE)
    choice("data.standardize", d.standardize, STANDARDIZE)
    choice("data.header", d.header, HEADER)
    if d.value_range is not None and not (
        len(d.value_range) == 2
        and all(math.isfinite(v) for v in d.value_range)
        and d.value_range[0] < d.value_range[1]
    ):
        raise ConfigError(f"data.value_range: must be two numbers LO < HI, got {d.value_range}")
    if d.image_size is not None:
        positive("data.image_size", d.image_size)
    choice("train.optimizer", t.optimizer, OPTIMIZERS)
    choice("train.schedule", t.schedule, SCHEDULES)
    choice("train.objective", t.objective, OBJECTIVES)
    choice("train.estimator", t.estimator, ESTIMATORS)
    choice("train.precision", t.precision, PRECISIONS)
    for key in ("epochs", "batch_size", "k", "step_epochs", "val_samples", "max_bad_steps"):
        positive(f"train.{key}", getattr(t, key))
    for key in ("lr", "gamma", "checkpoint_every_s", "adam_eps"):
        positive(f"train.{key}", getattr(t, key))
    for key in ("weight_decay", "beta", "kl_warmup_epochs", "warmup_steps", "max_rollbacks"):
        positive(f"train.{key}", getattr(t, key), allow_zero=True)
    positive("train.final_eval_k", t.final_eval_k)
    for key in ("grad_clip", "early_stopping", "checkpoint_every_steps", "threads"):
        if getattr(t, key) is not None:
            positive(f"train.{key}", getattr(t, key))
    if t.final_eval_n is not None:
        positive("train.final_eval_n", t.final_eval_n, allow_zero=True)
    for key, value in (("train.seed", t.seed), ("data.eval_seed", d.eval_seed)):
        at_most(key, value, 0, SEED_LIMIT - 1)  # the data order hashes seed × 1_000_003
    at_most("train.max_rollbacks", t.max_rollbacks, 0, MAX_ROLLBACKS)
    if t.threads is not None:
        at_most("train.threads", t.threads, 1, MAX_THREADS)
    if t.objective == "iwae" and t.k < 2:
        raise ConfigError(f"train.k: the iwae objective needs k >= 2, got {t.k}")
    if t.estimator == "dreg" and t.objective != "iwae":
        raise ConfigError("train.estimator: 'dreg' needs train.objective 'iwae'")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(
            f"train.device: must be auto, cpu, cuda or cuda:N, got {excerpt(t.device)}"
        )
    return cfg
