"""Binarization, dequantization and bits/dim: the maths, not just the shapes."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab.data import load_split
from vaelab.data.transforms import (
    LOG2_256_CORRECTION,
    binarize_dynamic,
    binarize_fixed,
    bits_per_dim,
    dequantize,
    is_binary,
    to_unit,
)
from vaelab.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def mini_valid() -> torch.Tensor:
    return load_split("mnist-mini", "valid").images  # (1000, 1, 28, 28) uint8


def test_to_unit():
    x = torch.arange(256, dtype=torch.uint8)
    y = to_unit(x)
    assert y.dtype == torch.float32
    assert torch.equal(y, torch.arange(256, dtype=torch.float32) / 255)
    assert y[0] == 0 and y[-1] == 1
    f = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert to_unit(f).dtype == torch.float32
    for bad in (torch.tensor([1.5]), torch.tensor([-0.1]), torch.tensor([float("nan")])):
        with pytest.raises(InvalidArgumentError, match=r"\[0, 1\]"):
            to_unit(bad)
    with pytest.raises(InvalidArgumentError, match="uint8 or floating"):
        to_unit(torch.tensor([1, 2], dtype=torch.int64))


def test_binarize_fixed_reproducible(mini_valid):
    a = binarize_fixed(mini_valid, seed=123)
    b = binarize_fixed(mini_valid, seed=123)
    c = binarize_fixed(mini_valid, seed=124)
    assert a.dtype == torch.float32 and a.shape == mini_valid.shape
    assert is_binary(a)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Pixels that are exactly 0 or 255 are deterministic.
    assert torch.all(a[mini_valid == 0] == 0) and torch.all(a[mini_valid == 255] == 1)


def test_binarize_matches_intensity_in_expectation(mini_valid):
    p = to_unit(mini_valid)
    b = binarize_fixed(mini_valid, seed=0)
    # Sum of independent Bernoulli(p_i): mean sum p_i, variance sum p_i (1 - p_i).
    total, expected = b.sum().item(), p.sum().item()
    std = math.sqrt((p * (1 - p)).sum().item())
    assert abs(total - expected) < 5 * std
    # Per pixel over many seeds for one image: frequency of 1 ~ p within 5 binomial std.
    img = mini_valid[:1]
    freq = torch.stack([binarize_fixed(img, seed=s)[0] for s in range(2000)]).mean(0)
    p1 = p[0]
    tol = 5 * torch.sqrt(p1 * (1 - p1) / 2000) + 1e-6
    assert torch.all((freq - p1).abs() <= tol)


def test_binarize_fixed_depends_on_each_example_alone(mini_valid):
    """An example's binary image is a function of (seed, its values): the same image read
    alone, tenth in a file, twice in one, or on its own in a subset, gets the same pixels, so
    `score`'s anomaly ranks never move with the file's order. Different images (and one image
    under another seed) get independent draws."""
    x = mini_valid[:50]
    whole = binarize_fixed(x, seed=3)
    assert torch.equal(binarize_fixed(x[10:11], seed=3), whole[10:11])
    assert torch.equal(binarize_fixed(x.flip(0), seed=3), whole.flip(0))
    twice = binarize_fixed(torch.cat([x[:1], x[7:8], x[:1]]), seed=3)
    assert torch.equal(twice[0], twice[2]) and torch.equal(twice[0], whole[0])
    # levels 0..top: the ends are exact, and an example is keyed by its levels likewise
    levels = (x[:5].to(torch.int32) * 15 // 255).to(torch.uint8)  # 0..15
    bits = binarize_fixed(levels, seed=3, top=15)
    assert (bits[levels == 0] == 0).all() and (bits[levels == 15] == 1).all()
    assert torch.equal(binarize_fixed(levels[2:3], seed=3, top=15), bits[2:3])
    # dequantization of new rows is keyed the same way, and keeps floor(levels·y) == x
    y = dequantize(x, seed=3)
    assert torch.equal(dequantize(x[10:11], seed=3), y[10:11])
    assert torch.equal(torch.floor(y * 256).to(torch.uint8), x)


def test_keyed_uniforms_are_uniform_and_independent_across_pixels_and_examples():
    from vaelab.data.transforms import keyed_uniforms

    x = torch.arange(4000 * 64, dtype=torch.float32).reshape(4000, 64)  # distinct rows
    u = keyed_uniforms(x, seed=0)
    assert u.dtype == torch.float32 and u.shape == x.shape
    assert 0 <= u.min() and u.max() < 1
    n = u.numel()
    # mean 1/2 and variance 1/12 within 5 standard errors; deciles within 5 binomial std
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert ((counts - n / 10).abs() < 5 * math.sqrt(n * 0.1 * 0.9)).all()
    # neighbouring pixels and neighbouring examples uncorrelated (|r| < 5/sqrt(m))
    flat = u.flatten()
    r_pix = torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1]
    r_ex = torch.corrcoef(torch.stack([u[:-1, 0], u[1:, 0]]))[0, 1]
    assert abs(r_pix) < 5 / math.sqrt(n) and abs(r_ex) < 5 / math.sqrt(4000)
    # the seed changes everything; the same seed nothing
    assert torch.equal(keyed_uniforms(x, seed=0), u)
    assert (keyed_uniforms(x, seed=1) != u).float().mean() > 0.99


def test_binarize_dynamic_fresh_each_call(mini_valid):
    x = mini_valid[:200]
    a, b = binarize_dynamic(x), binarize_dynamic(x)
    assert is_binary(a) and is_binary(b)
    assert not torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(binarize_dynamic(x, generator=g1), binarize_dynamic(x, generator=g2))


def test_binarize_extremes_exact():
    x = torch.tensor([0.0, 1.0]).repeat(10000)
    b = binarize_dynamic(x)
    assert torch.equal(b, x)


def test_binarize_fixed_seed_type():
    with pytest.raises(InvalidArgumentError, match="seed"):
        binarize_fixed(torch.zeros(3), seed=1.5)


def test_dequantize_range_and_floor_identity():
    # Every level, 4096 draws each; includes the top level where float32 rounding bites.
    x = torch.arange(256, dtype=torch.uint8).repeat(4096)
    y = dequantize(x, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32
    assert y.min() >= 0 and y.max() < 1
    assert torch.equal(torch.floor(256 * y).to(torch.uint8), x)


def test_dequantize_top_bin_never_reaches_one():
    # P(255 + u rounds up to 256 in float32) = 2^-17 per draw: ~32 hits in 2^22 draws,
    # all of which must be clamped back below 1.
    x = torch.full((2**22,), 255, dtype=torch.uint8)
    y = dequantize(x, generator=torch.Generator().manual_seed(1))
    assert y.max() < 1
    assert torch.all(torch.floor(256 * y) == 255)


def test_dequantize_is_uniform_within_bins():
    x = torch.full((200_000,), 100, dtype=torch.uint8)
    y = dequantize(x, generator=torch.Generator().manual_seed(2))
    u = 256 * y - 100  # should be U[0, 1): mean 1/2, variance 1/12
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / 200_000)
    assert abs(u.var().item() - 1 / 12) < 0.002


def test_dequantize_refuses_floats():
    with pytest.raises(InvalidArgumentError, match="uint8"):
        dequantize(torch.rand(3))


def test_is_binary():
    assert is_binary(torch.tensor([0.0, 1.0, 1.0]))
    assert is_binary(torch.tensor([0, 1], dtype=torch.uint8))
    assert not is_binary(torch.tensor([0.0, 0.5]))
    assert not is_binary(torch.tensor([0, 255], dtype=torch.uint8))
    assert is_binary(torch.empty(0))


def test_bits_per_dim_formula():
    d = 784
    ln2 = math.log(2)
    # Binary data: NLL of D ln 2 nats is one bit per dimension.
    assert bits_per_dim(d * ln2, d, dequantized=False) == pytest.approx(1.0)
    # Dequantized: the uniform density on [0, 1)^D (NLL 0) is 8 bits per 8-bit dimension,
    # exactly the cost of coding 256 equally likely levels.
    assert bits_per_dim(0.0, d, dequantized=True) == pytest.approx(8.0)
    assert LOG2_256_CORRECTION == 8.0
    assert bits_per_dim(100.0, d, dequantized=True) == pytest.approx(100 / (d * ln2) + 8)
    t = torch.tensor([0.0, d * ln2])
    assert torch.allclose(bits_per_dim(t, d, dequantized=True), torch.tensor([8.0, 9.0]))
    with pytest.raises(InvalidArgumentError, match="dims"):
        bits_per_dim(1.0, 0, dequantized=False)


def test_bits_per_dim_jacobian_against_discrete_model():
    # A density on y = (x + u)/256 that is piecewise constant on bins, with bin masses P(x),
    # has -log p(y) = -log P(x) - D log 256. Its bits/dim must equal the discrete model's
    # -log2 P(x) / D.
    torch.manual_seed(0)
    d = 5
    probs = torch.softmax(torch.randn(d, 256), dim=1)  # independent per-dimension P(x_j)
    x = torch.randint(0, 256, (d,))
    log_px = torch.log(probs[torch.arange(d), x]).sum()
    nll_y = -(log_px + d * math.log(256))  # density = mass * 256 per dimension
    discrete_bpd = -log_px.item() / (d * math.log(2))
    assert bits_per_dim(nll_y.item(), d, dequantized=True) == pytest.approx(discrete_bpd)
