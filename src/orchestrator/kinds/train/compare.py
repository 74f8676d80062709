"""The training experiment's analyses (kind `train`; its rows and its evaluations' rows): arm
against baseline (paired bootstrap), learning curves with their best checkpoint and overfitting,
gradient-conflict diagnostics, and the recommendations they lead to. Pure: Results in, plain data out.

Definitions (also in docs/results-schema.md):
- compared checkpoint of an arm: its last evaluated one (highest epoch);
- domain score: the mean of its tasks' primary metrics (tasks present in both arms, for deltas);
- improvement / regression: the paired-bootstrap 95% interval of the difference excludes 0, in the
  metric's better / worse direction (metrics.METRICS decides the direction); fewer than
  significance.MIN_PAIRS paired examples in a task: "not enough data", never a verdict;
- best checkpoint: the best domain score over epochs (earliest on ties); overfitting: the last
  checkpoint is worse than that best by more than `overfit_threshold` (absolute);
- checkpoint choice (evaluation.every_save): the arm's reward-best and held-out-best checkpoints as
  its summary.json names them; a domain score's CI is the bootstrap of its per-example scores.
"""

from __future__ import annotations

import math
from collections import defaultdict

from orchestrator.reporting.table import Results, Row
from orchestrator.scoring.significance import (
    ALPHA,
    MIN_PAIRS,
    Interval,
    McNemar,
    NotBinaryError,
    holm,
    mcnemar,
    paired_bootstrap,
    paired_p,
)


def best_checkpoint(curve: list[tuple[int, float]], higher_is_better: bool = True) -> tuple[int, float] | None:
    """(epoch, value) of the best point of an epoch-sorted curve; the earliest on ties."""
    best = None
    for epoch, value in sorted(curve):
        if value is None or math.isnan(value):
            continue
        if best is None or (value > best[1] if higher_is_better else value < best[1]):
            best = (epoch, value)
    return best


def overfitting(
    curve: list[tuple[int, float]], higher_is_better: bool = True, threshold: float = 0.02
) -> tuple[bool, float]:
    """(flag, drop): the last point is worse than the best by more than `threshold`.

    The drop is measured at the last checkpoint, not the deepest dip, so a noisy dip the run
    recovered from is not flagged. `drop` is in the metric's units, positive = worse."""
    points = [(e, v) for e, v in sorted(curve) if v is not None and not math.isnan(v)]
    best = best_checkpoint(points, higher_is_better)
    if best is None or best[0] == points[-1][0]:
        return False, 0.0
    last = points[-1][1]
    drop = best[1] - last if higher_is_better else last - best[1]
    return drop > threshold, drop


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def arms_of(res: Results) -> list[str]:
    return sorted({r.arm for r in res.rows if r.source in ("train", "train_summary", "eval") and r.arm})


def _primary(res: Results) -> dict[tuple[str, str, str], Row]:
    """(arm, checkpoint, task) → the task's primary-metric row."""
    return {(r.arm, r.checkpoint, r.task): r for r in res.of("eval") if r.primary}


def _final_checkpoint(prim: dict, arm: str) -> str | None:
    cks = {(r.epoch if r.epoch is not None else -1, r.checkpoint) for (a, _, _), r in prim.items() if a == arm}
    return max(cks)[1] if cks else None


def _mark(iv: Interval | McNemar | None, hib: bool) -> str:
    """ "n/a" (no per-example data), "too few" (fewer than MIN_PAIRS pairs in a task), "" (not
    significant), "improvement" or "regression"."""
    if iv is None:
        return "n/a"
    if not iv.enough:
        return "too few"
    if not iv.direction:
        return ""
    return "improvement" if (iv.direction > 0) == hib else "regression"


def _against_baseline(prim: dict, baseline: str | None, at_least: int):
    """(baseline arm, its compared checkpoint, [(arm, compared checkpoint)] of the others) when at
    least `at_least` arms were evaluated; the baseline is `baseline`, else "baseline", else the first."""
    eval_arms = sorted({a for a, _, _ in prim})
    if len(eval_arms) < at_least:
        return None
    base = baseline if baseline in eval_arms else ("baseline" if "baseline" in eval_arms else eval_arms[0])
    return base, _final_checkpoint(prim, base), [(a, _final_checkpoint(prim, a)) for a in eval_arms if a != base]


def _paired_tasks(res: Results, prim: dict, base: tuple[str, str | None], other: tuple[str, str | None]):
    """(task, base row, other row, base scores by id, other scores by id) for every task both
    (arm, checkpoint) have a primary metric for, by domain then task."""
    for (a, c, task), ra in sorted(prim.items(), key=lambda kv: (kv[1].domain, kv[0][2])):
        if (a, c) != base or (*other, task) not in prim:
            continue
        pa = res.per_example.get((*base, task), {})
        yield task, ra, prim[(*other, task)], pa, res.per_example.get((*other, task), {})


