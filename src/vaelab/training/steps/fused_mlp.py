"""A hand-written forward and backward pass for MLP VAEs: the training step without autograd.

Why this exists. On a 2-core CPU a step of the pytorch/examples model (784-400-20, batch 128)
spends about half its time outside the matrix multiplies: autograd's graph, the
``torch.distributions`` objects, and a dozen small elementwise kernels per layer. Written out,
the backward pass of an MLP VAE is a handful of matrix products, and the step runs close to
the machine's matmul speed. The maths is the same as the autograd path (``autograd.py``),
term for term, and ``tests/training/test_fused.py`` checks the gradients against autograd.

Scope (anything else takes the autograd path): a :class:`~vaelab.models.VAE` with the MLP
architecture, ReLU or tanh units, a Bernoulli likelihood, a fixed ``N(0, σ_p² I)`` prior, and
the ELBO (``k`` samples, closed-form KL, β) or the IWAE bound (``k`` samples, standard or DReG
gradient).

Notation for one batch: ``x`` (B, D); encoder output ``μ, r`` (B, L) with ``σ = f(r)``;
``z = μ + σ ε`` (k, B, L); decoder logits ``ℓ`` (k, B, D);
``log p(x|z) = Σ_d x ℓ − softplus(ℓ)`` whose gradient in ``ℓ`` is ``x − sigmoid(ℓ)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.config import TrainConfig
from vaelab.distributions import diagonal_normal
from vaelab.distributions.kl import kl_divergence
from vaelab.models.vae import LOGVAR_LIMIT, VAE
from vaelab.rng import standard_normal
from vaelab.training.steps.output import StepOutput

ACTS = ("relu", "tanh")


def unsupported_reason(model, cfg: TrainConfig) -> str | None:
    """Why the fused step cannot train this model/config (None: it can)."""
    if type(model) is not VAE:
        return f"{type(model).__name__} is not a single-layer VAE"
    c = model.config
    if c.arch != "mlp":
        return "the conv architecture"
    if c.activation not in ACTS:
        return f"activation {c.activation!r}"
    if c.likelihood != "bernoulli":
        return f"the {c.likelihood} likelihood"
    if c.learn_prior_std:
        return "a learned prior scale"
    if cfg.precision == "fp16":
        return "precision fp16"
    return None


def _grad_buffer(p: nn.Parameter) -> torch.Tensor:
    """``p.grad``, allocated once and then overwritten in place by every step.

    Writing each step's gradients into the same memory (rather than fresh 1 MB tensors) saves
    the allocations and keeps them warm for the optimizer; together with the trainer's
    sum-based non-finite check, ~4% of a W1 step (in-process A/B against the previous step).
    """
    if p.grad is None or p.grad.shape != p.shape:
        p.grad = torch.empty_like(p)
    return p.grad


def act_backward(dh: torch.Tensor, h: torch.Tensor, relu: bool) -> torch.Tensor:
    """``dh · act'(a)`` from the activation's output ``h`` (relu: h > 0; tanh: 1 − h²), one
    kernel each. ``h`` broadcasts against ``dh`` (a stack of gradients of one layer's output).
    """
    if relu:
        return torch.ops.aten.threshold_backward(dh, h, 0)
    return torch.ops.aten.tanh_backward(dh, h)


def cast(t: torch.Tensor, gemm_dtype: torch.dtype | None) -> torch.Tensor:
    return t if gemm_dtype is None else t.to(gemm_dtype)


def mlp_forward(layers, weights, h: torch.Tensor, relu: bool) -> list[torch.Tensor]:
    """Inputs of every layer, then the output (in the parameters' dtype): ``[h0, ..., out]``.

    ``weights``: each layer's ``(weight, bias)``, already cast to the matrix products' dtype.
    """
    outs = [h]
    last = len(layers) - 1
    for i, (w, b) in enumerate(weights):
        if i == last:
            h = torch.addmm(b, h, w.t())
            if h.dtype != layers[i].weight.dtype:
                h = h.to(layers[i].weight.dtype)
        elif relu:
            h = torch.addmm(b, h, w.t()).relu_()
        else:
            # tanh(a) = 2 sigmoid(2a) − 1, with the 2a from the product's alpha and beta:
            # torch's CPU tanh costs 3-4 ns an element, its sigmoid ~0.5 (tanh was 6% of the
            # two-layer VAE's step); the two differ by float rounding (≤ 2e-7 absolute in
            # float32)
            h = torch.addmm(b, h, w.t(), beta=2, alpha=2).sigmoid_().mul_(2).sub_(1)
        outs.append(h)
    return outs


def mlp_backward(
    layers,
    weights,
    outs,
    d_out: torch.Tensor,
    need_input: bool,
    relu: bool,
    gemm_dtype: torch.dtype | None,
    param_rows: int | None = None,
):
    """Set weight/bias gradients from ``d_out``; return the gradient of the MLP's input if asked.

    ``param_rows=N``: ``d_out`` is a stack ``(2N, out)`` of two gradients of the same outputs;
    the first ``N`` rows train the weights, the last ``N`` are carried to the input only (their
    input gradient is the one returned). Both ride one product per layer.
    """
    stacked = param_rows is not None
    n = param_rows
    d = d_out
    for i in range(len(layers) - 1, -1, -1):
        lin, (w, _) = layers[i], weights[i]
        dp = d[:n] if stacked else d  # the rows that train the weights
        torch.sum(dp, 0, dtype=lin.bias.dtype, out=_grad_buffer(lin.bias))
        if gemm_dtype is None:
            torch.mm(dp.t(), outs[i], out=_grad_buffer(lin.weight))
        else:
            d = d.to(gemm_dtype)
            dp = d[:n] if stacked else d
            _grad_buffer(lin.weight).copy_(dp.t().mm(outs[i]))
        if i == 0:
            if not need_input:
                return None
            if stacked:
                d = d[n:]
        d = d.mm(w)
        if i > 0:
            if stacked:  # both halves of the stack meet the same activations (N, H)
                d = act_backward(d.view(2, n, -1), outs[i], relu).view(2 * n, -1)
            else:
                d = act_backward(d, outs[i], relu)
    return d if d.dtype == d_out.dtype else d.to(d_out.dtype)


class FusedStep:
    """Computes the loss, the batch statistics and every parameter's ``.grad`` for one batch."""

    def __init__(self, model: VAE, cfg: TrainConfig):
        reason = unsupported_reason(model, cfg)
        if reason is not None:
            raise ValueError(f"the fused step does not support {reason}")
        self.model = model
        self.enc, self.dec = model.mlp_linears()
        self.relu = model.config.activation == "relu"
        self.logvar = model.config.posterior_scale == "logvar"
        self.min_scale = model.config.min_posterior_std
        self.kind = cfg.objective
        self.dreg = cfg.estimator == "dreg"
        self.k = cfg.k
        self.latent = model.latent_dim
        # bf16: the matrix products run in bfloat16 (twice the float32 rate on CPUs with
        # AVX512-BF16 or AMX); everything else — the likelihood, the KL, the weights of the
        # bound, the gradients handed to the optimizer — stays float32.
        self.gemm_dtype = torch.bfloat16 if cfg.precision == "bf16" else None

    # -- the step -------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, x: torch.Tensor, beta: float) -> StepOutput:
        """Fill ``.grad`` of every parameter; return the loss and the batch sums."""
        m, k, n_lat = self.model, self.k, self.latent
        batch = x.shape[0]
        x = x.reshape(batch, -1)  # (B, D)
        g = self.gemm_dtype
        enc_w = [(cast(lin.weight, g), cast(lin.bias, g)) for lin in self.enc]
        dec_w = [(cast(lin.weight, g), cast(lin.bias, g)) for lin in self.dec]

        enc_outs = mlp_forward(self.enc, enc_w, cast(x, g), self.relu)
        mu, raw = enc_outs[-1].split(n_lat, dim=1)  # (B, L) each
        if self.logvar:
            r = raw.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)
            sigma = (0.5 * r).exp()
            dsigma_draw = 0.5 * sigma * (raw.abs() < LOGVAR_LIMIT)
        else:
            sigma = F.softplus(raw) + self.min_scale
            dsigma_draw = torch.sigmoid(raw)
        eps = standard_normal((k, batch, n_lat), x.dtype, x.device)
        z = mu + eps * sigma  # (k, B, L), the draw q(z|x).rsample((k,)) makes

        dec_outs = mlp_forward(self.dec, dec_w, cast(z.reshape(k * batch, n_lat), g), self.relu)
        logits = dec_outs[-1]  # (kB, D)
        xk = x.expand(k, batch, -1).reshape(k * batch, -1)
        # log p(x|z) = −BCE(ℓ, x), summed over pixels: (k, B)
        rec = -F.binary_cross_entropy_with_logits(logits, xk, reduction="none").sum(1)
        rec = rec.view(k, batch)

        prior = m.prior
        q = diagonal_normal(mu, sigma)
        inv_var_p = 1.0 / float(prior.base_dist.scale[0]) ** 2
        if self.kind == "elbo":
            kl = kl_divergence(q, prior)  # (B,)
            rec_mean = rec.mean(0)
            elbo = rec_mean - kl
            loss = -(rec_mean - beta * kl).mean()
            total = elbo.sum()
            out = StepOutput(loss, total, total, rec_mean.sum(), kl.sum())
            coef = torch.full((k, batch), 1.0 / (k * batch), dtype=x.dtype)
        else:
            lw = rec + prior.log_prob(z) - q.log_prob(z)  # (k, B)
            bound = torch.logsumexp(lw, 0) - math.log(k)
            loss = -bound.mean()
            nan = torch.full((), float("nan"))
            out = StepOutput(loss, bound.sum(), lw.mean(0).sum(), nan, nan)
            w = torch.softmax(lw, 0)  # normalized importance weights
            coef = w / batch
        # d loss / d ℓ = (sigmoid(ℓ) − x) · c_kb, c the weight of log p(x|z_kb) in the loss
        d_logits = torch.sigmoid(logits).sub_(xk).mul_(coef.reshape(-1, 1))
        dz = mlp_backward(self.dec, dec_w, dec_outs, d_logits, True, self.relu, g)
        dz = dz.view(k, batch, -1)

        # gradient in z of everything but the decoder, then through z = μ + σ ε
        if self.kind == "elbo":
            d_mu = dz.sum(0) + (beta / batch) * inv_var_p * mu
            d_sigma = (dz * eps).sum(0) + (beta / batch) * (inv_var_p * sigma - 1 / sigma)
        elif not self.dreg:
            # lw = log p(x|z) + log p(z) − log q(z); along z = μ + σε the log q terms give
            # d/dμ = 0 and d/dσ = −1/σ (Σ_k w̃_k = 1)
            dz = dz + (coef * inv_var_p).unsqueeze(-1) * z
            d_mu = dz.sum(0)
            d_sigma = (dz * eps).sum(0) - 1 / (batch * sigma)
        else:
            # DReG: weights w̃² on the encoder's path, log q with q's parameters held fixed
            # (so its z-gradient is −(z − μ)/σ² = −ε/σ and it has no σ-term)
            wk = w.unsqueeze(-1)  # (k, B, 1)
            dz = dz * wk + (coef.unsqueeze(-1) * wk) * (inv_var_p * z - eps / sigma)
            d_mu = dz.sum(0)
            d_sigma = (dz * eps).sum(0)
        d_enc_out = torch.cat([d_mu, d_sigma * dsigma_draw], dim=1)  # (B, 2L)
        mlp_backward(self.enc, enc_w, enc_outs, d_enc_out, False, self.relu, g)
        return out
