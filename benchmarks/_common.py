"""Shared harness for vaelab's speed benchmarks against peers.

What lives here (and nothing else): reading and binarizing MNIST once so that every contender
gets the *same* tensors, the machine's float32 matrix-multiply peak, FLOP counts of an MLP VAE,
peak-memory measurement, running contenders interleaved (A, B, C, A, B, C, ...) and reporting
medians and ratios as a plain-text table plus one machine-readable line ``RESULT {json}``.

Nothing here imports vaelab or a peer: the benchmarks compose those.
"""

from __future__ import annotations

import gzip
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project's MNIST copy (gzip IDX files) lives beside the repository: <repo>/../shared/.
DEFAULT_MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
MNIST_DIR_ENV = "VAELAB_MNIST_DIR"

N_TRAIN = 55_000  # the first 55,000 official training images; the last 5,000 are "valid"
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# One independent random stream per split (numpy SeedSequence entropy = [seed, split id]).
_SPLIT_STREAM = {"train": 0, "valid": 1, "test": 2}

# The pytorch/examples VAE (and the model of every workload here): (in, out) of each Linear.
#   encoder 784 → 400 (ReLU) → {μ: 400 → 20, log σ²: 400 → 20}; decoder 20 → 400 (ReLU) → 784.
ENCODER_LAYERS = ((784, 400), (400, 20), (400, 20))
DECODER_LAYERS = ((20, 400), (400, 784))
EXAMPLES_LAYERS = ENCODER_LAYERS + DECODER_LAYERS


