"""W2 — evaluation: importance-sampled log-likelihood at K = 5000 of one trained model.

One model is trained once (the pytorch/examples recipe, ``--train-epochs`` epochs on the
binarized training set) or loaded (``--weights``, a canonical safetensors file, see
``_peers.CANONICAL_SHAPES``), and *the same weights* are loaded into each contender, which
then estimates ``log p(x) ≈ logsumexp_k [log p(x, z_k) − log q(z_k|x)] − log K``,
``z_k ~ q(z|x)``, with its own code on the first ``--n-images`` statically binarized test
images. Reported per contender: seconds per image, peak resident memory during the
estimate, the mean NLL (nats) and its agreement with the reference estimate (difference in
units of its standard error: the same estimator should agree within a few SE).

Contenders:

- ``pytorch-examples``: ``_peers.examples_log_likelihood``, the estimator written
  straightforwardly for the examples model (pytorch/examples has none of its own): the
  encoder once per image, samples batched; it also gives each image's standard error;
- ``pythae``: Pythae 0.1.2's ``VAE.get_nll(x, n_samples=K, batch_size=--pythae-batch-size)``
  called as its users call it (grad mode on; see ``_peers.pythae_log_likelihood`` for what
  it computes and its quirks); ``--pythae-no-grad`` adds a ``pythae-nograd`` variant;
- ``vaelab``: filled in through :data:`vaelab_estimator`.

Each process first estimates one image, untimed (``--cold``: not), so that thread start-up
and the first touch of buffers are not charged to the few images timed.

Memory is process-wide, so each (contender, rep) runs in a fresh *spawned* process
(``_common.run_isolated``) that measures its estimate with ``_common.PeakRSS``; the runs
still interleave A, B, C, A, B, C. ``--no-isolate`` runs in-process (memory then not
comparable).

Run: ``python benchmarks/w2_loglik.py [--reps 3] [--n-images 20] [--k 5000] [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable, Mapping

import numpy as np
import torch

import _common
import _peers
import _vaelab

#: The vaelab contender (`_vaelab.loglik_factory`): a *module-level* (picklable) factory
#: ``f(sd, x, k) -> run`` where ``sd`` is the canonical state dict (``_peers.CANONICAL_SHAPES``:
#: dict of float32 tensors), ``x`` the (N, 784) binarized test images and ``k`` the number of
#: importance samples. It builds the vaelab model from ``sd`` (outside the clock) and returns
#: a zero-argument ``run()`` that estimates ``log p(x)`` with vaelab's evaluator and returns
#: ``{"log_px": numpy (N,), "seconds": float}`` (optionally ``"stderr": numpy (N,)``).
#: It runs inside a spawned child process, after ``torch.set_num_threads`` and
#: ``torch.manual_seed``. ``None`` = not run.
vaelab_estimator: Callable[[Mapping[str, torch.Tensor], torch.Tensor, int], Callable] | None = (
    _vaelab.loglik_factory
)


def _prepare(name: str, sd, x: torch.Tensor, k: int, opts: Mapping) -> Callable[[], dict]:
    """Build contender ``name``'s model from ``sd``; return its timed estimate (no clock yet)."""
    if name == "pytorch-examples":
        model = _peers.examples_from_canonical(sd)
        return lambda: _peers.examples_log_likelihood(model, x, k)
    if name in ("pythae", "pythae-nograd"):
        model = _peers.pythae_from_canonical(sd)
        grad = name == "pythae"
        bs = opts["pythae_batch_size"]
        return lambda: _peers.pythae_log_likelihood(model, x, k, batch_size=bs, grad=grad)
    if name == "vaelab":
        if vaelab_estimator is None:
            raise ValueError("vaelab_estimator is not set")
        return vaelab_estimator(sd, x, k)
    raise ValueError(f"unknown contender {name!r}")


