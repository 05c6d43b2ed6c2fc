"""The peers vaelab is measured against, written so that each runs as its users run it.

1. **pytorch/examples ``vae/main.py``** — re-implemented here (not copied) from
   https://github.com/pytorch/examples/blob/main/vae/main.py: ``fc1`` 784→400 ReLU, ``fc21``/
   ``fc22`` 400→20 (μ, log σ²), ``fc3`` 20→400 ReLU, ``fc4`` 400→784 sigmoid; loss = binary
   cross-entropy summed over pixels *and* batch + the analytic KL, also summed; Adam(lr 1e-3);
   batch 128; a shuffling ``DataLoader``; ``train_loss += loss.item()`` every batch. The
   original reads MNIST through torchvision (``ToTensor`` per image, grey values in [0, 1]);
   here the loop is fed the benchmark's binarized tensor through an in-memory
   ``TensorDataset``, which is cheaper than the original's per-image PIL decode, so the peer
   is measured at its best. (One stored revision of that file adds a continuous-Bernoulli
   normalizer and clamps the decoder output to [1e-4, 1 − 1e-4]; that term is for grey data
   and is left out here, as the canonical version has it.) The original prints a progress
   line every 10 batches; that costs ~43 prints per epoch and is off by default here.

2. **Pythae 0.1.2** (https://github.com/clementchadebec/benchmark_VAE, ``pip install
   pythae==0.1.2``) — its own ``VAE`` model, ``TrainingPipeline``/``BaseTrainer`` and
   ``VAE.get_nll``, with custom encoder/decoder networks of exactly the architecture above.

Model weights move between the peers (and vaelab) through one *canonical state dict*, see
:data:`CANONICAL_SHAPES`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

D, H, Z = 784, 400, 20

# --------------------------------------------------------------------------------------------
# the canonical state dict

#: The weight format every contender's model is converted to and from, so that "the same
#: trained model" can be evaluated by each contender's own code. Plain ``torch.float32``
#: tensors, ``nn.Linear`` convention (``weight`` is ``(out, in)``; ``y = x @ W.T + b``)::
#:
#:     h      = relu(enc.hidden(x))          x: (B, 784) in {0, 1}
#:     μ      = enc.mu(h)                    (B, 20)
#:     log σ² = enc.logvar(h)                (B, 20)   natural log of the *variance*
#:     q(z|x) = N(μ, diag exp(log σ²)),  p(z) = N(0, I)
#:     g      = relu(dec.hidden(z))          (·, 400)
#:     logits = dec.logits(g)                (·, 784)
#:     p(x|z) = Bernoulli(sigmoid(logits))   (the peers output sigmoid(logits))
CANONICAL_SHAPES: dict[str, tuple[int, ...]] = {
    "enc.hidden.weight": (H, D),
    "enc.hidden.bias": (H,),
    "enc.mu.weight": (Z, H),
    "enc.mu.bias": (Z,),
    "enc.logvar.weight": (Z, H),
    "enc.logvar.bias": (Z,),
    "dec.hidden.weight": (H, Z),
    "dec.hidden.bias": (H,),
    "dec.logits.weight": (D, H),
    "dec.logits.bias": (D,),
}
# canonical layer name → attribute of ExamplesVAE (the Pythae networks below use the same names)
_EXAMPLES_NAMES = {
    "enc.hidden": "fc1",
    "enc.mu": "fc21",
    "enc.logvar": "fc22",
    "dec.hidden": "fc3",
    "dec.logits": "fc4",
}
_PYTHAE_NAMES = {
    "enc.hidden": "encoder.fc1",
    "enc.mu": "encoder.fc21",
    "enc.logvar": "encoder.fc22",
    "dec.hidden": "decoder.fc3",
    "dec.logits": "decoder.fc4",
}


def check_canonical(sd: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` naming the first missing, extra or misshapen key."""
    missing = sorted(set(CANONICAL_SHAPES) - set(sd))
    extra = sorted(set(sd) - set(CANONICAL_SHAPES))
    if missing or extra:
        raise ValueError(f"canonical state dict: missing {missing}, unexpected {extra}")
    for key, shape in CANONICAL_SHAPES.items():
        if tuple(sd[key].shape) != shape:
            raise ValueError(
                f"canonical state dict: {key} has shape {tuple(sd[key].shape)}, expected {shape}"
            )


def _rename(sd: Mapping[str, torch.Tensor], names: Mapping[str, str], to_canonical: bool):
    out = {}
    for canon, local in names.items():
        src, dst = (local, canon) if to_canonical else (canon, local)
        for p in ("weight", "bias"):
            out[f"{dst}.{p}"] = sd[f"{src}.{p}"].detach().to(torch.float32).clone()
    return out


