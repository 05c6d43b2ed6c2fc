"""Run under torchrun: evaluate two small models per example, sharded, and save rank 0's view.

``python -m torch.distributed.run --nproc-per-node 2 eval_worker.py OUT.safetensors``. The
test evaluates the same models in one process (:func:`evaluate_all`) and compares. The batch
size leaves a last batch of one example, so one rank only stands in there.
"""

from __future__ import annotations

import sys

import torch

from vaelab import distributed
from vaelab.distributed import SINGLE, World
from vaelab.evaluation.metrics import evaluate_model
from vaelab.io import save_tensors
from vaelab.models import VAE
from vaelab.models.hierarchical import HierarchicalVAE

N, BATCH, K = 31, 10, 40  # batches of 10, 10, 10 and 1


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return (torch.rand(N, 1, 28, 28, generator=g) < 0.3).float()


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(12)
    return {
        "vae": VAE(latent_dim=6, hidden=(48,)),  # one stochastic layer: q passed to the bound
        "hierarchical": HierarchicalVAE(latent_dims=(6, 3), hidden=(48,), hidden2=(24,)),
    }


def evaluate_all(world: World = SINGLE) -> dict[str, torch.Tensor]:
    """Per-example log p(x), its standard error and the ELBO of both models, in input order."""
    x = _data()
    out = {}
    for name, model in _models().items():
        report = evaluate_model(model, x, k=K, batch_size=BATCH, per_example=True, world=world)
        for key, value in report["per_example"].items():
            out[f"{name}/{key}"] = value
    return out


if __name__ == "__main__":
    with distributed.session("cpu") as world:
        results = evaluate_all(world)
        if world.writer:
            save_tensors(sys.argv[1], results)
