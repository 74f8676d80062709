"""Paired tests over per-example scores: is B's difference from A real or noise? Two tests, the
paired bootstrap (any scores) and the exact McNemar test (0/1 scores); `paired_test` picks one by
name (`early_stopping.significance_test`: the trainer's held-out decisions and the report's
checkpoint choice run the same test).

Examples are paired by id (both arms answered the same question), so the question-to-question
variance cancels. For a group of tasks (a domain) the statistic is the macro average of the
per-task mean differences, and each bootstrap replicate resamples the examples of every task
independently (stratified), matching how the domain score averages its tasks. The seed is fixed:
the same inputs give the same interval, and so the same report.

Paired bootstrap: too few pairs give no verdict. With a single pair every replicate is that pair: a zero-width
interval that "excludes 0" whatever the difference. A task with fewer than MIN_PAIRS paired
examples makes the whole interval "not enough data" (`Interval.enough` false, no bounds, never
significant). MIN_PAIRS = 6 is the fewest pairs at which a test at ALPHA = 0.05 can call any
difference at all: below it even a unanimous one (every pair better) is not significant by a
two-sided sign test (2 · 0.5^5 = 0.0625 > 0.05), while the bootstrap would call it certain.

McNemar (exact): with 0/1 scores only the discordant pairs (one right, the other wrong) carry
information; under "no difference" B wins each of them with probability 1/2, so the number B
wins is Binomial(discordant, 1/2) and the two-sided p-value is 2 · P(X <= min(wins, losses)),
capped at 1: scipy.stats.binomtest's (milliseconds for 20,000 discordant pairs). Pairs of all the tasks are pooled
(the test is on the example level, not the macro average the bootstrap resamples); the same
MIN_PAIRS rule per task gives "not enough data", so both tests refuse a verdict on the same
inputs, and no discordant pair at all is p = 1, never significant. A score other than 0 or 1 is
an error (`NotBinaryError`): the test would silently mean something else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

N_BOOT = 2000
SEED = 20240601
ALPHA = 0.05
MIN_PAIRS = 6  # per task; see the module docstring
TESTS = ("bootstrap", "mcnemar")
Test = Literal["bootstrap", "mcnemar"]
Pairs = Sequence[tuple[Mapping[str, float], Mapping[str, float]]]


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

    @property
    def direction(self) -> int:
        """+1: B significantly above A, -1: below, 0: no verdict either way."""
        return 0 if not self.significant else (1 if self.low is not None and self.low > 0 else -1)


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
    boot = np.mean([bootstrap_means(d[:, None], n_boot, rng)[:, 0] for d in diffs], axis=0)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Interval(delta, float(low), float(high), n)


def bootstrap_means(columns: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Column means of `n_boot` bootstrap resamples of the rows of `columns` (rows × columns):
    an (n_boot × columns) array.

    Rows with equal values are interchangeable, so how often each distinct row comes up in a
    resample is Multinomial(rows, its share): the same distribution as drawing row indices, at the
    cost of the distinct rows rather than all rows (0/1 scores have a handful of distinct rows
    however many examples: 100,000 pairs take milliseconds where scipy.stats.bootstrap, drawing
    indices, takes seconds). With many distinct rows (continuous scores) indices are drawn, ~4M
    at a time. tests/scoring/test_significance.py checks the intervals against scipy's."""
    n = len(columns)
    distinct, counts = np.unique(columns, axis=0, return_counts=True)
    if len(distinct) * 20 <= n:  # a multinomial draw costs ~20 index draws per category
        return rng.multinomial(n, counts / n, size=n_boot) @ distinct / n
    step = max(1, min(n_boot, 4_000_000 // n))
    return np.concatenate(
        [
            columns[rng.integers(0, n, size=(min(step, n_boot - s), n), dtype=np.int32)].mean(axis=1)
            for s in range(0, n_boot, step)
        ]
    )


class NotBinaryError(ValueError):
    """McNemar's test was given a per-example score other than 0 or 1."""


@dataclass(frozen=True)
class McNemar:
    delta: float  # observed difference B - A (macro mean over tasks, as the bootstrap's)
    b_wins: int  # discordant pairs B right, A wrong
    a_wins: int  # discordant pairs A right, B wrong
    p: float | None  # exact two-sided p-value; None: too few pairs (no verdict)
    n: int  # paired examples used
    alpha: float = ALPHA

    @property
    def enough(self) -> bool:
        return self.p is not None

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < self.alpha

    @property
    def direction(self) -> int:
        """+1: B significantly above A (wins more discordant pairs), -1: below, 0: no verdict."""
        return 0 if not self.significant else (1 if self.b_wins > self.a_wins else -1)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n trials at probability 1/2
    (`scipy.stats.binomtest(k, n, 0.5).pvalue`, which for p = 1/2 is 2 · P(X <= min(k, n-k))
    capped at 1); 1 when n is 0."""
    from scipy.stats import binomtest

    return 1.0 if n == 0 else float(binomtest(k, n, 0.5).pvalue)


def mcnemar(tasks: Pairs, alpha: float = ALPHA, min_pairs: int = MIN_PAIRS) -> McNemar | None:
    """Exact McNemar test of B against A over 0/1 per-example scores (see the module docstring).

    `tasks` as paired_bootstrap's. None when no task has a paired example; `p` None (`enough`
    false) when a task has fewer than `min_pairs`. NotBinaryError on a score other than 0 or 1."""
    b_wins = a_wins = n = 0
    means, smallest = [], None
    for a, b in tasks:
        ids = sorted(a.keys() & b.keys())
        if not ids:
            continue
        diff = 0.0
        for i in ids:
            x, y = a[i], b[i]
            if x not in (0, 1) or y not in (0, 1):
                bad = x if x not in (0, 1) else y
                raise NotBinaryError(f"McNemar's test needs 0/1 per-example scores; example {i!r} scored {bad!r}")
            b_wins += y > x
            a_wins += x > y
            diff += y - x
        means.append(diff / len(ids))
        n += len(ids)
        smallest = len(ids) if smallest is None else min(smallest, len(ids))
    if smallest is None:
        return None
    delta = sum(means) / len(means)
    p = None if smallest < min_pairs else binomial_two_sided(b_wins, b_wins + a_wins)
    return McNemar(delta, b_wins, a_wins, p, n, alpha)


def paired_test(tasks: Pairs, test: Test = "bootstrap") -> Interval | McNemar | None:
    """The named paired test of B against A (`enough`, `significant`, `direction`, `delta`, `n` on both)."""
    if test == "mcnemar":
        return mcnemar(tasks)
    if test == "bootstrap":
        return paired_bootstrap(tasks)
    raise ValueError(f"significance test {test!r}: one of {', '.join(TESTS)}")


def paired_p(tasks: Pairs, min_pairs: int = MIN_PAIRS) -> tuple[float, str] | None:
    """(two-sided p-value, test) of B against A on paired per-example scores: McNemar's exact test
    when every score is 0/1, else Wilcoxon's signed-rank test (scipy.stats.wilcoxon) on the pairs'
    differences; all tasks pooled. None with fewer than `min_pairs` pairs in a task."""
    diffs: list[float] = []
    for a, b in tasks:
        ids = sorted(a.keys() & b.keys())
        if len(ids) < min_pairs:
            return None
        diffs += [b[i] - a[i] for i in ids]
    if not diffs:
        return None
    try:
        mc = mcnemar(tasks, min_pairs=min_pairs)
        return (mc.p, "mcnemar") if mc is not None and mc.p is not None else None
    except NotBinaryError:
        pass
    if not any(diffs):
        return 1.0, "wilcoxon"  # identical scores: no evidence of a difference
    from scipy.stats import wilcoxon

    return float(wilcoxon(diffs).pvalue), "wilcoxon"


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate):
    the i-th smallest becomes max over j <= i of min(1, (m - j + 1) p_(j)). Same order as given.
    (scipy has no Holm; statsmodels' multipletests(method="holm") gives the same numbers.)"""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
