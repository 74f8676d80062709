"""Paired bootstrap over per-example scores: is arm B's difference from arm A real or noise?

Examples are paired by id (both arms answered the same question), so the question-to-question
variance cancels. For a group of tasks (a domain) the statistic is the macro average of the
per-task mean differences, and each bootstrap replicate resamples the examples of every task
independently (stratified), matching how the domain score averages its tasks. The seed is fixed:
the same inputs give the same interval, and so the same report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
SEED = 20240601
ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    delta: float  # observed difference B - A (macro mean over tasks)
    low: float  # (ALPHA/2, 1-ALPHA/2) percentile interval of the difference
    high: float
    n: int  # paired examples used

    @property
    def significant(self) -> bool:
        """The interval excludes 0: a difference this size is unlikely to be resampling noise."""
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    tasks: Sequence[tuple[Mapping[str, float], Mapping[str, float]]],
    n_boot: int = N_BOOT,
    seed: int = SEED,
    alpha: float = ALPHA,
) -> Interval | None:
    """`tasks`: per task, (scores of A by example id, scores of B by example id).

    Only ids present in both arms count. None when no task has a paired example."""
    rng = np.random.default_rng(seed)
    deltas, boots, n = [], [], 0
    for a, b in tasks:
        ids = sorted(a.keys() & b.keys())
        if not ids:
            continue
        d = np.fromiter((b[i] - a[i] for i in ids), dtype=np.float64, count=len(ids))
        # chunks of replicates keep memory at ~4M indices whatever the task size
        step = max(1, min(n_boot, 4_000_000 // len(d)))
        boots.append(
            np.concatenate(
                [
                    d[rng.integers(0, len(d), size=(min(step, n_boot - s), len(d)))].mean(axis=1)
                    for s in range(0, n_boot, step)
                ]
            )
        )
        deltas.append(d.mean())
        n += len(ids)
    if not deltas:
        return None
    boot = np.mean(boots, axis=0)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Interval(float(np.mean(deltas)), float(low), float(high), n)
