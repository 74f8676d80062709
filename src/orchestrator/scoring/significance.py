"""Paired bootstrap over per-example scores: is arm B's difference from arm A real or noise?

Examples are paired by id (both arms answered the same question), so the question-to-question
variance cancels. For a group of tasks (a domain) the statistic is the macro average of the
per-task mean differences, and each bootstrap replicate resamples the examples of every task
independently (stratified), matching how the domain score averages its tasks. The seed is fixed:
the same inputs give the same interval, and so the same report.

Too few pairs give no verdict. With a single pair every replicate is that pair: a zero-width
interval that "excludes 0" whatever the difference. A task with fewer than MIN_PAIRS paired
examples makes the whole interval "not enough data" (`Interval.enough` false, no bounds, never
significant). MIN_PAIRS = 6 is the fewest pairs at which a test at ALPHA = 0.05 can call any
difference at all: below it even a unanimous one (every pair better) is not significant by a
two-sided sign test (2 · 0.5^5 = 0.0625 > 0.05), while the bootstrap would call it certain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
SEED = 20240601
ALPHA = 0.05
MIN_PAIRS = 6  # per task; see the module docstring


@dataclass(frozen=True)
class Interval:
    delta: float  # observed difference B - A (macro mean over tasks)
    low: float | None  # (ALPHA/2, 1-ALPHA/2) percentile interval of the difference; None: too few pairs
    high: float | None
    n: int  # paired examples used

    @property
    def enough(self) -> bool:
        """Enough pairs (MIN_PAIRS in every task) for the interval to mean anything."""
        return self.low is not None and self.high is not None

    @property
    def significant(self) -> bool:
        """The interval excludes 0: a difference this size is unlikely to be resampling noise."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def paired_bootstrap(
    tasks: Sequence[tuple[Mapping[str, float], Mapping[str, float]]],
    n_boot: int = N_BOOT,
    seed: int = SEED,
    alpha: float = ALPHA,
    min_pairs: int = MIN_PAIRS,
) -> Interval | None:
    """`tasks`: per task, (scores of A by example id, scores of B by example id).

    Only ids present in both arms count. None when no task has a paired example; an Interval
    without bounds (`enough` false) when a task has fewer than `min_pairs`."""
    rng = np.random.default_rng(seed)
    diffs = []
    for a, b in tasks:
        ids = sorted(a.keys() & b.keys())
        if ids:
            diffs.append(np.fromiter((b[i] - a[i] for i in ids), dtype=np.float64, count=len(ids)))
    if not diffs:
        return None
    delta, n = float(np.mean([d.mean() for d in diffs])), sum(len(d) for d in diffs)
    if min(len(d) for d in diffs) < min_pairs:
        return Interval(delta, None, None, n)
    boots = []
    for d in diffs:
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
    boot = np.mean(boots, axis=0)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Interval(delta, float(low), float(high), n)
