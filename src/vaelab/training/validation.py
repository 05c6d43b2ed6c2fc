"""The validation ELBO, by which a run keeps its best model: the whole split, fixed noise."""

from __future__ import annotations

import torch

from vaelab.distributed import SINGLE, World
from vaelab.objectives import elbo
from vaelab.rng import seeded

BATCH = 1000


@torch.no_grad()
def validation_elbo(
    model, x_all: torch.Tensor, *, samples: int, seed: int, autocast, world: World = SINGLE
) -> dict[str, float]:
    """The ELBO and its two terms, per example, over ``x_all`` with noise seeded by ``seed``.

    Under data parallelism each rank computes its rows of every batch and the sums are
    reduced, so the figures are the single-process ones (see :mod:`vaelab.distributed`).
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=x_all.device)
    with seeded(x_all.device, seed):
        for i in range(0, x_all.shape[0], BATCH):
            x = x_all[i : i + BATCH]
            shard = world.shard(x.shape[0])  # one process: the whole batch
            with shard.draws(), autocast():
                out = elbo(model, x[shard.rows], n_samples=samples)
            if shard.count:
                sums += torch.stack([v.double().sum() for v in (out.elbo, out.log_px_z, out.kl)])
    world.all_reduce(sums)
    model.train(was_training)
    elbo_, rec, kl = (sums / x_all.shape[0]).tolist()
    return {"val_elbo": elbo_, "val_reconstruction": rec, "val_kl": kl}
