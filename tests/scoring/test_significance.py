"""The paired tests of scoring/significance.py: McNemar's exact test (scipy's binomtest) against
hand-computed binomial p-values and exact integer sums, its edge cases, the rule it shares with the
paired bootstrap (too few pairs: no verdict), and the bootstrap's intervals against scipy.stats.bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from orchestrator.scoring.significance import (
    MIN_PAIRS,
    Interval,
    McNemar,
    NotBinaryError,
    binomial_two_sided,
    bootstrap_means,
    mcnemar,
    paired_bootstrap,
    paired_test,
)


def pairs(a: list[int], b: list[int], prefix: str = "q") -> tuple[dict[str, float], dict[str, float]]:
    return ({f"{prefix}{i}": float(x) for i, x in enumerate(a)}, {f"{prefix}{i}": float(y) for i, y in enumerate(b)})


def discordant(b_wins: int, a_wins: int, ties: int = 0) -> tuple[dict[str, float], dict[str, float]]:
    """b_wins examples only B gets right, a_wins only A, `ties` both right."""
    a = [0] * b_wins + [1] * a_wins + [1] * ties
    b = [1] * b_wins + [0] * a_wins + [1] * ties
    return pairs(a, b)


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (0, 6, 2 / 64),  # 2 * C(6,0) / 2^6 = 0.03125: the fewest pairs a unanimous result is significant
        (0, 5, 2 / 32),  # 0.0625: not significant
        (2, 10, 2 * (1 + 10 + 45) / 1024),  # 0.109375
        (8, 10, 2 * (1 + 10 + 45) / 1024),  # symmetric
        (1, 9, 2 * (1 + 9) / 512),  # 0.0390625
        (5, 10, 1.0),  # 2 * P(X <= 5) > 1: capped
        (0, 0, 1.0),  # no trials: no evidence
    ],
)
def test_binomial_two_sided_by_hand(k, n, p):
    assert binomial_two_sided(k, n) == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(980, 2000), (1050, 2000), (1100, 2000), (0, 40), (17, 40)])
def test_binomial_two_sided_against_the_exact_integer_sum(k, n):
    exact = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n)
    assert binomial_two_sided(k, n) == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_mcnemar_on_20000_discordant_pairs():
    r = mcnemar([discordant(10_300, 9_700)])
    assert r is not None and r.b_wins + r.a_wins == 20_000
    # normal approximation of the same test: z = (10300 - 10000) / sqrt(20000 / 4) = 4.24
    assert r.p == pytest.approx(2 * stats.norm.sf(300 / math.sqrt(5000)), rel=0.05) and r.direction == 1


@pytest.mark.parametrize("continuous", [False, True])
def test_bootstrap_interval_agrees_with_scipy(continuous):
    rng = np.random.default_rng(3)
    n = 2000
    a = rng.random(n) if continuous else (rng.random(n) < 0.6).astype(float)
    b = np.clip(a + rng.normal(0.03, 0.2, n), 0, 1) if continuous else (rng.random(n) < 0.65).astype(float)
    iv = paired_bootstrap([({str(i): x for i, x in enumerate(a)}, {str(i): y for i, y in enumerate(b)})], n_boot=4000)
    ref = stats.bootstrap(
        (b - a,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(0)
    ).confidence_interval
    width = ref.high - ref.low
    assert iv is not None and iv.low == pytest.approx(ref.low, abs=0.1 * width)
    assert iv.high == pytest.approx(ref.high, abs=0.1 * width)


def test_bootstrap_means_has_the_resampling_distribution():
    # three distinct rows (multinomial draws) and all-distinct rows (index draws) alike: the
    # resampled means centre on the sample mean with the spread sd / sqrt(n)
    rng = np.random.default_rng(5)
    for column in (rng.integers(-1, 2, 5000).astype(float), rng.normal(0, 1, 5000)):
        means = bootstrap_means(column[:, None], 3000, np.random.default_rng(1))[:, 0]
        assert means.mean() == pytest.approx(column.mean(), abs=0.1 * column.std() / math.sqrt(5000))
        assert means.std() == pytest.approx(column.std() / math.sqrt(5000), rel=0.1)


def test_mcnemar_verdict_and_direction():
    better = mcnemar([discordant(9, 1, ties=10)])  # p = 0.0215
    assert better is not None and better.p == pytest.approx(2 * (1 + 10) / 1024)
    assert better.enough and better.significant and better.direction == 1
    assert better.delta == pytest.approx(8 / 20)
    worse = mcnemar([discordant(1, 9, ties=10)])
    assert worse is not None and worse.significant and worse.direction == -1
    close = mcnemar([discordant(7, 3, ties=10)])  # p = 0.34: a better mean, no verdict
    assert close is not None and close.delta > 0 and not close.significant and close.direction == 0


def test_no_discordant_pairs_is_not_significant():
    same = mcnemar([pairs([1, 0, 1, 1, 0, 0, 1, 0], [1, 0, 1, 1, 0, 0, 1, 0])])
    assert same is not None and same.enough and (same.b_wins, same.a_wins, same.p) == (0, 0, 1.0)
    assert not same.significant and same.direction == 0 and same.delta == 0


def test_too_few_pairs_is_no_verdict_as_the_bootstrap():
    """Fewer than MIN_PAIRS paired examples in a task: not enough data for both tests, even when
    every pair goes one way; at MIN_PAIRS a unanimous difference is significant by both."""
    few = discordant(MIN_PAIRS - 1, 0)
    r, iv = mcnemar([few]), paired_bootstrap([few])
    assert r is not None and iv is not None
    assert (r.enough, r.significant, r.p) == (False, False, None) and not iv.enough
    enough = discordant(MIN_PAIRS, 0)
    assert mcnemar([enough]).significant and paired_bootstrap([enough]).significant  # type: ignore[union-attr]
    # one short task makes the whole domain "not enough data", as for the bootstrap
    r2 = mcnemar([discordant(20, 0), pairs([0, 1], [1, 1], prefix="x")])
    assert r2 is not None and not r2.enough and r2.n == 22
    assert mcnemar([({"a": 1.0}, {"b": 0.0})]) is None and mcnemar([]) is None  # nothing paired


def test_tasks_are_pooled_over_ids_present_in_both():
    t1 = discordant(5, 0, ties=3)
    t2 = ({**pairs([0, 0, 1], [1, 1, 1], prefix="y")[0], "only_a": 1.0}, pairs([0, 0, 1], [1, 1, 1], prefix="y")[1])
    r = mcnemar([t1, t2])
    assert r is not None and (r.b_wins, r.a_wins, r.n) == (7, 0, 11)
    assert r.p is None  # task 2 has 3 paired examples (< MIN_PAIRS)
    t2_full = pairs([0, 0, 1, 1, 0, 1], [1, 1, 1, 1, 0, 1], prefix="y")
    r = mcnemar([t1, t2_full])
    assert r is not None and r.p == pytest.approx(binomial_two_sided(0, 7)) and r.significant
    assert r.delta == pytest.approx((5 / 8 + 2 / 6) / 2)  # macro mean, as the bootstrap's


@pytest.mark.parametrize("score", [0.5, 2.0, math.nan, -1.0])
def test_non_binary_scores_are_refused(score):
    a, b = discordant(8, 0)
    b["q0"] = score
    with pytest.raises(NotBinaryError, match="0/1 per-example scores.*'q0'"):
        mcnemar([(a, b)])


def test_paired_test_dispatches_by_name():
    d = [discordant(9, 1, ties=10)]
    assert isinstance(paired_test(d, "mcnemar"), McNemar)
    assert isinstance(paired_test(d), Interval) and paired_test(d) == paired_bootstrap(d)
    with pytest.raises(ValueError, match="bootstrap, mcnemar"):
        paired_test(d, "ttest")  # type: ignore[arg-type]
