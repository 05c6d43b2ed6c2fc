"""The parts of data parallelism that need no second process: shards, draws, flat gradients,
and what torchrun's environment is read as."""

from __future__ import annotations

import itertools

import pytest
import torch

from vaelab import distributed
from vaelab.distributed import SINGLE, World
from vaelab.distributions import diagonal_normal
from vaelab.errors import ConfigError
from vaelab.rng import batch_rows, own_generator, standard_normal
from vaelab.training.steps.update import FlatGradients, OptimizerUpdate


@pytest.mark.parametrize("size", [1, 2, 3, 8])
@pytest.mark.parametrize("total", [1, 2, 5, 61, 128])
def test_shards_are_contiguous_balanced_and_cover_the_batch_once(size, total):
    shards = [World(rank, size, device=torch.device("cpu")).shard(total) for rank in range(size)]
    assert shards[0].start == 0 and shards[-1].stop == total
    for a, b in itertools.pairwise(shards):
        assert a.stop == b.start
    counts = [s.count for s in shards]
    assert max(counts) - min(counts) <= 1
    assert sum(s.weight for s in shards) == pytest.approx(1.0)
    for s in shards:  # a rank without rows computes row 0, weighted 0
        assert s.rows == (slice(s.start, s.stop) if s.count else slice(0, 1))


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize(("start", "stop"), [(0, 5), (3, 9), (4, 4), (2, 3)])
def test_a_shard_splits_into_contiguous_non_empty_parts_of_the_same_batch(parts, start, stop):
    split = distributed.Shard(start, stop, 12).split(parts)
    assert split[0].start == start and split[-1].stop == stop
    assert all(p.total == 12 for p in split)
    for a, b in itertools.pairwise(split):
        assert a.stop == b.start
    if stop > start:  # as many parts as asked while each gets a row, sizes within one
        assert len(split) == min(parts, stop - start) and min(p.count for p in split) >= 1
        assert max(p.count for p in split) - min(p.count for p in split) <= 1
    else:  # no rows: the shard itself, which computes a stand-in row
        assert split == [distributed.Shard(start, stop, 12)]


def test_own_generator_draws_what_the_global_one_would_and_leaves_it_alone():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    expected = standard_normal((3, 4, 2))
    torch.manual_seed(6)
    with own_generator(state) as g:
        with batch_rows(1, 3, 4):
            rows = standard_normal((3, 2, 2))
        rest = standard_normal((5, 2))
    untouched = torch.randn(2)  # the global generator is where the block found it
    assert torch.equal(untouched, torch.manual_seed(6) and torch.randn(2))
    assert torch.equal(rows, expected[:, 1:3])
    torch.manual_seed(5)
    standard_normal((3, 4, 2))
    assert torch.equal(rest, standard_normal((5, 2)))
    assert torch.equal(g.get_state(), torch.get_rng_state())  # both moved on alike


def test_one_process_is_one_shard_and_every_collective_is_the_identity():
    shard = SINGLE.shard(7)
    assert (shard.rows, shard.weight) == (slice(0, 7), 1.0)
    t = torch.arange(3.0)
    assert SINGLE.all_reduce(t) is t and t.tolist() == [0.0, 1.0, 2.0]
    assert SINGLE.broadcast_text("runs/x") == "runs/x"
    SINGLE.barrier()
    assert not SINGLE.active and SINGLE.writer


@pytest.mark.parametrize("shape", [(4, 6, 3), (6, 3), (2, 4, 6, 3)])
def test_a_process_draws_its_rows_of_the_whole_batch_noise(shape):
    torch.manual_seed(3)
    whole = standard_normal(shape)
    rows = []
    for start, stop in ((0, 2), (2, 5), (5, 6)):
        torch.manual_seed(3)
        with batch_rows(start, stop, 6):
            part = standard_normal((*shape[:-2], stop - start, shape[-1]))
        rows.append(part)
        after = torch.rand(())
        torch.manual_seed(3)
        standard_normal(shape)
        assert after == torch.rand(()), "the generator moves on as for the whole batch"
    assert torch.equal(torch.cat(rows, dim=-2), whole)


