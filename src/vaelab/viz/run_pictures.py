"""The pictures a finished run leaves behind."""

from __future__ import annotations

from pathlib import Path

from vaelab.viz.grid import save_images
from vaelab.viz.pictures import reconstructions, samples


def is_image_shape(shape) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3, 4)


def write_run_pictures(run_dir: str | Path, n: int = 64, seed: int = 0) -> list[Path]:
    """``samples.png`` and ``reconstructions.png`` in the run directory (image data only)."""
    from vaelab.training.run import load_run

    run = load_run(run_dir, device="cpu")
    shape = tuple(run.model.config.data_shape)
    if not is_image_shape(shape):
        return []
    run_dir = Path(run_dir)
    written = [save_images(samples(run.model, n, seed=seed), run_dir / "samples.png", nrow=8)]
    x = run.data.eval_data("test")[:32]
    written.append(
        save_images(
            reconstructions(run.model, x, per_row=8), run_dir / "reconstructions.png", nrow=8
        )
    )
    return written
