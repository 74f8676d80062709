"""The WattBot 2025 score (docs/wattbot.md): a model's reply → answer fields, and those answers →
the competition's "WattBot Score (0–1)" against the WattBot CSV.

    overall = 0.75 × value_accuracy + 0.15 × ref_overlap + 0.10 × na_recall   (answer_unit: weight 0)

Every value is compared as the CSV cell holds it (`str` of what a reply parsed to). The rules, as
the competition's metric applies them:

- Blank: `""`, `na`, `n/a`, `is_blank` (any case) and answers starting with "Unable to answer with
  confidence based on the provided documents" (`is_blank("N/A")`).
- value_accuracy, over every gold row. A gold-blank row gets the credit whatever the prediction
  (abstaining is measured by na_recall alone). Otherwise the prediction is normalised first
  (`normalize_value`): true/yes → 1, false/no → 0 ("Yes" → "1"); thousands commas go ("1,234" →
  "1234"); a hedge goes ("about 5", "more than 5", "~5", "≈5", "> 5" → "5"); a magnitude suffix
  multiplies ("2B" → "2000000000", "1.5k" → "1500"); a range becomes a list ("80-90", "from 80 to
  90" → "[80,90]"). Then:
  - numbers: `math.isclose(pred, gold, rel_tol=1e-3, abs_tol=1e-3)` ("999" = "1000", "0.0005" = "0");
  - a gold `[a, b]` of two numbers is a range a single number satisfies within ±1e-3 ("85" = "[80, 90]");
  - lists compare order-insensitively, numbers with the tolerance above ("[2, 1]" = "[1, 2]"), else
    as stripped lower-case strings; `{a, b}` is a set of terms ("{GPU, cpu}" = "[cpu, gpu]");
  - anything else: equal after strip + lower-case ("Paris" = " paris", but "Paris." ≠ "Paris").
- ref_overlap, over every gold row: Jaccard of the lower-cased id sets (`ref_set`): a `[...]` cell
  is a JSON/Python list, any other cell one id ("is_blank" included); both empty → 1.0, one empty → 0.
- na_recall, over the gold-blank rows only: the share answered blank; 1.0 when there is none.

Our conventions (the competition joins on id and never sees these): a gold row without a prediction
scores 0 on every component and is listed in `missing`; a prediction for an id not in the gold is
ignored. The competition refuses a submission with an empty `explanation`: `empty_explanations`
names such rows (`orchestrate score` warns). The reply parser lives here too, since the
per-question scorer is handed the model's raw text.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

WEIGHTS: Mapping[str, float] = {"value_accuracy": 0.75, "ref_overlap": 0.15, "na_recall": 0.10}
METRICS = ("overall", *WEIGHTS)
BLANK = "is_blank"
TOL = 1e-3  # relative and absolute, as the competition's math.isclose
BLANK_TOKENS = frozenset({"", "na", "n/a", BLANK})
UNABLE = "unable to answer with confidence based on the provided documents"
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
_HEDGE = re.compile(
    r"^(?:(?:more|less|greater|fewer)\s+than|approximately|about|around|over|under|nearly|roughly"
    r"|up\s+to|at\s+least|at\s+most)\s+|^[~≈><]\s*",
    re.IGNORECASE,
)
_MAGNITUDE = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_SUFFIXED = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([kmbt])$", re.IGNORECASE)
_RANGE = re.compile(r"^(?:from\s+)?(-?[\d.]+)\s*(?:[-–—]|to)\s*(-?[\d.]+)$", re.IGNORECASE)


# --------------------------------------------------------------------------- values and refs


def cell(value: Any) -> str:
    """A value as the submission CSV holds it: None → "", anything else its str."""
    return "" if value is None else str(value)


def is_blank(value: Any) -> bool:
    """No answer: "", na, n/a, is_blank (any case, spaces around), or the "Unable to answer ..." phrase."""
    text = cell(value).strip().lower()
    return text in BLANK_TOKENS or text.startswith(UNABLE)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_number(value: Any) -> float | None:
    """12, "12", "1,234.5", "~40", "12%" (→ 12), "1.2e3" → a float; anything else → None.
    (For voting on answers; scoring reads numbers with `normalize_value`.)"""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if not isinstance(value, str) or not _NUMBER.match(value.strip()):
        return None
    return _float(value.strip().lstrip("~≈<>").rstrip("%").replace(",", "").replace("_", "").strip())


def _plain(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def normalize_value(value: Any) -> str:
    """A predicted answer_value as the competition normalises it before comparing (module docstring):
    "Yes" → "1", "1,234" → "1234", "about 5" → "5", "2B" → "2000000000", "from 80 to 90" → "[80,90]"."""
    s = cell(value).strip()
    if is_blank(s):
        return s
    if s.lower() in ("true", "yes"):
        return "1"
    if s.lower() in ("false", "no"):
        return "0"
    if _float(s.replace(",", "")) is not None:
        s = s.replace(",", "")
    hedge = _HEDGE.match(s)
    if hedge:
        s = s[hedge.end() :].strip()
        if _float(s.replace(",", "")) is not None:
            s = s.replace(",", "")
    suffixed = _SUFFIXED.match(s)
    if suffixed:
        return _plain(float(suffixed.group(1)) * _MAGNITUDE[suffixed.group(2).lower()])
    ranged = _RANGE.match(s)
    if ranged:
        a, b = _float(ranged.group(1)), _float(ranged.group(2))
        if a is not None and b is not None:
            return f"[{_plain(min(a, b))},{_plain(max(a, b))}]"
    return s


def _collection(text: str) -> list | None:
    """ "[a, b]" → its items (numbers as floats, text lower-cased); "{a, b}" → the sorted set of its
    lower-cased terms; anything else → None."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            items = json.loads(s.replace("'", '"'))
        except ValueError:
            items = [t.strip() for t in s[1:-1].split(",")]
        if not isinstance(items, list):
            items = [items]
        out: list = []
        for t in (cell(t).strip() for t in items):
            number = _float(t)
            out.append(number if number is not None else t.lower())
        return out
    if s.startswith("{") and s.endswith("}"):
        return sorted({t.strip().lower() for t in s[1:-1].split(",") if t.strip()})
    return None


