"""Multi-task methods from the Gramian (torchjd weightings): PCGrad is still Algorithm 1 of the paper,
every method equals torchjd's own aggregator on the unsharded Jacobian, and two gloo learners
holding half of every gradient make the single learner's update."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchjd.aggregation as jd

from orchestrator.kinds.train.aggregation import Aggregator, conflict_stats, gramian
from orchestrator.kinds.train.config import MTL
from orchestrator.kinds.train.methods import METHODS, REFUSED

SEED = 1234

# torchjd's own aggregators (the unsharded reference), with the defaults METHODS gives the weightings
AGGREGATORS = {
    "pcgrad": lambda t: jd.PCGrad(),
    "upgrad": lambda t: jd.UPGrad(),
    "mgda": lambda t: jd.MGDA(),
    "cagrad": lambda t: jd.CAGrad(c=0.5),
    "nash_mtl": lambda t: jd.NashMTL(n_tasks=t),
    "imtl_g": lambda t: jd.IMTLG(),
    "aligned_mtl": lambda t: jd.AlignedMTL(),
    "dualproj": lambda t: jd.DualProj(),
    "fairgrad": lambda t: jd.FairGrad(alpha=1.0),
    "gradvac": lambda t: jd.GradVac(),
    "mean": lambda t: jd.Mean(),
    "random": lambda t: jd.Random(),
}


def reference_pcgrad(grads: torch.Tensor, orders) -> torch.Tensor:
    """Algorithm 1 (Yu et al. 2020) transcribed literally on [P] vectors, float64: the per-task g_i'."""
    g = grads.double()
    out = []
    for i in range(len(g)):
        gi = g[i].clone()
        for j in orders[i]:
            d = torch.dot(gi, g[j])
            if d < 0 and torch.dot(g[j], g[j]) > 0:
                gi -= d / torch.dot(g[j], g[j]) * g[j]
        out.append(gi)
    return torch.stack(out)


def jacobian(t: int = 4, p: int = 12, seed: int = 3) -> torch.Tensor:
    j = torch.randn(t, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    j[1] = -j[0] + 0.1 * j[1]  # a strong conflict, so that every method has something to do
    return j


def _first_seed(seed: int) -> int:
    """The RNG seed Aggregator(seed) runs its first weighting under."""
    return int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(seed)))


def test_every_offered_method_has_a_reference_here():
    assert set(AGGREGATORS) == set(METHODS)


def test_pcgrad_two_tasks_hand_worked():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    # g1' = g1 + 0.5 g2 = [0.5, 0.5]; g2' = g2 + g1 = [0, 1]; sum [0.5, 1.5]
    direction, w = Aggregator("pcgrad", 2, SEED).combine(g, gramian(g))
    assert torch.allclose(direction, torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([2.0, 1.5], dtype=torch.float64))  # (1, 0.5) + (1, 1)


@pytest.mark.parametrize("t", [3, 5])
def test_pcgrad_is_algorithm_1_on_fixed_gradients(t):
    """torchjd's PCGrad visits the other tasks in the order of one torch.randperm per task: replay
    those draws and the combined gradient is the paper's sum of projected gradients."""
    for trial in range(10):
        g = torch.randn(t, 32, generator=torch.Generator().manual_seed(trial), dtype=torch.float64)
        direction, _ = Aggregator("pcgrad", t, SEED + trial).combine(g, gramian(g))
        torch.manual_seed(_first_seed(SEED + trial))
        orders = [[j for j in torch.randperm(t).tolist() if j != i] for i in range(t)]
        assert torch.allclose(direction, reference_pcgrad(g, orders).sum(0), atol=1e-10)


def test_pcgrad_is_seeded():
    g = jacobian(5)
    runs = [Aggregator("pcgrad", 5, seed).combine(g, gramian(g))[0] for seed in (1, 1, 2, 3)]
    assert torch.equal(runs[0], runs[1])
    assert any(not torch.allclose(runs[0], r) for r in runs[2:])  # the task order matters here


@pytest.mark.parametrize("method", list(METHODS))
def test_weights_equal_torchjds_aggregator_on_the_jacobian(method):
    j = jacobian()
    direction, w = Aggregator(method, 4, SEED).combine(j, gramian(j))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_first_seed(SEED))
        expected = AGGREGATORS[method](4)(j)
    assert torch.allclose(direction, expected, atol=1e-6), method
    assert w.shape == (4,) and torch.isfinite(w).all()


@pytest.mark.parametrize("method", list(METHODS))
def test_zero_task_gradients_give_a_zero_update(method):
    """GRPO groups whose rewards all tie give a zero gradient: no method may turn it into NaN."""
    zero = torch.zeros(2, 6, dtype=torch.float64)
    direction, w = Aggregator(method, 2, SEED).combine(zero, gramian(zero))
    assert torch.equal(direction, torch.zeros(6, dtype=torch.float64)) and torch.isfinite(w).all()


def test_unknown_and_unshardable_methods_are_refused_with_the_list():
    with pytest.raises(ValueError, match="not a multi-task method; use one of: pcgrad, upgrad, mgda"):
        MTL(enabled=True, method="sgd")
    with pytest.raises(ValueError, match="GradDrop .* no rank holds under FSDP"):
        MTL(enabled=True, method="graddrop")
    assert set(REFUSED).isdisjoint(METHODS)


def test_an_unknown_method_is_refused_at_submit(cli):
    res = cli("submit", "mtl-comparison-tiny", "--set", "arms.pcgrad.mtl.method=pcgard", "--executor", "local")
    assert res.code == 2
    assert "arms.pcgrad" in res.err and "'pcgard' is not a multi-task method" in res.err and "upgrad" in res.err


def test_conflict_stats_from_the_gramian():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    stats = conflict_stats(gramian(g), names=["math", "code", "chat", "empty"])
    c = 2**-0.5
    assert stats["pairs"]["math,code"] == pytest.approx(-c)
    assert stats["pairs"]["math,chat"] == pytest.approx(0.0)
    assert stats["pairs"]["code,chat"] == pytest.approx(c)
    assert stats["pairs"]["math,empty"] == 0.0  # zero gradient: cosine defined as 0, no conflict
    assert stats["num_pairs"] == 6 and stats["conflict_fraction"] == pytest.approx(1 / 6)


# ---- sharded: two gloo processes, each holding half of every task's gradient ----


def _sharded_worker(rank: int, world: int, init_file: str, j: torch.Tensor, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shard = j.chunk(world, dim=1)[rank]
        parts = {}
        for method in METHODS:
            g = gramian(shard, distributed=True)  # the one [T, T] all-reduce
            parts[method] = Aggregator(method, len(j), SEED).combine(shard, g)
        torch.save(parts, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_learners_make_the_single_learner_update(tmp_path):
    world, j = 2, jacobian(4, 14)
    mp.spawn(_sharded_worker, args=(world, str(tmp_path / "init"), j, str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for method in METHODS:
        single, w = Aggregator(method, 4, SEED).combine(j, gramian(j))
        assert torch.allclose(torch.cat([r[method][0] for r in ranks]), single, atol=1e-6), method
        assert all(torch.allclose(r[method][1], w, atol=1e-6) for r in ranks), method  # same weights everywhere
