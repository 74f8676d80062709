"""Readers of inference runs (predictions.jsonl, results.json, summary.json) and judge runs
(judged.jsonl, judge_summary.json): rows of the results table, plus the per-example records the
report's matrices, votes and audits use (`Results.examples`, `Results.judged`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.files import first_by_id
from orchestrator.reporting.readers import Reader
from orchestrator.reporting.table import Example, Judged, Row, finite, higher_is_better, relative

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


def is_inference_dir(d: Path) -> bool:
    return any((d / f).exists() for f in (paths.PREDICTIONS_FILE, paths.RESULTS_FILE)) or (
        "__" in d.name and (d / paths.SUMMARY_FILE).exists()
    )


def is_judge_dir(d: Path) -> bool:
    return (d / paths.JUDGED_FILE).exists() or (d / paths.JUDGE_SUMMARY_FILE).exists()


# --------------------------------------------------------------------------- inference


def inference(reader: Reader, run_dir: Path) -> None:
    res, run = reader.res, run_dir.name
    summary_path = run_dir / paths.SUMMARY_FILE
    s = reader.json_file(summary_path) if summary_path.exists() else None
    model, _, task = run.partition("__")
    if s:
        model, task = str(s.get("model") or model), str(s.get("task") or task)
    examples = _examples(reader, run_dir, run, model, task)
    domain = next((e.domain for e in examples if e.domain), "")
    res.inference_runs.setdefault((model, task), []).append(run)
    size = _model_size(s or {})
    base = dict(arm=model, run=run, task=task, domain=domain, file=relative(summary_path))
    if s is None:
        if not examples:
            return
        reader.warn(summary_path, "missing: metrics recomputed from the predictions (unfinished run?)")
        judged = [e.correct for e in examples if e.correct is not None]
        values: dict[str, float | None] = {"accuracy": sum(judged) / len(judged) if judged else None}
        n = len(examples)
        base["file"] = relative(run_dir / paths.PREDICTIONS_FILE)
    else:
        values = {}
        for k, v in (s.get("metrics") or {}).items():
            values[k] = finite(v)
        for k, v in (s.get("calibration") or {}).items():
            values[k] = finite(v)
        for k in ("throughput_tokens_per_s", "wall_time_s", "load_time_s"):
            values[k] = finite(s.get(k))
        for k, v in (s.get("hardware") or {}).items():
            if k != "gpu_name":
                values[f"hardware/{k}"] = finite(v)
        n = s.get("n") if isinstance(s.get("n"), int) else len(examples) or None
    if examples:
        lat = [e.latency_s for e in examples if e.latency_s is not None]
        values.setdefault("latency_s_mean", sum(lat) / len(lat) if lat else None)
    values["params_b"] = size
    for k in sorted(values):
        res.rows.append(
            Row("inference", reader.exp, metric=k, value=values[k], higher_is_better=higher_is_better(k), n=n, **base)
        )


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _examples(reader: Reader, run_dir: Path, run: str, model: str, task: str) -> list[Example]:
    pred_path = run_dir / paths.PREDICTIONS_FILE
    records: list[dict] = []
    if pred_path.exists():
        records = [r for _, r in reader.jsonl(pred_path)]
    elif (run_dir / paths.RESULTS_FILE).exists():
        d = reader.json_file(run_dir / paths.RESULTS_FILE)
        records = [r for r in (d or {}).get("examples", []) if isinstance(r, dict)]
    out = []
    for r in records:
        if "id" not in r:
            continue
        conf = r.get("confidence")
        out.append(
            Example(
                run=run,
                model=str(r.get("model") or model),
                task=str(r.get("task") or task),
                domain=str(r.get("domain") or ""),
                id=str(r["id"]),
                prediction=_str(r.get("prediction")),
                correct=r.get("correct") if isinstance(r.get("correct"), bool) else None,
                confidence=finite(conf.get("mean")) if isinstance(conf, dict) else finite(conf),
                latency_s=finite(r.get("latency_s")),
                prompt_tokens=_int(r.get("prompt_tokens")),
                completion_tokens=_int(r.get("completion_tokens")),
                finish_reason=_str(r.get("finish_reason")),
            )
        )
    reader.res.examples.extend(out)
    return out


def _model_size(summary: dict) -> float | None:
    """Billions of parameters, from the run's model config when it says."""
    cfg = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    for holder in (cfg.get("model") if isinstance(cfg.get("model"), dict) else {}, cfg, summary):
        v = finite(holder.get("params_b"))
        if v is not None:
            return v
    return None


# --------------------------------------------------------------------------- judge


def judge(reader: Reader, run_dir: Path) -> None:
    """One judge run: its judged records, and rows from judge_summary.json (overall and per tag
    domain); without the summary (a run still going or killed), the counts come from the records."""
    res, run = reader.res, run_dir.name
    judged = _judged(reader, run_dir)
    summary_path = run_dir / paths.JUDGE_SUMMARY_FILE
    s = reader.json_file(summary_path) if summary_path.exists() else None
    if s is None and not judged:
        return
    model, task = _one_of({j.model for j in judged}, run, 0), _one_of({j.task for j in judged}, run, 2)
    if s is None:
        reader.warn(summary_path, "missing: counts recomputed from judged.jsonl (unfinished run?)")
        s = _summary_of(judged)
        file = relative(run_dir / paths.JUDGED_FILE)
    else:
        file = relative(summary_path)
    judge_name = str(s.get("judge") or next((j.judge for j in judged), ""))
    base = dict(arm=model, run=run, task=task, detail=judge_name, file=file)
    n = _int(s.get("n"))
    for k in sorted(JUDGE_METRICS):
        if k in s:
            res.rows.append(
                Row("judge", reader.exp, metric=k, value=finite(s[k]), higher_is_better=JUDGE_METRICS[k], n=n, **base)
            )
    by_domain = s.get("by_domain") if isinstance(s.get("by_domain"), dict) else {}
    for dom, d in sorted(by_domain.items()):
        if not isinstance(d, dict):
            continue
        dn, correct, none = _int(d.get("n")) or 0, _int(d.get("correct")) or 0, _int(d.get("no_verdict")) or 0
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
                attempts=_int(v.get("attempts")),
                error=_str(v.get("error")),
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
