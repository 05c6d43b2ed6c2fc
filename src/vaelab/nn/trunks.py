"""MLP and convolutional trunks. They map tensors to tensors; distributions live elsewhere."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from vaelab.errors import InvalidArgumentError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise InvalidArgumentError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """``in → hidden[0] → … → hidden[-1] → out``, activation after every hidden layer.

    With no hidden layers it is a single affine map (the linear VAE of Lucas et al. 2019).
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, act: str):
        sizes = [in_features, *hidden, out_features]
        if any(s < 1 for s in sizes):
            raise InvalidArgumentError(f"layer sizes must be >= 1, got {sizes}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation(act))
        super().__init__(*layers)

    def linears(self) -> list[nn.Linear]:
        """The linear layers, input to output (what a hand-written training step multiplies by)."""
        return [m for m in self if isinstance(m, nn.Linear)]


def _conv_grid(data_shape: Sequence[int], n_down: int) -> tuple[int, int]:
    if len(data_shape) != 3:
        raise InvalidArgumentError(
            f"the conv architecture needs images shaped (C, H, W), got {tuple(data_shape)}"
        )
    _, h, w = data_shape
    step = 2**n_down
    if h % step or w % step:
        raise InvalidArgumentError(
            f"the conv architecture needs height and width divisible by {step}, got {h}x{w}"
        )
    return h // step, w // step


class ConvEncoder(nn.Module):
    """Stride-2 convolutions (each halves H and W), then an MLP head to ``out_features``.

    Works for 28×28 (→14→7) and 32×32 (→16→8) inputs, or any size divisible by 2^len(channels).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        channels: Sequence[int],
        hidden: Sequence[int],
        out_features: int,
        act: str,
    ):
        super().__init__()
        gh, gw = _conv_grid(data_shape, len(channels))
        layers: list[nn.Module] = []
        c_in = data_shape[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), activation(act)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.head = MLP(c_in * gh * gw, hidden, out_features, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """An MLP to a small feature map, then stride-2 transposed convolutions up to the image.

    Outputs ``(N, n_params * C * H * W)``, flattened per example, ordered as
    ``(n_params, C, H, W)`` so the likelihood can split it.
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: Sequence[int],
        channels: Sequence[int],
        hidden: Sequence[int],
        n_params: int,
        act: str,
    ):
        super().__init__()
        gh, gw = _conv_grid(data_shape, len(channels))
        rev = list(channels)[::-1]
        self.grid = (rev[0], gh, gw)
        self.head = nn.Sequential(
            MLP(latent_dim, hidden, math.prod(self.grid), act), activation(act)
        )
        layers: list[nn.Module] = []
        outs = [*rev[1:], n_params * data_shape[0]]
        for i, (a, b) in enumerate(zip(rev, outs, strict=True)):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(activation(act))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z).reshape(-1, *self.grid)
        return self.deconvs(h).flatten(1)
