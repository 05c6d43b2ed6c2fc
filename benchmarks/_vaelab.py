"""vaelab's side of the benchmarks: the same workloads through vaelab's public machinery.

W1 trains with :class:`vaelab.training.Trainer` (the code path `vaelab train` runs) on the
same binarized tensor the peers get; W2 estimates with :func:`vaelab.evaluation.evaluate_model`
(the code path of `vaelab evaluate`) on the same weights.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from vaelab import VAE
from vaelab.config import resolve
from vaelab.evaluation.metrics import evaluate_model
from vaelab.training import Trainer


def examples_model_flags() -> dict:
    """The pytorch/examples architecture (784-400-20, ReLU, Bernoulli) as vaelab config keys."""
    return {"model.latent_dim": 20, "model.hidden": [400], "model.activation": "relu"}


def train_factory(data: torch.Tensor, args: argparse.Namespace, **extra):
    """W1 contender: one epoch of `vaelab train` on ``data`` (N, 784) already binarized."""
    images = data.reshape(-1, 1, 28, 28)
    valid = images[:1000]  # the trainer validates after the epoch (outside the clock)

    def run() -> dict:
        flags = {
            **examples_model_flags(),
            "data.binarize": "none",  # the peers' data is binarized once; so is ours here
            "train.epochs": 1,
            "train.batch_size": args.batch_size,
            "train.lr": args.lr,
            "train.seed": args.seed,
            "train.final_eval_n": 0,
            "train.init_output_bias": False,  # as pytorch/examples
            "train.checkpoint_every_s": 1e9,
            **extra,
        }
        with tempfile.TemporaryDirectory() as d:
            trainer = Trainer(
                resolve(None, [], flags),
                Path(d) / "run",
                progress=False,
                log=lambda msg: None,
                tensors={"train": images, "valid": valid},
            )
            t0 = time.perf_counter()
            trainer.run()
            total = time.perf_counter() - t0
            row = json.loads((Path(d) / "run" / "metrics.jsonl").read_text().splitlines()[0])
        return {
            "images_per_s": row["train_images_per_s"],
            "seconds": row["epoch_seconds"],
            "train_loss": -row["train_elbo"],
            "seconds_with_validation_and_checkpoint": total,
        }

    return run


def vae_from_canonical(sd: Mapping[str, torch.Tensor]) -> VAE:
    """The canonical pytorch/examples weights in a vaelab VAE (same function, same numbers)."""
    model = VAE(latent_dim=20, hidden=(400,), activation="relu", posterior_scale="logvar")
    state = {
        "encoder.1.0.weight": sd["enc.hidden.weight"],
        "encoder.1.0.bias": sd["enc.hidden.bias"],
        "encoder.1.2.weight": torch.cat([sd["enc.mu.weight"], sd["enc.logvar.weight"]]),
        "encoder.1.2.bias": torch.cat([sd["enc.mu.bias"], sd["enc.logvar.bias"]]),
        "decoder.0.weight": sd["dec.hidden.weight"],
        "decoder.0.bias": sd["dec.hidden.bias"],
        "decoder.2.weight": sd["dec.logits.weight"],
        "decoder.2.bias": sd["dec.logits.bias"],
    }
    model.load_state_dict(state, strict=True)
    return model.eval()


def loglik_factory(sd: Mapping[str, torch.Tensor], x: torch.Tensor, k: int):
    """W2 contender: `vaelab evaluate`'s estimator on the canonical weights."""
    model = vae_from_canonical(sd)
    images = x.reshape(-1, 1, 28, 28)

    def run() -> dict:
        t0 = time.perf_counter()
        report = evaluate_model(model, images, k=k, per_example=True)
        seconds = time.perf_counter() - t0
        out = report["per_example"]
        return {
            "log_px": out["log_px"].numpy(),
            "stderr": out["stderr"].numpy(),
            "seconds": seconds,
        }

    return run


def canonical_from_vae(model: VAE) -> dict[str, torch.Tensor]:
    """The inverse of :func:`vae_from_canonical` (for a ``posterior_scale="logvar"`` VAE)."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mu_w, logvar_w = sd["encoder.1.2.weight"].chunk(2)
    mu_b, logvar_b = sd["encoder.1.2.bias"].chunk(2)
    return {
        "enc.hidden.weight": sd["encoder.1.0.weight"],
        "enc.hidden.bias": sd["encoder.1.0.bias"],
        "enc.mu.weight": mu_w,
        "enc.mu.bias": mu_b,
        "enc.logvar.weight": logvar_w,
        "enc.logvar.bias": logvar_b,
        "dec.hidden.weight": sd["decoder.0.weight"],
        "dec.hidden.bias": sd["decoder.0.bias"],
        "dec.logits.weight": sd["decoder.2.weight"],
        "dec.logits.bias": sd["decoder.2.bias"],
    }


# vaelab's CPU recipe for W3 (same 784-400-20 network as the peers, so one estimator scores
# everyone): a larger constant learning rate and the output bias started at the data mean.
W3_RECIPE = {
    "train.batch_size": 128,
    "train.lr": 3e-3,
    "train.init_output_bias": True,
}


def time_to_quality_recipe(train: torch.Tensor, args: argparse.Namespace):
    """W3 contender: yields (training seconds so far, canonical weights) after each epoch."""
    images = train.reshape(-1, 1, 28, 28)
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        for epoch in range(1, args.max_epochs + 1):
            flags = {
                **examples_model_flags(),
                "model.posterior_scale": "logvar",
                "data.binarize": "none",
                "train.epochs": epoch,
                "train.seed": args.seed,
                "train.final_eval_n": 0,
                "train.checkpoint_every_s": 1e9,
                **W3_RECIPE,
            }
            trainer = Trainer(
                resolve(None, [], flags),
                run,
                resume=epoch > 1,
                progress=False,
                log=lambda msg: None,
                tensors={"train": images, "valid": images[:1000]},
            )
            trainer.run()
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            yield sum(r["epoch_seconds"] for r in rows), canonical_from_vae(trainer.model)
