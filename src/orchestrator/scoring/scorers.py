"""Answer extraction and the answer-based scorers (code scorers: `code_scorers.py`).

A scorer function takes `(prediction, gold)` and returns its metric values
(`{"accuracy": 1.0}`, `{"em": .., "f1": ..}`); `registry.SCORERS` names each one, with its
direction and headline metric, for inference tasks, evaluation suites and training rewards alike.

math-verify (a core dependency; sympy underneath) is imported inside `math_equal`, so importing
this module stays cheap for control commands.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.scoring.metrics import (
    COQA_DOMAINS,
    coqa_split,
    coqa_turn_scores,
    exact_match,
    normalize_answer,
    squad_scores,
)
from orchestrator.scoring.weighted import values_equal

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


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def opens_box(text: str) -> bool:
    """Whether the text starts a \\boxed/\\fbox at all (complete or not)."""
    return _BOX.search(text) is not None


def boxed_answer(text: str) -> str | None:
    """The answer a reply states in a box: `extract_boxed`, and "" (no answer) when the reply
    opens a box but never closes one (cut off inside `\\boxed{...`). None when there is no box."""
    boxed = extract_boxed(text)
    if boxed is None and opens_box(text):
        return ""
    return boxed


def _balanced(s: str) -> bool:
    """Whether `s` closes every brace it opens: then "\\boxed{" + s + "}" is s in a box, and
    the added brace cannot complete a box left open inside s."""
    return _braced("{" + s + "}", 0) == s


def _answer_only(s: str) -> str:
    boxed = boxed_answer(s)
    return (boxed if boxed is not None else s).strip().strip("$").strip()


def math_equal(pred: str, gold: str) -> bool:
    """Whether a predicted final answer equals the gold one mathematically, by math-verify alone.

    Both are final answers (a \\boxed{...} inside is unwrapped). math-verify parses each as the
    content of a \\boxed{} (which makes it read bare LaTeX like "x^2+1") and compares them
    symbolically/numerically: "\\frac{1}{2}" == "0.5", "2" == "2.0", "(x+1)^2" == "x^2+2x+1".
    There is no fallback: an answer math-verify cannot read as math (its parse holds only the raw
    string, e.g. "#", or it crashes) is wrong, never guessed, and no string trick joins "1 2" into 12. A side that opens a box it never closes is no
    answer, and an unbalanced side is never wrapped, so an added brace cannot complete the model's box.
    """
    pred, gold = _answer_only(pred), _answer_only(gold)
    if not pred or not gold or not (_balanced(pred) and _balanced(gold)):
        return False
    from math_verify import parse, verify  # sympy underneath: loaded on the first math answer only

    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=timeout)
        pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=timeout)
        # A parse holding only strings is one math-verify could not read as math: its string
        # compare would be the guess we refuse.
        if not all(any(not isinstance(x, str) for x in p) for p in (gold_parsed, pred_parsed)):
            return False
        # Not symmetric: math-verify wants the gold first.
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 -- a parser crash is a wrong answer, and must not kill an evaluation run
        return False


def score_math(prediction: str, gold: str) -> dict[str, float]:
    """Accuracy of the last \\boxed{} answer in the prediction against the gold answer (a
    bare answer, or a full MATH solution whose last \\boxed{} is taken). A prediction with no
    box is compared whole, which only succeeds for short bare answers; one cut off inside its
    box (`\\boxed{...` never closed) has no answer and scores 0."""
    pred = boxed_answer(prediction)
    if pred == "":
        return {"accuracy": 0.0}
    gold = str(gold)
    gold_answer = extract_boxed(gold)
    return {
        "accuracy": float(
            math_equal(pred if pred is not None else prediction, gold_answer if gold_answer is not None else gold)
        )
    }


# --------------------------------------------------------------------------- plain QA


def _golds(gold: Any) -> list[str]:
    return [str(gold)] if isinstance(gold, str) or not isinstance(gold, Sequence) else [str(g) for g in gold]


def final_answer(text: str) -> str:
    """The answer a reply states last: the last \\boxed{...}, else what follows the last
    "answer:"/"answer is", else the last non-empty line. "" when the reply was cut off inside
    its box (a box opened, none closed)."""
    boxed = boxed_answer(text)
    if boxed is not None:
        return boxed
    m = list(re.finditer(r"(?i)answer\s*(?:is|:)\s*", text))
    if m:
        return text[m[-1].end() :].strip().split("\n")[0].strip().rstrip(".")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def same_answer(answer: str, gold: str) -> bool:
    """Equal after SQuAD normalisation (case, punctuation, articles, spaces). A gold that
    normalises to nothing ("a", "The") is compared case-insensitively as written instead, so an
    empty answer never matches it."""
    if not normalize_answer(gold):
        return answer.strip().lower() == gold.strip().lower() != ""
    return exact_match(answer, gold) == 1.0


def score_exact(prediction: str, gold: Any) -> dict[str, float]:
    """Exact match of the final answer (`final_answer`: \\boxed{}, else after the last
    "Answer:", else the last line) against any gold, after normalisation (`same_answer`)."""
    answer = final_answer(prediction)
    return {"em": float(any(same_answer(answer, g) for g in _golds(gold)))}


def score_coqa(prediction: str, gold: Any, record: Mapping[str, Any] | None = None) -> dict[str, float]:
    """EM/F1 with CoQA's leave-one-out multi-gold averaging (see `metrics.coqa_turn_scores`). A turn
    whose record names its story's `source` also gives `em_in_domain`/`f1_in_domain` (or
    `_out_domain`): their means over a run are the official in-/out-of-domain figures."""
    scores = coqa_turn_scores(prediction, _golds(gold))
    source = (record or {}).get("source")
    if source in COQA_DOMAINS:  # another dataset in CoQA's format has no such split
        split = coqa_split(source)
        scores |= {f"em_{split}": scores["em"], f"f1_{split}": scores["f1"]}
    return scores


def score_squad(prediction: str, gold: str | Sequence[str]) -> dict[str, float]:
    """Plain QA EM/F1: max over golds, as SQuAD v1.1 (see `metrics.squad_scores`)."""
    return squad_scores(prediction, gold)


# --------------------------------------------------------------------------- structured answers

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block of the text as (language, body), in order."""
    return _FENCE.findall(text)


