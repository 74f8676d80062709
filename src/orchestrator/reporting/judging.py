"""The report's judge section: what an LLM (or rule) judge said about an inference experiment's
predictions. Accuracy by model and tag domain, the `<CN_/UN_DOMAIN>` tag counts, items without a
verdict (and why), the judge's calls / retries / back-off per run, and a question × model results
matrix of the verdicts. Pure: Results in, plain data out."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from orchestrator.reporting.formatting import num
from orchestrator.reporting.sweep import results_matrix
from orchestrator.reporting.table import Example, Judged, Results

RUN_METRICS = ("n", "correct", "incorrect", "no_verdict", "accuracy", "calls", "retries", "backoff_s", "wall_time_s")
TOP_REASONS = 5


def _as_example(j: Judged) -> Example:
    return Example(j.run, j.model, j.task, j.domain, j.id, None, j.correct, None, None, None, None, None)


def _tags(res: Results) -> dict[tuple[str, str], Counter]:
    """(model, tag domain) → counts of CN (judged correct), UN (not) and none (no verdict): from
    the judged records, else from the summaries' per-domain counts."""
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    if res.judged:
        for j in res.judged:
            counts[(j.model, j.domain)]["CN" if j.correct else "UN" if j.correct is False else "none"] += 1
        return counts
    per: dict[tuple[str, str, str], dict[str, float | None]] = defaultdict(dict)
    for r in res.of("judge"):
        if r.domain:
            per[(r.arm, r.run, r.domain)][r.metric] = r.value
            per[(r.arm, r.run, r.domain)]["n"] = r.n
    for (model, _, dom), v in per.items():
        n, cn, none = int(v.get("n") or 0), int(v.get("correct") or 0), int(v.get("no_verdict") or 0)
        counts[(model, dom)].update(CN=cn, UN=n - cn - none, none=none)
    return counts


def _accuracy(c: Counter) -> float | None:
    judged = c["CN"] + c["UN"]
    return c["CN"] / judged if judged else None


def section(res: Results) -> dict[str, Any] | None:
    rows = res.of("judge")
    if not rows and not res.judged:
        return None
    runs: dict[str, dict[str, Any]] = {}
    for r in rows:
        if not r.domain:
            run = runs.setdefault(r.run, {"run": r.run, "model": r.arm, "task": r.task, "judge": r.detail})
            run[r.metric], run["n"] = r.value, r.n
    run_rows = [{**{k: None for k in RUN_METRICS}, **runs[k]} for k in sorted(runs)]
    counts = _tags(res)
    models = sorted({m for m, _ in counts})
    domains = sorted({d for _, d in counts})
    tags = [
        {
            "model": m,
            "domain": d,
            "n": sum(c.values()),
            "cn": c["CN"],
            "un": c["UN"],
            "none": c["none"],
            "accuracy": _accuracy(c),
        }
        for (m, d), c in sorted(counts.items())
    ]
    by_model = {m: sum((c for (mm, _), c in counts.items() if mm == m), Counter()) for m in models}
    pivot = [
        {
            "model": m,
            "cells": [_accuracy(counts[(m, d)]) if (m, d) in counts else None for d in domains],
            "all": _accuracy(by_model[m]),
            "n": sum(by_model[m].values()),
        }
        for m in models
    ]
    reasons = Counter((j.error or "no reason recorded")[:120] for j in res.judged if j.correct is None)
    total = lambda k: sum((r[k] or 0) for r in run_rows)  # noqa: E731
    return {
        "runs": run_rows,
        "models": models,
        "domains": domains,
        "accuracy": pivot,
        "tags": tags,
        "no_verdict": sum(c["none"] for c in counts.values()),
        "n": sum(sum(c.values()) for c in counts.values()),
        "reasons": [{"reason": k, "n": v} for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))][
            :TOP_REASONS
        ],
        "calls": int(total("calls")),
        "retries": int(total("retries")),
        "backoff_s": float(total("backoff_s")),
        "matrix": results_matrix([_as_example(j) for j in res.judged], models) if res.judged else None,
    }


def recommendations(judge: dict[str, Any]) -> list[str]:
    recs = []
    ranked = sorted((p for p in judge["accuracy"] if p["all"] is not None), key=lambda p: (-p["all"], p["model"]))
    if len(ranked) > 1:
        recs.append(f"Best model by the judge: {ranked[0]['model']} (accuracy {num(ranked[0]['all'])}).")
    if judge["no_verdict"]:
        top = judge["reasons"][0]["reason"] if judge["reasons"] else "see judged.jsonl"
        recs.append(
            f"{judge['no_verdict']} of {judge['n']} judged item(s) have no verdict (most often: {top}): "
            "check the judge endpoint and prompt; their tags are missing."
        )
    if judge["calls"] and judge["retries"] > 0.2 * judge["calls"]:
        recs.append(
            f"The judge endpoint pushed back: {judge['retries']} retries over {judge['calls']} calls "
            f"({num(judge['backoff_s'], 1)} s of back-off): lower num_workers or raise its rate limit."
        )
    return recs
