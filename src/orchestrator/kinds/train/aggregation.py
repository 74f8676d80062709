"""Multi-task gradient aggregation (`mtl.method`) from the Gramian of the task gradients.

Every method offered is one of torchjd's weightings: a function of the [T, T] Gramian G = J J^T of
the task gradients J [T, P] that returns task weights w [T]; the update direction is w @ J. Under
FSDP2 or with several learners each rank holds a slice J_r [T, P_r] of every task gradient: it forms
J_r J_r^T, ONE all-reduce of that [T, T] matrix gives G on every rank, every rank computes the same
w, and each combines its own slice, w @ J_r. No rank ever holds a full gradient, and the extra
communication per step is one T x T all-reduce.

Random methods (PCGrad's task order, random loss weighting) draw from the global torch RNG; each
call runs under a forked RNG seeded from `generator` (seeded alike on every rank, saved with the
trainer state), so ranks agree and a seed reproduces a run. Stateful methods (GradVac, Nash-MTL) keep
their state in memory: a resumed run starts it afresh.

Methods that need the gradients themselves, not only their inner products, are refused: they
cannot run on shards (REFUSED says why for each).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from orchestrator.kinds.train.methods import METHODS, check_method


def make_weighting(name: str, num_tasks: int, options: dict[str, Any] | None = None):
    """The torchjd weighting for `mtl.method`, with its defaults updated by `mtl.options`."""
    import torchjd.aggregation as jd

    check_method(name)
    m = METHODS[name]
    kwargs = {**m.defaults, **(options or {})}
    if name == "nash_mtl":
        return jd.NashMTL(n_tasks=num_tasks, **kwargs).weighting
    return getattr(jd, m.torchjd)(**kwargs)


def gramian(grads: torch.Tensor, group: dist.ProcessGroup | None = None, distributed: bool = False) -> torch.Tensor:
    """G = J J^T of the task gradients J [T, P] (this rank's slice when `distributed`: one all-reduce
    sums the slices' contributions). Accumulated in >= fp32: conflicts are sign-sensitive."""
    j = grads.to(torch.promote_types(grads.dtype, torch.float32))
    g = j @ j.T
    if distributed:
        dist.all_reduce(g, op=dist.ReduceOp.SUM, group=group)
    return g


def _square_root(g: torch.Tensor) -> torch.Tensor:
    """A [T, T] matrix M with M M^T = G (G is PSD): what a Matrix weighting may be fed instead of J
    when, like Nash-MTL's, it depends on J only through J J^T."""
    eigenvalues, vectors = torch.linalg.eigh(g)
    return vectors * eigenvalues.clamp_min(0).sqrt()


class Aggregator:
    """One arm's aggregation: Gramian -> weights, identical on every rank."""

    def __init__(self, method: str, num_tasks: int, seed: int, options: dict[str, Any] | None = None):
        check_method(method)
        self.method, self.num_tasks, self.options = method, num_tasks, options or {}
        # one weighting per number of tasks present (a minibatch may lack a domain); stateful
        # methods keep their state per count
        self._weightings: dict[int, Any] = {}
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def weights(self, g: torch.Tensor) -> torch.Tensor:
        """Task weights [T] from the Gramian [T, T] (float64, on the CPU: it is tiny)."""
        t = g.shape[0]
        if t not in self._weightings:
            self._weightings[t] = make_weighting(self.method, t, self.options)
        g64 = g.detach().to("cpu", torch.float64)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))  # drawn always: resumes replay
        if not bool((g64.diagonal() > 0).any()):
            # every task gradient is zero (e.g. GRPO groups whose rewards all tie): the update is zero
            # whatever the weights, and some methods divide by the Gramian's norm (Nash-MTL)
            return torch.ones(t, dtype=torch.float64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            w = self._weightings[t](g64 if METHODS[self.method].gramian else _square_root(g64))
        if not bool(torch.isfinite(w).all()):
            raise FloatingPointError(
                f"mtl.method {self.method}: non-finite task weights {w.tolist()} from Gramian {g64.tolist()}"
            )
        return w.to(torch.float64)

    @torch.no_grad()
    def combine(self, grads: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(update direction w @ grads [P] — this rank's slice when sharded —, weights w [T])."""
        w = self.weights(g)
        return w.to(grads.device, grads.dtype) @ grads, w


@torch.no_grad()
def conflict_stats(g: torch.Tensor, names: Sequence[str] | None = None) -> dict:
    """Pairwise cosine similarities of the task gradients, from their Gramian g [T, T].

    Returns {"cosine": [T][T] nested list, "pairs": {"a,b": cos for a < b}, "conflict_fraction":
    share of pairs with cos < 0, "num_pairs"}. Pairs are keyed by `names` if given, else by index.
    A pair involving a zero gradient has cosine 0.0 (undefined, and not a conflict).
    """
    t = g.shape[0]
    if names is not None and len(names) != t:
        raise ValueError(f"got {len(names)} names for {t} task gradients")
    labels = list(names) if names is not None else [str(i) for i in range(t)]
    g = g.double()
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
