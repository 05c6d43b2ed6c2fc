"""Using a trained run on data: latent codes, per-row scores, samples and reconstructions, in
the data's own units.

``run = vaelab.load_run(DIR)`` gives the run's model and its preprocessing. Every method takes
*raw* rows, as the user has them: a path (read with the run's own reader settings: the same
columns, label column, image size and channels), or rows as an array, a tensor or a data frame
(columns picked by name, from a frame or a pandas row) in any layout a file may have. The run's
preprocessing (value range, standardization, binarization with the fixed evaluation seed) is
applied as it was at training time, never refitted.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vaelab.data.arrays import as_examples
from vaelab.data.images import IMAGE_SUFFIXES, read_image_folder
from vaelab.data.source import RawData
from vaelab.data.sources import read_data
from vaelab.data.tables import TABLE_SUFFIXES
from vaelab.errors import DataError, positive_int
from vaelab.evaluation.metrics import evaluate_model
from vaelab.rng import seeded
from vaelab.runs.config_file import read_data_record
from vaelab.runs.load import LoadedRun
from vaelab.runs.load import load_run as _load

Raw = str | os.PathLike | np.ndarray | torch.Tensor


@dataclass
class Rows:
    """Data as the model sees it, with the rows' ids and labels when the file had them."""

    x: torch.Tensor  # model space, prepared with the fixed evaluation seed
    ids: np.ndarray | None
    labels: np.ndarray | None
    notices: list[str] = field(default_factory=list)  # what reading the file changed
    # which input rows ``x`` holds (None: all): a run trained with --drop-missing leaves the
    # rows with missing cells unanswered, in their place
    present: np.ndarray | None = None

    def spread(self, t: torch.Tensor) -> torch.Tensor:
        """Answers for the rows of ``x`` placed at their input rows, NaN for the others."""
        if self.present is None:
            return t
        out = torch.full((len(self.present), *t.shape[1:]), float("nan"), dtype=t.dtype)
        out[torch.from_numpy(self.present)] = t
        return out


@dataclass
class Encoding:
    """``q(z|x)`` per row, in input order: posterior means and standard deviations ``(N, L)``."""

    mean: torch.Tensor
    std: torch.Tensor
    ids: np.ndarray | None
    labels: np.ndarray | None
    notices: list[str] = field(default_factory=list)  # what reading the file changed


@dataclass
class Scores:
    """Per row, in input order and in the data's own units (the preprocessing's log-Jacobian
    added back): the importance-sampled ``log p(x)`` with ``k`` samples and its standard error,
    the ELBO and its two terms."""

    log_px: torch.Tensor
    log_px_stderr: torch.Tensor
    log_px_ess: torch.Tensor  # effective samples of the k (1..k): few, and the ± is too small
    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    k: int
    ids: np.ndarray | None
    labels: np.ndarray | None
    notices: list[str] = field(default_factory=list)  # what reading the file changed