def _numbers(items: list) -> bool:
    return all(isinstance(v, float) for v in items)


def _lists_equal(a: list, b: list) -> bool:
    if _numbers(a) and _numbers(b):
        return len(a) == len(b) and all(
            math.isclose(x, y, rel_tol=TOL, abs_tol=TOL) for x, y in zip(sorted(a), sorted(b))
        )
    return sorted(cell(x).strip().lower() for x in a) == sorted(cell(x).strip().lower() for x in b)


def values_match(pred: Any, gold: Any) -> bool:
    """Whether a predicted answer_value earns the value credit against a gold one (module docstring);
    a blank gold is always earned."""
    if is_blank(gold):
        return True
    gold, pred = cell(gold), normalize_value(pred)
    gold_items, pred_items = _collection(gold), _collection(pred)
    if gold_items is not None:
        if pred_items is not None:
            return _lists_equal(gold_items, pred_items)
        number = _float(pred)
        if len(gold_items) == 2 and _numbers(gold_items) and number is not None:
            return min(gold_items) - TOL <= number <= max(gold_items) + TOL
        return False
    g, p = _float(gold), _float(pred)
    if g is not None and p is not None:
        return math.isclose(g, p, rel_tol=TOL, abs_tol=TOL)
    return gold.strip().lower() == pred.strip().lower()


def ref_set(value: Any) -> set[str]:
    """The ref ids a ref_id cell scores as: a "[...]" list's lower-cased items, any other non-empty
    cell as one id ("is_blank" too); an empty list (a reply citing nothing) is written, and so
    scored, as "is_blank"."""
    text = (format_refs(value) if isinstance(value, (list, tuple, set)) else cell(value)).strip()
    if not text:
        return set()
    if text.startswith("["):
        try:
            items = json.loads(text.replace("'", '"'))
            if isinstance(items, list):
                return {cell(x).strip().lower() for x in items}
        except ValueError:
            pass
    return {text.lower()}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets overlap fully (1.0)."""
    return len(a & b) / len(a | b) if a | b else 1.0


def parse_refs(value: Any) -> set[str]:
    """The ids a reply or a row cites, leniently (for recall@k and ensembles, not the score):
    "['doc_a', 'doc_b']", '["a"]', "a; b", "a, b", a list → the set of ids; blank → ∅."""
    if isinstance(value, (list, tuple, set)):
        items = [str(x) for x in value]
    elif is_blank(value):
        return set()
    else:
        text = str(value).strip()
        listed = _as_list(text)
        items = [str(x) for x in listed] if listed is not None else re.split(r"[;,]", text)
    return {x.strip().strip("'\"") for x in items if x.strip().strip("'\"") and not is_blank(x.strip().strip("'\""))}


def _as_list(value: str) -> list | None:
    if value.startswith("[") and value.endswith("]"):
        try:
            out = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out = [x.strip().strip("'\"") for x in value[1:-1].split(",") if x.strip()]
        return list(out) if isinstance(out, (list, tuple)) else None
    return None


def format_refs(refs: Sequence[str] | set[str]) -> str:
    """The WattBot CSV form of a ref list: "['a', 'b']", or is_blank when empty."""
    return str([str(r) for r in sorted(refs)] if isinstance(refs, set) else [str(r) for r in refs]) if refs else BLANK


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
    worked (then the answer is is_blank and the explanation says why, quoting the reply)."""
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
    # the submission's explanation says why there is no answer (the competition refuses an empty one)
    why = (
        f"unparsed reply (no JSON answer, no answer_value line): {text.strip()[:400]}"
        if text.strip()
        else "empty reply"
    )
    return {**_fields({"answer_value": BLANK, "explanation": why}), "format": None, "malformed": True}


