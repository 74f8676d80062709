"""PCGrad gradient surgery (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning", Alg. 1).

Works on flat per-task gradients `grads` of shape [T, P]. All inner products go through a
`dot(a, b)` callable, so the same code runs on a gradient sharded across processes: each rank
passes its slice [T, P_local] together with `distributed_dot`, gets the same projection
coefficients as the unsharded computation, and returns its slice [P_local] of the result.

Implementation note: every projected g_i' is a linear combination of the ORIGINAL gradients,
g_i' = sum_k C[i, k] g_k, so g_i' . g_j = C[i] @ G[:, j] with the Gram matrix G[a, b] = g_a . g_b.
We therefore compute G once (T(T+1)/2 dot calls, i.e. all the cross-rank communication happens
up front) and run Algorithm 1 on the small [T, T] coefficient matrix. The loop has no host syncs
(`torch.where` instead of Python `if`), and the [P]-sized work is a single [T] @ [T, P] product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

Dot = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def distributed_dot(a: torch.Tensor, b: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Dot product of two vectors sharded across the ranks of `group`.

    a, b: [P_local], this rank's slice. Returns a 0-d tensor holding the full dot product,
    identical on every rank. A collective: every rank must call it in the same order.
    """
    partial = torch.dot(a, b)  # fresh tensor, safe to reduce in place
    dist.all_reduce(partial, op=dist.ReduceOp.SUM, group=group)
    return partial


def gram(grads: torch.Tensor, dot: Dot | None = None) -> torch.Tensor:
    """Gram matrix of the task gradients: grads [T, P] -> [T, T], G[a, b] = dot(g_a, g_b)."""
    dot = dot or torch.dot
    t = grads.shape[0]
    # Accumulate in >= fp32 even for bf16/fp16 gradients: the conflict test is sign-sensitive.
    g = grads.new_zeros((t, t), dtype=torch.promote_types(grads.dtype, torch.float32))
    for a in range(t):  # fixed (a, b) order: with distributed_dot every rank issues the same collectives
        for b in range(a, t):
            g[a, b] = g[b, a] = dot(grads[a], grads[b])
    return g


def random_orders(num_tasks: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """For each task i, a random permutation of the other tasks (the visit order of Alg. 1).

    Ranks that must agree (sharded gradients) need generators seeded identically; with
    `generator=None` the global torch RNG is used, which is only safe if it is in sync too.
    """
    device = generator.device if generator is not None else "cpu"
    orders = []
    for i in range(num_tasks):
        others = [j for j in range(num_tasks) if j != i]
        perm = torch.randperm(len(others), generator=generator, device=device).tolist()
        orders.append([others[k] for k in perm])
    return orders


def _coefficients(g: torch.Tensor, orders: Sequence[Sequence[int]]) -> torch.Tensor:
    """Run Alg. 1 on the Gram matrix g [T, T]. Returns C [T, T] with g_i' = C[i] @ grads."""
    t = g.shape[0]
    if len(orders) != t or any(sorted(o) != [j for j in range(t) if j != i] for i, o in enumerate(orders)):
        raise ValueError(f"orders must give, for each of the {t} tasks, a permutation of the other tasks; got {orders}")
    sq_norm = g.diagonal()
    zero = g.new_zeros(())
    c = torch.eye(t, dtype=g.dtype, device=g.device)
    for i in range(t):
        for j in orders[i]:
            d = c[i] @ g[:, j]  # g_i' . g_j, against task j's ORIGINAL gradient
            # Project only on conflict; a zero-norm g_j has d == 0 anyway, but guard the division.
            conflict = (d < 0) & (sq_norm[j] > 0)
            coef = torch.where(conflict, d / torch.where(sq_norm[j] > 0, sq_norm[j], 1.0), zero)
            c[i, j] = c[i, j] - coef
    return c


@torch.no_grad()
def project_conflicting(
    grads: torch.Tensor,
    orders: Sequence[Sequence[int]] | None = None,
    generator: torch.Generator | None = None,
    dot: Dot | None = None,
) -> torch.Tensor:
    """The per-task projected gradients g_i' of Alg. 1: grads [T, P] -> [T, P].

    `orders[i]` is the visit order of the other tasks for task i; drawn from `generator` if None.
    """
    if grads.dim() != 2:
        raise ValueError(f"grads must be [T, P], got shape {tuple(grads.shape)}")
    if orders is None:
        orders = random_orders(grads.shape[0], generator)
    return _coefficients(gram(grads, dot), orders).to(grads.dtype) @ grads


@torch.no_grad()
def pcgrad(
    grads: torch.Tensor,
    generator: torch.Generator | None = None,
    dot: Dot | None = None,
    orders: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """PCGrad-combined update direction: grads [T, P] -> sum_i g_i' of shape [P].

    For each task i, g_i' starts as g_i; the other tasks j are visited in random order (from
    `generator`) and, if g_i' . g_j < 0 (g_j the ORIGINAL gradient), g_i' -= (g_i'.g_j)/||g_j||^2 g_j.
    `dot` defaults to torch.dot; use `distributed_dot` when each rank holds a slice [T, P_local]
    (then the result is this rank's slice [P_local], and `generator` must be seeded identically
    on all ranks). `orders` overrides the random visit orders (tests, reproducibility).
    """
    if grads.dim() != 2:
        raise ValueError(f"grads must be [T, P], got shape {tuple(grads.shape)}")
    if orders is None:
        orders = random_orders(grads.shape[0], generator)
    # sum_i C[i] @ grads == C.sum(0) @ grads: one [T] @ [T, P] product instead of [T, T] @ [T, P].
    return _coefficients(gram(grads, dot), orders).sum(0).to(grads.dtype) @ grads


@torch.no_grad()
def conflict_stats(
    grads: torch.Tensor,
    dot: Dot | None = None,
    names: Sequence[str] | None = None,
) -> dict:
    """Pairwise cosine similarities between task gradients grads [T, P] (sharded: pass distributed_dot).

    Returns {"cosine": [T][T] nested list, "pairs": {"a,b": cos for a < b}, "conflict_fraction":
    share of pairs with cos < 0, "num_pairs"}. Pairs are keyed by `names` if given, else by index.
    A pair involving a zero gradient has cosine 0.0 (undefined, and not a conflict).
    """
    t = grads.shape[0]
    if names is not None and len(names) != t:
        raise ValueError(f"got {len(names)} names for {t} task gradients")
    labels = list(names) if names is not None else [str(i) for i in range(t)]
    g = gram(grads, dot).double()
    norm = g.diagonal().clamp_min(0).sqrt()
    denom = torch.outer(norm, norm)
    cos = torch.where(denom > 0, g / torch.where(denom > 0, denom, 1.0), 0.0).clamp(-1.0, 1.0)
    cos_list = cos.tolist()
    pairs = {f"{labels[a]},{labels[b]}": cos_list[a][b] for a in range(t) for b in range(a + 1, t)}
    conflicts = sum(v < 0 for v in pairs.values())
    return {
        "cosine": cos_list,
        "pairs": pairs,
        "conflict_fraction": conflicts / len(pairs) if pairs else 0.0,
        "num_pairs": len(pairs),
    }
