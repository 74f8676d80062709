"""Inference-sweep analyses (kinds `inference`, `sweep`) over the examples of many (model, task)
runs: the results matrix (question x model correctness), ensemble voting, the audit, the scaling
comparison, and the report section and recommendations built from them. Pure.

Correctness always comes from each run's own `correct` flag (its task's scorer), so votes need no
re-scoring: a voted answer is as correct as the run that gave it.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from statistics import median
from typing import Any

from orchestrator.core.states import FAILED_STATES
from orchestrator.reporting.formatting import num, signed
from orchestrator.reporting.matrix import latest, results_matrix
from orchestrator.reporting.table import Example, Results
from orchestrator.scoring.metrics import normalize_answer

STRATEGIES = ("majority", "first_non_blank", "confidence")


def _blank(e: Example) -> bool:
    return e.prediction is None or not e.prediction.strip()


def scaling(res: Results, models: list[str], size: dict[str, float | None]) -> dict[str, Any]:
    """Per model: size, score per task and overall (macro mean), latency, throughput, energy."""
    metric: dict[tuple[str, str], dict[str, float | None]] = defaultdict(dict)
    for r in res.inference_rows():
        metric[(r.arm, r.task)][r.metric] = r.value
    judged: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for (task, _), by_model in sorted(latest(res.examples).items()):
        for m, e in by_model.items():
            if e.correct is not None:
                judged[(m, task)].append(e.correct)
    tasks = sorted({t for _, t in metric} | {t for _, t in judged})
    rows = []
    for m in models:
        per_task = {}
        for t in tasks:
            if judged.get((m, t)):
                per_task[t] = sum(judged[(m, t)]) / len(judged[(m, t)])
            else:
                v = metric.get((m, t), {})
                per_task[t] = next((v[k] for k in ("accuracy", "em", "f1") if v.get(k) is not None), None)
        scores = [v for v in per_task.values() if v is not None]

        def values(key: str, m: str = m) -> list[float]:
            return [metric[(m, t)][key] for t in tasks if metric.get((m, t), {}).get(key) is not None]

        def total(key: str) -> float | None:
            xs = values(key)
            return sum(xs) if xs else None

        def avg(key: str) -> float | None:
            xs = values(key)
            return sum(xs) / len(xs) if xs else None

        rows.append(
            {
                "model": m,
                "params_b": size.get(m),
                "score": sum(scores) / len(scores) if scores else None,
                "scores": per_task,
                "latency_s_mean": avg("latency_s_mean"),
                "throughput_tokens_per_s": avg("throughput_tokens_per_s"),
                "energy_wh": total("hardware/energy_wh"),
                "wall_time_s": total("wall_time_s"),
            }
        )
    ranking = [r["model"] for r in sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0), r["model"]))]
    return {"tasks": tasks, "rows": rows, "ranking": ranking}


def scaling_csv(scale: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["model", "params_b", "score", "latency_s_mean", "throughput_tokens_per_s", "energy_wh", "wall_time_s"]
    w.writerow(head + [f"score/{t}" for t in scale["tasks"]])
    for r in scale["rows"]:
        w.writerow([_v(r[k]) for k in head] + [_v(r["scores"].get(t)) for t in scale["tasks"]])
    return buf.getvalue()


def _v(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(x) if isinstance(x, float) else str(x)


def vote(by_model: dict[str, Example], ranking: list[str], strategy: str) -> Example | None:
    """The record whose answer the ensemble gives for one question (None: no model answered).

    majority: the most common normalised answer, ties to the group holding the best-ranked model;
    first_non_blank: the best-ranked model with a non-blank answer;
    confidence: the most confident answer (confidence.mean), ties to rank; without any
    confidence, first_non_blank."""
    ranked = [by_model[m] for m in ranking if m in by_model and not _blank(by_model[m])]
    if not ranked:
        return None
    if strategy == "first_non_blank":
        return ranked[0]
    if strategy == "confidence":
        confident = [e for e in ranked if e.confidence is not None]
        return max(confident, key=lambda e: e.confidence) if confident else ranked[0]  # max keeps the first on ties
    if strategy == "majority":
        groups: dict[str, list[Example]] = defaultdict(list)
        for e in ranked:  # ranked order: each group's first member is its best-ranked model
            groups[normalize_answer(e.prediction or "")].append(e)
        return max(groups.values(), key=len)[0]  # dict order = rank of each group's first member
    raise ValueError(f"unknown voting strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def ensemble_table(examples: list[Example], ranking: list[str]) -> list[dict[str, Any]]:
    """Per task (and overall): accuracy of each voting strategy next to the best single model,
    over the questions at least one model has a judged answer for."""
    per_task: dict[str, list[dict[str, Example]]] = defaultdict(list)
    for (task, _), by_model in sorted(latest(examples).items()):
        if any(e.correct is not None for e in by_model.values()):
            per_task[task].append(by_model)
    if len(ranking) < 2:
        return []
    rows = []
    for task, questions in [*sorted(per_task.items()), ("all", [q for qs in per_task.values() for q in qs])]:
        if not questions:
            continue
        n = len(questions)
        single = {m: sum(bool(q[m].correct) for q in questions if m in q) / n for m in ranking}
        best = max(ranking, key=lambda m: single[m])  # ranking order decides ties
        acc = {s: sum(bool(c and c.correct) for c in (vote(q, ranking, s) for q in questions)) / n for s in STRATEGIES}
        rows.append(
            {
                "task": task,
                "n": n,
                "best_model": best,
                "best": single[best],
                **acc,
                "gain": max(acc.values()) - single[best],
            }
        )
    return rows


def audit(res: Results, high_latency_factor: float = 3.0) -> dict[str, Any]:
    """Per run: duplicates, missing token counts, errors, slow examples; duplicate runs; failed jobs."""
    by_run: dict[str, list[Example]] = defaultdict(list)
    for e in res.examples:
        by_run[e.run].append(e)
    rows = []
    for run, exs in sorted(by_run.items()):
        ids = [e.id for e in exs]
        lat = [e.latency_s for e in exs if e.latency_s is not None]
        med = median(lat) if lat else None
        slow = [x for x in lat if med and x > high_latency_factor * med]
        errors = sum(1 for e in exs if e.finish_reason == "error" or e.prediction is None)
        rows.append(
            {
                "run": run,
                "model": exs[0].model,
                "task": exs[0].task,
                "n": len(exs),
                "duplicate_ids": len(ids) - len(set(ids)),
                "missing_prompt_tokens": sum(e.prompt_tokens is None for e in exs),
                "missing_completion_tokens": sum(e.completion_tokens is None for e in exs),
                "errors": errors,
                "error_rate": errors / len(exs),
                "high_latency": len(slow),
                "latency_median": med,
                "latency_max": max(lat) if lat else None,
            }
        )
    duplicates = [
        {"model": m, "task": t, "runs": ", ".join(sorted(runs))}
        for (m, t), runs in sorted(res.inference_runs.items())
        if len(runs) > 1
    ]
    runs = set(by_run) | {r for rs in res.inference_runs.values() for r in rs}
    failed = [
        {"run": r.run, "state": r.state, "exit_code": r.exit_code, "reason": r.detail}
        for r in res.of("job")
        if r.run in runs and r.state in FAILED_STATES
    ]
    flagged = [
        r
        for r in rows
        if r["duplicate_ids"]
        or r["missing_prompt_tokens"]
        or r["missing_completion_tokens"]
        or r["errors"]
        or r["high_latency"]
    ]
    return {
        "rows": rows,
        "flagged": len(flagged),
        "duplicate_runs": duplicates,
        "failed_jobs": failed,
        "factor": high_latency_factor,
    }


def section(res: Results, high_latency_factor: float = 3.0) -> dict | None:
    """The report's inference-sweep section: model table, scaling, results matrix, ensembles, audit."""
    rows = res.inference_rows()
    if not rows and not res.examples:
        return None
    values: dict[tuple[str, str], dict[str, float | None]] = defaultdict(dict)
    for r in rows:
        values[(r.arm, r.task)][r.metric] = r.value
        values[(r.arm, r.task)].setdefault("n", r.n)
    models = sorted({m for m, _ in values} | {e.model for e in res.examples})
    size = {
        m: next((v.get("params_b") for (mm, _), v in values.items() if mm == m and v.get("params_b")), None)
        for m in models
    }
    models.sort(key=lambda m: (size[m] is None, size[m] or 0, m))
    cols = [
        c
        for c in (
            "em",
            "f1",
            *(f"{m}_{d}_domain" for d in ("in", "out") for m in ("em", "f1")),  # CoQA's official split
            "accuracy",
            "auroc",
            "ece",
            "latency_s_mean",
            "throughput_tokens_per_s",
            "hardware/energy_wh",
        )
        if any(v.get(c) is not None for v in values.values())
    ]
    table = [
        {"model": m, "task": t, "params_b": size[m], "n": v.get("n"), "values": [v.get(c) for c in cols]}
        for (m, t), v in sorted(values.items(), key=lambda kv: (models.index(kv[0][0]), kv[0][1]))
    ]
    scale = scaling(res, models, size)
    return {
        "models": models,
        "columns": cols,
        "table": table,
        "scaling": scale,
        "matrix": results_matrix(res.examples, models),
        "ensemble": ensemble_table(res.examples, scale["ranking"]),
        "audit": audit(res, high_latency_factor),
    }


