"""From a dataset name to the tensors a model sees: splits, preprocessing, binarization,
dequantization.

Training batches are drawn by index from one resident tensor (integer levels stay uint8 where
they fit, four times smaller than floats) and transformed on the fly: a fresh Bernoulli draw per
batch for dynamic binarization, fresh uniform noise for dequantization. Validation and test
data are transformed once with a fixed seed, so their numbers are reproducible. What is done to
the values (:class:`~vaelab.data.preprocess.Preprocessing`) is fitted on the training split,
saved with the run, and reused as it is by every later command.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vaelab.config import DataConfig
from vaelab.data.builtin import Split
from vaelab.data.preprocess import Preprocessing
from vaelab.data.sources import open_source
from vaelab.data.transforms import binarize_dynamic, binarize_fixed, dequantize, is_binary
from vaelab.errors import DataError


class DataPipeline:
    """The data side of a run: raw splits, the run's preprocessing and the transforms the
    likelihood calls for.

    ``likelihood=None`` chooses it from the data: Bernoulli for images (integer levels, or
    values in [0, 1]), Gaussian for everything else. ``preprocessing`` is a run's saved one;
    without it, it is fitted on the training split.
    """

    def __init__(
        self,
        cfg: DataConfig,
        likelihood: str | None,
        device: torch.device | str = "cpu",
        primary: str = "train",
        tensors: dict[str, torch.Tensor] | None = None,
        preprocessing: Preprocessing | None = None,
        expect_shape: tuple[int, ...] | None = None,
        expected_by: str = "the model",
    ):
        self.cfg = cfg
        self.device = torch.device(device)
        self.source = open_source(cfg, tensors)
        self.kind = self.source.kind
        self.notices = list(self.source.notices)
        self._splits: dict[str, Split] = {}
        self._raw: dict[str, torch.Tensor] = {}
        self._eval: dict[str, torch.Tensor] = {}
        first = self._split(primary).images  # the split whose shape defines the data
        self.data_shape = tuple(first.shape[1:])
        if expect_shape is not None and self.data_shape != tuple(expect_shape):
            raise DataError(
                f"{cfg.dataset}: the {primary} data have shape {list(self.data_shape)} per "
                f"example, but {expected_by} expects {list(expect_shape)}"
            )
        self.likelihood = likelihood or self._default_likelihood(first)
        if preprocessing is None:
            raw = getattr(self.source, "raw", None)  # a user's file: every row is in memory
            stored_dtype = raw.details.get("stored_dtype") if raw is not None else None
            every = torch.from_numpy(raw.values) if raw is not None else None
            preprocessing = Preprocessing.fit(
                cfg, self.source.kind, self.likelihood, self._split("train").images,
                stored_dtype, self.notices, every=every,
            )  # fmt: skip
        self.prep = preprocessing
        self._check(self.raw(primary))

    @classmethod
    def without_data(
        cls, cfg: DataConfig, likelihood: str, device, preprocessing: Preprocessing, shape
    ) -> DataPipeline:
        """A pipeline that prepares rows handed to it (:meth:`prepare`) and reads no split."""
        self = cls.__new__(cls)
        self.cfg, self.device, self.likelihood = cfg, torch.device(device), likelihood
        self.prep, self.data_shape, self.kind = preprocessing, tuple(shape), preprocessing.kind
        self.source, self.notices = None, []
        self._splits, self._raw, self._eval = {}, {}, {}
        return self

    # -- loading -------------------------------------------------------------------------
    def _split(self, split: str) -> Split:
        if self.source is None:
            raise DataError(f"{self.cfg.dataset}: this pipeline holds no data; load the run's")
        if split not in self._splits:
            s = self.source.split(split)
            if len(s) == 0:
                raise DataError(f"{self.cfg.dataset}: the {split} split is empty")
            self._splits[split] = s
        return self._splits[split]

    def raw(self, split: str) -> torch.Tensor:
        """The split as the pipeline keeps it (:meth:`Preprocessing.stored`), on its device."""
        if split not in self._raw:
            x = self._split(split).images
            self.prep.check(x, f"{self.cfg.dataset} ({split} split)")
            self._raw[split] = self.prep.stored(x).to(self.device)
        return self._raw[split]

    def labels(self, split: str):
        """The split's labels (int64 tensor or array of strings), or None."""
        return self._split(split).labels

    def ids(self, split: str) -> np.ndarray | None:
        """The split's row ids in the file (an index column, an image's path), or None."""
        return self._split(split).ids

    def where(self, split: str) -> list[str] | None:
        """How a user finds each example of the split: its id (an index column, an image's
        path) or its row in the file (0-based); None for a built-in dataset or tensors."""
        part = self._split(split)
        if part.ids is not None:
            return [str(i) for i in part.ids]
        if part.rows is not None:
            return [f"file row {int(r) + 1}" for r in part.rows]  # counted from 1, as errors do
        return None

    def originals(self, split: str) -> torch.Tensor:
        """The split's examples as the source holds them (a table's values as read), before
        any preprocessing."""
        return self._split(split).images

    def file_rows(self, split: str) -> np.ndarray | None:
        """Each example's row in the user's file (0-based), or None (built-in data, tensors)."""
        return self._split(split).rows

    def _default_likelihood(self, x: torch.Tensor) -> str:
        if x.dtype == torch.uint8 or self.kind == "images":
            return "bernoulli"
        return "gaussian"

    def _check(self, x: torch.Tensor) -> None:
        d, name, p = self.cfg, self.cfg.dataset, self.prep
        if self.likelihood == "bernoulli":
            if d.binarize == "none":
                # what the model sees is binary: integer levels (stored from 0) at 0 or the top
                binary = bool(((x == 0) | (x == p.top)).all()) if p.integer else is_binary(x)
                if not binary:
                    kind, fix = "values other than 0/1", ""
                    if p.integer:
                        lo, hi = p.value_range
                        kind = (
                            "grey pixels (0..255)"
                            if (lo, hi) == (0, 255)
                            else f"integer levels {lo:g}..{hi:g}"
                        )
                        if is_binary(x):  # 0/1 stored as levels of a wider range
                            kind = f"only 0 and 1, read as levels {lo:g}..{hi:g}"
                            fix = f"pass --value-range {lo:g},{lo + 1:g}, or "
                    raise DataError(
                        f"{name} has {kind}, but the bernoulli likelihood is for binary data: "
                        f"{fix}choose --binarize dynamic (or fixed), or --likelihood gaussian"
                    )
            elif not p.integer and (x.min() < 0 or x.max() > 1):
                raise DataError(
                    f"{name}: binarization needs values in [0, 1] (read as probabilities), got "
                    f"[{x.min().item():.4g}, {x.max().item():.4g}]: give their range with "
                    "--value-range LO,HI, or choose --likelihood gaussian"
                )
        elif p.integer and not d.dequantize:
            raise DataError(
                f"{name} is integer data: a Gaussian density on it without dequantization can "
                "score arbitrarily high; keep data.dequantize true"
            )

    # -- transforms ----------------------------------------------------------------------
    @property
    def dequantized(self) -> bool:
        """Whether the model sees ``(x + u)/levels`` of integer levels (bits/dim corrected)."""
        return self.likelihood == "gaussian" and self.prep.integer

    def train_batch(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Transform stored training examples for one step (fresh noise from ``generator``)."""
        if self.likelihood == "bernoulli":
            if self.cfg.binarize == "dynamic":
                return binarize_dynamic(x, generator, top=self.prep.top)
            return self._scale(x)  # "none": already binary; "fixed": pre-binarized below
        if self.dequantized:
            return dequantize(x, generator, levels=self.prep.levels)
        return self._scale(x)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        if self.prep.integer:
            return x.to(torch.float32) / self.prep.top
        return x.to(torch.float32)

    def train_source(self) -> torch.Tensor:
        """The tensor training batches are indexed from (pre-binarized for ``fixed``)."""
        if self.likelihood == "bernoulli" and self.cfg.binarize == "fixed":
            return self.eval_data("train")
        return self.raw("train")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Stored examples transformed once with the fixed evaluation seed, each from its own
        values (:func:`~vaelab.data.transforms.keyed_uniforms`): reproducible, and the same
        example gets the same numbers whichever rows it is read with."""
        seed = self.cfg.eval_seed
        if self.likelihood == "bernoulli" and self.cfg.binarize != "none":
            return binarize_fixed(x, seed, top=self.prep.top)
        if self.dequantized:
            return dequantize(x, levels=self.prep.levels, seed=seed)
        return self._scale(x)

    def eval_data(self, split: str) -> torch.Tensor:
        """The split transformed once with the fixed evaluation seed."""
        if split not in self._eval:
            self._eval[split] = self.prepare(self.raw(split))
        return self._eval[split]

    def model_mean(self) -> torch.Tensor:
        """``E[x]`` of the training data as the model sees it (the decoder's output bias)."""
        x = self.raw("train").float()
        mean = x.mean(0)
        if self.dequantized:  # the mean of (x + u)/levels is (x + 1/2)/levels
            return (mean + 0.5) / self.prep.levels
        return mean / self.prep.top if self.prep.integer else mean

    def model_std(self) -> torch.Tensor:
        """The per-value standard deviation of the training data as the model sees it."""
        x = self.raw("train").double()
        var = x.var(0, correction=0)
        if self.dequantized:  # (x + u)/levels: the uniform adds 1/12 of a level squared
            return ((var + 1 / 12) / self.prep.levels**2).sqrt().float()
        return (var.sqrt() / (self.prep.top if self.prep.integer else 1.0)).float()

    # -- reporting -----------------------------------------------------------------------
    @property
    def log_jacobian(self) -> float:
        """Nats per example from the model's NLL to the NLL of the data in its own units."""
        return self.prep.log_jacobian(math.prod(self.data_shape), self.dequantized)

    @property
    def bits_per_dim_applies(self) -> bool:
        """bits/dim is reported for images only (binary, or whole levels dequantized)."""
        return self.kind == "images" and (self.likelihood == "bernoulli" or self.dequantized)

    def describe(self) -> dict:
        """How the data was prepared, for every reported number (saved in ``config.json``)."""
        if self.likelihood == "bernoulli":
            if self.cfg.binarize == "none":
                binarization = "none (data already binary)"
            elif self.cfg.binarize == "dynamic":
                binarization = f"dynamic (train), fixed seed {self.cfg.eval_seed} (evaluation)"
            else:
                binarization = f"fixed seed {self.cfg.eval_seed}"
        else:
            binarization = "none"
        return {
            "dataset": self.cfg.dataset,
            "binarization": binarization,
            "dequantized": self.dequantized,
            "kind": self.kind,
            "units": self.prep.units,
            "source": self.source.describe(),
            "preprocessing": self.prep.to_json(),
        }