def _loads(text: Any) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def score_json(prediction: str, gold: Any) -> dict[str, float]:
    """CodeI/O: the predicted value (a ```json block, \\boxed{} or stated answer) equals the gold
    value as JSON ({"a": 1} == {"a":1}); a gold stored as a JSON string is parsed first."""
    blocks = [b for lang, b in fenced_blocks(prediction) if lang.lower() in ("json", "")]
    candidate = blocks[-1].strip() if blocks else final_answer(prediction)
    want = _loads(gold) if isinstance(gold, str) and _loads(gold) is not None else gold
    got = _loads(candidate)
    if got is None:
        return {"accuracy": float(normalize_answer(candidate) == normalize_answer(str(want)))}
    if isinstance(got, dict) and "output" in got and not (isinstance(want, dict) and "output" in want):
        got = got["output"]  # CodeI/O answers are often {"output": value}
    if isinstance(want, dict) and "output" in want and not (isinstance(got, dict) and "output" in got):
        want = want["output"]
    return {"accuracy": float(got == want)}


_GRID = re.compile(r"\[\s*\[[\d\s,\[\]]*\]\s*\]")


def score_grid(prediction: str, gold: Any) -> dict[str, float]:
    """ARC-AGI: the last grid ([[...], ...]) in the prediction equals the gold output grid exactly."""
    grids = _GRID.findall(prediction)
    got = _loads(grids[-1]) if grids else None
    return {"accuracy": float(got is not None and got == gold)}


def _table_match(answer: str, golds: list[str]) -> bool:
    if len(golds) == 1:
        return values_equal(answer, golds[0])
    parts = [p.strip() for p in re.split(r"[;|]|,\s+", answer) if p.strip()]
    if len(parts) != len(golds):
        return False
    left = list(golds)
    for p in parts:
        match = next((g for g in left if values_equal(p, g)), None)
        if match is None:
            return False
        left.remove(match)
    return True


def score_table(prediction: str, gold: Any) -> dict[str, float]:
    """HiTab / MultiHiertt: numbers within 0.1% (percent signs and commas ignored), text after
    normalisation; a list gold needs the same multiset of values, in any order."""
    answer = final_answer(prediction).replace("%", "").strip()
    golds = [str(g).replace("%", "").strip() for g in (gold if isinstance(gold, list) else [gold])]
    return {"accuracy": float(_table_match(answer, golds))}
