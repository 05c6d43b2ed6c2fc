"""Why training diverged: the term of the objective that is not finite, and the setting
behind it, for the one-line error that ends a run whose rollbacks did not help."""

from __future__ import annotations

import torch

from vaelab.objectives import elbo
from vaelab.rng import seeded


@torch.no_grad()
def divergence_cause(model, x: torch.Tensor, autocast, seed: int) -> str:
    """``": <the cause>"`` when a term of the ELBO of ``x`` is not finite, else ``""``.

    A lower learning rate (what the rollbacks tried) cannot fix either: a KL term that is not
    finite comes from the prior's scale, a reconstruction term from the data or the likelihood.
    """
    was_training = model.training
    model.eval()
    with seeded(x.device, seed), autocast():
        out = elbo(model, x)
    model.train(was_training)
    if not torch.isfinite(out.kl).all():
        std = getattr(model.config, "prior_std", None)
        setting = f" with model.prior_std={std:g}" if std is not None else ""
        return (
            f": the KL term to the prior N(0, σ_p² I) is not finite{setting} (a prior that "
            "narrow or wide cannot be fitted in float32; choose a prior_std nearer 1)"
        )
    if not torch.isfinite(out.log_px_z).all():
        return (
            ": the reconstruction term log p(x|z) is not finite (check the data's values and "
            "the likelihood's settings)"
        )
    return ""
