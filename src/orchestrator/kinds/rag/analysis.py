"""The analyses of a `rag` experiment's report: model comparison (WattBot score components with
bootstrap CIs, latency, tokens, cost, energy), the question × run results matrix, ensembles scored
like a model, an audit, retrieval quality per configuration and the scaling comparison. Pure data;
the markdown and files are `report.py`, the plots `plots.py`.

A run dir is a rag run when it holds submission.csv and a summary.json with `retrieval_config`.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.files import first_by_id, read_json, read_jsonl
from orchestrator.scoring import wattbot

ENSEMBLES = ("majority", "first_non_blank", "confidence")
HIGH_LATENCY_FACTOR = 3.0


def is_rag_dir(d: Path) -> bool:
    if not (d / paths.RAG_SUBMISSION_FILE).exists():
        return False
    try:
        return "retrieval_config" in read_json(d / paths.SUMMARY_FILE)
    except (OSError, ValueError):
        return False


def rag_runs(experiment: str) -> list[Path]:
    exp = paths.experiment_dir(experiment)
    return sorted(d for d in exp.iterdir() if d.is_dir() and is_rag_dir(d)) if exp.is_dir() else []


def is_rag_experiment(experiment: str) -> bool:
    return bool(rag_runs(experiment))


def _state(d: Path) -> str:
    try:
        return read_json(d / paths.STATUS_FILE).get("state", "")
    except (OSError, ValueError):
        return ""


def load(experiment: str) -> list[dict[str, Any]]:
    """One entry per run: its summary, examples (results.json) and submission rows."""
    out = []
    for d in rag_runs(experiment):
        s = read_json(d / paths.SUMMARY_FILE)
        examples = read_json(d / paths.RESULTS_FILE)["examples"]
        with open(d / paths.RAG_SUBMISSION_FILE, newline="") as f:
            subs = list(csv.DictReader(f))
        out.append(
            {"run": d.name, "dir": d, "summary": s, "examples": examples, "submission": subs, "state": _state(d)}
        )
    return out


def _gold(runs: list[dict]) -> dict[str, dict]:
    gold: dict[str, dict] = {}
    for r in runs:
        for ex in r["examples"]:
            gold.setdefault(str(ex["id"]), ex["gold"])
    return gold


def comparison(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        s = r["summary"]
        rows.append(
            {
                "run": r["run"],
                "model": s["model"],
                "config": s["retrieval_config"],
                "backend": s.get("backend"),
                "api": s.get("backend") == "openai",
                "params_b": s.get("params_b"),
                "n": s["n"],
                **{m: s["score"].get(m) for m in wattbot.METRICS},
                **{f"{m}_ci": (s.get("score_ci") or {}).get(m) for m in wattbot.METRICS},
                "latency_s": s["latency_s"]["mean"],
                "prompt_tokens": s["tokens"]["prompt"],
                "completion_tokens": s["tokens"]["completion"],
                "cost_usd": s["cost_usd"],
                "energy_wh": (s.get("hardware") or {}).get("energy_wh"),
                "power_avg_w": (s.get("hardware") or {}).get("power_avg_w"),
                "vram_gb": (s.get("hardware") or {}).get("gpu_memory_peak_gb"),
                "disk_gb": (s.get("hardware") or {}).get("model_disk_gb"),
                "recall_at_k": s["retrieval"]["recall_at_k"],
                "state": r["state"],
            }
        )
    return sorted(rows, key=lambda x: (-(x["overall"] or 0.0), x["run"]))


def matrix(runs: list[dict]) -> tuple[list[str], list[str], dict[tuple[str, str], float | None]]:
    """Question ids × run names → the question's weighted score (overall of its components)."""
    cells: dict[tuple[str, str], float | None] = {}
    for r in runs:
        for ex in r["examples"]:
            cells[(str(ex["id"]), r["run"])] = wattbot.overall(ex.get("score") or {})
    qids = sorted({q for q, _ in cells})
    return qids, [r["run"] for r in runs], cells


