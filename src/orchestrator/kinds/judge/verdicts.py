"""Verdicts: reading a judge's reply, the rule judges, the `<CN_/UN_DOMAIN>` tags and the judged
record written to judged.jsonl. Pure (no network, no files)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from orchestrator.kinds.judge.config import DEFAULT_DOMAINS, RULES, JudgeConfig
from orchestrator.kinds.judge.records import JudgedRecord, VerdictRecord
from orchestrator.scoring import scorers


@dataclass
class Verdict:
    correct: bool | None
    explanation: str
    judge: str
    raw: str | None = None  # the judge's reply, as received
    attempts: int = 0  # HTTP requests made for this item
    error: str | None = None  # why there is no verdict (correct is None)


_BOOL_WORDS = {
    "true": True,
    "yes": True,
    "correct": True,
    "right": True,
    "false": False,
    "no": False,
    "incorrect": False,
    "wrong": False,
}
_WORD = re.compile(r"\b(not\s+(?:correct|right)|yes|no|correct|incorrect|true|false|right|wrong)\b", re.IGNORECASE)


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        return _BOOL_WORDS.get(v.strip().lower())
    return None


def _json_objects(text: str) -> Iterator[Any]:
    """Every JSON object embedded in `text` (code fences, prose around it), in order."""
    decoder = json.JSONDecoder()
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        yield obj
        i = text.find("{", end)


def parse_verdict(text: str | None) -> tuple[bool | None, str]:
    """The judge's reply → (correct, explanation); (None, why) when it holds no verdict.

    Preferred: a JSON object with "correct" (bool, or "yes"/"true"/... as a string) anywhere in the
    reply. Fallback: the first of yes/no/correct/incorrect/true/false/right/wrong as a whole word
    ("not correct" counts as no), with the reply itself as the explanation.
    """
    if not text or not text.strip():
        return None, "empty reply"
    unreadable = None
    for obj in _json_objects(text):
        if isinstance(obj, dict) and "correct" in obj:
            correct = _as_bool(obj["correct"])
            if correct is not None:
                return correct, str(obj.get("explanation", "") or "")
            unreadable = obj["correct"]
    if unreadable is not None:  # the word search would only find the key's own name
        return None, f"unreadable 'correct' value {unreadable!r} in the JSON reply"
    m = _WORD.search(text)
    if m:
        word = m.group(1).lower()
        return (False if word.startswith("not") else _BOOL_WORDS[word]), text.strip()[:500]
    return None, "no verdict in the reply (neither JSON with 'correct' nor yes/no)"


def tag(prediction: str, correct: bool | None, domain: str) -> str | None:
    """`prediction <CN_DOMAIN>` when judged correct, `prediction <UN_DOMAIN>` when not."""
    if correct is None:
        return None
    return f"{prediction} <{'CN' if correct else 'UN'}_{domain}>"


def domain_of(record: dict, cfg: JudgeConfig) -> str:
    """The tag domain of a record: the spec's `domains` (by task, then by the record's own domain),
    else the record's domain when it already is a tag, else DEFAULT_DOMAINS (task configs name
    fine-grained domains such as "medqa" or "coqa")."""
    task, own = str(record.get("task") or ""), str(record.get("domain") or "")
    found = next((cfg.domains[k] for k in (task, own) if k and k in cfg.domains), None)
    if found is None and own.upper() in cfg.tags:
        found = own.upper()
    if found is None:
        found = next((DEFAULT_DOMAINS[k.lower()] for k in (task, own) if k.lower() in DEFAULT_DOMAINS), None)
    if found is None or found.upper() not in cfg.tags:
        got = f"maps to {found!r}, which is not" if found else "maps to none of"
        raise ValueError(
            f"task {task!r} (domain {own!r}) {got} the tags {list(cfg.tags)}: "
            f"map it with domains: {{{task or own}: {cfg.tags[0]}}} or add a tag to tags"
        )
    return found.upper()


def judge_by_rule(rule: str, record: dict) -> Verdict:
    """The rule judges: "exact" (normalised exact match) and "math" (math-verify on the boxed answer)."""
    prediction, gold = str(record.get("prediction") or ""), record.get("gold")
    name = f"rule:{rule}"
    if gold is None or gold == "" or gold == []:
        return Verdict(None, "", name, error="the record has no gold answer")
    if rule == "exact":
        correct = scorers.score_exact(prediction, gold)["em"] >= 1.0
        return Verdict(correct, f"normalised exact match against {gold!r}: {'yes' if correct else 'no'}", name)
    if rule == "math":
        extracted = scorers.extract_boxed(prediction)
        correct = scorers.score_math(prediction, str(gold))["accuracy"] >= 1.0
        shown = extracted if extracted is not None else prediction[-80:]
        return Verdict(
            correct, f"math-verify: answer {shown!r} vs gold {gold!r}: {'equal' if correct else 'not equal'}", name
        )
    raise ValueError(f"unknown rule judge {rule!r}: use one of {', '.join(RULES)}")


def judged_record(record: dict, verdict: Verdict, domain: str) -> dict:
    """The line judged.jsonl holds for one prediction: the prediction record, its tag domain, the
    structured verdict and the tagged response (docs/results-schema.md)."""
    return JudgedRecord.model_validate(
        {
            **record,
            "tag_domain": domain,
            "verdict": VerdictRecord(
                correct=verdict.correct,
                explanation=verdict.explanation,
                judge=verdict.judge,
                raw=verdict.raw,
                attempts=verdict.attempts,
                error=verdict.error,
            ),
            "tagged_response": tag(str(record.get("prediction") or ""), verdict.correct, domain),
        }
    ).dump()
