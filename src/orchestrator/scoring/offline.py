"""Offline scoring of a predictions file (`orchestrate score`), reading official formats.

Predictions:
- our `predictions.jsonl` / `results.json` (records with id, prediction, gold);
- CoQA's official prediction list `[{"id": story_id, "turn_id": n, "answer": "..."}]`, with the
  CoQA dataset JSON (`{"data": [{"id", "questions", "answers", "additional_answers"}]}`) as gold;
- SQuAD-style `{id: answer}`, with a SQuAD dataset JSON (`data[].paragraphs[].qas[]`) or a
  json/jsonl list of `{id, answers}` as gold;
- the weighted harness format: rows `{id, value, references, answerable}` for predictions and gold.
Scorers come from `registry.get_scorer` (a name or "module:function"); per-example values are
averaged. Where an official evaluator defines the headline (CoQA, SQuAD), `em`/`f1` are that
headline: every gold question counts and a missing prediction scores 0; `coverage` (predicted /
total) stands beside it, and CoQA also gives `em_answered`/`f1_answered`, the means over the
predicted turns only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.core.refs import is_ref
from orchestrator.scoring.metrics import coqa_domain_scores, coqa_split, coqa_turn_scores, squad_scores
from orchestrator.scoring.registry import SCORERS, get_scorer
from orchestrator.scoring.weighted import weighted_score

# task name → scorer, for tasks whose scorer name differs
TASK_SCORERS = {
    "qa": "squad",
    "medqa": "mcq",
    "squad": "squad",
    "coqa": "coqa",
    "boolq": "boolq",
    "math": "math",
    "weighted": "weighted",
    "wattbot": "wattbot",
}


def read_any(path: Path) -> Any:
    """JSON or JSON lines."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as e:
        raise UserError(f"{path}: neither JSON nor JSON lines ({e})") from None


def _mean_scores(per: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for s in per for k in s})
    return {k: sum(s[k] for s in per if k in s) / sum(1 for s in per if k in s) for k in keys}