def estimate(name: str, sd_np: dict, x_np: np.ndarray, k: int, opts: dict) -> dict:
    """One timed, memory-measured estimate (runs in a child process unless --no-isolate)."""
    torch.set_num_threads(opts["threads"])
    torch.manual_seed(opts["seed"])
    sd = {key: torch.from_numpy(v) for key, v in sd_np.items()}
    x = torch.from_numpy(x_np)
    if not opts.get("cold"):
        # one untimed image first: thread start-up and the first touch of the chunk buffers
        # are paid once per process, not per image (a user's evaluation has 10,000 of them)
        _prepare(name, sd, x[:1], k, opts)()
        torch.manual_seed(opts["seed"])  # the timed estimate draws what it drew without
    run = _prepare(name, sd, x, k, opts)
    with _common.PeakRSS() as mem:
        out = run()
    log_px = np.asarray(out["log_px"], dtype=np.float64)
    seconds = float(out["seconds"])
    res = {
        "s_per_image": seconds / len(x),
        "mean_nll": float(-log_px.mean()),
        "peak_rss_mib": mem.peak_mib,
        "rss_increase_mib": mem.delta_mib,
        "k_used": out.get("k_used", k),
        "log_px": log_px,
    }
    if "stderr" in out:
        res["stderr"] = np.asarray(out["stderr"], dtype=np.float64)
    return res


def agreement(summary: dict, reference: str) -> dict:
    """Each contender's mean log p(x) vs the reference's, in units of the standard error.

    The standard error of a difference of two independent estimates of the same quantity
    with the same per-image SE ``s_i`` (same estimator, same q) is ``sqrt(2 Σ s_i²) / N``;
    ``s_i`` is the reference's delta-method SE. Also the largest per-image ``|Δ log p| /
    (√2 · s_i)``, informative only: the delta-method SE itself is noisy and understates the
    error when the importance weights are heavy-tailed. Every rep of a contender draws the
    same samples (same seed), so rep 1 of each is compared.
    """
    ref = summary["runs"][reference][0]
    if "stderr" not in ref:
        return {}
    se, ref_lp = ref["stderr"], ref["log_px"]
    se_mean_diff = math.sqrt(2 * float(np.sum(se**2))) / len(se)
    out: dict = {"reference": reference, "se_of_mean_difference": se_mean_diff}
    for name, runs in summary["runs"].items():
        if name == reference:
            continue
        lp = runs[0]["log_px"]
        diff = float(np.mean(lp) - np.mean(ref_lp))
        out[name] = {
            "mean_log_px": float(np.mean(lp)),
            "reference_mean_log_px": float(np.mean(ref_lp)),
            "diff_vs_reference": diff,
            "diff_in_se": diff / se_mean_diff if se_mean_diff > 0 else float("nan"),
            "max_image_diff_in_se": float(np.max(np.abs(lp - ref_lp) / (math.sqrt(2) * se))),
        }
    return out