def save_canonical(sd: Mapping[str, torch.Tensor], path: str) -> None:
    """Write a canonical state dict as safetensors (no pickle)."""
    from safetensors.torch import save_file

    check_canonical(sd)
    save_file({k: v.contiguous() for k, v in sd.items()}, path)


def load_canonical(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    sd = load_file(path)
    check_canonical(sd)
    return sd


# --------------------------------------------------------------------------------------------
# pytorch/examples vae/main.py, re-implemented


class ExamplesVAE(nn.Module):
    """The model of pytorch/examples ``vae/main.py``: 784-400-20 MLP, Bernoulli decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(D, H)
        self.fc21 = nn.Linear(H, Z)  # μ
        self.fc22 = nn.Linear(H, Z)  # log σ²
        self.fc3 = nn.Linear(Z, H)
        self.fc4 = nn.Linear(H, D)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x))
        return self.fc21(h), self.fc22(h)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc4(F.relu(self.fc3(z)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x.view(-1, D))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def examples_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
    """−ELBO summed over the batch: BCE(sum) + KL(q ‖ N(0, I)) (Kingma & Welling, App. B)."""
    bce = F.binary_cross_entropy(recon, x.view(-1, D), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def examples_to_canonical(model: ExamplesVAE) -> dict[str, torch.Tensor]:
    return _rename(model.state_dict(), _EXAMPLES_NAMES, to_canonical=True)


def examples_from_canonical(sd: Mapping[str, torch.Tensor]) -> ExamplesVAE:
    check_canonical(sd)
    model = ExamplesVAE()
    model.load_state_dict(_rename(sd, _EXAMPLES_NAMES, to_canonical=False))
    return model


class ExamplesRecipe:
    """The training loop of pytorch/examples ``vae/main.py``, one call of :meth:`epoch` per epoch.

    Like the original script, the seed is set with ``torch.manual_seed`` *before* the model
    is built (so it fixes the initialization, the shuffling order and the ε draws), the
    ``DataLoader`` shuffles with the global generator, and the optimizer persists across
    epochs. ``data`` is ``(N, 784)`` float32 (binarized); it is wrapped, with dummy labels,
    in a ``TensorDataset`` of ``(N, 1, 28, 28)`` images as the original's loader yields.
    """

    def __init__(
        self,
        data: torch.Tensor,
        *,
        model: ExamplesVAE | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int = 1,
        log_interval: int | None = None,
    ) -> None:
        torch.manual_seed(seed)
        self.model = model if model is not None else ExamplesVAE()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        labels = torch.zeros(len(data), dtype=torch.int64)
        dataset = TensorDataset(data.view(-1, 1, 28, 28), labels)
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
        self.log_interval = log_interval
        self.epochs_done = 0

    def epoch(self) -> dict[str, float]:
        """Train one epoch; returns ``seconds``, ``images_per_s`` and ``train_loss``.

        ``train_loss`` is the original's printed "Average loss": the sum of the per-batch
        summed losses over the epoch ÷ N, i.e. the mean −ELBO per image (nats) while
        training. The clock covers the whole loop, iterator creation included.
        """
        model, optimizer, loader = self.model, self.optimizer, self.loader
        self.epochs_done += 1
        model.train()
        train_loss = 0.0
        t0 = time.perf_counter()
        for batch_idx, (data, _) in enumerate(loader):
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = examples_loss(recon, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            if self.log_interval and batch_idx % self.log_interval == 0:
                print(
                    f"Train Epoch: {self.epochs_done} [{batch_idx * len(data)}/"
                    f"{len(loader.dataset)}]\tLoss: {loss.item() / len(data):.6f}"
                )
        seconds = time.perf_counter() - t0
        n = len(loader.dataset)
        return {"seconds": seconds, "images_per_s": n / seconds, "train_loss": train_loss / n}


def examples_train_epoch(
    data: torch.Tensor,
    *,
    model: ExamplesVAE | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 1,
) -> dict[str, Any]:
    """One epoch of the pytorch/examples recipe from a fresh optimizer (W1's workload).

    Returns :meth:`ExamplesRecipe.epoch`'s metrics plus ``model`` (the trained module).
    """
    recipe = ExamplesRecipe(data, model=model, batch_size=batch_size, lr=lr, seed=seed)
    out: dict[str, Any] = recipe.epoch()
    out["model"] = recipe.model
    return out


def _iw_summary(lse: torch.Tensor, lse_sq: torch.Tensor, k: int):
    """log p̂ = lse − log K and its delta-method standard error from the two running sums."""
    log_px = lse - math.log(k)
    rel_var = torch.expm1((lse_sq - math.log(k)) - 2 * log_px).clamp_min(0)  # Var(w)/E[w]²
    stderr = (rel_var / (k - 1)).sqrt() if k > 1 else torch.full_like(log_px, float("nan"))
    return log_px, stderr


@torch.no_grad()
def examples_log_likelihood(
    model: ExamplesVAE,
    x: torch.Tensor,
    k: int = 5000,
    *,
    images_per_batch: int = 10,
    samples_per_chunk: int = 1000,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Importance-sampled ``log p(x)`` written straightforwardly for :class:`ExamplesVAE`.

    ``log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K``,
    ``z_k ~ q(z|x)``, with ``log p(x|z) = Σ_d [x_d log σ(l_d) + (1 − x_d) log(1 − σ(l_d))]``
    computed from the logits (exact, no clamping) and both Gaussian densities in full (the
    −½·log 2π terms cancel between them, as in Pythae, but are kept here). The encoder runs
    once per image; the decoder once per sample, ``samples_per_chunk`` samples ×
    ``images_per_batch`` images at a time, and the logsumexp of the weights and of their
    squares is carried across chunks, so memory does not grow with ``K``. Returns per-image
    ``log_px`` and delta-method ``stderr`` (numpy float64, shape (N,)), ``seconds`` and
    ``s_per_image``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    model.eval()
    x = x.reshape(-1, D)
    log_px, stderr = [], []
    t0 = time.perf_counter()
    for start in range(0, len(x), images_per_batch):
        xb = x[start : start + images_per_batch]  # (B, D)
        mu, logvar = model.encode(xb)  # (B, Z) each
        std = torch.exp(0.5 * logvar)
        lse = lse_sq = None
        done = 0
        while done < k:
            n = min(samples_per_chunk, k - done)
            eps = torch.randn((n, *mu.shape), generator=generator)  # (n, B, Z)
            z = mu + std * eps
            logits = model.decode_logits(z)  # (n, B, D)
            log_px_z = -F.binary_cross_entropy_with_logits(
                logits, xb.expand_as(logits), reduction="none"
            ).sum(-1)  # (n, B)
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(-1)
            lw = log_px_z + log_pz - log_qz  # (n, B)
            c1, c2 = torch.logsumexp(lw, 0), torch.logsumexp(2 * lw, 0)
            lse = c1 if lse is None else torch.logaddexp(lse, c1)
            lse_sq = c2 if lse_sq is None else torch.logaddexp(lse_sq, c2)
            done += n
        lp, se = _iw_summary(lse, lse_sq, k)
        log_px.append(lp)
        stderr.append(se)
    seconds = time.perf_counter() - t0
    return {
        "log_px": torch.cat(log_px).double().numpy(),
        "stderr": torch.cat(stderr).double().numpy(),
        "seconds": seconds,
        "s_per_image": seconds / len(x),
    }


# --------------------------------------------------------------------------------------------
# Pythae 0.1.2


try:  # Pythae is optional: the pytorch/examples peer and the helpers above work without it
    from pythae.models import VAE as PythaeVAE
    from pythae.models import VAEConfig as PythaeVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    HAVE_PYTHAE = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_PYTHAE = False
    # stand-ins so that the classes below can still be defined
    BaseEncoder = BaseDecoder = nn.Module
    TrainingCallback = object


class PythaeEncoder(BaseEncoder):
    """784-400-20 encoder for Pythae: ``ModelOutput(embedding=μ, log_covariance=log σ²)``."""

    def __init__(self) -> None:
        BaseEncoder.__init__(self)
        self.fc1 = nn.Linear(D, H)
        self.fc21 = nn.Linear(H, Z)
        self.fc22 = nn.Linear(H, Z)

    def forward(self, x: torch.Tensor):
        h = F.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return ModelOutput(embedding=self.fc21(h), log_covariance=self.fc22(h))


class PythaeDecoder(BaseDecoder):
    """20-400-784 decoder for Pythae: ``ModelOutput(reconstruction=sigmoid(logits))``.

    Pythae's ``bce`` loss takes probabilities (``F.binary_cross_entropy``), so the decoder
    ends in a sigmoid, like Pythae's own default MLP decoder, and shapes its output
    (B, 1, 28, 28) as that default decoder does.
    """

    def __init__(self) -> None:
        BaseDecoder.__init__(self)
        self.fc3 = nn.Linear(Z, H)
        self.fc4 = nn.Linear(H, D)

    def forward(self, z: torch.Tensor):
        p = torch.sigmoid(self.fc4(F.relu(self.fc3(z))))
        return ModelOutput(reconstruction=p.reshape(z.shape[0], 1, 28, 28))


def _require_pythae() -> None:
    if not HAVE_PYTHAE:
        raise ImportError("Pythae is not installed: pip install -r benchmarks/requirements.txt")


def build_pythae_vae(seed: int | None = None):
    """``pythae.models.VAE`` with ``VAEConfig(input_dim=(1, 28, 28), latent_dim=20,
    reconstruction_loss="bce")`` and the 784-400-20 / 20-400-784 networks above."""
    _require_pythae()
    if seed is not None:
        torch.manual_seed(seed)
    config = PythaeVAEConfig(input_dim=(1, 28, 28), latent_dim=Z, reconstruction_loss="bce")
    return PythaeVAE(model_config=config, encoder=PythaeEncoder(), decoder=PythaeDecoder())


def pythae_to_canonical(model) -> dict[str, torch.Tensor]:
    return _rename(model.state_dict(), _PYTHAE_NAMES, to_canonical=True)


def pythae_from_canonical(sd: Mapping[str, torch.Tensor]):
    check_canonical(sd)
    model = build_pythae_vae()
    model.load_state_dict(_rename(sd, _PYTHAE_NAMES, to_canonical=False))
    return model


def quiet_pythae(level: int = logging.WARNING) -> None:
    """Raise the level of Pythae's console loggers (its setup chatter, not its progress bars)."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(level)


class _StopTraining(Exception):
    """Raised from a callback to end a Pythae training run early."""


def pythae_train(
    model,
    data: torch.Tensor,
    *,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 8,
    trainer_overrides: Mapping[str, Any] | None = None,
    on_epoch_end: Callable[[int, float, Any], bool | None] | None = None,
    output_dir: str | None = None,
) -> dict[str, Any]:
    """Train with Pythae's own ``TrainingPipeline`` → ``BaseTrainer``, timing each epoch.

    Config: ``BaseTrainerConfig(per_device_train_batch_size=batch_size, learning_rate=lr,
    num_epochs=epochs, seed=seed, no_cuda=True, output_dir=<temp dir>)`` (Pythae 0.1.2 calls
    the batch size ``per_device_train_batch_size``; its default optimizer is Adam, default
    lr 1e-4, default batch 64), plus ``trainer_overrides``. No eval set, no checkpoints
    (``steps_saving=None``), no prediction steps; Pythae still deep-copies the "best" model
    after every epoch and saves the final model (torch.save + cloudpickle of the networks)
    into the temp dir at the end, as it always does — outside the epoch clock.

    How the clock works: a ``TrainingCallback`` stamps ``on_train_step_begin`` (called once
    per epoch, just before the batch loop) and every ``on_train_step_end`` (after each
    optimizer step); the epoch time is last stamp − first, i.e. exactly Pythae's batch loop:
    its DataLoader over per-item ``DatasetOutput`` dicts, forward, loss, step, ``.item()``
    and its tqdm progress bar. Set-up (data checks, the sanity-check forward, optimizer
    creation) and the end-of-training save are outside it; ``seconds_total`` is the whole
    pipeline call, for reference.

    ``on_epoch_end(epoch, train_seconds, model)`` runs after each epoch's clock stops (for
    evaluation in W3); ``train_seconds`` is the time since Pythae's ``on_train_begin``
    minus all earlier ``on_epoch_end`` calls (so it includes Pythae's per-epoch overheads,
    not our evaluations). If it returns True, training stops there (the final save is then
    skipped). Its time is reported separately (``seconds_callbacks``).
    Returns per-epoch ``epoch_seconds`` and ``epoch_loss`` (Pythae's ``train_epoch_loss``:
    the mean over batches of the batch-mean −ELBO), ``images_per_s`` of the first epoch,
    and ``train_loss`` of the last.
    """
    _require_pythae()

    class _Clock(TrainingCallback):
        def __init__(self) -> None:
            self.epoch = 0
            self.epoch_seconds: list[float] = []
            self.epoch_loss: list[float] = []
            self.callback_seconds = 0.0
            self.t_train_begin: float | None = None
            self.train_seconds_at_epoch_end: list[float] = []

        def on_train_begin(self, training_config, **kwargs):
            self.t_train_begin = time.perf_counter()

        def on_train_step_begin(self, training_config, **kwargs):
            self.t0 = self.t_last = time.perf_counter()

        def on_train_step_end(self, training_config, **kwargs):
            self.t_last = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            t_end = time.perf_counter()
            self.epoch += 1
            self.epoch_seconds.append(self.t_last - self.t0)
            # time spent training since on_train_begin, minus our own callbacks' time
            self.train_seconds_at_epoch_end.append(
                t_end - self.t_train_begin - self.callback_seconds
            )
            if on_epoch_end is not None:
                stop = on_epoch_end(self.epoch, self.train_seconds_at_epoch_end[-1], model)
                self.callback_seconds += time.perf_counter() - t_end
                if stop:
                    raise _StopTraining

        def on_log(self, training_config, logs, **kwargs):
            self.epoch_loss.append(float(logs["train_epoch_loss"]))

    cfg = {
        "per_device_train_batch_size": batch_size,
        "learning_rate": lr,
        "num_epochs": epochs,
        "seed": seed,
        "no_cuda": True,
        "steps_saving": None,
        "steps_predict": None,
    }
    cfg.update(trainer_overrides or {})
    clock = _Clock()
    with contextlib.ExitStack() as stack:
        if output_dir is None:
            output_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pythae-bench-"))
        config = BaseTrainerConfig(output_dir=output_dir, **cfg)
        pipeline = TrainingPipeline(model=model, training_config=config)
        t0 = time.perf_counter()
        stopped = False
        try:
            pipeline(train_data=data.reshape(-1, 1, 28, 28), callbacks=[clock])
        except _StopTraining:
            stopped = True
        seconds_total = time.perf_counter() - t0
    n = len(data)
    return {
        "images_per_s": n / clock.epoch_seconds[0],
        "seconds": clock.epoch_seconds[0],
        "train_loss": clock.epoch_loss[-1] if clock.epoch_loss else float("nan"),
        "epoch_seconds": clock.epoch_seconds,
        "epoch_loss": clock.epoch_loss,
        "train_seconds_at_epoch_end": clock.train_seconds_at_epoch_end,
        "seconds_total": seconds_total,
        "seconds_callbacks": clock.callback_seconds,
        "stopped_early": stopped,
        "model": model,
    }


def pythae_log_likelihood(
    model,
    x: torch.Tensor,
    k: int = 5000,
    *,
    batch_size: int = 100,
    grad: bool = True,
) -> dict[str, Any]:
    """Pythae's ``VAE.get_nll(data, n_samples=k, batch_size=batch_size)``, one image per call.

    What Pythae 0.1.2's ``get_nll`` computes (read from its source, ``models/vae/vae_model.py``):

    - For *each* image in turn it builds ``batch_size`` copies, **re-encodes all of them**
      (the encoder runs once per sample, not once per image), draws one z per copy, and
      computes ``log p(x|z) + log p(z) − log q(z|x)`` with ``log q = −½ Σ(log σ² +
      (z−μ)²/σ²)`` and ``log p(z) = −½ Σ z²`` (the −½·log 2π terms dropped from both; they
      cancel) and, for ``reconstruction_loss="bce"``, ``log p(x|z) = −BCE(sigmoid output,
      x)`` summed over pixels: the Bernoulli log-pmf on binary data — except that
      ``F.binary_cross_entropy`` clamps each log term at −100, so a pixel whose probability
      rounds to exactly 0 or 1 in float32 scores −100 instead of its true value. On grey
      data the same formula is *not* a normalized likelihood.
    - The number of samples actually used is ``batch_size · max(1, n_samples //
      batch_size)``: ``n_samples`` is rounded *down* to a multiple of ``batch_size``, and
      ``n_samples < batch_size`` silently uses ``batch_size`` samples.
    - It returns ``np.mean`` over images of ``logsumexp − log K`` — the mean **log**-
      likelihood (a negative number), despite the name; NLL = −get_nll.
    - It runs without ``torch.no_grad()`` (autograd records the graph of every batch) and
      calls ``.item()`` once per image. ``grad=False`` wraps the calls in ``no_grad`` to
      show what that costs; the default measures Pythae as its users call it.

    Called one image at a time (``get_nll(x[i:i+1], ...)``, which is exactly its own inner
    loop) so that per-image values come back. Returns ``log_px`` (numpy (N,)), ``seconds``,
    ``s_per_image`` and ``k_used``.
    """
    model.eval()
    x = x.reshape(-1, 1, 28, 28)
    k_used = batch_size * max(1, k // batch_size)
    ctx = contextlib.nullcontext() if grad else torch.no_grad()
    values = []
    t0 = time.perf_counter()
    with ctx:
        for i in range(len(x)):
            values.append(model.get_nll(x[i : i + 1], n_samples=k, batch_size=batch_size))
    seconds = time.perf_counter() - t0
    return {
        "log_px": np.asarray(values, dtype=np.float64),
        "seconds": seconds,
        "s_per_image": seconds / len(x),
        "k_used": k_used,
    }
