"""The inference gaps of Cremer, Li & Duvenaud (2018), "Inference Suboptimality in Variational
Autoencoders" (ICML): how far the encoder's bound is from ``log p(x)``, and why.

For one example, with ``q(z|x)`` the encoder's Gaussian and ``q*`` the best diagonal Gaussian
for that example alone (the one with the largest ELBO)::

    log p(x) − ELBO(q)  =  [log p(x) − ELBO(q*)]  +  [ELBO(q*) − ELBO(q)]
                           approximation gap        amortization gap
                           = KL(q* ‖ p(z|x)):        what one encoder shared by every
                           the family cannot hold     example loses against a q fitted
                           the true posterior         to each example

Estimators, per example (then means with their standard error over the examples):

* ``q*``: :func:`vaelab.inference.fit_posterior`, warm-started at the encoder's ``q`` (so it can
  only improve on it, up to the noise of its stochastic optimization);
* ``ELBO(q)`` and ``ELBO(q*)``: the closed form where the model has one
  (``ClosedFormExpectation``), else ``elbo_samples`` reparameterized draws with the closed-form
  KL, the two estimated on the same noise (common random numbers: their difference, the
  amortization gap, is then much less noisy than either);
* ``log p(x)``: the importance-sampled estimate of
  :func:`vaelab.evaluation.likelihood.log_likelihood` with ``k`` draws from a *defensive*
  mixture (Hesterberg 1995), ``½ q* + ½ N(m*, (3 s*)²)``. ``q*`` alone is the proposal closest
  to the posterior, but it is narrower than the posterior (KL(q‖p) seeks a mode), and a
  proposal narrower than its target gives weights with a heavy tail: on a linear-Gaussian
  model whose posterior has correlation 0.9, K=5000 draws from ``q*`` underestimated
  ``log p(x)`` by 0.14 nats with a standard error of 0.01 (measured on the model of
  tests/report/test_gaps.py). The
  wide half bounds the weights; where the posterior is far narrower than it (a VAE's 50
  dimensions), its draws weigh nothing and the estimate is that of ``k/2`` draws from ``q*``.

By construction ``ELBO(q) + amortization gap + approximation gap = log p(x)`` for every
example, exactly. The approximation gap inherits the importance-sampling estimate's downward
bias (it is a lower bound in expectation), so at finite ``k`` it is, if anything, too small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from vaelab.errors import InvalidArgumentError, positive_int
from vaelab.evaluation.evaluate import split_header
from vaelab.evaluation.likelihood import log_likelihood
from vaelab.evaluation.metrics import mean_and_stderr
from vaelab.inference.fit import fit_posterior
from vaelab.models.protocols import AmortizedPosterior, ClosedFormExpectation, OwnImportanceWeights
from vaelab.objectives.elbo import elbo
from vaelab.rng import seeded

PROPOSALS = ("defensive", "best", "encoder")
DEFENSIVE_SCALE = 3.0  # the wide half's scale, in units of q*'s (3: unbiased in the test above)


@dataclass
class InferenceGaps:
    """Per example ``(B,)``: the estimate of ``log p(x)`` and its Monte Carlo standard error,
    the ELBO of the encoder and of the best per-example Gaussian, and the two gaps."""

    log_px: torch.Tensor
    log_px_stderr: torch.Tensor
    elbo_encoder: torch.Tensor
    elbo_best: torch.Tensor
    approximation_gap: torch.Tensor  # log_px − elbo_best
    amortization_gap: torch.Tensor  # elbo_best − elbo_encoder
    k: int
    elbo_samples: int | None  # None: the ELBOs are exact
    fit_steps: int


def _proposal(kind: str, best: Distribution, encoder: Distribution) -> Distribution:
    if kind == "encoder":
        return encoder
    if kind == "best":
        return best
    loc, scale = best.mean, best.stddev  # (B, L)
    parts = Independent(
        Normal(torch.stack([loc, loc], -2), torch.stack([scale, DEFENSIVE_SCALE * scale], -2)), 1
    )  # batch (B, 2): the two halves
    half = torch.full((*loc.shape[:-1], 2), 0.5, dtype=loc.dtype, device=loc.device)
    return MixtureSameFamily(Categorical(probs=half), parts)


def _elbo(model, x, q, n_samples, seed) -> torch.Tensor:
    with seeded(x.device, seed), torch.no_grad():
        return elbo(model, x, q=q, n_samples=n_samples).elbo.double()


def inference_gaps(
    model,
    x: torch.Tensor,
    *,
    k: int = 5000,
    q: Distribution | None = None,
    elbo_samples: int = 100,
    fit_steps: int | None = None,
    fit_lr: float = 0.05,
    proposal: str = "defensive",
    seed: int = 0,
) -> InferenceGaps:
    """The approximation and amortization gaps of ``model`` on the prepared examples ``x``.

    ``q`` is the amortized posterior to judge (default: the model's encoder, ``encode(x)``; pass
    one for a model without an encoder, such as a linear-Gaussian model with a hand-made one).
    ``proposal``: the importance samples of ``log p(x)`` come from the defensive mixture around
    ``q*`` (``"defensive"``), from ``q*`` itself (``"best"``) or from ``q`` (``"encoder"``).
    The noise comes from generators seeded with ``seed``; the caller's random state is left as
    it was. See the module docstring for what each number estimates.
    """
    positive_int("k", k)
    positive_int("elbo_samples", elbo_samples)
    if proposal not in PROPOSALS:
        raise InvalidArgumentError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    if isinstance(model, OwnImportanceWeights):
        raise InvalidArgumentError(
            "the inference gaps need one stochastic layer: q* is one diagonal Gaussian per example"
        )
    if q is None:
        if not isinstance(model, AmortizedPosterior):
            raise InvalidArgumentError(
                f"{type(model).__name__} has no encoder: pass the amortized posterior q"
            )
        with torch.no_grad():
            q = model.encode(x)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        exact = isinstance(model, ClosedFormExpectation)
        n_samples = None if exact else elbo_samples
        with seeded(x.device, seed):
            fit = fit_posterior(
                model, x, family="gaussian", steps=fit_steps, lr=fit_lr, init=q
            )  # q*, per example
        # the same seed for both ELBOs: the same standard-normal draws, moved by each q
        elbo_best = _elbo(model, x, fit.q, n_samples, seed + 1)
        elbo_encoder = _elbo(model, x, q, n_samples, seed + 1)
        with seeded(x.device, seed + 2):
            ll = log_likelihood(model, x, k, q=_proposal(proposal, fit.q, q))
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    log_px = ll.log_px.double()
    return InferenceGaps(
        log_px=log_px,
        log_px_stderr=ll.stderr.double(),
        elbo_encoder=elbo_encoder,
        elbo_best=elbo_best,
        approximation_gap=log_px - elbo_best,
        amortization_gap=elbo_best - elbo_encoder,
        k=k,
        elbo_samples=n_samples,
        fit_steps=fit.steps,
    )


def summarize_gaps(gaps: InferenceGaps) -> dict[str, Any]:
    """Means over the examples, each with its standard error (``key_stderr``): the numbers
    ``vaelab evaluate --gaps`` prints and writes as JSON. The means add up as the per-example
    values do: ``elbo + amortization_gap + approximation_gap == log_likelihood``."""
    out: dict[str, Any] = {
        "n": int(gaps.log_px.numel()),
        "k": gaps.k,
        "elbo_samples": gaps.elbo_samples,
        "fit_steps": gaps.fit_steps,
    }
    for key, values in (
        ("log_likelihood", gaps.log_px),
        ("elbo", gaps.elbo_encoder),
        ("elbo_best", gaps.elbo_best),
        ("approximation_gap", gaps.approximation_gap),
        ("amortization_gap", gaps.amortization_gap),
    ):
        out[key], out[f"{key}_stderr"] = mean_and_stderr(values)
    out["log_likelihood_mc_stderr"] = (gaps.log_px_stderr.pow(2).sum().sqrt() / out["n"]).item()
    return out


def gaps_for_split(
    model,
    data,
    split: str = "test",
    n: int = 500,
    k: int = 5000,
    elbo_samples: int = 100,
    fit_steps: int | None = None,
    batch_size: int = 500,
) -> dict[str, Any]:
    """:func:`inference_gaps` on the first ``n`` examples of ``split`` of a run's
    :class:`~vaelab.data.pipeline.DataPipeline`, summarized, with the split and the data
    preparation named. Examples are fitted ``batch_size`` at a time."""
    positive_int("n", n)
    positive_int("batch_size", batch_size)
    x = data.eval_data(split)[:n]
    parts = []
    for i in range(0, x.shape[0], batch_size):
        parts.append(
            inference_gaps(
                model,
                x[i : i + batch_size],
                k=k,
                elbo_samples=elbo_samples,
                fit_steps=fit_steps,
                seed=data.cfg.eval_seed + i,
            )
        )
    joined = InferenceGaps(
        **{
            f: torch.cat([getattr(p, f) for p in parts])
            for f in (
                "log_px",
                "log_px_stderr",
                "elbo_encoder",
                "elbo_best",
                "approximation_gap",
                "amortization_gap",
            )
        },
        k=k,
        elbo_samples=parts[0].elbo_samples,
        fit_steps=parts[0].fit_steps,
    )
    return {**split_header(model, data, split), **summarize_gaps(joined)}