def trained_canonical(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    if args.weights:
        return _peers.load_canonical(args.weights)
    train = _common.load_binarized_mnist("train", seed=args.data_seed, data_dir=args.data_dir)
    recipe = _peers.ExamplesRecipe(train, seed=args.seed)
    for e in range(args.train_epochs):
        m = recipe.epoch()
        print(f"[W2] training epoch {e + 1}: -ELBO {m['train_loss']:.2f}", file=sys.stderr)
    sd = _peers.examples_to_canonical(recipe.model)
    if args.save_weights:
        _peers.save_canonical(sd, args.save_weights)
    return sd


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--n-images", type=int, default=20, help="first N test images (default 20)")
    ap.add_argument("--k", type=int, default=5000, help="importance samples (default 5000)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="5 images, 1 rep")
    ap.add_argument("--weights", help="canonical safetensors to evaluate (default: train one)")
    ap.add_argument("--save-weights", help="write the trained canonical weights here")
    ap.add_argument("--train-epochs", type=int, default=1, help="epochs if training (default 1)")
    ap.add_argument("--pythae-batch-size", type=int, default=100, help="get_nll batch_size")
    ap.add_argument("--pythae-no-grad", action="store_true", help="add a no_grad Pythae run")
    ap.add_argument("--no-pythae", action="store_true", help="skip the Pythae contender(s)")
    ap.add_argument("--no-isolate", action="store_true", help="run in-process (no memory)")
    ap.add_argument("--cold", action="store_true", help="time each process's first estimate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-seed", type=int, default=0, help="binarization seed (default 0)")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    ap.add_argument("--reference", default="pytorch-examples", help="contender ratios refer to")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_images, args.reps = min(args.n_images, 5), 1
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    busy_before = _common.check_machine_quiet()
    peak = _common.measure_matmul_peak(threads=args.threads)
    sd = trained_canonical(args)
    sd_np = {key: v.numpy() for key, v in sd.items()}
    x = _common.load_binarized_mnist("test", seed=args.data_seed, data_dir=args.data_dir)
    x_np = x[: args.n_images].numpy().copy()
    opts = {
        "threads": args.threads,
        "seed": args.seed,
        "pythae_batch_size": args.pythae_batch_size,
        "cold": args.cold,
    }
    flops = _common.loglik_flops_per_image(args.k)

    def contender(name: str) -> Callable[[], dict]:
        call = functools.partial(estimate, name, sd_np, x_np, args.k, opts)

        def run() -> dict:
            res = call() if args.no_isolate else _common.run_isolated(call)
            res["images_per_s"] = 1.0 / res["s_per_image"]
            return res

        return run

    use_pythae = _peers.HAVE_PYTHAE and not args.no_pythae
    contenders = {
        "vaelab": contender("vaelab") if vaelab_estimator is not None else None,
        "pytorch-examples": contender("pytorch-examples"),
        "pythae": contender("pythae") if use_pythae else None,
        "pythae-nograd": contender("pythae-nograd") if use_pythae and args.pythae_no_grad else None,
    }
    context = {
        "workload": "importance-sampled log p(x), MLP 784-400-20 Bernoulli VAE, "
        "statically binarized MNIST test images",
        "k": args.k,
        "n_images": len(x_np),
        "split": "test (first n_images)",
        "binarization": f"static, numpy default_rng([{args.data_seed}, 2])",
        "weights": args.weights or f"pytorch-examples recipe, {args.train_epochs} epoch(s)",
        "pythae_batch_size": args.pythae_batch_size,
        "threads": args.threads,
        "isolated_processes": not args.no_isolate,
        "warm_up_one_image_first": not args.cold,
        "loglik_flops_per_image": flops,
        "matmul_peak": peak,
        "cpu_busy_before": busy_before,
        **_common.environment(),
    }
    summary = _common.interleave(
        contenders,
        reps=args.reps,
        reference=args.reference,
        title=f"W2 log-likelihood K={args.k}",
        primary="s_per_image",
        context=context,
        print_report=False,
    )
    summary["agreement"] = agreement(summary, summary["reference"])
    gflops = _common.finish_with_peak(summary, peak, args.threads, flops)
    alone = products_alone(args.k, args.threads)
    summary["context"]["products_alone"] = alone
    _common.add_metric(summary, "of_products_alone", lambda r: alone["s"] / r["s_per_image"])
    ref = summary["reference"]
    summary["notes"] = [
        f"the decoder's products alone, as {args.k}-row products: {1e3 * alone['s']:.1f} ms "
        f"per image, {alone['flops'] / alone['s'] / 1e9:.0f} GFLOP/s = "
        f"{alone['flops'] / alone['s'] / 1e9 / gflops:.0%} of the peak: the most hw_fraction "
        "can reach on this machine before bias adds, activations, sampling and Bernoulli sums"
    ] + [
        f"{name}: mean log p(x) {a['mean_log_px']:.3f} vs {ref} {a['reference_mean_log_px']:.3f}:"
        f" Δ {a['diff_vs_reference']:+.3f} nats = {a['diff_in_se']:+.2f} SE"
        f" (max per image {a['max_image_diff_in_se']:.2f} SE)"
        for name, a in summary["agreement"].items()
        if isinstance(a, dict)
    ]
    _common.report(summary)
    return summary


def products_alone(k: int, threads: int) -> dict:
    """Seconds per image of the decoder's matrix products alone, each layer one ``k``-row
    product at the rate measured for its shape (the encoder's one row per image is left out).
    """
    shapes = [(k, n_in, n_out) for n_in, n_out in _common.DECODER_LAYERS]
    rates = _common.measure_matmul_peak(threads=threads, sizes=shapes)["by_size_gflops"]
    seconds = sum(2 * m * i * o / (rates[f"{m}x{i}x{o}"] * 1e9) for m, i, o in shapes)
    return {"s": seconds, "flops": sum(2 * m * i * o for m, i, o in shapes), "gflops": rates}


if __name__ == "__main__":
    main()
