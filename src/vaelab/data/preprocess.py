"""Everything done to the data between the file and the model, as data saved with the run.

Fitted once on the training split (:meth:`Preprocessing.fit`), stored in ``config.json`` and
applied again, unchanged, by every command that reads data for the run, so a user always hands
vaelab *raw* rows:

- **integer data** (uint8/uint16 images, or integer levels stored as floats, e.g. 0..16) are
  levels ``lo..hi`` of a ``value_range``: a Bernoulli model sees ``(x − lo)/(hi − lo)`` as the
  probability of a 1 (binarized), a Gaussian model the dequantized ``(x − lo + u)/levels``;
- **continuous data** may be standardized per feature with the training split's mean and
  standard deviation (tables by default);
- the **log-Jacobian** of those maps turns the model's NLL back into the data's own units:
  ``NLL_original = NLL_model + log_jacobian`` per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaelab.config import DataConfig, from_dict, to_dict
from vaelab.errors import DataError

_DTYPE_RANGES = {"uint8": (0, 255), "uint16": (0, 65535), "bool": (0, 1)}


@dataclass
class Preprocessing:
    kind: str  # "images" (C, H, W examples) or "table" (D features)
    likelihood: str  # what the data were prepared for
    value_range: list[float] | None = None  # integer levels lo..hi (or a plain linear range)
    integer: bool = False  # values are whole levels: dequantized for a Gaussian likelihood
    mean: list[float] | None = None  # standardization per feature, from the training split
    std: list[float] | None = None

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        cfg: DataConfig,
        kind: str,
        likelihood: str,
        train: torch.Tensor,
        stored_dtype: str | None = None,
        notices: list[str] | None = None,
        every: torch.Tensor | None = None,
    ) -> Preprocessing:
        """Decide the preprocessing from the config, the likelihood and the training split.

        ``every``: all rows of the file, every split. An integer value range that is not given
        is their min and max, so that it holds the valid and test rows too (the training
        split's alone would refuse a test row above its largest value, after training).
        Standardization statistics come from the training split only."""
        notices = notices if notices is not None else []
        seen = every if every is not None else train
        name = cfg.dataset
        integral = _integral(train)
        value_range = cfg.value_range
        integer = False
        if train.dtype == torch.uint8 or (stored_dtype or "") in _DTYPE_RANGES:
            integer = True
            key = stored_dtype if stored_dtype in _DTYPE_RANGES else "uint8"
            lo, hi = _DTYPE_RANGES[key]
            if value_range is None:
                value_range = [lo, hi]
                top = float(seen.max()) if seen.numel() else hi
                if top <= lo + (hi - lo) / 8:  # e.g. 0/1 or 0..16 stored as uint8
                    notices.append(
                        f"{name}: {key} values, read as levels {lo}..{hi}, reach only {top:g}: "
                        f"if {top:g} is their top, pass --value-range {lo},{top:g}"
                    )
            elif value_range[0] < lo or value_range[1] > hi:
                # the values cannot span it: the model would see a fraction of [0, 1]
                read = (
                    " (16-bit greyscale images in a folder with 8-bit or colour ones are read "
                    "as 8 bits)"
                )
                raise DataError(
                    f"{name}: the values are {key}, {lo}..{hi}"
                    f"{read if kind == 'images' and key == 'uint8' else ''}, so "
                    f"--value-range {value_range[0]:g},{value_range[1]:g} cannot be their "
                    f"scale: leave it out, or give a range within {lo}..{hi}"
                )
        elif value_range is not None:
            integer = integral and all(float(v).is_integer() for v in value_range)
            if not integer and likelihood != "bernoulli":
                lo, hi = value_range
                notices.append(
                    f"{name}: values that are not whole levels: --value-range {lo:g},{hi:g} "
                    "maps them linearly onto [0, 1], neither dequantized nor standardized"
                )
        elif kind == "images" and integral and float(train.max()) > 1:
            integer = True
            value_range = [float(seen.min()), float(seen.max())]
            notices.append(
                f"{name}: read as whole levels {value_range[0]:g}..{value_range[1]:g} mapped to "
                "[0, 1] (set --value-range LO,HI if the scale is wider)"
            )
        elif (stored_dtype or "float").startswith(("int", "uint")) and integral:
            integer = True
            value_range = [float(seen.min()), float(seen.max())]
            notices.append(f"{name}: integer data, levels {value_range[0]:g}..{value_range[1]:g}")
        elif kind == "table" and integral and seen.numel() and likelihood != "bernoulli":
            # a text table's whole numbers may be counts, codes or measurements: not guessed
            lo, hi = float(seen.min()), float(seen.max())
            advice = (
                "if they are yes/no answers, pass --likelihood bernoulli"
                if (lo, hi) == (0.0, 1.0)
                else f"if they are levels, pass --value-range {lo:g},{hi:g} to dequantize them"
            )
            notices.append(
                f"{name}: every value is a whole number, modelled as continuous; {advice} (a "
                "density on whole numbers can score arbitrarily high)"
            )
        standardize = cfg.standardize == "on" or (
            cfg.standardize == "auto"
            and kind == "table"
            and not integer
            and value_range is None  # the user's range says how to scale instead
            and likelihood != "bernoulli"
        )
        mean = std = None
        if standardize:
            if likelihood == "bernoulli":
                raise DataError(
                    f"{name}: standardized values are not probabilities; the bernoulli "
                    "likelihood cannot use --standardize on"
                )
            if cfg.value_range is not None:
                raise DataError(f"{name}: --standardize on and --value-range exclude each other")
            if integer:
                lo, hi = value_range
                raise DataError(
                    f"{name}: integer levels {lo:g}..{hi:g} are dequantized for a Gaussian "
                    "likelihood, not standardized: leave out --standardize on"
                )
            flat = train.reshape(train.shape[0], -1).double()
            mean_t, std_t = flat.mean(0), flat.std(0, correction=0)
            constant = int((std_t == 0).sum())
            if constant and flat.shape[0] == 1:  # a tiny file split 90/5/5
                notices.append(
                    f"{name}: the training split has 1 row, so none of its features varies; "
                    "left unscaled (std 0)"
                )
            elif constant:
                notices.append(f"{name}: {constant} constant feature(s) left unscaled (std 0)")
            std_t = torch.where(std_t > 0, std_t, torch.ones_like(std_t))
            mean, std = mean_t.tolist(), std_t.tolist()
        prep = cls(kind, likelihood, value_range, integer, mean, std)
        # every row the file holds, when given: a valid or test row refused later would stop
        # training midway, or its test evaluation, after the run folder was written
        prep.check(seen, name)
        return prep

    @classmethod
    def from_json(cls, data: dict) -> Preprocessing:
        return from_dict(cls, data, prefix="data.preprocessing.")

    def to_json(self) -> dict:
        return to_dict(self)

    # -- use -------------------------------------------------------------------------------
    @property
    def levels(self) -> int | None:
        """Integer levels ``hi − lo + 1`` (None for continuous data)."""
        if not self.integer:
            return None
        lo, hi = self.value_range
        return int(hi - lo) + 1

    def check(self, x: torch.Tensor, name: str, fix: str = "set --value-range LO,HI") -> None:
        """Raw values fit the preprocessing: within the value range, finite. ``fix``: what the
        error suggests for values outside the range (training can widen it, new rows cannot)."""
        if x.dtype != torch.uint8 and not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise DataError(f"{name}: {bad} values are NaN or infinite")
        if self.value_range is not None and x.numel():
            lo, hi = self.value_range
            xmin, xmax = float(x.min()), float(x.max())
            if xmin < lo or xmax > hi:
                raise DataError(
                    f"{name}: values in [{xmin:g}, {xmax:g}] fall outside the value range "
                    f"[{lo:g}, {hi:g}] ({fix})"
                )
            if self.integer and not _integral(x):
                raise DataError(f"{name}: the run's data are whole levels; these are not")

    def stored(self, x: torch.Tensor) -> torch.Tensor:
        """Raw values as the pipeline keeps them: integer levels from 0 (uint8 when they fit),
        standardized features, or float32 as they are."""
        if self.integer:
            lo, hi = self.value_range
            if x.dtype == torch.uint8 and lo == 0:
                return x
            shifted = x.to(torch.float32) - lo
            return shifted.to(torch.uint8) if hi - lo <= 255 else shifted
        if self.value_range is not None:
            lo, hi = self.value_range
            return ((x.to(torch.float32) - lo) / (hi - lo)).clamp_(0, 1)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=torch.float64, device=x.device)
            std = torch.tensor(self.std, dtype=torch.float64, device=x.device)
            flat = (x.reshape(x.shape[0], -1).double() - mean) / std
            return flat.to(torch.float32).reshape(x.shape)
        return x.to(torch.float32) if x.dtype != torch.uint8 else x

    @property
    def top(self) -> float | None:
        """The highest stored level (the Bernoulli probability is stored / top)."""
        if not self.integer:
            return None
        lo, hi = self.value_range
        return float(hi - lo)

    def log_jacobian(self, dims: int, dequantized: bool) -> float:
        """Nats per example to add to the model's NLL for the NLL of the data as stored."""
        if dequantized:
            return dims * math.log(self.levels)
        if self.integer or self.likelihood == "bernoulli":
            return 0.0  # a probability mass: no change of variables
        if self.value_range is not None:
            lo, hi = self.value_range
            return dims * math.log(hi - lo)
        if self.std is not None:
            return float(sum(math.log(s) for s in self.std))
        return 0.0

    def to_original(self, y: torch.Tensor) -> torch.Tensor:
        """Model-space values (a decoded mean) in the data's own units."""
        if self.integer:
            lo, hi = self.value_range
            if self.likelihood == "bernoulli":
                return lo + y * (hi - lo)
            return lo + y * self.levels - 0.5  # the centre of the dequantization bin
        if self.value_range is not None:
            lo, hi = self.value_range
            return lo + y * (hi - lo)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=y.dtype, device=y.device)
            std = torch.tensor(self.std, dtype=y.dtype, device=y.device)
            return (y.reshape(*y.shape[: y.ndim - 1], -1) * std + mean).reshape(y.shape)
        return y

    @property
    def units(self) -> str:
        """How the model's numbers relate to the data's, for every report."""
        if self.mean is not None:
            return "standardized per feature (NLL reported in original units too)"
        if self.integer:
            lo, hi = self.value_range
            return f"levels {lo:g}..{hi:g} scaled to [0, 1]"
        if self.value_range is not None:
            return f"[{self.value_range[0]:g}, {self.value_range[1]:g}] scaled to [0, 1]"
        return "as stored"


def _integral(x: torch.Tensor) -> bool:
    if x.dtype == torch.uint8 or not x.is_floating_point():
        return True
    return bool(torch.equal(x, torch.round(x)))
