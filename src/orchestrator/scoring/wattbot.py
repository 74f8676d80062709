"""The WattBot score (docs/wattbot.md): a model's reply → answer fields, and those answers → the
weighted score against the WattBot CSV.

    overall = 0.75 × value_accuracy + 0.15 × ref_overlap + 0.10 × na_recall

- value_accuracy: over every gold question, `answer_value` equal to the gold's: numbers within
  ±0.1% of the gold (relative; a gold 0 must be exact), lists/ranges element-wise, other text
  after `normalize_answer`; `is_blank` is a value like any other (an unanswerable gold question is
  matched by an `is_blank` answer).
- ref_overlap: over every gold question, the Jaccard overlap of the predicted and gold `ref_id`
  sets; `is_blank` is the empty set and two empty sets overlap fully (1.0).
- na_recall: over the truly unanswerable gold questions (`answer_value` is_blank), the share
  answered `is_blank`. With no such question it is None and its weight is shared by the others.
A question without a prediction scores 0 on every component. The reply parser lives here too,
since the per-question scorer is handed the model's raw text.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.scoring.metrics import normalize_answer

WEIGHTS: Mapping[str, float] = {"value_accuracy": 0.75, "ref_overlap": 0.15, "na_recall": 0.10}
METRICS = ("overall", *WEIGHTS)
BLANK = "is_blank"
REL_TOL = 1e-3
FIELDS = ("answer", "answer_value", "answer_unit", "ref_id", "explanation")
CSV_COLUMNS = (
    "id",
    "question",
    "answer",
    "answer_value",
    "answer_unit",
    "ref_id",
    "ref_url",
    "supporting_materials",
    "explanation",
)
_NUMBER = re.compile(r"^[~≈<>]?\s*[-+]?(\d[\d,_]*\.?\d*|\.\d+)(e[-+]?\d+)?\s*%?$", re.IGNORECASE)


# --------------------------------------------------------------------------- values and refs


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", BLANK, "nan", "none", "null"))


def parse_number(value: Any) -> float | None:
    """12, "12", "1,234.5", "~40", "12%" (→ 12), "1.2e3" → a float; anything else → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if not isinstance(value, str) or not _NUMBER.match(value.strip()):
        return None
    text = value.strip().lstrip("~≈<>").rstrip("%").replace(",", "").replace("_", "").strip()
    try:
        return float(text)
    except ValueError:
        return None


