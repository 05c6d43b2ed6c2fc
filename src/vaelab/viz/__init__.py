"""Pictures: image grids of samples, reconstructions and interpolations."""

from vaelab.viz.grid import make_grid, save_images

__all__ = ["make_grid", "save_images"]
