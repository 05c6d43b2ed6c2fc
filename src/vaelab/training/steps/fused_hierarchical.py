"""A hand-written forward and backward pass for the two-stochastic-layer VAE.

The same idea as ``fused.py`` (whose MLP helpers this module uses) for
:class:`~vaelab.models.HierarchicalVAE`: the maths of the autograd path
(``HierarchicalVAE.log_weight_terms`` under ``objective.py``), term for term, written as a
handful of matrix products and a few elementwise passes. ``tests/training/
test_fused_hierarchical.py`` checks every gradient against autograd in float64.

Where the time goes (the paper's network, batch 100, one thread, on the 2-core VM; indicative,
the machine was shared): the step's 35 matrix products alone take 3.5 of its ~5 ms at k=1 and
12 of its ~16 ms at k=5, and no implementation can skip them; the rest is ~190 small torch
calls. Through the trainer (with Adam) autograd's step costs 1.3x this one and torch.compile's
1.05x at k=1, 1.4x at k=5 with DReG (``benchmarks/w4_two_layer_step.py``).

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

from vaelab.config import TrainConfig
from vaelab.models.hierarchical import HierarchicalVAE
from vaelab.rng import standard_normal
from vaelab.training.steps.fused_mlp import ACTS, cast, mlp_backward, mlp_forward
from vaelab.training.steps.output import StepOutput


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
    return mu, F.softplus(raw).add_(min_scale), torch.sigmoid(raw)


class FusedHierarchicalStep:
    """Computes the loss, the batch statistics and every parameter's ``.grad`` for one batch."""

    def __init__(self, model: HierarchicalVAE, cfg: TrainConfig):
        reason = unsupported_reason(model, cfg)
        if reason is not None:
            raise ValueError(f"the fused step does not support {reason}")
        self.model = model
        self.nets = [net.linears() for net in (model.q1, model.q2, model.p1, model.decoder)]
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
    def __call__(self, x: torch.Tensor, beta: float) -> StepOutput:
        """Fill ``.grad`` of every parameter; return the loss and the batch sums."""
        k, l1, l2, m, g, relu = self.k, self.l1, self.l2, self.min_scale, self.gemm_dtype, self.relu
        batch = x.shape[0]
        kb = k * batch
        x = x.reshape(batch, -1)  # (B, D)
        new = dict(dtype=x.dtype, device=x.device)
        nets = self.nets
        q1_w, q2_w, p1_w, dec_w = (
            [(cast(lin.weight, g), cast(lin.bias, g)) for lin in net] for net in nets
        )

        # -- forward, drawing ε1 then ε2 as the autograd path does --------------------------
        q1_outs = mlp_forward(nets[0], q1_w, cast(x, g), relu)
        mu1, sd1, dsd1 = _gaussian_head(q1_outs[-1], l1, m)  # (B, L1) each
        eps1 = standard_normal((k, batch, l1), x.dtype, x.device)
        z1 = torch.addcmul(mu1, eps1, sd1).view(kb, l1)  # q(z1|x).rsample((k,))
        z1_in = cast(z1, g)
        q2_outs = mlp_forward(nets[1], q2_w, z1_in, relu)
        mu2, sd2, dsd2 = _gaussian_head(q2_outs[-1], l2, m)  # (kB, L2) each
        # the (k, B, L2) draw, flattened (a view in one process; under torchrun this rank's
        # rows of the whole batch's draw, which reshape copies)
        eps2 = standard_normal((k, batch, l2), x.dtype, x.device).reshape(kb, l2)
        z2 = torch.addcmul(mu2, eps2, sd2)  # q(z2|z1).rsample()
        p1_outs = mlp_forward(nets[2], p1_w, cast(z2, g), relu)
        mup, sdp, dsdp = _gaussian_head(p1_outs[-1], l1, m)  # (kB, L1) each
        u = torch.sub(z1, mup).div_(sdp)  # (kB, L1)
        dec_outs = mlp_forward(nets[3], dec_w, z1_in, relu)
        logits = dec_outs[-1].view(k, batch, -1)  # (k, B, D)

        # log p(x|z1) = Σ_d xℓ − softplus(ℓ), with x broadcast over the samples rather than
        # copied k times. softplus(ℓ) = ℓ above the threshold, wrong by e^-ℓ: 40 puts that
        # below float64's rounding (and float32 does not overflow exp(40))
        rec = F.softplus(logits, threshold=40).addcmul_(logits, x, value=-1).sum(2).neg_()

        # The 0.5·log 2π of the four Gaussian densities cancel (L2 + L1 − L1 − L2 of them);
        # log q(z1|x) and log q(z2|z1) are written with ε, which is (z − μ)/σ exactly:
        # log_ratio = Σ_L2 [ε2²/2 − z2²/2s² + log σ2] − Σ_L1 [u²/2 + log σp − ε1²/2]
        #             + Σ_L1 log σ1 − L2 log s
        s2 = self.prior_std**2
        r2 = torch.log(sd2).addcmul_(eps2, eps2, value=0.5).addcmul_(z2, z2, value=-0.5 / s2)
        r1 = torch.log(sdp).addcmul_(u, u, value=0.5).view(k, batch, l1)
        r1.addcmul_(eps1, eps1, value=-0.5)
        log_ratio = r2.sum(1).view(k, batch).sub_(r1.sum(2)).add_(sd1.log().sum(1))  # (k, B)
        if s2 != 1:
            log_ratio.sub_(l2 * math.log(self.prior_std))

        if self.kind == "elbo":
            rec_mean = rec.mean(0)
            kl = log_ratio.mean(0).neg_()
            elbo = rec_mean - kl
            loss = -(rec_mean - beta * kl).mean()
            total = elbo.sum()
            out = StepOutput(loss, total, total, rec_mean.sum(), kl.sum())
            # the weights of the loss, the same for every sample
            a = torch.full((1, 1), 1.0 / kb, **new)
            c = a * beta
            sum_c = beta / batch  # Σ_k c
        else:
            lw = rec + log_ratio
            bound = torch.logsumexp(lw, 0) - math.log(k)
            loss = -bound.mean()
            nan = torch.full((), float("nan"), **new)
            out = StepOutput(loss, bound.sum(), lw.mean(0).sum(), nan, nan)
            wt = torch.softmax(lw, 0).view(kb, 1)  # normalized importance weights
            a = c = wt / batch
            sum_c = 1.0 / batch  # Σ_k w̃ = 1

        # -- backward: the loss's gradient, output to input ---------------------------------
        # log p(x|z1): d/dℓ = x − sigmoid(ℓ) (the sigmoid overwrites the spent logits)
        d_logits = logits.sigmoid_().sub_(x).view(kb, -1).mul_(a)
        g_dec = mlp_backward(nets[3], dec_w, dec_outs, d_logits, True, relu, g)  # (kB, L1)

        # log p(z1|z2) = Σ −u²/2 − log σp: d/dμp = u/σp, d/dσp = (u² − 1)/σp, d/dz1 = −u/σp.
        # With tp = c/σp the loss's gradient is −tp·u for μp and tp(1 − u²) = tp + (−tp·u)·u
        # for σp.
        tp = torch.div(c, sdp)
        d_p1 = torch.empty(kb, 2 * l1, **new)
        d_mup = torch.mul(tp, u, out=d_p1[:, :l1]).neg_()
        torch.addcmul(tp, d_mup, u, out=d_p1[:, l1:]).mul_(dsdp)
        g_p1 = mlp_backward(nets[2], p1_w, p1_outs, d_p1, True, relu, g)  # (kB, L2)

        # z2's gradient from everything but log q(z2|z1): p(z1|z2) through p1's network and
        # log p(z2) = −z2²/2s². log q(z2|z1) = Σ −ε2²/2 − log σ2 with ε2 = (z2 − μ2)/σ2 adds
        # −ε2/σ2 for z2 and, its own, ε2/σ2 for μ2 and (ε2² − 1)/σ2 for σ2; along
        # z2 = μ2 + σ2 ε2 the z2 and μ2 terms cancel and the σ2 terms leave −1/σ2. So q2's
        # output gets [d_z2, d_z2 ε2 − c/σ2] (the second times dσ2/dr2), for its weights and
        # its input alike. (DReG: one more stack of the same shape above it, see below.)
        stack = torch.empty((1 + self.dreg) * kb, 2 * l2, **new)
        d_q2 = stack[-kb:]
        d_z2 = torch.addcmul(g_p1, c, z2, value=1 / s2, out=d_q2[:, :l2])
        torch.mul(d_z2, eps2, out=d_q2[:, l2:]).addcdiv_(c, sd2, value=-1).mul_(dsd2)

        d_q1 = torch.empty(batch, 2 * l1, **new)  # the gradient of q1's output [μ1, r1]
        if not self.dreg:
            g_q2 = mlp_backward(nets[1], q2_w, q2_outs, d_q2, True, relu, g)  # (kB, L1)
            # z1 feeds the decoder, p(z1|z2) (d/dz1 = −d/dμp) and q2's network
            d_z1 = g_dec.sub_(d_mup).add_(g_q2).view(k, batch, l1)
            torch.sum(d_z1, 0, out=d_q1[:, :l1])
            # log q(z1|x) along z1 = μ1 + σ1 ε1: as for q2, only −Σ_k c/σ1 remains
            d_sd1 = torch.sum(d_z1 * eps1, 0, out=d_q1[:, l1:])
            d_sd1.sub_(sd1.reciprocal().mul_(sum_c))
        else:
            # DReG (log_weight_terms(dreg=True)): log q taken with the inference networks'
            # parameters held fixed, and one w̃ scaling on every path into them.
            # q2's weights see only z2's path, scaled once, less log q2's z2 term:
            # e2 = w̃ (d_z2 − cε2/σ2) for μ2 and e2·ε2 for σ2. Its input also receives, through
            # the network with fixed weights, log q2's μ2/σ2 terms, unscaled at z1 and hence
            # scaled by w̃ on the way to q1: in all, w̃ d_q2 (the standard gradient, scaled).
            # Nothing is divided by w̃ (autograd's _ScaleGrad(inverse=True) does, and gives
            # NaN when a weight underflows to 0, as float32 weights do 104 nats down).
            d_w = stack[:kb]
            e2 = torch.addcdiv(d_z2, eps2 * c, sd2, value=-1, out=d_w[:, :l2]).mul_(wt)
            torch.mul(e2, eps2, out=d_w[:, l2:]).mul_(dsd2)
            d_q2.mul_(wt)
            g_q2 = mlp_backward(nets[1], q2_w, q2_outs, stack, True, relu, g, param_rows=kb)
            # z1's other paths (decoder, p(z1|z2), and log q1 with μ1, σ1 fixed: −cε1/σ1)
            # reach q1 scaled by w̃; log q1 has no term in q1's parameters
            wkb, ckb = wt.view(k, batch, 1), c.view(k, batch, 1)
            d_z1 = g_dec.sub_(d_mup).view(k, batch, l1).addcdiv_(eps1 * ckb, sd1, value=-1)
            d_z1 = d_z1.mul_(wkb).add_(g_q2.view(k, batch, l1))
            torch.sum(d_z1, 0, out=d_q1[:, :l1])
            torch.sum(d_z1 * eps1, 0, out=d_q1[:, l1:])
        d_q1[:, l1:].mul_(dsd1)
        mlp_backward(nets[0], q1_w, q1_outs, d_q1, False, relu, g)
        return out
