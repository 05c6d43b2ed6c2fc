"""Every evaluation number for a model on prepared data, each with its estimator and its K.

Per example it computes the importance-sampled log-likelihood with ``k`` samples and its Monte
Carlo standard error, the ELBO as the mean of the same ``k`` log-weights (so that ``log p(x) ≥
ELBO`` holds for every example, not only on average), the KL (closed form where there is one)
and the reconstruction term as ELBO + KL, and the posterior statistics behind active units and
the KL per dimension. Means over the split carry their standard error over examples.
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch.distributions import kl_divergence

from vaelab.data.transforms import bits_per_dim
from vaelab.distributed import SINGLE, Shard, World
from vaelab.errors import InvalidArgumentError, positive_int
from vaelab.evaluation.likelihood import DEFAULT_MAX_ELEMENTS, log_likelihood, samples_per_chunk
from vaelab.models.base import LatentVariableModel
from vaelab.models.protocols import OwnImportanceWeights
from vaelab.objectives import elbo
from vaelab.rng import own_generator, seeded

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015), section 5.2
# The fewest rows of a batch one evaluation thread takes (see _Threads).
ROWS_PER_PART = 8


class _Moments:
    """Running per-dimension sums over examples (float64): the mean and variance of a
    latent-sized statistic without keeping an ``(N, L)`` tensor, which for a wide latent space
    would outgrow everything else the evaluation holds."""

    def __init__(self):
        self.n, self.sum, self.sq = 0, None, None

    def add(self, v: torch.Tensor) -> None:  # v: (B, L)
        v = v.double()
        s, q = v.sum(0), v.square().sum(0)
        self.sum = s if self.sum is None else self.sum + s
        self.sq = q if self.sq is None else self.sq + q
        self.n += v.shape[0]

    def all_reduce(self, world) -> None:
        """The sums over every rank's examples (a rank with none adds zeros)."""
        if self.sum is None:
            return  # no rank has a latent-sized statistic (several stochastic layers)
        packed = torch.cat(
            [
                self.sum,
                self.sq,
                torch.tensor([float(self.n)], dtype=torch.float64, device=self.sum.device),
            ]
        )
        world.all_reduce(packed)
        size = self.sum.shape[0]
        self.sum, self.sq, self.n = packed[:size], packed[size : 2 * size], int(packed[-1].item())

    def mean(self) -> torch.Tensor:
        return self.sum / self.n

    def var(self) -> torch.Tensor:
        """Unbiased; zeros for a single example."""
        if self.n < 2:
            return torch.zeros_like(self.sum)
        return ((self.sq - self.sum.square() / self.n) / (self.n - 1)).clamp_min(0)


PER_EXAMPLE = ("log_px", "stderr", "ess", "elbo", "rec", "kl")
# An estimate from fewer effective samples than this is dominated by a handful of weights
LOW_ESS = 10


def low_ess_count(ess: torch.Tensor, k: int) -> int | None:
    """How many estimates rest on fewer than :data:`LOW_ESS` effective samples (None when
    ``k`` is too small for the count to say anything: every estimate would be under it)."""
    return int((ess < LOW_ESS).sum()) if k >= 2 * LOW_ESS else None


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """The mean over examples and its standard error (NaN for one example; JSON writes null)."""
    v = values.double()
    n = v.numel()
    se = (v.std() / math.sqrt(n)).item() if n > 1 else float("nan")
    return v.mean().item(), se


def _rows(shard: Shard, model, batch, k: int, chunk: int, elbo_samples: int) -> dict:
    """The rows ``shard.rows`` of ``batch``: their posterior's mean (and KL per dimension where
    it is closed-form), the log-likelihood estimate with its standard error, the mean of its
    ``k`` log-weights and the KL; drawn as one process draws the whole batch."""
    x = batch[shard.rows]
    # a posterior that is not one distribution (several stochastic layers) is sampled by the
    # model itself; active units are then those of its first layer, q(z1|x)
    hierarchical = isinstance(model, OwnImportanceWeights)
    with shard.draws():
        q = model.encode(x)
        if hierarchical:
            out = elbo(model, x, n_samples=elbo_samples)
            ll = log_likelihood(model, x, k, chunk_size=chunk)
        else:
            out = elbo(model, x, q=q, n_samples=elbo_samples)
            ll = log_likelihood(model, x, k, q=q, chunk_size=chunk)
    est = {
        "mean": q.mean,
        "log_px": ll.log_px,
        "stderr": ll.stderr,
        "ess": ll.ess,
        "elbo": ll.mean_log_weight,
        "kl": out.kl,
    }
    if not hierarchical:
        est["kl_dims"] = kl_divergence(q.base_dist, model.prior.base_dist)
    return est


