"""The report of the `judge` kind: the reader of judge runs (judged.jsonl, judge_summary.json: rows
of the results table, plus the judged records, `Results.judged`) and the "Judge" section: what an
LLM (or rule) judge said about an inference experiment's predictions. Accuracy by model and tag
domain, the `<CN_/UN_DOMAIN>` tag counts, items without a verdict (and why), the judge's calls /
retries / back-off per run, and a question × model results matrix of the verdicts. Pure: Results
in, plain data out; markdown: `report.md.j2`."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.files import first_by_id
from orchestrator.core.kinds import Section
from orchestrator.reporting.formatting import num
from orchestrator.reporting.matrix import matrix_csv, results_matrix
from orchestrator.reporting.readers import Reader
from orchestrator.reporting.table import Example, Judged, Results, Row, as_int, as_str, finite, relative

TEMPLATE = Path(__file__).with_name("report.md.j2")

# judge_summary.json counters → the direction a reader wants them (None: neither, a size)
JUDGE_METRICS = {
    "accuracy": True,
    "correct": True,
    "incorrect": False,
    "no_verdict": False,
    "calls": None,
    "retries": False,
    "backoff_s": False,
    "wall_time_s": False,
    "duplicates_in_input": False,
}


def is_judge_dir(d: Path) -> bool:
    return (d / paths.JUDGED_FILE).exists() or (d / paths.JUDGE_SUMMARY_FILE).exists()


def sections(res: Results, opts: Any) -> list[Section]:
    judge = section(res)
    if not judge:
        return [Section({"judge": None})]
    files = {"judge_matrix.csv": matrix_csv(judge["matrix"])} if judge["matrix"] else {}
    return [Section({"judge": judge}, TEMPLATE, order=70, recommendations=recommendations(judge), files=files)]


# --------------------------------------------------------------------------- reading


def read(reader: Reader, run_dir: Path) -> bool:
    """One judge run: its judged records, and rows from judge_summary.json (overall and per tag
    domain); without the summary (a run still going or killed), the counts come from the records."""
    if not is_judge_dir(run_dir):
        return False
    res, run = reader.res, run_dir.name
    judged = _judged(reader, run_dir)
    summary_path = run_dir / paths.JUDGE_SUMMARY_FILE
    s = reader.json_file(summary_path) if summary_path.exists() else None
    if s is None and not judged:
        return True
    model, task = _one_of({j.model for j in judged}, run, 0), _one_of({j.task for j in judged}, run, 2)
    if s is None:
        reader.warn(summary_path, "missing: counts recomputed from judged.jsonl (unfinished run?)")
        s = _summary_of(judged)
        file = relative(run_dir / paths.JUDGED_FILE)
    else:
        file = relative(summary_path)
    judge_name = str(s.get("judge") or next((j.judge for j in judged), ""))
    base = dict(arm=model, run=run, task=task, detail=judge_name, file=file)
    n = as_int(s.get("n"))
    for k in sorted(JUDGE_METRICS):
        if k in s:
            res.rows.append(
                Row("judge", reader.exp, metric=k, value=finite(s[k]), higher_is_better=JUDGE_METRICS[k], n=n, **base)
            )
    by_domain = s.get("by_domain") if isinstance(s.get("by_domain"), dict) else {}
    for dom, d in sorted(by_domain.items()):
        if not isinstance(d, dict):
            continue
        dn, correct, none = as_int(d.get("n")) or 0, as_int(d.get("correct")) or 0, as_int(d.get("no_verdict")) or 0
        values = {"accuracy": correct / (dn - none) if dn > none else None, "correct": correct, "no_verdict": none}
        for k, v in values.items():
            res.rows.append(
                Row(
                    "judge",
                    reader.exp,
                    metric=k,
                    value=finite(v),
                    higher_is_better=JUDGE_METRICS[k],
                    n=dn,
                    **{**base, "domain": dom},
                )
            )
    return True


def _one_of(values: set[str], run: str, part: int) -> str:
    """The model (part 0) or task (part 2) of a judge run: what its records say when they agree,
    else what the run's name `<model>__<task>` says."""
    values.discard("")
    if len(values) == 1:
        return next(iter(values))
    if "__" in run:
        return run.partition("__")[part]
    return run if part == 0 else ""


def _judged(reader: Reader, run_dir: Path) -> list[Judged]:
    path = run_dir / paths.JUDGED_FILE
    if not path.exists():
        return []
    model, _, task = run_dir.name.partition("__")
    out = []
    for r in first_by_id(rec for _, rec in reader.jsonl(path)):
        v = r.get("verdict") if isinstance(r.get("verdict"), dict) else {}
        if "id" not in r or not v:
            reader.warn(path, f"record {str(r)[:60]!r} has no id or verdict; skipped")
            continue
        correct = v.get("correct") if isinstance(v.get("correct"), bool) else None
        dom = str(r.get("tag_domain") or r.get("domain") or "")
        out.append(
            Judged(
                run=run_dir.name,
                model=str(r.get("model") or (model if task else run_dir.name)),
                task=str(r.get("task") or task),
                domain=dom,
                id=str(r["id"]),
                correct=correct,
                tag=None if correct is None else f"{'CN' if correct else 'UN'}_{dom}",
                judge=str(v.get("judge") or ""),
                attempts=as_int(v.get("attempts")),
                error=as_str(v.get("error")),
            )
        )
    reader.res.judged.extend(out)
    return out


def _summary_of(judged: list[Judged]) -> dict:
    """judge_summary.json's counts, from the judged records."""
    by_domain: dict[str, Counter] = {}
    for j in judged:
        c = by_domain.setdefault(j.domain, Counter())
        c["n"] += 1
        c["correct"] += j.correct is True
        c["no_verdict"] += j.correct is None
    correct = sum(j.correct is True for j in judged)
    none = sum(j.correct is None for j in judged)
    return {
        "n": len(judged),
        "correct": correct,
        "incorrect": len(judged) - correct - none,
        "no_verdict": none,
        "accuracy": correct / (len(judged) - none) if len(judged) > none else None,
        "by_domain": {d: dict(c) for d, c in by_domain.items()},
    }


# --------------------------------------------------------------------------- the section

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