# --------------------------------------------------------------------------- scoring


def question_scores(pred: Mapping[str, Any] | None, gold: Mapping[str, Any]) -> dict[str, float | None]:
    """One row's components: value and ref credit, and for a gold-blank row whether the prediction
    abstained (na_recall; None on an answerable row). A missing prediction scores 0 on each."""
    unanswerable = is_blank(gold.get("answer_value"))
    if pred is None:
        return {"value_accuracy": 0.0, "ref_overlap": 0.0, "na_recall": 0.0 if unanswerable else None}
    return {
        "value_accuracy": float(values_match(pred.get("answer_value"), gold.get("answer_value"))),
        "ref_overlap": jaccard(ref_set(pred.get("ref_id")), ref_set(gold.get("ref_id"))),
        "na_recall": float(is_blank(pred.get("answer_value"))) if unanswerable else None,
    }


def overall(parts: Mapping[str, float | None]) -> float | None:
    """The weighted score of components (a row's or a set's). na_recall None (an answerable row, or
    a set without gold-blank rows) counts 1.0, as the competition's; None when a component is missing."""
    value, refs = parts.get("value_accuracy"), parts.get("ref_overlap")
    if value is None or refs is None:
        return None
    na = parts.get("na_recall")
    return (
        WEIGHTS["value_accuracy"] * value
        + WEIGHTS["ref_overlap"] * refs
        + WEIGHTS["na_recall"] * (1.0 if na is None else na)
    )


def score_reply(prediction: Any, gold: Mapping[str, Any]) -> dict[str, float | None]:
    """The per-question scorer (`wattbot` in the registry): a raw reply (or parsed fields) vs the
    gold row; `overall` is the row's weighted score, `malformed` 1 for an unparsable reply."""
    parsed = prediction if isinstance(prediction, Mapping) else parse_reply(str(prediction))
    s = question_scores(parsed, gold)
    return {**s, "overall": overall(s), "malformed": float(bool(parsed.get("malformed")))}


def _columns(per: Sequence[Mapping[str, float | None]]):
    """Rows × (value, ref, abstained, gold-blank): abstained is 0 on an answerable row."""
    import numpy as np

    return np.array(
        [
            (p["value_accuracy"], p["ref_overlap"], p["na_recall"] or 0.0, float(p["na_recall"] is not None))
            for p in per
        ],
        dtype=np.float64,
    ).reshape(len(per), 4)


def _statistics(means):
    """(overall, value_accuracy, ref_overlap, na_recall) from column means (… × 4, any leading shape):
    na_recall is abstained / gold-blank, 1.0 where no row is gold-blank."""
    import numpy as np

    v, r, na, blank = np.moveaxis(means, -1, 0)
    recall = np.where(blank > 0, na / np.where(blank > 0, blank, 1.0), 1.0)
    total = WEIGHTS["value_accuracy"] * v + WEIGHTS["ref_overlap"] * r + WEIGHTS["na_recall"] * recall
    return np.stack([total, v, r, recall], axis=-1)


def aggregate(per: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """The set's figures: means of the value and ref credit over all rows, na_recall over the
    gold-blank rows (1.0 when there is none), and their weighted `overall`."""
    if not per:
        return {m: None for m in METRICS}
    return {m: float(x) for m, x in zip(METRICS, _statistics(_columns(per).mean(axis=0)))}


def bootstrap_ci(
    per: Sequence[Mapping[str, float | None]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, list[float] | None]:
    """Percentile bootstrap over rows (resampled whole; significance.bootstrap_means), per metric;
    fixed seed: same inputs, same interval. None for fewer than two rows."""
    import numpy as np

    from orchestrator.scoring.significance import bootstrap_means

    if len(per) < 2:
        return {m: None for m in METRICS}
    stats = _statistics(bootstrap_means(_columns(per), n_boot, np.random.default_rng(seed)))
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2], axis=0)
    return {m: [float(lo), float(hi)] for m, lo, hi in zip(METRICS, low, high)}


def empty_explanations(preds: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of prediction rows whose explanation is empty: the competition refuses the whole submission."""
    return [str(p.get("id")) for p in preds if not cell(p.get("explanation")).strip()]


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
    """A WattBot CSV (cells as written: no NaN reading), JSON/JSONL with the same fields, or a rag
    run's results.json / predictions.jsonl."""
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