class Run:
    """A trained run, ready to use on data (see the module docstring)."""

    def __init__(self, loaded: LoadedRun):
        self.run_dir, self.cfg, self.model = loaded.run_dir, loaded.cfg, loaded.model
        self.data = loaded.data  # the run's pipeline and preprocessing
        self.record = read_data_record(loaded.run_dir).get("source", {})

    @property
    def columns(self) -> list[str] | None:
        """A table's feature names, in the model's order (None for images)."""
        return self.record.get("columns")

    @property
    def is_images(self) -> bool:
        return len(self.data.data_shape) == 3

    def read(self, path: str | os.PathLike) -> RawData:
        """A file or folder read as the training data was read."""
        rec, cfg = self.record, self.cfg.data
        path = Path(path).expanduser()
        image = path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES
        if image and rec.get("kind") == "images" and rec.get("image_size"):
            # the run's image size (height, width) and channel count: a grey folder for an RGB
            # run is replicated to RGB, as it would have been in training
            size = tuple(rec["image_size"])
            bits = 16 if rec.get("stored_dtype") == "uint16" else 8
            return read_image_folder(path, image_size=size, channels=rec.get("channels"), bits=bits)
        if path.suffix.lower() not in TABLE_SUFFIXES:
            # the run's column choices are a table's; an array of raw rows has none
            bare = dataclasses.replace(
                cfg, columns=None, label_column=None, id_column=None, drop_missing=False
            )
            return read_data(path, bare)
        if rec.get("kind") == "table":
            # every input row keeps its place in the answers: a row with a missing cell is
            # refused (naming it), or, for a run trained with --drop-missing, left unanswered;
            # the label is never a feature, so new rows may come without it
            cfg = dataclasses.replace(cfg, columns=rec.get("columns"))
            return read_data(path, cfg, every_row=True)
        return read_data(path, cfg)

    def rows(self, raw: Raw) -> Rows:
        """``raw`` prepared for the model, with its ids and labels."""
        ids = labels = None
        notices: list[str] = []
        if isinstance(raw, (str, os.PathLike)):
            got = self.read(raw)
            values, ids, labels, name = got.values, got.ids, got.labels, str(raw)
            classes = got.details.get("classes")
            if classes and labels is not None:
                # a folder's class names, not their codes: codes are positions in the sorted
                # names of *this* folder, so the same code could name another class in training
                labels = np.asarray(classes)[labels]
            notices = [f"{raw}: {n}" for n in got.notices]
        else:
            name = "the data given"
            raw = self._one_row_frame(raw)
            ids, labels = self._frame_keys(raw)
            values, notes = as_examples(self._array(raw, name), name)
            notices = [f"{name}: {n}" for n in notes]
        present = None
        if self.cfg.data.drop_missing and values.ndim == 2 and values.dtype.kind == "f":
            complete = ~np.isnan(values).any(axis=1)
            if not complete.all():
                present, values = complete, values[complete]
        x = torch.as_tensor(values)
        if x.dtype not in (torch.uint8, torch.float32):
            x = x.to(torch.float32)
        if x.shape[0] == 0:
            raise DataError(f"{name}: no {'complete ' if present is not None else ''}rows")
        if tuple(x.shape[1:]) != self.data.data_shape:
            raise DataError(
                f"{name}: rows of shape {list(x.shape[1:])}, but the run's model takes "
                f"{list(self.data.data_shape)}"
            )
        x = self._intensities_as_levels(x, name, notices)
        self.data.prep.check(x, name, fix="the run's range, fixed at training")
        stored = self.data.prep.stored(x).to(self.data.device)
        return Rows(self.data.prepare(stored), ids, labels, notices, present)

    def _one_row_frame(self, raw):
        """A pandas Series of a table run's named cells (``df.iloc[i]``) as a one-row frame, so
        that its cells are picked by name like a frame's columns, never by position."""
        is_series = hasattr(raw, "to_frame") and hasattr(raw, "index") and raw.ndim == 1
        if is_series and self.columns is not None and set(self.columns) <= set(raw.index):
            return raw.to_frame().T
        return raw

    def _frame_keys(self, raw) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A frame's ids and labels, from the run's id and label columns where it has them."""
        if not (hasattr(raw, "columns") and hasattr(raw, "to_numpy")):
            return None, None
        names = list(raw.columns)
        data = self.cfg.data
        found = [
            np.asarray(raw[c].to_numpy()) if c is not None and c in names else None
            for c in (data.id_column, data.label_column)
        ]
        return found[0], found[1]

    def _array(self, raw, name: str) -> np.ndarray:
        """An array, a tensor or a data frame as a numpy array with one row per example (a
        single row or image given alone gets its leading axis)."""
        if hasattr(raw, "columns") and hasattr(raw, "to_numpy"):  # a pandas/polars frame
            if self.columns is not None:  # pick the run's columns by name, as from a file
                missing = [c for c in self.columns if c not in list(raw.columns)]
                if missing:
                    raise DataError(
                        f"{name}: no column {missing[0]!r}; the run's are {self.columns}"
                    )
                raw = raw[self.columns]
            raw = raw.to_numpy()
            if raw.dtype == object:  # a row taken from a frame with text columns
                try:
                    raw = raw.astype(np.float64)
                except (TypeError, ValueError):
                    raise DataError(
                        f"{name}: the run's columns hold values that are not numbers"
                    ) from None
        arr = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        shape = self.data.data_shape
        if arr.ndim == len(shape) and arr.shape == shape:
            return arr[None]  # one row, or one (C, H, W) image
        if self.is_images and shape[0] == 1 and arr.shape == shape[1:]:
            return arr[None, None]  # one grey (H, W) image
        return arr

    def _intensities_as_levels(self, x: torch.Tensor, name: str, notices: list[str]):
        """Values in [0, 1] for a run trained on images of whole levels (8-bit): intensities, as
        binarized images and most image code hold them, so they are scaled to the levels (read
        as levels 0 and 1 of 0..255 they were a black image); values between levels (the
        run's own samples, in its units) are rounded to them."""
        prep = self.data.prep
        if not (self.is_images and prep.integer) or x.dtype == torch.uint8 or not x.numel():
            return x  # a table's levels (counts, ratings) are numbers, not intensities
        lo, hi = prep.value_range
        if hi - lo > 1 and float(x.min()) >= 0 and float(x.max()) <= 1:
            notices.append(
                f"{name}: values in [0, 1] read as intensities and scaled to the run's levels "
                f"{lo:g}..{hi:g}"
            )
            return (lo + x * (hi - lo)).round_()
        if not bool((x == x.round()).all()):  # e.g. the run's own samples: mean levels
            notices.append(f"{name}: values between the run's whole levels rounded to them")
            return x.round()
        return x

    @torch.no_grad()
    def encode(self, raw: Raw, batch_size: int = 1000) -> Encoding:
        """The posterior mean and standard deviation of every row (for a model with two
        stochastic layers, of ``q(z1|x)``)."""
        positive_int("batch_size", batch_size)
        r = self.rows(raw)
        means, stds = [], []
        for i in range(0, r.x.shape[0], batch_size):
            q = self.model.encode(r.x[i : i + batch_size])
            means.append(q.mean.float().cpu())
            stds.append(q.stddev.float().cpu())
        mean, std = r.spread(torch.cat(means)), r.spread(torch.cat(stds))
        return Encoding(mean, std, r.ids, r.labels, r.notices)

    def score(
        self, raw: Raw, k: int = 1000, batch_size: int | None = None, progress: bool = False
    ) -> Scores:
        """Per-row log-likelihood (``k`` importance samples) and ELBO terms, as ``evaluate``
        computes them (the same seed, so the same rows give the same numbers)."""
        r = self.rows(raw)
        out = evaluate_model(
            self.model,
            r.x,
            k=k,
            batch_size=batch_size,
            seed=self.cfg.data.eval_seed,
            progress=progress,
            per_example=True,
        )["per_example"]
        jacobian = self.data.log_jacobian
        return Scores(
            log_px=r.spread(out["log_px"].cpu() - jacobian),
            log_px_stderr=r.spread(out["stderr"].cpu()),
            log_px_ess=r.spread(out["ess"].cpu()),
            elbo=r.spread(out["elbo"].cpu() - jacobian),
            reconstruction=r.spread(out["rec"].cpu() - jacobian),
            kl=r.spread(out["kl"].cpu()),
            k=k,
            ids=r.ids,
            labels=r.labels,
            notices=r.notices,
        )

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, mean: bool = True, units: bool = True):
        """``n`` decoded prior draws: the likelihood's mean (or ``x ~ p(x|z)``), in the data's
        own units (``units=False``: as the model sees them)."""
        positive_int("n", n)
        with seeded("cpu", seed):
            x = self.model.sample(n, mean=mean, generator=torch.Generator().manual_seed(seed))
        return self.data.prep.to_original(x) if units else x

    @torch.no_grad()
    def reconstruct(self, raw: Raw, units: bool = True) -> torch.Tensor:
        """The decoded mean of each row's posterior mean."""
        x = self.rows(raw).x
        y = self.model.decode(self.model.encode(x).mean).mean
        return self.data.prep.to_original(y) if units else y


def load_run(run_dir: str | os.PathLike, device: str = "cpu") -> Run:
    """A trained run, ready for data (its own training data is not read)."""
    return Run(_load(run_dir, device=device, with_data=False))
