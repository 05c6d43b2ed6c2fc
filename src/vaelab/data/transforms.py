"""Turning 8-bit images into what a likelihood can honestly score.

A Bernoulli decoder needs binary data: :func:`binarize_dynamic` draws a fresh binary image per
batch during training, :func:`binarize_fixed` one reproducible binary copy of validation, test
and new rows, each example's from its own values. A continuous (e.g. Gaussian) decoder needs
dequantized data: :func:`dequantize` spreads each 8-bit value uniformly over its bin (keyed by
each example's values too, given a seed), and :func:`bits_per_dim` converts the resulting NLL
back to bits per 8-bit dimension.

Images are ``(N, C, H, W)`` (any shape works): uint8 in 0..255, or floating point in [0, 1].
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from vaelab.errors import InvalidArgumentError

__all__ = [
    "LOG2_256_CORRECTION",
    "binarize_dynamic",
    "binarize_fixed",
    "bits_per_dim",
    "dequantize",
    "is_binary",
    "keyed_uniforms",
    "to_unit",
]

LOG2_256_CORRECTION = math.log2(256)  # = 8 bits per dimension, the log-Jacobian of x -> x/256


def _check_tensor(x, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidArgumentError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    return x


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Pixel intensities in [0, 1] as float32: uint8 ``x / 255``; a float tensor is checked to
    lie in [0, 1] and returned as float32."""
    x = _check_tensor(x, "images")
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if not x.is_floating_point():
        raise InvalidArgumentError(f"images must be uint8 or floating point, got {x.dtype}")
    if x.numel():
        lo, hi = torch.aminmax(x)
        if not (lo >= 0 and hi <= 1):  # also catches NaN
            raise InvalidArgumentError(
                f"float images must lie in [0, 1], got values in [{lo.item():.4g}, {hi.item():.4g}]"
            )
    return x.to(torch.float32)


