"""Answer extraction and per-task scorers for inference/evaluation jobs.

Every scorer is a pure callable `(prediction, gold) -> dict[str, float]` of metric values;
task configs name one by its key in `SCORERS` (or as "module:function" for user code).
Per-item scorers return per-item values that the caller aggregates (see `metrics.METRICS`);
`weighted` is corpus-level and takes lists of rows.

math-verify (and through it sympy) is imported lazily inside `math_equal`, so importing this
module stays cheap and works without it.
"""

from __future__ import annotations

import importlib
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.scoring.metrics import coqa_turn_scores, exact_match, normalize_answer, squad_scores

Scorer = Callable[[Any, Any], dict[str, float]]

# --------------------------------------------------------------------------- BoolQ

_YES = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def extract_yes_no(text: str) -> str | None:
    """First yes/no/true/false *word* in the text as "yes"/"no"; None when there is none.

    Whole words only, so "Not", "Nobody" or "Yesterday" never count.
    """
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in _YES:
            return _YES[word]
    return None


def _gold_yes_no(gold: Any) -> str:
    if isinstance(gold, bool):  # BoolQ stores the label as a bool
        return "yes" if gold else "no"
    label = extract_yes_no(str(gold))
    if label is None:
        raise ValueError(f"BoolQ gold must be yes/no/true/false, got {gold!r}")
    return label


def score_boolq(prediction: str, gold: Any) -> dict[str, float]:
    """Accuracy of the extracted yes/no; an unparseable prediction counts as wrong."""
    return {"accuracy": float(extract_yes_no(prediction) == _gold_yes_no(gold))}


# --------------------------------------------------------------------------- multiple choice

# Option letters are upper-case only: a lower-case "a" is far more often the article.
_L = "([A-J])(?![A-Za-z0-9])"
# Explicit statements; the last one in the text wins (chain-of-thought ends with the answer).
_MC_EXPLICIT = [
    # "Answer: C", "The answer is (C)", "answer is: **C**", "Final answer: option C"
    re.compile(r"(?i:answer)(?:\s+(?i:is))?\s*[:=\-]?\s*(?:(?i:option|choice)\s*)?[\*\(\[\s]*" + _L),
    re.compile(r"\\boxed\{\s*(?:\\text\{\s*)?\(?" + _L),
]
# A bare letter opening the reply: "C", "C.", "C)", "(C)", "**C**", "C: Metformin".
_MC_START = re.compile(r"^\s*[\*\(\[]*([A-J])(?:[\)\]\.:\*,]|\s*$)")
# Weakest evidence, last occurrence: "(C)" or "option C" anywhere.
_MC_LOOSE = [re.compile(r"\(([A-J])\)"), re.compile(r"(?i:option|choice)\s*\(?" + _L)]


def _plausible(m: re.Match[str], letters: str) -> bool:
    # "I" followed by a lower-case word or an apostrophe is the pronoun ("Answer: I think ...").
    letter, after = m.group(1), m.string[m.end(1) :]
    return letter in letters and not (letter == "I" and re.match(r"\s*(?:['\u2019]|[a-z])", after))


def _last_match(patterns: Sequence[re.Pattern[str]], text: str, letters: str) -> str | None:
    best: tuple[int, str] | None = None
    for pattern in patterns:
        for m in pattern.finditer(text):
            if _plausible(m, letters) and (best is None or m.start() >= best[0]):
                best = (m.start(), m.group(1))
    return best[1] if best else None


def extract_choice(text: str, letters: str = "ABCDEFGHIJ") -> str | None:
    """The chosen option letter, or None. Tried in order of how explicit the evidence is:
    "answer is/Answer: X" or \\boxed{X} (last one), a letter opening the reply, then the last
    "(X)" / "option X". Letters outside `letters` (e.g. "E" on a 4-option question) are skipped.
    """
    letter = _last_match(_MC_EXPLICIT, text, letters)
    if letter is None and (m := _MC_START.match(text)) and _plausible(m, letters):
        letter = m.group(1)
    if letter is None:
        letter = _last_match(_MC_LOOSE, text, letters)
    return letter


def score_mcq(prediction: str, gold: str) -> dict[str, float]:
    """Accuracy of the extracted letter against the gold letter ("C", "(C)" or "c")."""
    gold_letter = str(gold).strip().strip("()[]. ").upper()
    if len(gold_letter) != 1 or not gold_letter.isalpha():
        raise ValueError(f"multiple-choice gold must be a single letter, got {gold!r}")
    return {"accuracy": float(extract_choice(prediction) == gold_letter)}


# --------------------------------------------------------------------------- MATH


