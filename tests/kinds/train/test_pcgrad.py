"""PCGrad: hand-worked cases, Algorithm-1 properties, and sharded (torch.distributed) equivalence."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from orchestrator.kinds.train.pcgrad import conflict_stats, distributed_dot, pcgrad, project_conflicting, random_orders


def reference_pcgrad(grads: torch.Tensor, orders) -> torch.Tensor:
    """Algorithm 1 transcribed literally on [P] vectors (no Gram-matrix trick), float64."""
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


def test_two_tasks_hand_worked():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1.g2 = -1 < 0, ||g2||^2 = 2, ||g1||^2 = 1
    # g1' = g1 - (-1/2) g2 = [1, 0] + 0.5 [-1, 1] = [0.5, 0.5]
    # g2' = g2 - (-1/1) g1 = [-1, 1] + [1, 0]     = [0, 1]
    # sum = [0.5, 1.5]
    assert torch.allclose(project_conflicting(g), torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert torch.allclose(pcgrad(g), torch.tensor([0.5, 1.5]))


def test_no_conflict_is_plain_sum():
    g = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0], [1.0, 1.0, 1.0]])  # all pairwise dots >= 0
    assert torch.allclose(pcgrad(g, torch.Generator().manual_seed(0)), g.sum(0))


def test_three_tasks_order_matters():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    # dots: g0.g1 = -1, g0.g2 = 0, g1.g2 = -1; sq norms: 1, 2, 1
    # orders A: task0 visits (1, 2), task1 (0, 2), task2 (1, 0)
    #   g0': vs g1: d=-1 -> [1,0] + 0.5[-1,1] = [0.5, 0.5]; vs g2: d=-0.5 -> + 0.5[0,-1] = [0.5, 0]
    #   g1': vs g0: d=-1 -> [-1,1] + [1,0] = [0, 1];        vs g2: d=-1 -> + [0,-1]     = [0, 0]
    #   g2': vs g1: d=-1 -> [0,-1] + 0.5[-1,1] = [-0.5,-0.5]; vs g0: d=-0.5 -> + 0.5[1,0] = [0, -0.5]
    #   sum = [0.5, -0.5]
    orders_a = [[1, 2], [0, 2], [1, 0]]
    assert torch.allclose(project_conflicting(g, orders_a), torch.tensor([[0.5, 0.0], [0.0, 0.0], [0.0, -0.5]]))
    assert torch.allclose(pcgrad(g, orders=orders_a), torch.tensor([0.5, -0.5]))
    # orders B (reversed): task0 (2, 1), task1 (2, 0), task2 (0, 1)
    #   g0': vs g2: d=0 no-op; vs g1: d=-1 -> [0.5, 0.5]
    #   g1': vs g2: d=-1 -> [-1,1] + [0,-1] = [-1, 0]; vs g0: d=-1 -> + [1,0] = [0, 0]
    #   g2': vs g0: d=0 no-op; vs g1: d=-1 -> [-0.5, -0.5]
    #   sum = [0, 0]
    orders_b = [[2, 1], [2, 0], [0, 1]]
    assert torch.allclose(pcgrad(g, orders=orders_b), torch.tensor([0.0, 0.0]), atol=1e-7)


def test_random_order_comes_from_generator():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    orders = random_orders(3, torch.Generator().manual_seed(7))
    assert all(sorted(o) == [j for j in range(3) if j != i] for i, o in enumerate(orders))
    assert torch.equal(pcgrad(g, torch.Generator().manual_seed(7)), pcgrad(g, orders=orders))


def test_zero_gradient():
    g = torch.tensor([[0.0, 0.0], [-1.0, 1.0], [1.0, 0.0]])
    out = project_conflicting(g, [[1, 2], [0, 2], [0, 1]])
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(2))  # a zero gradient stays zero
    # Tasks 1 and 2 ignore the zero task and project only against each other (as in the 2-task case).
    assert torch.allclose(out[1:], torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
    assert torch.equal(pcgrad(torch.zeros(3, 4)), torch.zeros(4))


def test_matches_literal_algorithm_on_random_gradients():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        g = torch.randn(5, 64, generator=gen, dtype=torch.float64)
        orders = random_orders(5, gen)
        assert torch.allclose(project_conflicting(g, orders), reference_pcgrad(g, orders))


def test_two_task_projection_removes_conflict():
    gen = torch.Generator().manual_seed(1)
    conflicted = 0
    for _ in range(50):
        g = torch.randn(2, 16, generator=gen)
        conflicted += bool(torch.dot(g[0], g[1]) < 0)
        out = project_conflicting(g)
        # After projection each g_i' has non-negative dot with the other ORIGINAL gradient.
        assert torch.dot(out[0], g[1]) >= -1e-5
        assert torch.dot(out[1], g[0]) >= -1e-5
    assert conflicted > 0  # the property was actually exercised


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        pcgrad(torch.zeros(4))
    with pytest.raises(ValueError):
        pcgrad(torch.zeros(3, 2), orders=[[1, 2], [0, 2], [0, 0]])


def test_conflict_stats():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    stats = conflict_stats(g, names=["math", "code", "chat", "empty"])
    c = 2**-0.5
    assert stats["pairs"]["math,code"] == pytest.approx(-c)
    assert stats["pairs"]["math,chat"] == pytest.approx(0.0)
    assert stats["pairs"]["code,chat"] == pytest.approx(c)
    assert stats["pairs"]["math,empty"] == 0.0  # zero gradient: cosine defined as 0, no conflict
    assert stats["num_pairs"] == 6
    assert stats["conflict_fraction"] == pytest.approx(1 / 6)
    assert stats["cosine"][0][1] == stats["cosine"][1][0] == pytest.approx(-c)
    assert stats["cosine"][2][2] == pytest.approx(1.0)
    assert list(conflict_stats(g[:2])["pairs"]) == ["0,1"]
    assert conflict_stats(g[:1])["conflict_fraction"] == 0.0


# ---- sharded: two gloo processes, each holding half of every task's gradient ----

SEED = 1234


def _sharded_worker(rank: int, world: int, init_file: str, grads: torch.Tensor, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shard = grads.chunk(world, dim=1)[rank]
        part = pcgrad(shard, torch.Generator().manual_seed(SEED), dot=distributed_dot)
        stats = conflict_stats(shard, dot=distributed_dot)
        torch.save({"part": part, "stats": stats}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_sharded_matches_single_process(tmp_path):
    world = 2
    grads = torch.randn(4, 10, generator=torch.Generator().manual_seed(3))
    grads[1] = -grads[0] + 0.1 * grads[1]  # make sure there is a strong conflict to project
    mp.spawn(_sharded_worker, args=(world, str(tmp_path / "init"), grads, str(tmp_path)), nprocs=world, join=True)

    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    expected = pcgrad(grads, torch.Generator().manual_seed(SEED))
    assert not torch.allclose(expected, grads.sum(0))  # projection actually happened
    assert torch.allclose(torch.cat([r["part"] for r in results]), expected, atol=1e-6)
    for r in results:
        assert r["stats"]["pairs"] == pytest.approx(conflict_stats(grads)["pairs"])