# --------------------------------------------------------------------------------------------
# data


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one (optionally gzip-compressed) IDX file into a numpy array of its stored shape.

    IDX: two zero bytes, a type code (0x08 = unsigned byte is the only one MNIST uses), the
    number of dimensions, then each dimension as a big-endian uint32, then the data.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (header {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise ValueError(f"{path}: header says shape {shape}, file holds {data.size} bytes")
    return data.reshape(shape)


def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir``, else ``$VAELAB_MNIST_DIR``, else ``<repo>/../shared/data/mnist``."""
    d = Path(data_dir or os.environ.get(MNIST_DIR_ENV) or DEFAULT_MNIST_DIR)
    if not d.is_dir():
        raise FileNotFoundError(
            f"MNIST directory not found: {d} (set --data-dir or ${MNIST_DIR_ENV})"
        )
    return d


def load_mnist(
    split: str, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grey MNIST as ``(images uint8 (N, 784), labels int64 (N,))``.

    Splits: ``train`` = the first 55,000 official training images, ``valid`` = the last 5,000,
    ``test`` = the official 10,000.
    """
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be one of {sorted(_SPLIT_STREAM)}, got {split!r}")
    d = mnist_dir(data_dir)
    images_file, labels_file = _IDX_FILES["test" if split == "test" else "train"]
    images = read_idx(d / images_file).reshape(-1, 784)
    labels = read_idx(d / labels_file).astype(np.int64)
    if split == "train":
        images, labels = images[:N_TRAIN], labels[:N_TRAIN]
    elif split == "valid":
        images, labels = images[N_TRAIN:], labels[N_TRAIN:]
    return images, labels


def binarize(images: np.ndarray, seed: int, stream: int = 0) -> torch.Tensor:
    """One fixed Bernoulli draw per pixel: ``x = 1[u < grey/255]``, ``u ~ U(0, 1)``.

    ``u`` comes from ``numpy.random.default_rng([seed, stream])`` (float32), so a given
    ``(seed, stream)`` gives the same bits on every machine and numpy version that keeps
    PCG64's stream. Returns float32 ``(N, 784)`` of zeros and ones.
    """
    rng = np.random.default_rng([seed, stream])
    p = images.astype(np.float32) / np.float32(255.0)
    u = rng.random(p.shape, dtype=np.float32)
    return torch.from_numpy((u < p).astype(np.float32))


def load_binarized_mnist(
    split: str, seed: int = 0, data_dir: str | os.PathLike | None = None
) -> torch.Tensor:
    """Statically binarized MNIST, float32 ``(N, 784)`` in {0, 1}.

    One fixed-seed Bernoulli draw per split (see :func:`binarize`; each split has its own
    random stream, so train and test bits are independent for the same ``seed``). Every
    contender of a benchmark is handed this *same* tensor, so all of them train and evaluate
    on identical data.
    """
    images, _ = load_mnist(split, data_dir)
    return binarize(images, seed, _SPLIT_STREAM[split])


# --------------------------------------------------------------------------------------------
# hardware peak and FLOP counts


def _time_matmul(a: torch.Tensor, b: torch.Tensor, min_time: float = 0.05) -> float:
    """Seconds per ``a @ b``: loop until at least ``min_time`` has passed."""
    out = torch.empty(a.shape[0], b.shape[1])
    torch.matmul(a, b, out=out)  # warm-up (allocations, thread pool)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            torch.matmul(a, b, out=out)
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / n
        n *= 2


def measure_matmul_peak(
    threads: int = 2,
    sizes: Iterable[tuple[int, int, int]] = (
        (128, 784, 400),  # the model's largest training matmul (batch 128 × fc1)
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
    ),
    repeats: int = 5,
) -> dict[str, Any]:
    """float32 GFLOP/s of ``torch.matmul`` (2·m·k·n FLOPs per product) with ``threads`` threads.

    Each size is timed ``repeats`` times (each timing loops for ≥ 50 ms) and the median kept;
    ``peak_gflops`` is the max over sizes (in practice the large square one). The torch thread
    count is restored afterwards.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        by_size = {}
        for m, k, n in sizes:
            a = torch.randn(m, k, generator=g)
            b = torch.randn(k, n, generator=g)
            t = statistics.median(_time_matmul(a, b) for _ in range(repeats))
            by_size[f"{m}x{k}x{n}"] = round(2 * m * k * n / t / 1e9, 1)
    finally:
        torch.set_num_threads(old)
    return {"peak_gflops": max(by_size.values()), "by_size_gflops": by_size, "threads": threads}


def linear_macs(layers: Iterable[tuple[int, int]]) -> int:
    """Multiply-accumulates of one example through Linear layers given as ``(in, out)``."""
    return sum(i * o for i, o in layers)


def train_flops_per_image(layers: Iterable[tuple[int, int]] = EXAMPLES_LAYERS) -> float:
    """FLOPs of one training step per example, by the usual convention 3 × forward.

    forward = 2 FLOPs per MAC of every Linear; backward ≈ 2 × forward (one matmul for the
    gradient w.r.t. the layer input, one for the weight gradient). Bias adds, activations,
    the loss, sampling and the optimizer update are O(width), not O(width²), and left out.
    For the 784-400-20 model: forward 651,200 MACs = 1.30 MFLOP, step ≈ 3.91 MFLOP.
    (Strictly, the first layer needs no input gradient, so the exact matmul count is
    3·651,200 − 313,600 = 1,640,000 MACs = 3.28 MFLOP; the convention over-counts by 19%,
    which flatters every contender equally.)
    """
    return 3 * 2 * linear_macs(layers)


def loglik_flops_per_image(
    k: int,
    encoder_layers: Iterable[tuple[int, int]] = ENCODER_LAYERS,
    decoder_layers: Iterable[tuple[int, int]] = DECODER_LAYERS,
) -> float:
    """Necessary FLOPs of a K-sample importance-sampled ``log p(x)`` for one example.

    The encoder runs once per example, the decoder once per sample: 2·(enc + K·dec) MACs.
    (An implementation that re-encodes the example for every sample, as Pythae's ``get_nll``
    does, spends more; this counts only what the estimator needs.)
    """
    return 2 * (linear_macs(encoder_layers) + k * linear_macs(decoder_layers))


def hardware_fraction(flops_per_item: float, items_per_s: float, peak_gflops: float) -> float:
    """Achieved FLOP rate ÷ measured matmul peak."""
    return flops_per_item * items_per_s / (peak_gflops * 1e9)


# --------------------------------------------------------------------------------------------
# memory


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak resident set size of *this process* during a ``with`` block, in MiB.

    Resident memory is process-wide: it counts torch's import, data, every other contender's
    leftovers and the allocator's cached pages. So contenders whose memory is compared are
    each run in a fresh process (:func:`run_isolated`) and measure their call with this.

    On Linux the high-water mark is reset on entry by writing ``5`` to
    ``/proc/self/clear_refs`` and read from ``VmHWM`` on exit, so ``peak_mib`` is the peak
    *during the block*; ``delta_mib`` = peak − resident size on entry. Where the reset is not
    possible, ``reset`` is False and the peak is the process-lifetime ``ru_maxrss``.
    """

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.rss_before_kib = _status_kib("VmRSS") or 0
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kib("VmHWM") if self.reset else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self.peak_kib = hwm

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    @property
    def delta_mib(self) -> float:
        return (self.peak_kib - self.rss_before_kib) / 1024


def _isolated_child(conn, fn, args, kwargs, threads):
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        conn.send(("ok", fn(*args, **kwargs)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., Any], *args: Any, threads: int | None = None, **kwargs: Any):
    """``fn(*args, **kwargs)`` in a fresh process (``multiprocessing`` *spawn* context).

    Used where a contender's peak memory must not include another contender's: the child
    starts from a bare interpreter. ``fn`` must be importable (module level) and its
    arguments and result picklable; the calling script needs an ``if __name__ ==
    "__main__":`` guard. Process start-up and imports are outside whatever ``fn`` times.
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_isolated_child, args=(child, fn, args, kwargs, threads))
    proc.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(
            f"isolated run of {fn.__name__} died (exit code {proc.exitcode})"
        ) from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"isolated run of {fn.__name__} failed:\n{payload}")
    return payload


# --------------------------------------------------------------------------------------------
# running and reporting


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _jsonable_scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | bool) or _is_number(v)


def cpu_busy_fraction(interval: float = 0.5) -> float | None:
    """Fraction of all CPUs' time spent busy over ``interval`` seconds (from /proc/stat).

    Sampled while this process sleeps, so it measures *other* work on the machine. With 2
    cores, anything much above 0 matters: a 2-thread torch run whose second thread has to
    share a core with another process can be many times slower (OpenMP threads wait for
    each other at every parallel region), not just half as fast.
    """

    def snapshot():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    try:
        idle0, total0 = snapshot()
        time.sleep(interval)
        idle1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1.0 - (idle1 - idle0) / total


# A rep during which other processes used more than this share of all CPUs is flagged.
DISTURBED_LOAD = 0.05


def _cpu_snapshot() -> tuple[float, float, float] | None:
    """(busy jiffies of all CPUs, total jiffies, this process's + reaped children's CPU s)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle, total = fields[3] + fields[4], sum(fields)
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    return total - idle, total, cpu


def other_load(before, after) -> float | None:
    """Share of the machine's CPU time used by *other* processes between two snapshots.

    (all CPUs' busy time − this process's and its reaped children's CPU time) ÷ all CPUs'
    time. ~0 on a quiet machine; 0.5 on 2 cores means another process held a whole core.
    """
    if before is None or after is None:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy, total = (after[0] - before[0]) / hz, (after[1] - before[1]) / hz
    if total <= 0:
        return None
    return max(0.0, (busy - (after[2] - before[2])) / total)


def check_machine_quiet(threshold: float = 0.1, out=sys.stderr) -> float | None:
    """Warn (to ``out``) when other processes keep the CPUs busy; returns the busy fraction."""
    busy = cpu_busy_fraction()
    if busy is not None and busy > threshold:
        print(
            f"WARNING: the CPUs are {busy:.0%} busy with other work; timings will be slow "
            "and noisy (see cpu_busy_before/after in the RESULT context)",
            file=out,
            flush=True,
        )
    return busy


def environment() -> dict[str, Any]:
    """Versions and machine facts that belong beside every number."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def _fmt(v: Any) -> str:
    if not _is_number(v):
        return "-" if v is None else str(v)
    a = abs(v)
    if a == 0 or 1e-3 <= a < 1e6:
        return f"{v:,.4g}" if a < 1000 else f"{v:,.0f}"
    return f"{v:.3e}"


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def interleave(
    contenders: Mapping[str, Callable[[], Mapping[str, Any]] | None],
    reps: int,
    reference: str | None = None,
    *,
    warmup: int = 0,
    title: str = "benchmark",
    primary: str | None = None,
    context: Mapping[str, Any] | None = None,
    drop_disturbed: bool = True,
    print_report: bool = True,
    out=sys.stdout,
) -> dict[str, Any]:
    """Run contenders interleaved, ``reps`` rounds of A, B, C, ..., and report medians.

    Each contender is a zero-argument callable returning a dict of metrics; ``None`` entries
    (placeholders for a contender not written yet) are skipped. ``warmup`` rounds run first
    and are discarded. Interleaving spreads slow drifts of the machine (thermal, other jobs)
    over every contender instead of charging them to whichever ran last. Each run also gets
    ``other_load``, the share of the machine's CPU time other processes used meanwhile
    (:func:`other_load`). With ``drop_disturbed`` (default) the medians are taken over the
    reps with ``other_load ≤ DISTURBED_LOAD`` when a contender has any (``median_of`` says
    how many), since on 2 cores one busy neighbour can slow a 2-thread torch run 10-100×;
    every rep stays in ``runs`` and the report warns about the disturbed ones.

    For every numeric metric the median over reps is kept, and its ratio to the ``reference``
    contender's median (default: the first contender); ``primary`` names the metric whose
    ratio gets its own table column. Returns the summary (per-rep results in full under
    ``runs``) and, unless ``print_report`` is False, prints it with :func:`report`: a
    plain-text table and exactly one line ``RESULT {json}``. A benchmark that derives more
    numbers from the runs passes ``print_report=False``, adds them (:func:`add_metric`),
    then calls ``report``.
    """
    active = {name: fn for name, fn in contenders.items() if fn is not None}
    if not active:
        raise ValueError("no contender to run")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    reference = reference if reference in active else next(iter(active))

    for w in range(warmup):
        for name, fn in active.items():
            print(f"[{title}] warm-up {w + 1}/{warmup}: {name}", file=sys.stderr, flush=True)
            fn()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in active}
    for r in range(reps):
        for name, fn in active.items():
            before = _cpu_snapshot()
            res = dict(fn())
            load = other_load(before, _cpu_snapshot())
            if load is not None:
                res["other_load"] = load
            runs[name].append(res)
            brief = ", ".join(f"{k}={_fmt(v)}" for k, v in res.items() if _is_number(v))
            print(f"[{title}] rep {r + 1}/{reps} {name}: {brief}", file=sys.stderr, flush=True)

    summary: dict[str, Any] = {
        "benchmark": title,
        "reps": reps,
        "warmup": warmup,
        "reference": reference,
        "primary": primary,
        "drop_disturbed": drop_disturbed,
        "runs": runs,
        "context": dict(context or {}),
    }
    summarize(summary)
    if print_report:
        report(summary, out=out)
    return summary


def summarize(summary: dict[str, Any]) -> None:
    """(Re)compute ``metrics``, ``medians``, ``ratios`` and ``median_of`` from ``runs``.

    Medians are over the reps that other processes left alone (``other_load ≤
    DISTURBED_LOAD``) where a contender has any and ``drop_disturbed`` is set; ratios are
    each contender's median over the ``reference`` contender's.
    """
    runs, reference = summary["runs"], summary["reference"]
    kept = {
        name: [r for r in results if (r.get("other_load") or 0) <= DISTURBED_LOAD] or results
        if summary.get("drop_disturbed", True)
        else results
        for name, results in runs.items()
    }
    metrics: list[str] = []
    for results in runs.values():
        for res in results:
            metrics += [k for k, v in res.items() if _is_number(v) and k not in metrics]
    medians = {
        name: {
            m: statistics.median(vals)
            for m in metrics
            if (vals := [res[m] for res in kept[name] if _is_number(res.get(m))])
        }
        for name in runs
    }
    summary["metrics"] = metrics
    summary["medians"] = medians
    summary["ratios"] = {
        name: {
            m: med[m] / medians[reference][m]
            for m in med
            if medians[reference].get(m) not in (None, 0)
        }
        for name, med in medians.items()
    }
    summary["median_of"] = {name: f"{len(kept[name])} of {len(runs[name])} reps" for name in runs}


def add_metric(summary: dict[str, Any], name: str, fn: Callable[[dict[str, Any]], Any]) -> None:
    """Add ``name = fn(run)`` to every run of ``summary`` and recompute its medians."""
    for results in summary["runs"].values():
        for res in results:
            res[name] = fn(res)
    summarize(summary)


def report(summary: Mapping[str, Any], out=sys.stdout) -> None:
    """Print an :func:`interleave` summary: the table, then one ``RESULT {json}`` line.

    The JSON holds the medians, the ratios, the per-rep *scalar* metrics (arrays that a
    contender returned are left out) and every other key of ``summary`` (``context`` and
    whatever a benchmark added, e.g. derived comparisons). Lines under ``notes`` are
    printed after the table.
    """
    metrics, medians, ratios = summary["metrics"], summary["medians"], summary["ratios"]
    reference, primary = summary["reference"], summary["primary"]
    header = ["contender", *metrics]
    if primary is not None:
        header.append(f"{primary} / {reference}")
    header.append("median of")
    rows = [header]
    for name in medians:
        row = [name, *(_fmt(medians[name].get(m)) for m in metrics)]
        if primary is not None:
            ratio = ratios[name].get(primary)
            row.append("-" if ratio is None else f"{ratio:.3f}")
        row.append(summary.get("median_of", {}).get(name, ""))
        rows.append(row)
    print(
        f"\n== {summary['benchmark']}: medians over {summary['reps']} interleaved rep(s) ==",
        file=out,
    )
    print(format_table(rows), file=out)
    for note in summary.get("notes", ()):
        print(f"  {note}", file=out)
    disturbed = {
        name: n
        for name, results in summary["runs"].items()
        if (n := sum((r.get("other_load") or 0) > DISTURBED_LOAD for r in results))
    }
    if disturbed:
        print(
            f"  WARNING: reps disturbed by other processes (other_load > {DISTURBED_LOAD}): "
            f"{disturbed} (left out of the medians where undisturbed reps exist)",
            file=out,
        )
    skip = ("runs", "metrics", "notes", "drop_disturbed")
    payload = {k: v for k, v in summary.items() if k not in skip}
    payload["runs"] = {
        name: [{k: v for k, v in res.items() if _jsonable_scalar(v)} for res in results]
        for name, results in summary["runs"].items()
    }
    print("RESULT " + json.dumps(payload, sort_keys=True, default=str), file=out, flush=True)


def finish_with_peak(summary: dict, peak: dict, threads: int, flops_per_item: float) -> float:
    """Measure the matmul peak again, record both, and add each run's ``hw_fraction``.

    A disturbance during one measurement only lowers it, so the higher of the start and end
    peaks is the one the hardware fraction divides by. Returns that peak (GFLOP/s).
    """
    summary["context"]["cpu_busy_after"] = check_machine_quiet()
    peak_end = measure_matmul_peak(threads=threads)
    gflops = max(peak["peak_gflops"], peak_end["peak_gflops"])
    summary["context"].update(matmul_peak_end=peak_end, peak_gflops_used=gflops)
    add_metric(
        summary,
        "hw_fraction",
        lambda r: hardware_fraction(flops_per_item, r["images_per_s"], gflops),
    )
    return gflops