class _Threads:
    """The rows of each batch shared by this process's CPU threads, one part per thread.

    torch's own threads split each operation and wait for each other after it; an evaluation
    makes thousands of small ones, so on a CPU it is faster for each thread to run whole
    operations on its part of the batch (README, Performance, W2), and a thread never waits
    for another that shares its core with some other program. Each part draws the whole
    batch's noise from its own copy of the global generator and keeps its rows
    (:func:`vaelab.rng.own_generator`, :func:`vaelab.rng.batch_rows`): every example gets the
    noise it gets in one thread, and the global generator ends where one thread leaves it. A
    part has at least :data:`ROWS_PER_PART` rows, as the draws are repeated in each; threads
    left over go to torch inside the parts. Only for models whose every draw is
    :func:`vaelab.rng.standard_normal`'s.
    """

    def __init__(self, model, device: torch.device):
        self.threads = torch.get_num_threads()
        self.use = device.type == "cpu" and self.threads > 1
        self.use &= isinstance(model, LatentVariableModel)
        self.pool = None

    def __enter__(self) -> _Threads:
        if self.use:
            self.pool = ThreadPoolExecutor(self.threads, "vaelab-eval")
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            torch.set_num_threads(self.threads)  # the parts set their own; torch's is global

    def run(self, fn, shard: Shard, *args) -> dict:
        """``fn(part, *args)`` for the parts of ``shard``, concatenated in order."""
        parts = min(self.threads, shard.count // ROWS_PER_PART)
        if self.pool is None or parts < 2:
            return fn(shard, *args)
        state, inner = torch.get_rng_state(), max(1, self.threads // parts)
        grad = torch.is_grad_enabled()  # a thread's own, as torch keeps it: the caller's here

        def work(part: Shard):
            torch.set_num_threads(inner)  # this thread's OpenMP and MKL
            with torch.set_grad_enabled(grad), own_generator(state) as generator:
                return fn(part, *args), generator.get_state()

        done = list(self.pool.map(work, shard.split(parts)))
        torch.set_rng_state(done[0][1])  # every part drew the same, the whole batch's
        return {key: torch.cat([est[key] for est, _ in done]) for key in done[0][0]}


@torch.no_grad()
def evaluate_model(
    model,
    x_all: torch.Tensor,
    *,
    k: int = 5000,
    batch_size: int | None = None,
    elbo_samples: int = 1,
    dequantized: bool = False,
    levels: int = 256,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    progress: bool = False,
    per_example: bool = False,
    world: World = SINGLE,
) -> dict[str, Any]:
    """All the evaluation numbers for ``model`` on the (already prepared) data ``x_all``.

    ``elbo_samples``: draws of the KL where it has no closed form (two stochastic layers); the
    ELBO itself is the mean of the ``k`` importance log-weights (``"elbo_samples"`` in the
    result is ``k``). ``dequantized`` says the data are ``(x + u)/256`` of 8-bit values, so
    bits/dim gets the ``log2(256)`` correction. The sampling noise comes from a generator
    seeded with ``seed`` and the caller's global RNG state is restored afterwards.
    ``per_example=True`` adds the per-example tensors (``log_px``, ``stderr``, ``elbo``,
    ``rec``, ``kl``) under ``"per_example"``.

    Under torchrun (``world``) each rank computes its rows of every batch with the noise one
    process would draw for them (:mod:`vaelab.distributed`); the per-example results are
    gathered in input order and every rank returns the single-process numbers.
    """
    positive_int("k", k)
    positive_int("elbo_samples", elbo_samples)
    n = x_all.shape[0]
    if n == 0:
        raise InvalidArgumentError("nothing to evaluate: the split is empty")
    if batch_size is None:
        batch_size = max(1, min(n, 100 if k > 100 else 1000))
    positive_int("batch_size", batch_size)
    was_training = model.training
    model.eval()
    dims = math.prod(x_all.shape[1:])
    parts: dict[str, list[torch.Tensor]] = {key: [] for key in PER_EXAMPLE}
    means, kl_dims = _Moments(), _Moments()  # of q's mean, and of the KL, per latent dimension
    bar = None
    if progress and world.writer:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"evaluating (K={k})", unit="img", file=sys.stderr, leave=False)
    t0 = time.perf_counter()
    rows = []  # where this process's results sit in the input
    with seeded(x_all.device, seed), _Threads(model, x_all.device) as threads:
        for i in range(0, n, batch_size):
            batch = x_all[i : i + batch_size]
            # the chunks of the whole batch: a rank draws the noise one process would
            chunk = samples_per_chunk(model, batch, k, max_elements)
            shard = world.shard(batch.shape[0])  # one process: the whole batch
            est = threads.run(_rows, shard, model, batch, k, chunk, elbo_samples)
            if bar is not None:
                bar.update(batch.shape[0])
            rows.append(torch.arange(i + shard.start, i + shard.stop, device=x_all.device))
            mine = slice(0, shard.count)  # none of a stand-in's row (see Shard.rows)
            if "kl_dims" in est:
                kl_dims.add(est["kl_dims"][mine])
            means.add(est["mean"][mine])
            for key in ("log_px", "stderr", "ess"):
                parts[key].append(est[key][mine].double())
            # the ELBO from the k draws of log p(x), not from a draw of its own: a one-sample
            # ELBO is above the row's log p(x) for a third of the rows of a table
            elbo_k = est["elbo"][mine]
            kl = est["kl"][mine].double()
            parts["elbo"].append(elbo_k)
            parts["rec"].append(elbo_k + kl)
            parts["kl"].append(kl)
    if bar is not None:
        bar.close()
    cat = {key: torch.cat(v) for key, v in parts.items() if v}
    if world.active:
        cat = world.gather_rows(cat, torch.cat(rows), n)
        means.all_reduce(world)
        kl_dims.all_reduce(world)
    seconds = time.perf_counter() - t0
    model.train(was_training)

    log_px, log_px_se = mean_and_stderr(cat["log_px"])
    result: dict[str, Any] = {
        "n": n,
        "k": k,
        "log_likelihood": log_px,
        "log_likelihood_stderr": log_px_se,
        # Monte Carlo error of the mean estimate alone (the data held fixed)
        "log_likelihood_mc_stderr": (cat["stderr"].pow(2).sum().sqrt() / n).item()
        if k > 1
        else None,
        # Kish's effective sample size of each example's k weights: its median, and how many
        # examples' estimates rest on fewer than LOW_ESS samples (their ± is not to be trusted)
        "ess_median": cat["ess"].median().item(),
        "low_ess_examples": low_ess_count(cat["ess"], k),
        "nll": -log_px,
        "bits_per_dim": bits_per_dim(-log_px, dims, dequantized=dequantized, levels=levels),
        "dims": dims,
        "seconds": seconds,
        "seconds_per_image": seconds / n,
    }
    if per_example:
        result["per_example"] = {key: cat[key] for key in PER_EXAMPLE}
    elbo_mean, elbo_se = mean_and_stderr(cat["elbo"])
    rec, rec_se = mean_and_stderr(cat["rec"])
    kl, kl_se = mean_and_stderr(cat["kl"])
    variances = means.var()
    kl_dim = kl_dims if kl_dims.n else None  # closed-form KL per dimension: one layer only
    result.update(
        {
            "elbo": elbo_mean,
            "elbo_stderr": elbo_se,
            "elbo_samples": k,
            "reconstruction": rec,
            "reconstruction_stderr": rec_se,
            "kl": kl,
            "kl_stderr": kl_se,
            "gap": log_px - elbo_mean,  # log p(x) − ELBO: KL(q ‖ p(z|x)), estimated
            "active_units": int((variances > ACTIVE_UNIT_THRESHOLD).sum()),
            "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
            "latent_dim": int(variances.shape[0]),
            "kl_per_dim": kl_dim.mean().tolist() if kl_dim is not None else None,
            "kl_per_dim_stderr": (kl_dim.var().sqrt() / math.sqrt(n)).tolist()
            if kl_dim is not None and n > 1
            else None,
        }
    )
    return result