def comparisons(res: Results, baseline: str | None = None) -> dict | None:
    """Each arm's last evaluated checkpoint against the baseline's, per task and per domain."""
    prim = _primary(res)
    picked = _against_baseline(prim, baseline, 2)
    if picked is None:
        return None
    base, base_ck, others = picked
    out = []
    for arm, ck in others:
        tasks, domains = [], defaultdict(list)
        for task, ra, rb, pa, pb in _paired_tasks(res, prim, (base, base_ck), (arm, ck)):
            iv = paired_bootstrap([(pa, pb)]) if pa and pb else None
            row = _delta_row(ra.value, rb.value, iv, ra.higher_is_better is not False)
            row.update(task=task, domain=ra.domain, metric=ra.metric)
            tasks.append(row)
            domains[ra.domain].append((ra, rb, pa, pb))
        dom_rows = []
        for dom, items in sorted(domains.items()):
            hib = items[0][0].higher_is_better is not False
            if any((i[0].higher_is_better is not False) != hib for i in items):
                res.warnings.append(
                    f"domain {dom!r} mixes metrics of opposite directions; its mean uses {items[0][0].metric}'s"
                )
            pairs = [(pa, pb) for _, _, pa, pb in items if pa and pb]
            iv = paired_bootstrap(pairs) if len(pairs) == len(items) else None
            row = _delta_row(_mean([i[0].value for i in items]), _mean([i[1].value for i in items]), iv, hib)
            row.update(domain=dom, tasks=len(items), metric=", ".join(sorted({i[0].metric for i in items})))
            dom_rows.append(row)
        out.append({"arm": arm, "checkpoint": ck, "tasks": tasks, "domains": dom_rows})
    return {"baseline": base, "baseline_checkpoint": base_ck, "arms": out, "min_pairs": MIN_PAIRS}


def arms_vs_baseline(res: Results, baseline: str | None = None) -> dict | None:
    """With three arms or more: every arm's last evaluated checkpoint against the baseline's on every
    task, as one family of tests corrected for multiple comparisons (Holm), and per arm its wins,
    ties and losses. A win (loss): the Holm-adjusted p-value is below ALPHA and the difference is in
    the metric's better (worse) direction; anything else is a tie; too few pairs are counted apart.
    The test is McNemar's on 0/1 scores, else Wilcoxon's signed-rank (significance.paired_p)."""
    prim = _primary(res)
    picked = _against_baseline(prim, baseline, 3)
    if picked is None:
        return None
    base, base_ck, others = picked
    rows = []
    for arm, ck in others:
        for task, ra, rb, pa, pb in _paired_tasks(res, prim, (base, base_ck), (arm, ck)):
            tested = paired_p([(pa, pb)]) if pa and pb else None
            delta = rb.value - ra.value if ra.value is not None and rb.value is not None else None
            rows.append(
                {
                    "arm": arm,
                    "checkpoint": ck,
                    "domain": ra.domain,
                    "task": task,
                    "metric": ra.metric,
                    "a": ra.value,
                    "b": rb.value,
                    "delta": delta,
                    "higher_is_better": ra.higher_is_better is not False,
                    "p": tested[0] if tested else None,
                    "test": tested[1] if tested else "",
                    "p_holm": None,
                    "outcome": "",
                }
            )
    tested_rows = [r for r in rows if r["p"] is not None]
    for r, adj in zip(tested_rows, holm([r["p"] for r in tested_rows])):
        r["p_holm"] = adj
    wtl = []
    for arm, _ in others:
        counts = {"arm": arm, "wins": 0, "ties": 0, "losses": 0, "too_few": 0}
        for r in (r for r in rows if r["arm"] == arm):
            if r["p"] is None or r["delta"] is None:
                r["outcome"] = "too few"
                counts["too_few"] += 1
            elif r["p_holm"] < ALPHA and r["delta"] != 0:
                better = (r["delta"] > 0) == r["higher_is_better"]
                r["outcome"] = "win" if better else "loss"
                counts["wins" if better else "losses"] += 1
            else:
                r["outcome"] = "tie"
                counts["ties"] += 1
        wtl.append(counts)
    return {
        "baseline": base,
        "baseline_checkpoint": base_ck,
        "alpha": ALPHA,
        "family": len(tested_rows),
        "rows": rows,
        "wtl": wtl,
    }


def _delta_row(a: float | None, b: float | None, iv: Interval | None, hib: bool) -> dict:
    delta = b - a if a is not None and b is not None else None
    rel = delta / abs(a) if delta is not None and a else None
    return {
        "a": a,
        "b": b,
        "delta": delta,
        "rel": rel,
        "low": iv.low if iv else None,
        "high": iv.high if iv else None,
        "n": iv.n if iv else None,
        "mark": _mark(iv, hib),
        "higher_is_better": hib,
    }