def matrix_csv(qids: list[str], names: list[str], cells: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", *names])
    for q in qids:
        w.writerow([q, *("" if cells.get((q, n)) is None else f"{cells[(q, n)]:.4f}" for n in names)])
    return buf.getvalue()


def _key(value: Any) -> str:
    """Answers vote by value: numbers by their float, text normalised, all blanks alike."""
    if wattbot.is_blank(value):
        return wattbot.BLANK
    n = wattbot.parse_number(value)
    return f"#{n:g}" if n is not None else str(value).strip().lower()


def ensemble(runs: list[dict], how: str) -> list[dict]:
    """Submission rows combining the runs' answers (runs ranked best first):
    majority — the most voted value (ties: the better run's), refs of its voters;
    first_non_blank — the best run's non-blank answer, else is_blank;
    confidence — votes weighted by each run's overall score; a value needs over half the weight."""
    weights = {r["run"]: (r["summary"]["score"].get("overall") or 0.0) for r in runs}
    ranked = sorted(runs, key=lambda r: -weights[r["run"]])
    by_run = {r["run"]: {str(s["id"]): s for s in r["submission"]} for r in ranked}
    out = []
    for qid in sorted({q for subs in by_run.values() for q in subs}):
        answers = [(r["run"], by_run[r["run"]][qid]) for r in ranked if qid in by_run[r["run"]]]
        pick, voters = _pick(answers, how, weights)
        refs = sorted({ref for run, a in answers if run in voters for ref in wattbot.parse_refs(a["ref_id"])})
        value = pick["answer_value"] if pick else wattbot.BLANK
        out.append(
            {
                "id": qid,
                "answer_value": value,
                "ref_id": wattbot.format_refs(refs) if value != wattbot.BLANK else wattbot.BLANK,
            }
        )
    return out


def _pick(answers: list[tuple[str, dict]], how: str, weights: dict[str, float]) -> tuple[dict | None, set[str]]:
    if how == "first_non_blank":
        for run, a in answers:
            if not wattbot.is_blank(a["answer_value"]):
                return a, {run}
        return None, set()
    votes: Counter = Counter()
    for run, a in answers:
        votes[_key(a["answer_value"])] += weights[run] if how == "confidence" else 1.0
    if not votes:
        return None, set()
    best = max(votes.values())
    if how == "confidence" and best <= sum(votes.values()) / 2:
        return None, set()
    for _run, a in answers:  # best-ranked run among those holding a top-voted value
        if votes[_key(a["answer_value"])] == best:
            key = _key(a["answer_value"])
            return a, {r for r, b in answers if _key(b["answer_value"]) == key}
    return None, set()


def ensembles(runs: list[dict]) -> list[dict]:
    """Each ensemble per retrieval configuration with two or more models, scored like a model."""
    gold = _gold(runs)
    by_config: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_config[r["summary"]["retrieval_config"]].append(r)
    out = []
    for config, members in sorted(by_config.items()):
        if len(members) < 2:
            continue
        golds = [gold[q] for q in sorted(gold)]
        for how in ENSEMBLES:
            scored = wattbot.score_rows(ensemble(members, how), golds)
            out.append(
                {
                    "name": f"ensemble:{how}",
                    "config": config,
                    "members": len(members),
                    **scored["metrics"],
                    "ci": scored["ci"],
                }
            )
    return out


def audit(runs: list[dict]) -> list[dict]:
    """Per run: missing token counts, slow questions, error and malformed rates, a summary score
    that its submission does not reproduce, duplicate question ids; and duplicate runs."""
    gold = _gold(runs)
    out, seen = [], defaultdict(list)
    for r in runs:
        s, ex = r["summary"], r["examples"]
        lat = [e["latency_s"] for e in ex if e.get("latency_s") is not None]
        median = statistics.median(lat) if lat else 0.0
        rescored = wattbot.score_rows(r["submission"], [gold[str(e["id"])] for e in ex])["metrics"]
        preds = read_jsonl(r["dir"] / paths.PREDICTIONS_FILE).records
        n = max(1, len(ex))
        out.append(
            {
                "run": r["run"],
                "missing_tokens": sum(1 for e in ex if not e.get("completion_tokens")),
                "high_latency": sum(1 for x in lat if median and x > HIGH_LATENCY_FACTOR * median),
                "error_rate": sum(1 for e in ex if e.get("finish_reason") == "error") / n,
                "malformed_rate": sum(1 for e in ex if (e.get("parsed") or {}).get("malformed")) / n,
                "score_mismatch": any(
                    abs((rescored[m] or 0.0) - (s["score"].get(m) or 0.0)) > 1e-9 for m in wattbot.METRICS
                ),
                "duplicate_ids": len(preds) - len(first_by_id(preds)),
            }
        )
        seen[(s["model"], json.dumps(s["config"].get("retrieval"), sort_keys=True))].append(r["run"])
    dups = [runs_ for runs_ in seen.values() if len(runs_) > 1]
    for row in out:
        row["duplicate_of"] = next((", ".join(x for x in d if x != row["run"]) for d in dups if row["run"] in d), "")
    return out


def retrieval_quality(runs: list[dict]) -> list[dict]:
    rows: dict[str, dict] = {}
    for r in runs:
        s = r["summary"]
        rows.setdefault(
            s["retrieval_config"],
            {
                "config": s["retrieval_config"],
                "retriever": s["retrieval"]["retriever"],
                "k": s["retrieval"]["k"],
                "recall_at_k": s["retrieval"]["recall_at_k"],
                "n_answerable": s["retrieval"]["n_answerable"],
                "time_s": s["retrieval"]["time_s"],
                "mean_overall": [],
            },
        )["mean_overall"].append(s["score"].get("overall") or 0.0)
    for row in rows.values():
        row["mean_overall"] = sum(row["mean_overall"]) / len(row["mean_overall"])
    return [rows[k] for k in sorted(rows)]


SCALING_KEYS = (
    "model",
    "config",
    "params_b",
    *wattbot.METRICS,
    "latency_s",
    "vram_gb",
    "disk_gb",
    "energy_wh",
    "power_avg_w",
    "cost_usd",
)


def scaling(cmp: list[dict]) -> list[dict]:
    """Local models with a known size, smallest first (the scaling study's table)."""
    rows = [{k: r[k] for k in SCALING_KEYS} for r in cmp if r["params_b"] and not r["api"]]
    return sorted(rows, key=lambda r: (r["params_b"], r["config"]))


def run_states(experiment: str) -> list[dict]:
    """Every unit's own account (status.json): the pass/fail list, failures with their reason."""
    exp, out = paths.experiment_dir(experiment), []
    for f in sorted(exp.glob(f"*/{paths.STATUS_FILE}")):
        try:
            st = read_json(f)
        except (OSError, ValueError):
            continue
        out.append({"run": f.parent.name, "state": st.get("state", ""), "reason": st.get("reason") or ""})
    return out


def section(experiment: str) -> dict[str, Any]:
    runs = load(experiment)
    states = run_states(experiment)
    cmp = comparison(runs)
    qids, names, cells = matrix(runs)
    return {
        "experiment": experiment,
        "comparison": cmp,
        "matrix": {"ids": qids, "runs": names, "cells": cells},
        "ensembles": ensembles(runs),
        "audit": audit(runs),
        "retrieval": retrieval_quality(runs),
        "scaling": scaling(cmp),
        "states": states,
        "passed": sum(1 for s in states if s["state"] == "COMPLETED"),
    }