def coqa_gold(data: Any) -> dict[tuple[str, int], list[str]]:
    """(story id, turn id) → gold answers (main + additional), from the official dataset JSON."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserError('CoQA gold must be the official dataset JSON: {"version": ..., "data": [stories]}')
    gold: dict[tuple[str, int], list[str]] = {}
    for story in data["data"]:
        for a in story["answers"]:
            gold[(story["id"], int(a["turn_id"]))] = [a["input_text"]]
        for answers in (story.get("additional_answers") or {}).values():
            for a in answers:
                gold[(story["id"], int(a["turn_id"]))].append(a["input_text"])
    return gold


def coqa_sources(data: Any) -> dict[str, str | None]:
    """story id → its `source` (mctest, gutenberg, race, cnn, wikipedia, reddit, science), checked."""
    out = {}
    for story in data["data"]:
        try:
            coqa_split(story.get("source"))
        except ValueError as e:
            raise UserError(f"CoQA gold, story {story['id']!r}: {e}") from None
        out[story["id"]] = story.get("source")
    return out


def score_coqa_official(preds: Any, gold_data: Any) -> dict[str, Any]:
    """As the official CoQA v1.0 evaluator: its headline EM/F1 average over *every* gold turn, a
    turn without a prediction counting 0 (`get_domain_scores` adds `exact_scores.get(key, 0)`
    per gold turn); fractions, not x100. Beside it: `coverage` (predicted / total turns) and
    `em_answered`/`f1_answered` over the predicted turns only. `n` is the number of gold turns,
    `predicted` how many of them have a prediction. `in_domain`, `out_domain`, `overall` and
    `domains` ({em, f1, turns} each) are the official breakdown by story source (`coqa_domain_scores`)."""
    if not isinstance(preds, list) or not all(
        isinstance(p, dict) and {"id", "turn_id", "answer"} <= set(p) for p in preds
    ):
        raise UserError('CoQA predictions must be the official list [{"id", "turn_id", "answer"}, ...]')
    return _coqa_headline({(p["id"], int(p["turn_id"])): p["answer"] for p in preds}, gold_data)


def _coqa_headline(by_key: dict[tuple[str, int], str], gold_data: Any) -> dict[str, Any]:
    gold, sources = coqa_gold(gold_data), coqa_sources(gold_data)
    per, turns, missing = [], [], []
    for key, golds in gold.items():
        if key not in by_key:
            missing.append(f"{key[0]}_{key[1]}")
            turns.append((sources[key[0]], 0.0, 0.0))  # as the official script: a missing turn counts 0
            continue
        per.append(coqa_turn_scores(str(by_key[key]), golds))
        turns.append((sources[key[0]], per[-1]["em"], per[-1]["f1"]))
    if not per:
        raise UserError("no prediction matches a gold turn (check story ids and turn ids)")
    answered = _mean_scores(per)
    total = len(gold)
    metrics = {k: sum(s[k] for s in per) / total for k in ("em", "f1")}
    metrics |= {"coverage": len(per) / total, "em_answered": answered["em"], "f1_answered": answered["f1"]}
    return {"n": total, "predicted": len(per), "metrics": metrics, **coqa_domain_scores(turns), "missing": missing}


def squad_gold(data: Any) -> dict[str, list[str]]:
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # SQuAD dataset JSON
        return {
            qa["id"]: [a["text"] for a in qa["answers"]]
            for article in data["data"]
            for para in article["paragraphs"]
            for qa in para["qas"]
        }
    if isinstance(data, list):
        out = {}
        for row in data:
            answers = row.get("answers", row.get("gold", row.get("answer")))
            if isinstance(answers, dict):
                answers = answers.get("text")
            out[str(row["id"])] = [answers] if isinstance(answers, str) else list(answers)
        return out
    raise UserError("QA gold must be a SQuAD dataset JSON or a list of {id, answers}")


def score_squad_official(preds: dict[str, str], gold_data: Any) -> dict[str, Any]:
    """As SQuAD v1.1's evaluate: every gold question counts; an unanswered one scores 0.
    `coverage`: the share of gold questions with a prediction."""
    gold = squad_gold(gold_data)
    per, missing = [], []
    for qid, golds in gold.items():
        if qid not in preds:
            missing.append(qid)
            per.append({"em": 0.0, "f1": 0.0})
        else:
            per.append(squad_scores(str(preds[qid]), golds))
    metrics = _mean_scores(per) | {"coverage": (len(gold) - len(missing)) / len(gold) if gold else float("nan")}
    return {"n": len(per), "predicted": len(per) - len(missing), "metrics": metrics, "missing": missing}


def score_records(records: list[dict], scorer: str, gold: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rescore our prediction records (gold from the records unless a gold map is given)."""
    fn = get_scorer(scorer)
    if fn.corpus:
        raise UserError(f"--task {scorer}: a corpus-level scorer takes rows {{id, value, ...}} with --gold")
    per, missing = [], []
    for r in records:
        g = gold.get(str(r["id"])) if gold is not None else r.get("gold")
        if gold is not None and str(r["id"]) not in gold:
            missing.append(str(r["id"]))
            continue
        per.append(fn.scores(r["prediction"], g))
    if not per:
        raise UserError("no predictions to score")
    return {"n": len(per), "metrics": _mean_scores(per), "missing": missing}


def _coqa_keys(records: list[dict]) -> dict[tuple[str, int], str]:
    """Our records (id "<story_id>_<turn_id>") keyed as the CoQA evaluator keys its turns."""
    out = {}
    for r in records:
        story, _, turn = str(r["id"]).rpartition("_")
        if not story or not turn.isdigit():
            raise UserError(f"CoQA record id {r['id']!r} is not '<story_id>_<turn_id>'")
        out[(story, int(turn))] = str(r["prediction"])
    return out


