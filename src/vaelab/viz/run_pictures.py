"""The pictures a finished run leaves behind."""

from __future__ import annotations

from pathlib import Path

import torch

from vaelab.runs.layout import RUN_PICTURES
from vaelab.viz.grid import save_images
from vaelab.viz.pictures import grid_width, reconstructions, samples


def is_image_shape(shape) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3, 4)


def write_run_pictures(run_dir: str | Path, model, x: torch.Tensor, seed: int = 0) -> list[Path]:
    """``samples.png`` (64 prior samples) and ``reconstructions.png`` (of ``x[:32]``)."""
    if not is_image_shape(tuple(x.shape[1:])):
        return []
    run_dir = Path(run_dir)
    model = model.to("cpu")
    samples_png, reconstructions_png = RUN_PICTURES
    written = [save_images(samples(model, 64, seed=seed), run_dir / samples_png, nrow=8)]
    x = x[:32].cpu()
    width = grid_width(x.shape[0])
    recon = reconstructions(model, x, per_row=width)
    labels = ["original", "reconstruction"]
    written.append(save_images(recon, run_dir / reconstructions_png, nrow=width, row_labels=labels))
    return written
