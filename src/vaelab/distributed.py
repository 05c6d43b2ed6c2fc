"""Data parallelism under ``torchrun``: the one module that talks to ``torch.distributed``.

Launch. ``torchrun`` starts one process per rank and tells each its place through the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``). :func:`session` reads it: without those variables the process is alone,
:data:`SINGLE` is returned and nothing here runs, so ``vaelab train`` takes exactly the code
path and the numbers it always did. Under ``torchrun`` (one process included) a process group
is set up: gloo when the device is the CPU, NCCL on CUDA with one GPU per local rank
(``cuda:LOCAL_RANK``). A rank's torch threads default to the machine's cores divided by the
ranks on it, so ranks do not oversubscribe the cores.

Sharding. A batch of ``n`` examples is split into contiguous, balanced row ranges:
rank ``r`` of ``N`` holds rows ``[n·r // N, n·(r+1) // N)`` (:meth:`World.shard`). Training
takes each step's global batch (``--batch-size`` examples) from the one seeded permutation of
the epoch, as one process does, and each rank computes its rows of it; evaluation splits each
of its batches the same way and gathers the per-example results back into input order
(:meth:`World.gather_rows`). The examples seen, in their order, are the single-process ones.

Random numbers. Every rank keeps torch's global generator and the data generator in the
state a single process would have: it draws the noise of the *whole* batch (binarization or
dequantization noise for the global batch, the reparameterization noise through
:func:`vaelab.rng.batch_rows`) and keeps its own rows (:meth:`Shard.draws`). Each example
therefore gets the noise it gets in one process, and after every step all ranks' generators
are in the same state, the single-process state. The price is that a rank draws all of a
batch's noise, not its share: cheap beside the networks (``benchmarks/scaling.py``).

Checkpoints across world sizes. Gradients are averaged over the whole batch with one
all-reduce per step (``training.steps.update``), so every rank applies the same update and
holds the same weights and optimizer moments. A checkpoint, written by rank 0, holds those,
the global counters and sums (reduced over ranks) and the generators' states: all of them
what a single process would hold at that step, none of them tied to the number of ranks. So
a checkpoint from N ranks resumes on M ranks, or in one process, with the same global batch:
the same examples, in the same order, with the same noise. Only the order in which float32
sums are reduced changes with the number of ranks.

Writing. Rank 0 alone writes the run directory (config, weights, checkpoints, metrics,
pictures, the test evaluation); every rank reads it (the checkpoint on resume, the best
model for the test evaluation). On several machines it must be on storage they all see.

Failures. Every collective goes through :class:`World`, which turns a failure into one
:class:`DistributedError` line. A rank that dies (SIGKILL, a crash) closes its sockets, and
the others' next collective fails at once; a rank that hangs, or a machine that drops off
the network, is waited for at most the collective timeout (``VAELAB_DIST_TIMEOUT`` seconds,
default 300: longer than rank 0's longest solo work, writing pictures and checkpoints).
``torchrun`` also stops the remaining ranks once one has exited. The loop's decisions (skip
a non-finite step, roll back, stop on Ctrl-C) are taken from reduced values, so every rank
takes the same branch and calls the same collectives in the same order.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch

from vaelab.device import resolve_device
from vaelab.errors import ConfigError, VaelabError
from vaelab.rng import batch_rows

TIMEOUT_ENV = "VAELAB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedError(VaelabError):
    """Another rank stopped, or could not be reached within the collective timeout."""


@dataclass(frozen=True)
class Shard:
    """This rank's rows ``[start, stop)`` of a batch of ``total`` examples."""

    start: int
    stop: int
    total: int

    @property
    def count(self) -> int:
        return self.stop - self.start

    @property
    def weight(self) -> float:
        """The rank's share of the batch: its mean over its rows, times this, sums to the mean."""
        return self.count / self.total

    @property
    def rows(self) -> slice:
        """The rows to compute: the rank's own, or row 0 when it has none (a batch smaller than
        the world). That stand-in keeps the rank's random draws in step with the others'; its
        results carry weight 0 and are dropped."""
        return slice(self.start, self.stop) if self.count else slice(0, 1)

    def split(self, parts: int) -> list[Shard]:
        """The rows in up to ``parts`` contiguous, non-empty shards of the same batch (for the
        threads of one rank; a shard with no rows stays whole)."""
        n, start, count = max(1, min(parts, self.count)), self.start, self.count
        edges = [start + count * i // n for i in range(n + 1)]
        return [Shard(a, b, self.total) for a, b in itertools.pairwise(edges)]

    def draws(self) -> contextlib.AbstractContextManager:
        """The block in which the rows' reparameterization noise is drawn (see vaelab.rng)."""
        rows = self.rows
        if rows.start == 0 and rows.stop == self.total:
            return contextlib.nullcontext()  # the whole batch: the plain draw
        return batch_rows(rows.start, rows.stop, self.total)


@dataclass(frozen=True)
class World:
    """The processes of one job and this process's place among them.

    ``device is None``: a single process, not launched by torchrun; every collective is then
    the identity and every rank test says "the only one".
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    device: torch.device | None = None

    @property
    def active(self) -> bool:
        """Whether a process group exists (launched by torchrun)."""
        return self.device is not None

    @property
    def writer(self) -> bool:
        """Whether this process writes the run directory and prints for the user (rank 0)."""
        return self.rank == 0

    def shard(self, total: int) -> Shard:
        return Shard(total * self.rank // self.size, total * (self.rank + 1) // self.size, total)

    # -- collectives (the identity in a single process) -----------------------------------
    def _run(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:  # gloo/NCCL errors, timeouts included, are RuntimeErrors
            raise DistributedError(
                f"lost contact with another rank during {what} ({_reason(e)}): it has stopped "
                "or cannot be reached"
            ) from None

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over ranks, in place; the same bits on every rank."""
        if self.active:
            import torch.distributed as dist

            self._run("all-reduce", dist.all_reduce, t)
        return t

    def barrier(self) -> None:
        """Wait for every rank (an all-reduce: the same timeout and errors as the others)."""
        if self.active:
            self.all_reduce(torch.zeros(1, device=self.device))

    def broadcast_text(self, text: str) -> str:
        """Rank 0's ``text`` on every rank."""
        if not self.active:
            return text
        import torch.distributed as dist

        data = torch.tensor(list(text.encode()), dtype=torch.uint8, device=self.device)
        size = torch.tensor([data.numel()], device=self.device)
        self._run("broadcast", dist.broadcast, size, 0)
        if not self.writer:
            data = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        self._run("broadcast", dist.broadcast, data, 0)
        return bytes(data.tolist()).decode()

    def gather_rows(
        self, tensors: dict[str, torch.Tensor], index: torch.Tensor, total: int
    ) -> dict[str, torch.Tensor]:
        """Every rank's rows put back in input order, on every rank.

        ``tensors`` hold this rank's rows (first axis) and ``index`` their positions in the
        input; the ranks' positions together must be ``0 .. total-1``, each once.
        """
        if not self.active:
            return tensors
        import torch.distributed as dist

        dev = self.device
        counts = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(self.size)]
        mine = torch.tensor([index.numel()], device=dev)
        self._run("gather", dist.all_gather, counts, mine)
        counts = [int(c.item()) for c in counts]
        if sum(counts) != total:
            raise DistributedError(f"ranks hold {sum(counts)} rows of {total}")
        width = max(counts)

        def gather(t: torch.Tensor) -> list[torch.Tensor]:
            padded = torch.zeros((width, *t.shape[1:]), dtype=t.dtype, device=dev)
            padded[: t.shape[0]] = t.to(dev)
            parts = [torch.empty_like(padded) for _ in range(self.size)]
            self._run("gather", dist.all_gather, parts, padded)
            return [p[:c] for p, c in zip(parts, counts, strict=True)]

        where = torch.cat(gather(index))
        if not torch.equal(where.sort().values, torch.arange(total, device=dev)):
            raise DistributedError("the ranks' rows do not cover the input once each")
        out = {}
        for key, t in tensors.items():
            full = torch.empty((total, *t.shape[1:]), dtype=t.dtype, device=dev)
            full[where] = torch.cat(gather(t))
            out[key] = full.to(t.device)
        return out


