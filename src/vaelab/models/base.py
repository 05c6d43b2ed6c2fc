"""Saving and loading models: config as JSON, weights as safetensors, nothing executable."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from vaelab._version import __version__
from vaelab.config import from_dict, to_dict
from vaelab.errors import CheckpointError, InvalidArgumentError, VaelabError, excerpt
from vaelab.io import atomic_write_json, load_tensors, read_json, save_tensors

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
# Values of one block of logits in decoder_log_prob without autograd: 1 MiB of float32, the
# L2 cache of a core on the machines we measured (README, Performance, W2: much smaller
# blocks pay more in smaller products than they save in memory traffic).
CACHE_BLOCK = 2**18

# Model classes a config may name. A config naming anything else is refused: loading never
# resolves an arbitrary import path.
MODEL_REGISTRY: dict[str, type[SavableModel]] = {}


class SavableModel(nn.Module):
    """A model rebuilt from ``config`` (a dataclass) plus a state dict.

    ``save(dir)`` writes ``config.json`` and ``model.safetensors``; ``load(dir)`` needs nothing
    else. Subclasses set ``config_class`` and take the config as their only constructor argument.
    """

    config_class: ClassVar[type]
    config: object

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "config_class" in cls.__dict__:  # a concrete model; bases cannot be built from a file
            MODEL_REGISTRY[cls.__name__] = cls

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model to ``directory`` (created if needed); returns the folder."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors(directory / WEIGHTS_FILE, self.state_dict())
        atomic_write_json(directory / CONFIG_FILE, self.describe())
        return directory

    def describe(self) -> dict:
        """The JSON header of ``config.json``: class, format, vaelab version and config."""
        return {
            "class": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "vaelab_version": __version__,
            "config": to_dict(self.config),
        }

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"):
        """Rebuild a saved model. Refuses pickles, tampered files and unknown classes."""
        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"{directory}: no such model directory")
        meta = read_json(directory / CONFIG_FILE, "model config")
        if not isinstance(meta, dict) or "class" not in meta or "config" not in meta:
            raise CheckpointError(f"{directory / CONFIG_FILE}: not a vaelab model config")
        name = meta["class"]
        model_cls = MODEL_REGISTRY.get(name) if isinstance(name, str) else None
        if model_cls is None:
            raise CheckpointError(
                f"{directory / CONFIG_FILE}: unknown model class {excerpt(name)} "
                f"(known: {', '.join(sorted(MODEL_REGISTRY))})"
            )
        if not issubclass(model_cls, cls):
            raise CheckpointError(f"{directory}: holds a {name}, not a {cls.__name__}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{directory / CONFIG_FILE}: format_version {excerpt(meta.get('format_version'))} "
                f"is not supported (expected {FORMAT_VERSION})"
            )
        try:
            config = from_dict(model_cls.config_class, meta["config"])
        except VaelabError as e:
            raise CheckpointError(f"{directory / CONFIG_FILE}: {e}") from None
        try:
            with torch.device("meta"):  # sizes first: a config may claim any size
                skeleton = model_cls(config)
        except VaelabError as e:
            raise CheckpointError(f"{directory / CONFIG_FILE}: {e}") from None
        state = load_tensors(directory / WEIGHTS_FILE)
        want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if want != got:
            diff = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
            k = diff[0]
            raise CheckpointError(
                f"{directory / WEIGHTS_FILE}: weights do not fit the config ({k}: config says "
                f"{list(want[k]) if k in want else 'absent'}, file has "
                f"{list(got[k]) if k in got else 'absent'})"
            )
        with torch.random.fork_rng(devices=[]):  # the initial weights, overwritten, draw
            model = model_cls(config)  # from a copy: loading leaves the caller's RNG alone
        model.load_state_dict(state, strict=True)
        return model.to(map_location)


class LatentVariableModel(SavableModel):
    """What every VAE-like model shares: a likelihood made from its config, a prior module, a
    decoder whose output feeds the likelihood, and the data shape it was built for.

    Subclasses set ``self.likelihood``, ``self.decoder``, ``self.prior_module``,
    ``self.data_shape`` and ``self.latent_dim`` (all stochastic layers together) in their
    constructor (``build_likelihood`` makes the first).
    """

    likelihood: nn.Module
    decoder: nn.Module
    prior_module: nn.Module
    data_shape: tuple[int, ...]
    latent_dim: int

    @staticmethod
    def build_likelihood(config) -> nn.Module:
        """The likelihood a config's ``likelihood`` and ``gaussian_*`` fields describe."""
        from vaelab.distributions import make_likelihood

        if config.likelihood == "bernoulli":
            return make_likelihood("bernoulli", config.data_shape)
        return make_likelihood(
            "gaussian",
            config.data_shape,
            variance=config.gaussian_variance,
            std=config.gaussian_std,
            min_scale=config.gaussian_min_std,
        )

    @property
    def data_dim(self) -> int:
        return math.prod(self.data_shape)

    @property
    def output_features(self) -> int:
        """Decoder outputs per sample (sizes the evaluation chunks)."""
        return self.likelihood.out_features

    @property
    def prior(self):
        """``p(z)`` (for several stochastic layers, that of the top one)."""
        return self.prior_module()

    def _check_x(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != tuple(self.data_shape):
            raise InvalidArgumentError(
                f"x must have shape (batch, {', '.join(map(str, self.data_shape))}), "
                f"got {tuple(x.shape)}"
            )

    def decoder_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` for the decoder's inputs ``z`` ``(..., B, in)``: shape ``z.shape[:-1]``.

        For a Bernoulli likelihood behind a final linear layer ``ℓ = W h + b`` this uses
        ``Σ_d x_d ℓ_d − softplus(ℓ_d) = h·(Wᵀx) + b·x − Σ_d softplus(ℓ_d)``: the same number
        without the elementwise product of ``x`` and every sample's logits, and without
        autograd the softplus sum of :func:`~vaelab.distributions.likelihoods.softplus_sum_`.
        It is the inner loop of the importance-sampled log-likelihood; without autograd on a
        CPU it runs on blocks of :data:`CACHE_BLOCK` values, so that each block's logits are
        still in the core's cache for the passes of the softplus sum.
        """
        last = self.decoder[-1] if isinstance(self.decoder, nn.Sequential) else None
        if self.config.likelihood != "bernoulli" or not isinstance(last, nn.Linear):
            return self.decode(z).log_prob(x)
        from vaelab.distributions.likelihoods import softplus_sum_

        self._check_x(x)
        b = x.shape[0]
        no_grad = not torch.is_grad_enabled()
        parts = [z]
        blocked = no_grad and z.device.type == "cpu" and z.dim() >= 2 and z.shape[-2] == b
        if blocked:
            samples = max(1, CACHE_BLOCK // (b * last.out_features))  # whole samples per block
            parts = z.reshape(-1, b, z.shape[-1]).split(samples)
        hidden = list(self.decoder)[:-1]
        xf = x.reshape(b, -1)
        u = xb = None
        xdot, normalizer = [], []
        for part in parts:
            h = part.reshape(-1, part.shape[-1])
            for module in hidden:
                h = module(h)  # (rows, H) after the last hidden layer
            logits = torch.addmm(last.bias, h, last.weight.t())  # (rows, D)
            if logits.dtype != torch.float32 and logits.dtype != torch.float64:
                logits, h = logits.float(), h.float()  # the sums of the bound stay float32
            if u is None:
                xf = xf.to(h.dtype)
                u = xf @ last.weight.to(h.dtype)  # (B, H): Wᵀx per example
                xb = xf @ last.bias.to(h.dtype)  # (B,)
            xdot.append(torch.linalg.vecdot(h.reshape(*part.shape[:-1], -1), u) + xb)
            # without autograd the logits are not needed afterwards: summed in place
            total = softplus_sum_(logits) if no_grad else F.softplus(logits).sum(-1)
            normalizer.append(total.reshape(part.shape[:-1]))
        if not blocked:  # z's leading shape, broadcast against the batch
            return xdot[0] - normalizer[0]
        return (torch.cat(xdot) - torch.cat(normalizer)).reshape(z.shape[:-1])

    def init_output_bias(self, data_mean: torch.Tensor) -> None:
        """Start the decoder's output bias at the data mean (the logit of it for Bernoulli).

        Burda et al. (2015) initialise this way; it removes the first epochs spent learning
        the average image.
        """
        last = self.decoder[-1] if isinstance(self.decoder, nn.Sequential) else None
        if not isinstance(last, nn.Linear):
            raise InvalidArgumentError("init_output_bias needs an MLP decoder")
        mean = data_mean.reshape(-1).to(last.bias)
        if mean.numel() != self.data_dim:
            raise InvalidArgumentError(
                f"data_mean must have {self.data_dim} values, got {mean.numel()}"
            )
        if self.config.likelihood == "bernoulli":
            mean = torch.logit(mean.clamp(1e-3, 1 - 1e-3))
        with torch.no_grad():
            last.bias[: self.data_dim].copy_(mean)

    def init_output_scale(self, data_std: torch.Tensor) -> None:
        """Start a learned Gaussian scale at the data's spread (per dimension, or its mean for
        one shared scale), not at ``gaussian_std``: a scale far wider than the data makes the
        reconstruction term weak against the KL from the first steps, and the posterior
        collapses onto the prior (every reconstruction the mean image)."""
        from vaelab.distributions import GaussianLikelihood
        from vaelab.distributions.normal import inverse_positive_scale

        lik = self.likelihood
        if not (isinstance(lik, GaussianLikelihood) and lik.variance in ("scalar", "per_dim")):
            return  # Bernoulli, a fixed scale, or one the decoder predicts per example
        std = data_std.reshape(self.data_shape).to(lik.raw_scale)
        # a value that never varies (a constant column, a blank border pixel) starts at 1, as
        # the preprocessing left it unscaled: at the floor, every step's small error in its mean
        # costs (error / 0.002)² / 2 nats, and training diverged before it learned the mean
        std = torch.where(std > 0, std, torch.ones_like(std))
        if lik.variance == "scalar":
            std = std.mean()
        std = std.clamp_min(2 * lik.min_scale + 1e-6)  # above the floor the scale cannot cross
        with torch.no_grad():
            lik.raw_scale.copy_(inverse_positive_scale(std, lik.min_scale))