def _bernoulli(
    x: torch.Tensor,
    generator: torch.Generator | None,
    device: torch.device | None = None,
    top: float | None = None,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    # A pixel is 1 iff u < p with u ~ U[0, 1): P(1) = p exactly, p = 0 never fires, p = 1 always.
    # For integer levels x in 0..top (uint8: top = 255), p = x/top and u < x/top is tested as
    # top·u < x, without a float copy of x. The uniforms are drawn on ``device`` (default:
    # x's) and moved to x's device. The comparison writes its 0.0/1.0 into u's own memory:
    # no boolean tensor and no conversion of it, on every training batch. ``u``: the uniforms
    # given (float32, x's shape and device; overwritten).
    if u is None:
        u = torch.rand(x.shape, generator=generator, device=device or x.device, dtype=torch.float32)
        u = u.to(x.device)
    if top is not None or x.dtype == torch.uint8:
        return torch.lt(u.mul_(255.0 if top is None else float(top)), x, out=u)
    return torch.lt(u, to_unit(x), out=u)


def binarize_dynamic(
    x: torch.Tensor, generator: torch.Generator | None = None, top: float | None = None
) -> torch.Tensor:
    """A fresh binary draw: each pixel is Bernoulli(intensity), float32 0/1, same shape as ``x``.

    For training: call it on every batch, so the model sees a new binarization each time
    (dynamic binarization). ``x`` is uint8 (scaled by 1/255), integer levels 0..``top`` (scaled
    by 1/top), or float in [0, 1].
    """
    return _bernoulli(_check_tensor(x, "images"), generator, top=top)


def binarize_fixed(x: torch.Tensor, seed: int, top: float | None = None) -> torch.Tensor:
    """The same Bernoulli(intensity) draw as :func:`binarize_dynamic`, but each example's
    uniforms are a function of ``seed``, the example's own values and the pixel's position in
    it (:func:`keyed_uniforms`): for validation, test and new rows, so that their NLL is
    reproducible and an example's binary image, and every number of it, does not depend on
    the other rows it is read with (the same image first in one file and tenth in another, or
    twice in one, is binarized the same). The draw is made on the CPU whatever ``x``'s device,
    so the result is the same on every machine.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
    x = _check_tensor(x, "images")
    return _bernoulli(x, None, top=top, u=keyed_uniforms(x, seed).to(x.device))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment (Steele et al., 2014)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_KEYED_BLOCK = 1 << 20  # values per block of the uint64 arithmetic (8 MiB of temporaries)


def keyed_uniforms(x: torch.Tensor, seed: int) -> torch.Tensor:
    """float32 uniforms in [0, 1) of ``x``'s shape, example ``i``'s a function of ``seed``,
    the bytes of ``x[i]`` and each value's position only.

    Each example's key is a 64-bit BLAKE2b digest of its little-endian bytes (keyed with
    ``seed``); value ``j`` then gets splitmix64's output for ``key + (j + 1)·φ`` (Steele,
    Lea & Flood 2014, "Fast splittable pseudorandom number generators"), of which the top 24
    bits make a float32 uniform exactly. Identical examples get identical uniforms.
    """
    a = x.detach().cpu().contiguous().numpy()
    n = a.shape[0] if a.ndim else 1
    rows = a.reshape(n, -1)
    rows = rows.astype(rows.dtype.newbyteorder("<"), copy=False)
    salt = int(seed).to_bytes(16, "little", signed=True)
    keys = np.array(
        [
            int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8, key=salt).digest(), "little")
            for r in rows
        ],
        dtype=np.uint64,
    )
    d = rows.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    offsets = (np.arange(1, d + 1, dtype=np.uint64) * _GOLDEN)[None, :]  # wraps, as meant
    step = max(1, _KEYED_BLOCK // max(d, 1))
    for i in range(0, n, step):
        z = keys[i : i + step, None] + offsets
        z ^= z >> np.uint64(30)
        z *= _MIX[0]
        z ^= z >> np.uint64(27)
        z *= _MIX[1]
        z ^= z >> np.uint64(31)
        out[i : i + step] = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    return torch.from_numpy(out).reshape(x.shape)


def dequantize(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    levels: int | None = None,
    *,
    seed: int | None = None,
) -> torch.Tensor:
    """Uniform dequantization ``(x + u) / levels`` with ``u ~ U[0, 1)``, float32 in [0, 1).

    ``x`` must be the raw integer levels: uint8 (``levels`` 256), or, with ``levels`` given,
    integer values 0..levels−1 in any dtype. A continuous density on the result, with
    :func:`bits_per_dim`'s correction, is a lower bound on the discrete data's log-likelihood.
    ``floor(levels * y) == x`` holds exactly for every output ``y``. ``seed``: ``u`` from
    :func:`keyed_uniforms` (each example's from its own values, as :func:`binarize_fixed`)
    instead of ``generator``.
    """
    x = _check_tensor(x, "images")
    if levels is None:
        if x.dtype != torch.uint8:
            raise InvalidArgumentError(
                f"dequantize needs the raw 8-bit images (uint8), got {x.dtype}; "
                "dequantizing already-scaled floats would use the wrong bin width"
            )
        levels = 256
    if seed is not None:
        u = keyed_uniforms(x, seed).to(x.device)
    else:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    xf = x.to(torch.float32)
    y = (xf + u) / float(levels)
    # In float32, 255 + u rounds to 256 for u within 2^-17 of 1 (and likewise at every level),
    # which would put y in the next bin; clamp to the largest float below the bin's upper edge.
    top = torch.nextafter(
        (xf + 1.0) / float(levels), torch.zeros((), dtype=torch.float32, device=x.device)
    )
    return torch.minimum(y, top)


def is_binary(x: torch.Tensor) -> bool:
    """True when every value of ``x`` is exactly 0 or 1 (an empty tensor counts as binary)."""
    x = _check_tensor(x, "x")
    return bool(((x == 0) | (x == 1)).all())


def bits_per_dim(nll_nats, dims: int, *, dequantized: bool, levels: int = 256):
    """Convert a per-example negative log-likelihood in nats to bits per dimension.

    ``bits/dim = NLL / (D ln 2)`` for binary data, where the likelihood is a probability mass.

    With ``dequantized=True`` the NLL is that of a density on ``y = (x + u) / levels`` in
    [0, 1)^D (see :func:`dequantize`). The density of ``x + u`` on the 0..levels scale is
    ``p_y(y) / levels^D``, so ``-log p(x + u) = NLL + D ln levels`` and

        bits/dim = NLL / (D ln 2) + log2(levels)      (8-bit images: + 8),

    the number comparable to published results on 8-bit data. Works on floats and tensors
    (elementwise); ``dims`` is the number of dimensions D of one example (e.g. 784).
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise InvalidArgumentError(f"dims must be a positive integer, got {dims!r}")
    bpd = nll_nats / (dims * math.log(2))
    return bpd + math.log2(levels) if dequantized else bpd