SINGLE = World()


def _reason(e: BaseException) -> str:
    """The gist of a gloo/NCCL error: its first sentence, without the source location."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    text = re.sub(r"^\[[^\]]*:\d+\]\s*", "", text)  # "[.../pair.cc:537] Read error ..."
    return text.split(". ")[0][:200]


def launched_rank() -> tuple[int, int] | None:
    """(rank, world size) from torchrun's environment, or None outside torchrun."""
    if not all(v in os.environ for v in _TORCHRUN_VARS):
        return None
    return _env_int("RANK"), _env_int("WORLD_SIZE")


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"${name}: expected an integer, got {value!r}") from None


def timeout_s() -> float:
    """The collective timeout: ``$VAELAB_DIST_TIMEOUT`` seconds, default 300."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"${TIMEOUT_ENV}: must be a number of seconds > 0, got {raw!r}")
    return value


def default_threads(local_size: int) -> int:
    """Cores this process may use, shared evenly among the ranks on this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(local_size, 1))


def start(device: str = "auto", threads: int | None = None, key: str = "device") -> World:
    """Join the job torchrun launched (:data:`SINGLE` when not launched by torchrun).

    ``device`` is the user's setting (``key`` names it in errors): ``auto`` or ``cuda`` give each
    rank ``cuda:LOCAL_RANK`` and NCCL when CUDA is there, else the CPU and gloo. ``threads``
    (default: :func:`default_threads`) are this rank's torch threads; torchrun's own default,
    ``OMP_NUM_THREADS=1``, is replaced, since one thread per rank wastes the cores of a
    machine with more cores than ranks.
    """
    placed = launched_rank()
    if placed is None:
        return SINGLE
    rank, size = placed
    local_rank = _env_int("LOCAL_RANK")
    local_size = _env_int("LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in os.environ else size
    if not (0 <= rank < size and 0 <= local_rank < local_size <= size):
        raise ConfigError(
            f"torchrun's environment is inconsistent: RANK={rank} WORLD_SIZE={size} "
            f"LOCAL_RANK={local_rank} LOCAL_WORLD_SIZE={local_size}"
        )
    dev = resolve_device(device, key)
    if dev.type == "cuda":
        if dev.index is not None:
            raise ConfigError(
                f"{key}: {device} names one GPU, but under torchrun each rank takes its own "
                "(cuda:LOCAL_RANK); use auto or cuda"
            )
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"{key}: {local_size} ranks on this machine but {torch.cuda.device_count()} "
                "GPUs; start at most one rank per GPU (--nproc-per-node)"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    torch.set_num_threads(threads or default_threads(local_size))
    # torch._dynamo, which the optimizers import on their first step, keeps hold of a process
    # group that exists when it is first imported: destroy_process_group then leaves its
    # gloo threads running, and the interpreter's exit can abort ("terminate called without
    # an active exception"). Imported before the group exists, it holds none.
    importlib.import_module("torch._dynamo")
    import torch.distributed as dist

    backend = "nccl" if dev.type == "cuda" else "gloo"
    try:
        dist.init_process_group(
            backend,
            timeout=timedelta(seconds=timeout_s()),
            device_id=dev if dev.type == "cuda" else None,
        )
    except (RuntimeError, ValueError) as e:
        raise DistributedError(
            f"could not join the other ranks ({backend}: {_reason(e)})"
        ) from None
    return World(rank, size, local_rank, local_size, dev)


def stop(world: World) -> None:
    """Leave the process group (nothing to do in a single process)."""
    if not world.active:
        return
    import torch.distributed as dist

    # After a peer died the group may fail to tear down; the process is ending either way,
    # and the error worth reporting is the one that ended it, not this one.
    with contextlib.suppress(Exception):
        if dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def session(
    device: str = "auto", threads: int | None = None, key: str = "device"
) -> Iterator[World]:
    """:func:`start`, the block, then :func:`stop` (also when the block fails)."""
    world = start(device, threads, key)
    try:
        yield world
    finally:
        stop(world)
