"""The weighted benchmark-harness scorer: value accuracy, reference overlap and unanswerable
recall over a whole set of questions (corpus-level: lists of rows, not one prediction)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.scoring.metrics import normalize_answer

DEFAULT_WEIGHTS: Mapping[str, float] = {"value": 0.75, "references": 0.15, "unanswerable": 0.10}


def _number(v: Any) -> float | None:
    if isinstance(v, bool):  # bool is an int subclass but not a quantity
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip().replace(",", "").replace("_", ""))
        except ValueError:
            return None
    return None


def values_equal(pred: Any, gold: Any, rel_tol: float = 1e-3) -> bool:
    """Numbers: |pred - gold| <= rel_tol * |gold| (relative to the gold, so 0 must be exact).
    Anything else: equal after `normalize_answer`. Numeric strings ("1,234.5") count as numbers."""
    p, g = _number(pred), _number(gold)
    if p is not None and g is not None:
        return abs(p - g) <= rel_tol * abs(g)
    if pred is None or gold is None:
        return pred is None and gold is None
    return normalize_answer(str(pred)) == normalize_answer(str(gold))


def _says_unanswerable(row: Mapping[str, Any] | None) -> bool:
    if row is None:
        return False
    if row.get("answerable", True) is False:
        return True
    value = row.get("value")
    return isinstance(value, str) and normalize_answer(value) == "unanswerable"


def _jaccard(a: set[Any], b: set[Any]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def _by_id(rows: Sequence[Mapping[str, Any]], what: str) -> dict[Any, Mapping[str, Any]]:
    out: dict[Any, Mapping[str, Any]] = {}
    for row in rows:
        if row["id"] in out:
            raise ValueError(f"duplicate id {row['id']!r} in {what} rows")
        out[row["id"]] = row
    return out


def weighted_score(
    pred_rows: Sequence[Mapping[str, Any]],
    gold_rows: Sequence[Mapping[str, Any]],
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    rel_tol: float = 1e-3,
) -> dict[str, float]:
    """Benchmark-harness score over a whole set of questions.

    Row format (gold and prediction alike)::

        {"id": "q1",                 # matches a prediction to its gold row
         "value": 12.5 | "Paris",    # the answer; numbers may also be numeric strings
         "references": ["doc3", ...],  # ids of the sources backing the answer (order ignored)
         "answerable": True}         # gold: False marks a question with no answer

    A prediction says "unanswerable" with `"answerable": False` (or value "unanswerable").
    Components, each in [0, 1]:
      - value:        accuracy on answerable gold rows (`values_equal`, numbers within
                      `rel_tol` = 0.1% of the gold); predicting "unanswerable" there is wrong;
      - references:   mean Jaccard of reference-id sets on answerable gold rows (both empty = 1);
      - unanswerable: recall on unanswerable gold rows (share the prediction flags).
    score = sum(weight * component). A component with no gold rows to score (e.g. no
    unanswerable questions) is NaN and its weight is shared out over the others, so the score
    stays in [0, 1]. A missing prediction scores 0 on every component; predictions for ids
    not in the gold are ignored.
    """
    if set(weights) != set(DEFAULT_WEIGHTS):
        raise ValueError(f"weights must have exactly the keys {sorted(DEFAULT_WEIGHTS)}")
    if not gold_rows:
        raise ValueError("no gold rows to score")
    preds = _by_id(pred_rows, "prediction")
    golds = _by_id(gold_rows, "gold")

    value_hits, ref_overlaps, unans_hits = [], [], []
    for qid, gold in golds.items():
        pred = preds.get(qid)
        if gold.get("answerable", True):
            ok = pred is not None and not _says_unanswerable(pred)
            value_hits.append(float(ok and values_equal(pred.get("value"), gold.get("value"), rel_tol)))
            ref_overlaps.append(
                _jaccard(set(pred.get("references") or []), set(gold.get("references") or [])) if pred else 0.0
            )
        else:
            unans_hits.append(float(_says_unanswerable(pred)))

    def _mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    parts = {"value": _mean(value_hits), "references": _mean(ref_overlaps), "unanswerable": _mean(unans_hits)}
    live = {k: w for k, w in weights.items() if not math.isnan(parts[k])}
    total = sum(live.values())
    score = sum(w * parts[k] for k, w in live.items()) / total if total > 0 else float("nan")
    return {
        "score": score,
        "value_accuracy": parts["value"],
        "reference_jaccard": parts["references"],
        "unanswerable_recall": parts["unanswerable"],
    }