def score_wattbot(predictions: Path, gold: Path | None) -> dict[str, Any]:
    """WattBot CSVs (submission.csv vs train_QA.csv; JSON/JSONL rows alike), the competition's metric
    (scoring/wattbot.py): `metrics` (`overall`, `value_accuracy`, `ref_overlap`, `na_recall`), `ci`, `per_question`, and `empty_explanations` (rows the competition would refuse) in `warnings`."""
    from orchestrator.scoring import wattbot

    if gold is None:
        raise UserError("--task wattbot needs --gold (the WattBot questions CSV with answers)")
    try:
        preds, golds = wattbot.read_rows(predictions), wattbot.read_rows(gold)
        result = wattbot.score_rows(preds, golds)
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"wattbot scoring: {type(e).__name__}: {e} (rows need id, answer_value, ref_id)") from None
    empty = wattbot.empty_explanations(preds) if predictions.suffix.lower() == ".csv" else []
    warnings = []
    if empty:
        shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        warnings.append(
            f"{len(empty)} row(s) with an empty explanation ({shown}): the competition refuses such a submission"
        )
    return {**result, "empty_explanations": empty, "warnings": warnings}


def score_file(task: str, predictions: Path, gold: Path | None = None) -> dict[str, Any]:
    """`orchestrate score`: the headline metrics at the top level (`accuracy`; `em`, `f1`; WattBot's
    four) and in `metrics`, beside `n`, `missing` and the task's own parts (CoQA's domains)."""
    result = _score_file(task, predictions, gold)
    return {**result["metrics"], **result}


def _score_file(task: str, predictions: Path, gold: Path | None = None) -> dict[str, Any]:
    scorer = TASK_SCORERS.get(task, task)
    if scorer not in SCORERS and not is_ref(scorer):
        raise UserError(
            f"--task {task!r}: no scorer for it; use one of {sorted(set(TASK_SCORERS) | set(SCORERS))} "
            "or module:function"
        )
    if scorer == "wattbot":
        return score_wattbot(predictions, gold)
    preds = read_any(predictions)
    gold_data = read_any(gold) if gold is not None else None
    if isinstance(preds, dict) and isinstance(preds.get("examples"), list):  # our results.json
        preds = preds["examples"]
    if scorer == "weighted":
        if gold_data is None:
            raise UserError("--task weighted needs --gold (rows {id, value, references, answerable})")
        try:
            return {"n": len(gold_data), "metrics": weighted_score(preds, gold_data), "missing": []}
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"weighted scoring: {e}") from None
    if scorer == "coqa" and isinstance(preds, list) and preds and "turn_id" in preds[0] and "answer" in preds[0]:
        if gold_data is None:
            raise UserError("the official CoQA prediction list needs --gold (the CoQA dataset JSON)")
        return score_coqa_official(preds, gold_data)
    if isinstance(preds, dict):  # SQuAD-style {id: answer}
        if gold_data is None:
            raise UserError("SQuAD-style predictions {id: answer} need --gold")
        if scorer == "squad":
            return score_squad_official(preds, gold_data)
        gold_map = squad_gold(gold_data)
        return score_records(
            [{"id": k, "prediction": str(v)} for k, v in preds.items()],
            scorer,
            {k: (v if len(v) > 1 else v[0]) for k, v in gold_map.items()},
        )
    if isinstance(preds, list) and all(isinstance(r, dict) and "prediction" in r and "id" in r for r in preds):
        gold_map = None
        if gold_data is not None:
            if scorer == "coqa" and isinstance(gold_data, dict):  # the official headline, by turn
                return _coqa_headline(_coqa_keys(preds), gold_data)
            gold_map = {k: (v if len(v) > 1 else v[0]) for k, v in squad_gold(gold_data).items()}
        return score_records(preds, scorer, gold_map)
    raise UserError(
        f"{predictions}: unrecognised predictions format (expected predictions.jsonl records, "
        "the CoQA list [{id, turn_id, answer}], or {id: answer})"
    )