def _score(res: Results, prim: dict, arm: str, ck: str, tasks: list[str]) -> dict | None:
    """A checkpoint's domain score (mean of its tasks' primary metrics) and its 95% CI: the paired
    bootstrap of the per-example scores against zero (the same resampling as the deltas)."""
    rows = [prim.get((arm, ck, t)) for t in tasks]
    if any(r is None for r in rows):
        return None
    scores = [res.per_example.get((arm, ck, t), {}) for t in tasks]
    iv = paired_bootstrap([(dict.fromkeys(s, 0.0), s) for s in scores]) if all(scores) else None
    return {
        "checkpoint": ck,
        "value": _mean([r.value for r in rows if r is not None]),
        "low": iv.low if iv else None,
        "high": iv.high if iv else None,
    }


def checkpoint_choice(res: Results) -> dict | None:
    """Per arm (summary.json with evaluation.every_save): the reward-best (validation) and the
    held-out-best checkpoint, each one's per-domain held-out score with its CI, and whether the
    two differ: the paired bootstrap's CI of held-out-best − reward-best, and the verdict of the
    arm's configured test (summary.json evaluation.significance_test: bootstrap, or McNemar's
    exact test with its p-value)."""
    choices: dict[str, dict[str, Row]] = defaultdict(dict)
    for r in res.of("choice"):
        choices[r.arm][r.detail] = r
    if not choices:
        return None
    prim = _primary(res)
    out = []
    for arm, ch in sorted(choices.items()):
        rw, ho = ch.get("reward"), ch.get("heldout")
        test = res.paired_tests.get(arm, "bootstrap")
        domains: dict[str, set[str]] = defaultdict(set)
        hib: dict[str, bool] = {}
        for (a, _, task), r in prim.items():
            if a == arm:
                domains[r.domain].add(task)
                hib.setdefault(r.domain, r.higher_is_better is not False)
        rows = []
        for dom, task_set in sorted(domains.items()):
            tasks = sorted(task_set)
            a = _score(res, prim, arm, rw.checkpoint, tasks) if rw else None
            b = _score(res, prim, arm, ho.checkpoint, tasks) if ho else None
            iv, mc, pairs = None, None, []
            if a and b and rw and ho:
                pairs = [
                    (res.per_example.get((arm, rw.checkpoint, t), {}), res.per_example.get((arm, ho.checkpoint, t), {}))
                    for t in tasks
                ]
                if not all(p and q for p, q in pairs):
                    pairs = []
                iv = paired_bootstrap(pairs) if pairs else None
            row = _delta_row(a["value"] if a else None, b["value"] if b else None, iv, hib[dom])
            if test == "mcnemar":  # the verdict is McNemar's; the CI column stays the bootstrap's
                try:
                    mc = mcnemar(pairs) if pairs else None
                except NotBinaryError as e:
                    res.warnings.append(f"checkpoint choice of {arm}, domain {dom}: {e} (no McNemar verdict)")
                row.update(mark=_mark(mc, hib[dom]), p=mc.p if mc else None)
            row.update(domain=dom, tasks=len(tasks), reward=a, heldout=b)
            if rw and ho and rw.checkpoint == ho.checkpoint:
                row["mark"] = "same"
            rows.append(row)
        pick = {
            k: ({"checkpoint": c.checkpoint, "metric": c.metric, "value": c.value} if c else None)
            for k, c in (("reward", rw), ("heldout", ho))
        }
        same = bool(rw and ho and rw.checkpoint == ho.checkpoint)
        out.append({"arm": arm, **pick, "same": same, "test": test, "domains": rows})
    return {"arms": out, "min_pairs": MIN_PAIRS}


def _curves(res: Results) -> tuple[str, dict[str, dict[str, list[tuple[int, float]]]], dict[str, bool]]:
    """domain → arm → [(epoch, score)], from evaluations when there are any, else training validation."""
    curves: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    hib: dict[str, bool] = {}
    source = "evaluation"
    for r in _primary(res).values():
        if r.epoch is not None and r.value is not None:
            curves[r.domain or "all"][r.arm][r.epoch].append(r.value)
            hib.setdefault(r.domain or "all", r.higher_is_better is not False)
    if not curves:
        source = "training validation"
        for r in res.of("train"):
            if r.domain and r.metric == f"val/{r.domain}/reward" and r.value is not None:
                curves[r.domain][r.arm][r.epoch].append(r.value)
                hib.setdefault(r.domain, r.higher_is_better is not False)
    flat = {
        d: {a: sorted((e, sum(v) / len(v)) for e, v in eps.items()) for a, eps in sorted(arms.items())}
        for d, arms in sorted(curves.items())
    }
    return source, flat, hib


