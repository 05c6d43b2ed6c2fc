"""From a dataset name to the tensors a model sees: splits, binarization, dequantization.

Training batches are drawn by index from one resident tensor (8-bit images stay uint8, four
times smaller than floats) and transformed on the fly: a fresh Bernoulli draw per batch for
dynamic binarization, fresh uniform noise for dequantization. Validation and test data are
transformed once with a fixed seed, so their numbers are reproducible.
"""

from __future__ import annotations

import torch

from vaelab.config import DataConfig
from vaelab.data.sources import open_source
from vaelab.data.transforms import binarize_dynamic, binarize_fixed, dequantize, is_binary
from vaelab.errors import DataError


class DataPipeline:
    """The data side of a run: raw splits and the transforms the likelihood calls for."""

    def __init__(
        self,
        cfg: DataConfig,
        likelihood: str,
        device: torch.device | str = "cpu",
        primary: str = "train",
        tensors: dict[str, torch.Tensor] | None = None,
    ):
        self.cfg = cfg
        self.likelihood = likelihood
        self.device = torch.device(device)
        self.source = open_source(cfg.dataset, cfg.data_dir, cfg.eval_seed, tensors)
        self._raw: dict[str, torch.Tensor] = {}
        self._eval: dict[str, torch.Tensor] = {}
        first = self.raw(primary)  # the split whose type and shape define the data
        self.eight_bit = first.dtype == torch.uint8
        self.data_shape = tuple(first.shape[1:])
        self._check(first)

    # -- loading -------------------------------------------------------------------------
    def raw(self, split: str) -> torch.Tensor:
        """The split as stored: uint8 images or float arrays, on the pipeline's device."""
        if split not in self._raw:
            s = self.source.split(split)
            if len(s) == 0:
                raise DataError(f"{self.cfg.dataset}: the {split} split is empty")
            self._raw[split] = s.images.to(self.device)
        return self._raw[split]

    def _check(self, x: torch.Tensor) -> None:
        d, name = self.cfg, self.cfg.dataset
        if not self.eight_bit and not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise DataError(f"{name}: {bad} values are NaN or infinite")
        if self.likelihood == "bernoulli":
            if d.binarize == "none":
                if not is_binary(x):
                    kind = "grey pixels (0..255)" if self.eight_bit else "values other than 0/1"
                    raise DataError(
                        f"{name} has {kind}, but the bernoulli likelihood is for binary data: "
                        "choose --binarize dynamic (or fixed), or --likelihood gaussian"
                    )
            elif not self.eight_bit and (x.min() < 0 or x.max() > 1):
                raise DataError(
                    f"{name}: binarization needs values in [0, 1] (read as probabilities), got "
                    f"[{x.min().item():.4g}, {x.max().item():.4g}]"
                )
        elif self.eight_bit and not d.dequantize:
            raise DataError(
                f"{name} is 8-bit data: a Gaussian density on it without dequantization can "
                "score arbitrarily high; keep data.dequantize true"
            )

    # -- transforms ----------------------------------------------------------------------
    @property
    def dequantized(self) -> bool:
        """Whether the model sees ``(x + u)/256`` (then bits/dim gets the 8-bit correction)."""
        return self.likelihood == "gaussian" and self.eight_bit

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)

    def train_batch(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Transform raw training examples for one step (fresh noise from ``generator``)."""
        if self.likelihood == "bernoulli":
            if self.cfg.binarize == "dynamic":
                return binarize_dynamic(x, generator)
            return self._scale(x)  # "none": already binary; "fixed": pre-binarized below
        if self.dequantized:
            return dequantize(x, generator)
        return self._scale(x)

    def train_mean(self) -> torch.Tensor:
        """``E[x]`` per value of the training data as the model sees it (one example's shape)."""
        x = self.raw("train")
        mean = x.float().mean(0)
        if x.dtype == torch.uint8:
            # grey/255 is the probability of a 1 under binarization, and the mean of
            # (x + u)/256 is (x + 1/2)/256 under dequantization
            mean = (mean + 0.5) / 256 if self.dequantized else mean / 255
        return mean

    def train_source(self) -> torch.Tensor:
        """The tensor training batches are indexed from (pre-binarized for ``fixed``)."""
        if self.likelihood == "bernoulli" and self.cfg.binarize == "fixed":
            return self.eval_data("train")
        return self.raw("train")

    def eval_data(self, split: str) -> torch.Tensor:
        """The split transformed once with the fixed evaluation seed: reproducible scores."""
        if split not in self._eval:
            x = self.raw(split)
            seed = self.cfg.eval_seed
            if self.likelihood == "bernoulli" and self.cfg.binarize != "none":
                out = binarize_fixed(x, seed)
            elif self.dequantized:
                out = dequantize(x, torch.Generator(device=x.device).manual_seed(seed))
            else:
                out = self._scale(x)
            self._eval[split] = out
        return self._eval[split]

    def describe(self) -> dict:
        """How the data was prepared, for every reported number."""
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
        }
