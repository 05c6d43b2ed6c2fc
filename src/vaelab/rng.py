"""Seeded blocks that leave the caller's random state untouched, and the one source of the
reparameterization noise.

Every ``N(0, 1)`` draw a training step or an evaluation makes for ``z = μ + σ ε`` goes through
:func:`standard_normal`. In one process it is exactly the draw ``torch.distributions`` makes (the
same call, the same numbers). Under data parallelism (:mod:`vaelab.distributed`) a process
computes only some rows of a batch: inside :func:`batch_rows` it draws the noise of the *whole*
batch, as one process would, and keeps its own rows. Every rank's generator therefore advances
exactly as a single process's does, and each example gets the noise it would get in one process.
Threads of one process that share a batch do the same, each from its own generator
(:func:`own_generator`).
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

# (start, stop, total) inside batch_rows, else None
_ROWS: contextvars.ContextVar[tuple[int, int, int] | None] = contextvars.ContextVar(
    "vaelab_batch_rows", default=None
)
# the generator of own_generator's block (one per thread), else None: torch's global one
_GENERATOR: contextvars.ContextVar[torch.Generator | None] = contextvars.ContextVar(
    "vaelab_generator", default=None
)


@contextlib.contextmanager
def seeded(device: torch.device | str, seed: int):
    """Run a block with torch's global generator seeded with ``seed``, then restore it.

    Evaluation uses this so that its numbers are reproducible and so that evaluating in the
    middle of training does not change the training run's random draws.
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def batch_rows(start: int, stop: int, total: int):
    """Inside the block this process holds rows ``[start, stop)`` of a batch of ``total``
    examples: :func:`standard_normal` draws for all ``total`` and returns those rows."""
    if not 0 <= start < stop <= total:
        raise ValueError(f"rows [{start}, {stop}) are not a part of a batch of {total}")
    token = _ROWS.set((start, stop, total))
    try:
        yield
    finally:
        _ROWS.reset(token)


@contextlib.contextmanager
def own_generator(state: torch.Tensor):
    """Inside the block, in this thread, :func:`standard_normal` draws from a CPU generator
    started at ``state`` (a :func:`torch.get_rng_state`) instead of torch's global one; the
    block yields that generator. Threads that share a batch's rows (see :func:`batch_rows`)
    each draw from their own copy of one state: the numbers one thread would draw, in the
    same order, whichever thread runs first."""
    generator = torch.Generator()
    generator.set_state(state)
    token = _GENERATOR.set(generator)
    try:
        yield generator
    finally:
        _GENERATOR.reset(token)


def standard_normal(shape, dtype=None, device=None) -> torch.Tensor:
    """``N(0, 1)`` noise of ``shape`` from torch's global generator (or :func:`own_generator`'s).

    Shapes are ``(..., B, L)``: the examples on the axis before the last, as every posterior
    draw has them (``(k, B, L)``). Inside :func:`batch_rows` the draw is ``(..., total, L)``
    and rows ``[start, stop)`` of it are returned.
    """
    rows, generator = _ROWS.get(), _GENERATOR.get()
    if rows is None:
        return torch.empty(shape, dtype=dtype, device=device).normal_(generator=generator)
    start, stop, total = rows
    if len(shape) < 2 or shape[-2] != stop - start:
        # a draw laid out otherwise would take other examples' noise: refuse, never guess
        raise RuntimeError(
            f"a draw of shape {tuple(shape)} inside batch_rows({start}, {stop}, {total}): "
            f"expected {stop - start} examples on the axis before the last"
        )
    full = torch.empty((*shape[:-2], total, shape[-1]), dtype=dtype, device=device)
    full.normal_(generator=generator)
    return full[..., start:stop, :]
