"""The confidence-tagging workflow's file layout, read and written next to our JSONL.

Its prediction files are one JSON object keyed by example id:

    {"0": {"response": "...", "question": "...", "correct_answer": "..."}, "1": {...}}

`read_layout` turns one into our prediction records (id = key, prediction = response, prompt =
question, gold = correct_answer, task = the record's own or the file's stem, so `domains:` can map
it to a tag; every other key is kept). `tagged_layout` writes judged records back in that layout,
each item extended as the workflow's tagged files are:

    "judge_response": {"correct_answer", "model_answer", "reasoning", "correct": "yes"|"no"},
    "correct": true|false, "confidence_token": "<CN_MATH>"|"<UN_MATH>", "tagged_response": "... <CN_MATH>"

Items without a verdict keep `correct`, `confidence_token` and `tagged_response` null.
"""

from __future__ import annotations

import json
from pathlib import Path

LAYOUT_KEYS = ("response", "question", "correct_answer")
OWN = {"id", "prediction", "prompt", "gold"}  # our names for the layout's keys


def is_layout(data: object) -> bool:
    """A JSON object of id → {"response", ...} items (our JSONL is never one object)."""
    return isinstance(data, dict) and bool(data) and all(isinstance(v, dict) and "response" in v for v in data.values())


def load_layout(path: Path) -> dict | None:
    """The file's items when it is in the tagging layout, else None (JSONL: read as ours)."""
    head = path.read_bytes()[:1]
    if head != b"{":
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None  # a JSONL file whose first line is an object
    return data if is_layout(data) else None


def read_layout(items: dict, path: Path) -> list[dict]:
    records = []
    for key, item in items.items():
        extra = {k: v for k, v in item.items() if k not in LAYOUT_KEYS and k not in OWN}
        records.append(
            {
                **extra,
                "id": str(key),
                "task": str(item.get("task") or path.stem),
                "prompt": item.get("question"),
                "prediction": item.get("response"),
                "gold": item.get("correct_answer"),
                "layout_item": item,  # written back as it was, plus the tags
            }
        )
    return records


def tagged_item(judged: dict) -> dict:
    """One judged record → its item in the tagged layout."""
    v, correct = judged["verdict"], judged["verdict"]["correct"]
    token = None if correct is None else f"<{'CN' if correct else 'UN'}_{judged['tag_domain']}>"
    item = dict(judged.get("layout_item") or {"response": judged.get("prediction"), "question": judged.get("prompt")})
    item.setdefault("correct_answer", judged.get("gold"))
    item.update(
        judge_response={
            "correct_answer": judged.get("gold"),
            "model_answer": judged.get("prediction"),
            "reasoning": v.get("explanation") or v.get("error") or "",
            "correct": None if correct is None else ("yes" if correct else "no"),
        },
        correct=correct,
        confidence_token=token,
        tagged_response=judged.get("tagged_response"),
    )
    return item


def tagged_layout(judged: list[dict]) -> dict:
    return {str(r["id"]): tagged_item(r) for r in judged}
