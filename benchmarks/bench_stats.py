"""The statistics of a report over 100,000 per-example records (goal: under 2 s in all): McNemar's
exact test, the stratified paired bootstrap (0/1 and F1-like scores) and the WattBot bootstrap CIs,
each beside what it replaced or the library it is checked against; CPU seconds and ratios are printed.

    python benchmarks/bench_stats.py           # 100,000 records per arm, 20 tasks
    python benchmarks/bench_stats.py --smoke   # 2,000 records: seconds
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np


def clock(fn, *args, **kwargs) -> tuple[float, object]:
    """CPU seconds (single-threaded work: the shared machine's load does not count) and the result."""
    start = time.process_time()
    out = fn(*args, **kwargs)
    return time.process_time() - start, out


def old_binomial_two_sided(k: int, n: int) -> float:
    """The pure-Python binomial sum McNemar's test used before scipy.stats.binomtest."""
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n)


def arms(n: int, tasks: int, rng: np.random.Generator, f1_like: bool) -> list[tuple[dict, dict]]:
    per = n // tasks
    out = []
    for t in range(tasks):
        if f1_like:
            a, b = rng.random(per).round(2), np.clip(rng.random(per) + 0.02, 0, 1).round(2)
        else:
            a, b = (rng.random(per) < 0.6).astype(float), (rng.random(per) < 0.62).astype(float)
        ids = [f"t{t}_{i}" for i in range(per)]
        out.append((dict(zip(ids, a.tolist())), dict(zip(ids, b.tolist()))))
    return out


def main() -> None:
    from common import Figures
    from scipy import stats

    from orchestrator.scoring import wattbot
    from orchestrator.scoring.significance import N_BOOT, SEED, mcnemar, paired_bootstrap

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="2,000 records: a check that it runs, in seconds")
    args = p.parse_args()
    n, tasks = (2_000, 4) if args.smoke else (100_000, 20)
    discordant = 2_000 if args.smoke else 20_000
    rng = np.random.default_rng(0)
    binary, f1_like = arms(n, tasks, rng, False), arms(n, tasks, rng, True)
    rows = [
        {"value_accuracy": float(v), "ref_overlap": r, "na_recall": None if i % 10 else float(v)}
        for i, (v, r) in enumerate(zip(rng.random(n) < 0.7, rng.choice([0.0, 0.5, 1.0], n)))
    ]
    print(f"{n:,} per-example records per arm, {tasks} tasks")
    figures = Figures("stats", args.smoke)

    t_mc, mc = clock(mcnemar, binary)
    wins = discordant // 2 + discordant // 50
    t_new, p_new = clock(
        lambda: (
            mcnemar(
                [
                    (
                        {str(i): float(i >= wins) for i in range(discordant)},
                        {str(i): float(i < wins) for i in range(discordant)},
                    )
                ]
            ).p
        )
    )
    t_old, p_old = clock(old_binomial_two_sided, wins, discordant)
    assert math.isclose(p_new, p_old, rel_tol=1e-9), (p_new, p_old)
    print(f"McNemar, {n:,} pairs ({mc.b_wins + mc.a_wins:,} discordant): {t_mc:.3f} s")
    print(
        f"  p-value on {discordant:,} discordant pairs: binomtest {t_new:.4f} s vs the old binomial sum "
        f"{t_old:.3f} s (×{t_old / t_new:,.0f} faster, same p = {p_new:.3g})"
    )

    t_boot, iv = clock(paired_bootstrap, binary)
    samples = tuple(np.array([b[k] - a[k] for k in a]) for a, b in binary)
    t_scipy, ref = clock(
        stats.bootstrap,
        samples,
        lambda *s, axis=-1: np.mean([x.mean(axis=axis) for x in s], axis=0),
        n_resamples=N_BOOT,
        method="percentile",
        vectorized=True,
        batch=max(1, 2_000_000 // (n // tasks) // tasks),
        rng=np.random.default_rng(SEED),
    )
    ci = ref.confidence_interval
    print(
        f"paired bootstrap, 0/1 scores ({N_BOOT} resamples): {t_boot:.3f} s, [{iv.low:.4f}, {iv.high:.4f}]; "
        f"scipy.stats.bootstrap {t_scipy:.3f} s, [{ci.low:.4f}, {ci.high:.4f}] (×{t_scipy / t_boot:,.0f})"
    )
    t_f1, iv_f1 = clock(paired_bootstrap, f1_like)
    print(f"paired bootstrap, F1-like scores (2 decimals): {t_f1:.3f} s, [{iv_f1.low:.4f}, {iv_f1.high:.4f}]")
    t_wb, ci_wb = clock(wattbot.bootstrap_ci, rows)
    print(f"WattBot bootstrap CIs, {n:,} rows: {t_wb:.3f} s (overall {ci_wb['overall']})")
    # a report runs McNemar and the bootstrap on 0/1 scores, the bootstrap alone on others
    for what, total in (
        ("0/1 scores (McNemar + bootstrap + WattBot CIs)", t_mc + t_boot + t_wb),
        ("F1-like scores (bootstrap)", t_f1),
    ):
        figures.add(f"statistics of a report on {what}, {n:,} records, CPU", total, ("<=", 2.0), " s")
    figures.add(f"McNemar p-value on {discordant:,} discordant pairs: old binomial sum / binomtest", t_old / t_new)
    figures.add("paired bootstrap on 0/1 scores: scipy.stats.bootstrap / ours", t_scipy / t_boot)
    figures.save()


if __name__ == "__main__":
    main()