def test_posterior_samples_use_the_same_draw_as_torch_distributions():
    loc, scale = torch.randn(5, 3), torch.rand(5, 3) + 0.1
    torch.manual_seed(4)
    ours = diagonal_normal(loc, scale).rsample((2,))
    torch.manual_seed(4)
    theirs = torch.distributions.Normal(loc, scale).rsample((2,))
    assert torch.equal(ours, theirs)
    torch.manual_seed(4)
    with batch_rows(1, 3, 5):
        mine = diagonal_normal(loc[1:3], scale[1:3]).rsample((2,))
    assert torch.equal(mine, theirs[:, 1:3])


def test_a_draw_laid_out_otherwise_is_refused_inside_batch_rows():
    with batch_rows(0, 2, 5), pytest.raises(RuntimeError, match="expected 2 examples"):
        standard_normal((3, 4))
    with pytest.raises(ValueError):
        batch_rows(3, 3, 5).__enter__()


def _model_and_grads():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model(torch.randn(5, 4)).pow(2).sum().backward()
    return model, [p.grad.clone() for p in model.parameters()]


def test_flat_gradients_are_views_of_one_buffer_with_the_loss_last():
    model, grads = _model_and_grads()
    params = list(model.parameters())
    flat = FlatGradients(params)
    flat.collect(params, torch.tensor(2.5))
    for p, g, view in zip(params, grads, flat.views, strict=True):
        assert p.grad is view and torch.equal(view, g)
    assert flat.buffer[-1].item() == 2.5
    assert flat.buffer.numel() == sum(p.numel() for p in params) + 1


def test_the_update_weights_a_rank_by_its_share_before_the_sum():
    model, grads = _model_and_grads()
    params = list(model.parameters())
    sums = []

    def reduce(t):  # a world of one other rank with the same gradients and loss
        sums.append(t.clone())
        return t.mul_(2)

    opt = torch.optim.Adam(params, lr=0.0, fused=True)  # fused: it honours found_inf
    update = OptimizerUpdate(opt, params, None, reduce=reduce)
    skipped = update(torch.tensor(1.5), weight=0.25)
    assert skipped.item() == 0.0 and len(sums) == 1  # one all-reduce for the whole step
    for p, g in zip(params, grads, strict=True):
        assert torch.allclose(p.grad, 0.5 * g)
    assert update.flat.loss.item() == 0.75


def test_a_non_finite_loss_on_any_rank_skips_the_step_everywhere():
    model, _ = _model_and_grads()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]

    def reduce(t):  # the other rank's loss was NaN
        t[-1] = float("nan")
        return t

    opt = torch.optim.Adam(params, lr=0.1, fused=True)
    update = OptimizerUpdate(opt, params, None, reduce=reduce)
    assert update(torch.tensor(1.0), weight=0.5).item() == 1.0
    assert all(torch.equal(a, p) for a, p in zip(before, params, strict=True))


def test_outside_torchrun_the_process_is_alone(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.launched_rank() is None
    assert distributed.start("cpu") is SINGLE


def test_torchrun_environment_is_checked(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="inconsistent"):
        distributed.start("cpu")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match=r"\$RANK: expected an integer"):
        distributed.start("cpu")


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf", "nan"])
def test_the_collective_timeout_must_be_positive_seconds(monkeypatch, value):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
    with pytest.raises(ConfigError, match="VAELAB_DIST_TIMEOUT"):
        distributed.timeout_s()


def test_threads_default_to_the_cores_shared_by_the_local_ranks(monkeypatch):
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert [distributed.default_threads(n) for n in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]


def test_only_train_and_evaluate_run_under_torchrun(monkeypatch, capsys, tmp_path):
    """Any other command would run whole on every rank (and write the same files twice):
    refused in one line, said once (by rank 0); in a world of one it runs."""
    from vaelab.cli import main

    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert main(["sample", str(tmp_path), "--out", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err
        if rank == "0":
            assert "`vaelab sample` runs in one process; start it without torchrun" in err
        else:
            assert err == ""
    assert not (tmp_path / "s.png").exists()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert main(["datasets"]) == 0  # one rank: the command itself
    assert "mnist" in capsys.readouterr().out