def _as_list(value: Any) -> list | None:
    """ "[1, 2]" or a list → its items (a range or a set of values); else None."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"):
        try:
            out = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out = [x.strip().strip("'\"") for x in value.strip()[1:-1].split(",") if x.strip()]
        return list(out) if isinstance(out, (list, tuple)) else None
    return None


def values_match(pred: Any, gold: Any, rel_tol: float = REL_TOL) -> bool:
    if is_blank(gold) or is_blank(pred):
        return is_blank(gold) and is_blank(pred)
    gl, pl = _as_list(gold), _as_list(pred)
    if gl is not None:
        return pl is not None and len(pl) == len(gl) and all(values_match(p, g, rel_tol) for p, g in zip(pl, gl))
    g, p = parse_number(gold), parse_number(pred)
    if g is not None:
        return p is not None and abs(p - g) <= rel_tol * abs(g)
    return normalize_answer(str(pred)) == normalize_answer(str(gold))


def parse_refs(value: Any) -> set[str]:
    """ "['doc_a', 'doc_b']", '["a"]', "a; b", "a, b", a list → the set of ids; is_blank → ∅."""
    if isinstance(value, (list, tuple, set)):
        items = [str(x) for x in value]
    elif is_blank(value):
        return set()
    else:
        text = str(value).strip()
        listed = _as_list(text)
        items = [str(x) for x in listed] if listed is not None else re.split(r"[;,]", text)
    return {x.strip().strip("'\"") for x in items if x.strip().strip("'\"") and not is_blank(x.strip().strip("'\""))}


def format_refs(refs: Sequence[str]) -> str:
    """The WattBot CSV form of a ref list: "['a', 'b']", or is_blank when empty."""
    return str([str(r) for r in refs]) if refs else BLANK


# --------------------------------------------------------------------------- the reply


def _fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: obj.get(k) for k in FIELDS}
    refs = obj.get("ref_id", obj.get("ref_ids", obj.get("references")))
    out["ref_id"] = sorted(parse_refs(refs)) if refs is not None else []
    if out["answer_value"] is None and out["answer"] is not None:
        out["answer_value"] = out["answer"]
    if is_blank(out["answer_value"]):
        out["answer_value"] = BLANK
    return out


def _json_objects(text: str):
    """Every top-level {...} in the text that parses as a JSON object, first to last."""
    decoder, i = json.JSONDecoder(), 0
    while (i := text.find("{", i)) >= 0:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        if isinstance(obj, dict):
            yield obj
        i = end


def parse_reply(text: str) -> dict[str, Any]:
    """The answer fields of a reply: a JSON object (bare, or in a ```json fence), else
    `answer_value: ...`-style labelled lines. `format` says which; `malformed` is True when none
    worked (then the answer is is_blank and the reply is kept as the explanation)."""
    text = text or ""
    fence = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    for how, source in (("fenced_json", fence.group(1) if fence else ""), ("json", text)):
        for obj in _json_objects(source):
            if {"answer", "answer_value", "ref_id", BLANK} & set(obj):
                out = _fields(obj)
                if obj.get(BLANK) is True:
                    out["answer_value"] = BLANK
                return {**out, "format": how, "malformed": False}
    labelled = {}
    for m in re.finditer(
        r"^\s*[*-]?\s*\**(answer_value|answer_unit|answer|ref_id|explanation)\**\s*[:=]\s*(.+)$", text, re.M | re.I
    ):
        labelled.setdefault(m.group(1).lower(), m.group(2).strip().strip("\"'"))
    if "answer_value" in labelled or "answer" in labelled:
        return {**_fields(labelled), "format": "labelled", "malformed": False}
    if text.strip().lower().strip(".\"' ") == BLANK:
        return {**_fields({"answer_value": BLANK}), "format": "labelled", "malformed": False}
    return {**_fields({"answer_value": BLANK, "explanation": text.strip()[:500]}), "format": None, "malformed": True}


# --------------------------------------------------------------------------- scoring


def question_scores(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float | None]:
    """One question's components (na_recall None for an answerable gold)."""
    unanswerable = is_blank(gold.get("answer_value"))
    if pred is None:
        return {"value_accuracy": 0.0, "ref_overlap": 0.0, "na_recall": 0.0 if unanswerable else None}
    value = float(values_match(pred.get("answer_value"), gold.get("answer_value")))
    p, g = parse_refs(pred.get("ref_id")), parse_refs(gold.get("ref_id"))
    refs = 1.0 if not p and not g else len(p & g) / len(p | g)
    return {
        "value_accuracy": value,
        "ref_overlap": refs,
        "na_recall": float(is_blank(pred.get("answer_value"))) if unanswerable else None,
    }


def score_reply(prediction: Any, gold: Mapping[str, Any]) -> dict[str, float | None]:
    """The per-question scorer (`wattbot` in the registry): a raw reply (or parsed fields) vs the
    gold row; `overall` is the question's weighted score, `malformed` 1 for an unparsable reply."""
    parsed = prediction if isinstance(prediction, Mapping) else parse_reply(str(prediction))
    s = question_scores(parsed, gold)
    return {**s, "overall": overall(s), "malformed": float(bool(parsed.get("malformed")))}


def overall(parts: Mapping[str, float | None]) -> float | None:
    live = {k: w for k, w in WEIGHTS.items() if parts.get(k) is not None and not math.isnan(parts[k])}  # type: ignore[arg-type]
    total = sum(live.values())
    return sum(w * float(parts[k]) for k, w in live.items()) / total if total else None  # type: ignore[arg-type]


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def aggregate(per: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    parts = {k: _mean([p[k] for p in per if p.get(k) is not None]) for k in WEIGHTS}  # type: ignore[misc]
    return {"overall": overall(parts), **parts}


def bootstrap_ci(
    per: Sequence[Mapping[str, float | None]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, list[float] | None]:
    """Percentile bootstrap over questions (fixed seed: same inputs, same interval) per metric."""
    import numpy as np

    if not per:
        return {m: None for m in METRICS}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(n_boot):
        sample = [per[i] for i in rng.integers(0, len(per), len(per))]
        for m, v in aggregate(sample).items():
            if v is not None:
                draws[m].append(v)
    return {
        m: [float(np.quantile(d, alpha / 2)), float(np.quantile(d, 1 - alpha / 2))] if d else None
        for m, d in draws.items()
    }


def score_rows(preds: Sequence[Mapping[str, Any]], golds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """WattBot rows (CSV dicts: id, answer_value, ref_id, ...) → {n, metrics, ci, missing, per_question}."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for p in preds:
        by_id.setdefault(str(p["id"]), p)
    per, missing = [], []
    for g in golds:
        pred = by_id.get(str(g["id"]))
        if pred is None:
            missing.append(str(g["id"]))
        per.append({"id": str(g["id"]), **question_scores(pred, g)})
    return {
        "n": len(golds),
        "metrics": aggregate(per),
        "ci": bootstrap_ci(per),
        "missing": missing,
        "per_question": per,
    }


def read_rows(path) -> list[dict[str, Any]]:
    """A WattBot CSV, JSON/JSONL with the same fields, or a rag run's results.json / predictions.jsonl."""
    import csv
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [dict(r) for r in csv.DictReader(f)]
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict) and isinstance(data.get("examples"), list):  # a rag run's results.json
        data = data["examples"]
    # a run's records: the parsed answer, or the raw reply parsed here (predictions.jsonl)
    return [
        {"id": r["id"], **(r.get("parsed") or parse_reply(str(r["prediction"])))}
        if "answer_value" not in r and "prediction" in r
        else dict(r)
        for r in data
    ]
