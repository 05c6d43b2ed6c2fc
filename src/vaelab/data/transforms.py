"""Turning 8-bit images into what a likelihood can honestly score.

A Bernoulli decoder needs binary data: :func:`binarize_dynamic` draws a fresh binary image per
batch during training, :func:`binarize_fixed` draws one reproducible binary copy of a whole
validation or test split. A continuous (e.g. Gaussian) decoder needs dequantized data:
:func:`dequantize` spreads each 8-bit value uniformly over its bin, and :func:`bits_per_dim`
converts the resulting NLL back to bits per 8-bit dimension.

Images are ``(N, C, H, W)`` (any shape works): uint8 in 0..255, or floating point in [0, 1].
"""

from __future__ import annotations

import math

import torch

from vaelab.errors import InvalidArgumentError

__all__ = [
    "LOG2_256_CORRECTION",
    "binarize_dynamic",
    "binarize_fixed",
    "bits_per_dim",
    "dequantize",
    "is_binary",
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
) -> torch.Tensor:
    # A pixel is 1 iff u < p with u ~ U[0, 1): P(1) = p exactly, p = 0 never fires, p = 1 always.
    # For integer levels x in 0..top (uint8: top = 255), p = x/top and u < x/top is tested as
    # top·u < x, without a float copy of x. The uniforms are drawn on ``device`` (default:
    # x's) and moved to x's device. The comparison writes its 0.0/1.0 into u's own memory:
    # no boolean tensor and no conversion of it, on every training batch.
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
    """The same Bernoulli(intensity) draw as :func:`binarize_dynamic`, from a generator seeded
    with ``seed``: for validation and test sets, so their NLL is reproducible.

    Binarize the *whole split at once*: the draw for an example depends on its position in
    ``x``, so binarizing a subset gives different pixels than subsetting the binarized split.
    The uniforms are drawn on the CPU whatever ``x``'s device, so the result is the same on
    every machine.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
    x = _check_tensor(x, "images")
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return _bernoulli(x, generator, device=torch.device("cpu"), top=top)


def dequantize(
    x: torch.Tensor, generator: torch.Generator | None = None, levels: int | None = None
) -> torch.Tensor:
    """Uniform dequantization ``(x + u) / levels`` with ``u ~ U[0, 1)``, float32 in [0, 1).

    ``x`` must be the raw integer levels: uint8 (``levels`` 256), or, with ``levels`` given,
    integer values 0..levels−1 in any dtype. A continuous density on the result, with
    :func:`bits_per_dim`'s correction, is a lower bound on the discrete data's log-likelihood.
    ``floor(levels * y) == x`` holds exactly for every output ``y``.
    """
    x = _check_tensor(x, "images")
    if levels is None:
        if x.dtype != torch.uint8:
            raise InvalidArgumentError(
                f"dequantize needs the raw 8-bit images (uint8), got {x.dtype}; "
                "dequantizing already-scaled floats would use the wrong bin width"
            )
        levels = 256
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