def _braced(text: str, open_idx: int) -> str | None:
    """Content of the {...} group opening at text[open_idx], honouring nesting; None if unclosed.
    A backslash escapes the next character so \\{ and \\} are literal braces, not grouping."""
    depth, i = 0, open_idx
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_idx + 1 : i]
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} (or \\fbox{...}), nested braces included:
    "\\boxed{\\frac{1}{2}}" -> "\\frac{1}{2}". Also the brace-less "\\boxed 5" form that MATH
    solutions sometimes use. A trailing unclosed box (a truncated generation) is skipped in
    favour of an earlier complete one. None when there is no box.
    """
    for m in reversed(list(re.finditer(r"\\(?:boxed|fbox)(?![A-Za-z])", text))):
        rest = text[m.end() :]
        stripped = rest.lstrip()
        if stripped.startswith("{"):
            content = _braced(text, m.end() + len(rest) - len(stripped))
            if content is not None:
                return content.strip()
        elif rest[:1] == " " and stripped:
            # Official MATH `last_boxed_only_string`: "\boxed 5$" -> "5" (up to the next "$").
            return stripped.split("$")[0].strip()
    return None


_LATEX_NOISE = re.compile(r"\\left|\\right|\\[!,;: ]|\$|\\displaystyle|\^\{?\\circ\}?|\\%|%")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def _normalize_math(s: str) -> str:
    """Conservative string normalisation for the fallback compare (a subset of the MATH
    reference `strip_string`): two answers equal after it are equal as math."""
    s = _TEXT_WRAP.sub(r"\1", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _LATEX_NOISE.sub("", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    return s


def _as_float(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def _answer_only(s: str) -> str:
    boxed = extract_boxed(s) if "\\boxed" in s or "\\fbox" in s else None
    return (boxed if boxed is not None else s).strip().strip("$").strip()


def math_equal(pred: str, gold: str) -> bool:
    """Whether a predicted final answer equals the gold one mathematically.

    Both are final answers (a \\boxed{...} inside is unwrapped). math_verify parses each (as
    the content of a \\boxed{}, which makes it read bare LaTeX like "x^2+1") and compares
    symbolically/numerically: "\\frac{1}{2}" == "0.5", "2" == "2.0", "(x+1)^2" == "x^2+2x+1".
    When either side does not parse, falls back to a normalised string compare and then a
    plain float compare.
    """
    pred, gold = _answer_only(pred), _answer_only(gold)
    if not pred or not gold:
        return False
    norm_pred, norm_gold = _normalize_math(pred), _normalize_math(gold)
    if norm_pred == norm_gold:
        return True
    try:
        from math_verify import parse, verify

        # math_verify's timeouts use signal.alarm, which only works in the main thread.
        timeout = 5 if threading.current_thread() is threading.main_thread() else None
        gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=timeout)
        pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=timeout)
        if gold_parsed and pred_parsed:
            # Not symmetric: math_verify wants the gold first.
            return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 -- a parser crash must not kill an evaluation run
        pass
    a, b = _as_float(norm_pred), _as_float(norm_gold)
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def score_math(prediction: str, gold: str) -> dict[str, float]:
    """Accuracy of the last \\boxed{} answer in the prediction against the gold answer (a
    bare answer, or a full MATH solution whose last \\boxed{} is taken). A prediction with no
    box is compared whole, which only succeeds for short bare answers."""
    pred = extract_boxed(prediction)
    gold_answer = extract_boxed(gold)
    return {
        "accuracy": float(
            math_equal(pred if pred is not None else prediction, gold_answer if gold_answer is not None else gold)
        )
    }


# --------------------------------------------------------------------------- plain QA


def _golds(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else list(gold)


def score_exact(prediction: str, gold: str | Sequence[str]) -> dict[str, float]:
    """Normalised exact match, max over golds."""
    return {"em": max(exact_match(prediction, g) for g in _golds(gold))}


def score_coqa(prediction: str, gold: str | Sequence[str]) -> dict[str, float]:
    """EM/F1 with CoQA's leave-one-out multi-gold averaging (see `metrics.coqa_turn_scores`)."""
    return coqa_turn_scores(prediction, _golds(gold))


def score_squad(prediction: str, gold: str | Sequence[str]) -> dict[str, float]:
    """Plain QA EM/F1: max over golds, as SQuAD v1.1 (see `metrics.squad_scores`)."""
    return squad_scores(prediction, gold)


# --------------------------------------------------------------------------- weighted benchmark

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


# --------------------------------------------------------------------------- registry

SCORERS: dict[str, Scorer] = {
    "coqa": score_coqa,
    "squad": score_squad,
    "boolq": score_boolq,
    "mcq": score_mcq,
    "math": score_math,
    "exact": score_exact,
    "weighted": weighted_score,
}


def register_scorer(name: str, fn: Scorer, *, replace: bool = False) -> None:
    """Add a scorer under `name`; refuses to shadow an existing one unless `replace=True`."""
    if not callable(fn):
        raise TypeError(f"scorer {name!r} is not callable")
    if name in SCORERS and not replace:
        raise ValueError(f"scorer {name!r} already registered (pass replace=True to override)")
    SCORERS[name] = fn


def load_scorer(ref: str) -> Scorer:
    """A scorer from a registered name or a "package.module:function" reference."""
    if ref in SCORERS:
        return SCORERS[ref]
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"unknown scorer {ref!r}: use one of {sorted(SCORERS)} or 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"scorer {ref!r}: cannot import module {module_name!r} ({e})") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"scorer {ref!r}: module {module_name!r} has no callable {attr!r}")
    return fn