def recommendations(inf: dict) -> list[str]:
    recs = []
    rows = {r["model"]: r for r in inf["scaling"]["rows"]}
    ranked = [m for m in inf["scaling"]["ranking"] if rows[m]["score"] is not None]
    if ranked:
        best = rows[ranked[0]]
        recs.append(f"Best model: {best['model']} (score {num(best['score'])}).")
        close = [
            rows[m]
            for m in ranked
            if rows[m]["params_b"]
            and best["params_b"]
            and rows[m]["params_b"] < best["params_b"]
            and best["score"] - rows[m]["score"] <= 0.05
        ]
        if close:
            small = min(close, key=lambda r: (r["params_b"], r["model"]))
            recs.append(
                f"{small['model']} ({num(small['params_b'], 1)}B) scores within 0.05 of it "
                f"({num(small['score'])}) at a fraction of the size."
            )
    overall = next((e for e in inf["ensemble"] if e["task"] == "all"), None)
    if overall and overall["gain"] > 0:
        strategy = max(("majority", "first_non_blank", "confidence"), key=lambda s: overall[s])
        recs.append(
            f"Ensemble by {strategy} beats the best single model ({overall['best_model']}) by "
            f"{signed(overall['gain'])} overall."
        )
    if inf["audit"]["flagged"]:
        recs.append(
            f"{inf['audit']['flagged']} inference run(s) flagged in the audit: check them before trusting their scores."
        )
    return recs
