"""A hand-written forward and backward pass for the two-stochastic-layer VAE.

The same idea as ``fused.py`` (whose MLP helpers this module uses) for
:class:`~vaelab.models.HierarchicalVAE`: the maths of the autograd path
(``HierarchicalVAE.log_weight_terms`` under ``objective.py``), term for term, written as a
handful of matrix products and a few elementwise passes. ``tests/training/
test_fused_hierarchical.py`` checks every gradient against autograd in float64.

Scope (anything else takes the autograd path): a ``HierarchicalVAE`` with ReLU or tanh units
and a Bernoulli likelihood (its prior is always the fixed ``N(0, s² I)``), trained on the ELBO
(``k`` samples, the KL estimated on them, β) or the IWAE bound (``k`` samples, standard or
DReG gradient).

Notation for one batch (sample axis first; ``kB`` rows are the ``(k, B)`` grid flattened):

* ``q(z1|x)``: ``μ1, r1`` (B, L1), ``σ1 = softplus(r1) + m``, ``z1 = μ1 + σ1 ε1`` (k, B, L1);
* ``q(z2|z1)``: ``μ2, r2`` (kB, L2), ``σ2`` likewise, ``z2 = μ2 + σ2 ε2`` (kB, L2);
* ``p(z1|z2)``: ``μp, rp`` (kB, L1), ``σp``, and ``u = (z1 − μp)/σp``;
* ``p(x|z1)``: logits ``ℓ`` (kB, D), ``log p(x|z1) = Σ_d xℓ − softplus(ℓ)``;
* ``log_ratio = log p(z2) + log p(z1|z2) − log q(z1|x) − log q(z2|z1)`` (k, B).

Every objective here is ``loss = −Σ_kb (a_kb log p(x|z1_kb) + c_kb log_ratio_kb)``: the ELBO
has ``a = 1/(kB)``, ``c = β/(kB)``; the IWAE bound ``a = c = w̃/B`` with ``w̃`` the normalized
importance weights (softmax over the samples of the log-weights).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from vaelab.models.hierarchical import HierarchicalVAE
from vaelab.training.config import TrainConfig
from vaelab.training.fused import ACTS, _linears, cast, mlp_backward, mlp_forward


def unsupported_reason(model, cfg: TrainConfig) -> str | None:
    """Why the fused step cannot train this model/config (None: it can)."""
    if type(model) is not HierarchicalVAE:
        return f"{type(model).__name__} is not a HierarchicalVAE"
    c = model.config
    if c.activation not in ACTS:
        return f"activation {c.activation!r}"
    if c.likelihood != "bernoulli":
        return f"the {c.likelihood} likelihood"
    if model.prior_module.fixed_std is None:
        return "a learned prior scale"
    if cfg.precision == "fp16":
        return "precision fp16"
    return None


def _gaussian_head(out: torch.Tensor, n: int, min_scale: float):
    """``μ``, ``σ = softplus(r) + m`` and ``dσ/dr = sigmoid(r)`` of an MLP output ``[μ, r]``."""
    mu, raw = out.split(n, dim=1)
    return mu, F.softplus(raw) + min_scale, torch.sigmoid(raw)


class FusedHierarchicalStep:
    """Computes the loss, the batch statistics and every parameter's ``.grad`` for one batch."""

    def __init__(self, model: HierarchicalVAE, cfg: TrainConfig):
        reason = unsupported_reason(model, cfg)
        if reason is not None:
            raise ValueError(f"the fused step does not support {reason}")
        self.model = model
        self.nets = {name: _linears(getattr(model, name)) for name in ("q1", "q2", "p1", "decoder")}
        self.relu = model.config.activation == "relu"
        self.min_scale = model.config.min_posterior_std
        self.l1, self.l2 = model.config.latent_dims
        self.kind = cfg.objective
        self.dreg = cfg.estimator == "dreg"
        self.k = cfg.k
        self.prior_std = model.prior_module.fixed_std
        # bf16: the matrix products in bfloat16, everything else float32 (as in fused.py)
        self.gemm_dtype = torch.bfloat16 if cfg.precision == "bf16" else None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill ``.grad`` of every parameter; return (loss, [bound, elbo, rec, kl] sums)."""
        k, l1, l2, m, g = self.k, self.l1, self.l2, self.min_scale, self.gemm_dtype
        relu = self.relu
        batch = x.shape[0]
        kb = k * batch
        x = x.reshape(batch, -1)  # (B, D)
        w = {
            name: [(cast(lin.weight, g), cast(lin.bias, g)) for lin in layers]
            for name, layers in self.nets.items()
        }

        # -- forward, drawing ε1 then ε2 as the autograd path does --------------------------
        q1_outs = mlp_forward(self.nets["q1"], w["q1"], cast(x, g), relu)
        mu1, sd1, dsd1 = _gaussian_head(q1_outs[-1], l1, m)  # (B, L1) each
        eps1 = torch.empty(k, batch, l1, dtype=x.dtype, device=x.device).normal_()
        z1 = (mu1 + eps1 * sd1).view(kb, l1)  # q(z1|x).rsample((k,))
        z1_in = cast(z1, g)
        q2_outs = mlp_forward(self.nets["q2"], w["q2"], z1_in, relu)
        mu2, sd2, dsd2 = _gaussian_head(q2_outs[-1], l2, m)  # (kB, L2) each
        eps2 = torch.empty(k, batch, l2, dtype=x.dtype, device=x.device).normal_()
        eps2 = eps2.view(kb, l2)
        z2 = mu2 + eps2 * sd2  # (kB, L2), q(z2|z1).rsample()
        p1_outs = mlp_forward(self.nets["p1"], w["p1"], cast(z2, g), relu)
        mup, sdp, dsdp = _gaussian_head(p1_outs[-1], l1, m)  # (kB, L1) each
        u = (z1 - mup) / sdp  # (kB, L1)
        dec_outs = mlp_forward(self.nets["decoder"], w["decoder"], z1_in, relu)
        logits = dec_outs[-1]  # (kB, D)
        xk = x.expand(k, batch, -1).reshape(kb, -1)
        rec = -F.binary_cross_entropy_with_logits(logits, xk, reduction="none").sum(1)
        rec = rec.view(k, batch)  # log p(x|z1)

        # The 0.5·log 2π of the four Gaussian densities cancel (L2 + L1 − L1 − L2 of them);
        # log q(z1|x) and log q(z2|z1) are written with ε, which is (z − μ)/σ exactly.
        s2 = self.prior_std**2
        log_ratio = (
            (eps2 * eps2 / 2 - z2 * z2 / (2 * s2) + sd2.log()).sum(1).view(k, batch)
            + (eps1 * eps1 / 2).sum(2)
            - (u * u / 2 + sdp.log()).sum(1).view(k, batch)
            + sd1.log().sum(1)
            - l2 * math.log(self.prior_std)
        )  # (k, B)

        if self.kind == "elbo":
            rec_mean = rec.mean(0)
            kl = -log_ratio.mean(0)
            elbo = rec_mean - kl
            loss = -(rec_mean - beta * kl).mean()
            stats = torch.stack([elbo.sum(), elbo.sum(), rec_mean.sum(), kl.sum()])
            a = torch.full((k, batch), 1.0 / kb, dtype=x.dtype, device=x.device)
            c = a * beta
        else:
            lw = rec + log_ratio
            bound = torch.logsumexp(lw, 0) - math.log(k)
            loss = -bound.mean()
            nan = torch.full((), float("nan"), dtype=x.dtype, device=x.device)
            stats = torch.stack([bound.sum(), lw.mean(0).sum(), nan, nan])
            wt = torch.softmax(lw, 0)  # (k, B), normalized importance weights
            a = c = wt / batch
        a, c = a.view(kb, 1), c.view(kb, 1)

        # -- backward ---------------------------------------------------------------------
        # log p(x|z1): d/dℓ = x − sigmoid(ℓ)
        d_logits = torch.sigmoid(logits).sub_(xk).mul_(a)
        g_dec = mlp_backward(
            self.nets["decoder"], w["decoder"], dec_outs, d_logits, True, relu, g
        )  # (kB, L1)
        # log p(z1|z2) = Σ −u²/2 − log σp: d/dμp = u/σp, d/dσp = (u² − 1)/σp, d/dz1 = −u/σp
        t = c / sdp
        d_mup = -t * u
        d_p1 = torch.cat([d_mup, t * (1 - u * u) * dsdp], dim=1)  # (kB, 2 L1)
        g_p1 = mlp_backward(self.nets["p1"], w["p1"], p1_outs, d_p1, True, relu, g)  # (kB, L2)
        # everything downstream of z2 but log q(z2|z1): p(z1|z2) and log p(z2) = −z2²/2s²
        d_z2 = g_p1 + (c / s2) * z2  # (kB, L2)
        # log q(z2|z1) = Σ −ε2²/2 − log σ2 with ε2 = (z2 − μ2)/σ2: d/dz2 = −ε2/σ2, and its own
        # d/dμ2 = ε2/σ2, d/dσ2 = (ε2² − 1)/σ2. Along z2 = μ2 + σ2 ε2 the z2 and μ2 terms
        # cancel and the σ2 terms leave −1/σ2: the gradient of the output of q2's network is
        # [d_z2, d_z2 ε2 − c/σ2] (times dσ2/dr2), for its weights and for its input alike.
        d_q2 = torch.cat([d_z2, (d_z2 * eps2 - c / sd2) * dsd2], dim=1)  # (kB, 2 L2)
        if not self.dreg:
            g_q2 = mlp_backward(self.nets["q2"], w["q2"], q2_outs, d_q2, True, relu, g)
            # z1 feeds the decoder, p(z1|z2) (d/dz1 = −d/dμp) and q2's network
            d_z1 = (g_dec - d_mup + g_q2).view(k, batch, l1)
            # log q(z1|x) along z1 = μ1 + σ1 ε1: as for q2, only −Σ_k c/σ1 remains
            d_mu1 = d_z1.sum(0)
            d_sd1 = (d_z1 * eps1).sum(0) - c.view(k, batch, 1).sum(0) / sd1
        else:
            # DReG (log_weight_terms(dreg=True)): log q is taken with the inference networks'
            # parameters held fixed, and every path into them passes one w̃ scaling.
            # q2's weights see only z2's path, scaled once, less log q2's z2 term:
            # w̃ [d_z2 − cε2/σ2, (d_z2 − cε2/σ2) ε2]. Its input also receives, unscaled at
            # z1 and hence w̃ on the way to q1, log q2's μ2/σ2 terms through the network with
            # fixed weights; the sum is w̃ d_q2 (the standard gradient, scaled).
            wt = wt.view(kb, 1)
            e2 = d_z2 - c * eps2 / sd2
            d_q2_w = torch.cat([wt * e2, wt * e2 * eps2 * dsd2], dim=1)
            g_q2 = mlp_backward(
                self.nets["q2"], w["q2"], q2_outs, d_q2_w, True, relu, g, d_input=wt * d_q2
            )
            # z1's other paths (decoder, p(z1|z2), log q1 with μ1, σ1 fixed: −cε1/σ1) reach
            # q1 scaled by w̃; log q1 has no term in q1's parameters
            d_z1 = wt * (g_dec - d_mup) + g_q2
            d_z1 = d_z1.view(k, batch, l1) - (wt * c).view(k, batch, 1) * eps1 / sd1
            d_mu1 = d_z1.sum(0)
            d_sd1 = (d_z1 * eps1).sum(0)
        d_q1 = torch.cat([d_mu1, d_sd1 * dsd1], dim=1)  # (B, 2 L1)
        mlp_backward(self.nets["q1"], w["q1"], q1_outs, d_q1, False, relu, g)
        return loss, stats