def _trained(curve: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Points that are checkpoints: epoch 0 is the validation before training (plotted, never chosen)."""
    return [p for p in curve if p[0] >= 1] or curve


def evolution(res: Results, threshold: float = 0.02) -> dict | None:
    """Per-domain learning curves of every arm, their best checkpoint and overfitting flags."""
    source, curves, hib = _curves(res)
    if not curves:
        return None
    rows = []
    for dom, arms in curves.items():
        for arm, curve in arms.items():
            trained = _trained(curve)
            best = best_checkpoint(trained, hib[dom])
            flag, drop = overfitting(trained, hib[dom], threshold)
            rows.append(
                {
                    "domain": dom,
                    "arm": arm,
                    "epochs": len(curve),
                    "best_epoch": best[0] if best else None,
                    "best": best[1] if best else None,
                    "last_epoch": curve[-1][0],
                    "last": curve[-1][1],
                    "drop": drop,
                    "overfit": flag,
                }
            )
    return {
        "source": source,
        "curves": curves,
        "rows": rows,
        "threshold": threshold,
        "higher_is_better": hib,
    }


def gradients(res: Results) -> dict | None:
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in res.of("train"):
        if r.metric.startswith("grad/") and r.value is not None:
            series[r.arm][r.metric].append((r.epoch, r.value))
    if not series:
        return None
    rows = []
    for arm, metrics in sorted(series.items()):
        for metric, pts in sorted(metrics.items()):
            vals = [v for _, v in sorted(pts)]
            rows.append(
                {
                    "arm": arm,
                    "metric": metric,
                    "mean": sum(vals) / len(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "last": vals[-1],
                    "epochs": len(vals),
                }
            )
    return {"rows": rows, "series": {a: dict(sorted(m.items())) for a, m in sorted(series.items())}}


def recommendations(cmp: dict | None, evo: dict | None) -> list[str]:
    recs = []
    if cmp:
        for c in cmp["arms"]:
            better = [d["domain"] for d in c["domains"] if d["mark"] == "improvement"]
            worse = [d["domain"] for d in c["domains"] if d["mark"] == "regression"]
            worse_tasks = [f"{t['task']} ({t['domain']})" for t in c["tasks"] if t["mark"] == "regression"]
            untested = [d["domain"] for d in c["domains"] if d["mark"] == "n/a"]
            too_few = [d["domain"] for d in c["domains"] if d["mark"] == "too few"]
            vs = f"**{c['arm']}** vs **{cmp['baseline']}**"
            if better and not worse:
                recs.append(f"Use {c['arm']}: {vs} improves {', '.join(better)} significantly and regresses no domain.")
            elif worse and not better:
                recs.append(
                    f"Keep {cmp['baseline']}: {vs} regresses {', '.join(worse)} significantly and improves none."
                )
            elif better and worse:
                recs.append(
                    f"Mixed: {vs} improves {', '.join(better)} but regresses {', '.join(worse)}; "
                    f"choose by the domains that matter."
                )
            else:
                recs.append(
                    f"No significant domain difference for {vs}: keep {cmp['baseline']} (the simpler arm) "
                    f"or evaluate on more examples."
                )
            if worse_tasks:
                recs.append(f"Regressing tasks under {c['arm']}: {', '.join(worse_tasks)}.")
            if untested:
                recs.append(
                    f"No per-example results for {', '.join(untested)} ({c['arm']}): differences there are untested."
                )
            if too_few:
                recs.append(
                    f"Too few paired examples in {', '.join(too_few)} ({c['arm']}; fewer than {MIN_PAIRS} in a "
                    f"task): not enough data for a verdict; evaluate on more examples."
                )
    if evo:
        by_arm: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for dom, arms in evo["curves"].items():
            sign = 1 if evo["higher_is_better"][dom] else -1
            for arm, curve in arms.items():
                for e, v in _trained(curve):
                    by_arm[arm][e].append(sign * v)
        n_dom = len(evo["curves"])
        for arm, eps in sorted(by_arm.items()):
            full = {e: sum(v) / len(v) for e, v in eps.items() if len(v) == n_dom}
            if full:
                e = max(sorted(full), key=lambda k: full[k])
                recs.append(f"Checkpoint for {arm}: epoch {e} (best mean over {n_dom} domain(s), {evo['source']}).")
        over = [f"{r['domain']} ({r['arm']}, peak epoch {r['best_epoch']})" for r in evo["rows"] if r["overfit"]]
        if over:
            recs.append(f"Overfitting after the peak: {', '.join(over)}: stop there or regularise.")
    return recs
