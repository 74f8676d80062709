"""Data for judge tests: predictions.jsonl files in the documented format (docs/architecture.md)."""

from __future__ import annotations

import json
from pathlib import Path

# as the task configs write them (fine-grained), and the tag each maps to by default
TASK_DOMAIN = {"gsm8k": "math", "medqa": "medqa", "coqa": "coqa"}
TASK_TAG = {"gsm8k": "MATH", "medqa": "MED", "coqa": "READ"}


def prediction(i: int, task: str = "gsm8k", correct: bool = True, domain: str | None = None) -> dict:
    """One inference record; the prediction equals the gold when `correct`."""
    gold = f"answer {i}"
    pred = gold if correct else f"wrong {i}"
    return {
        "schema_version": 1,
        "id": f"{task}-{i}",
        "task": task,
        "model": "tiny-qwen",
        "domain": domain if domain is not None else TASK_DOMAIN.get(task, "math"),
        "prompt": f"Question {i}: what is the answer?",
        "prediction": pred,
        "gold": gold,
        "scores": {"em": float(correct)},
        "correct": correct,
        "confidence": {"mean": -0.5, "total": -2.0},
        "latency_s": 0.01,
        "prompt_tokens": 12,
        "completion_tokens": 4,
        "finish_reason": "stop",
    }


def write_predictions(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def mixed(n: int) -> list[dict]:
    """n records over three tasks/domains, every third one wrong."""
    tasks = list(TASK_DOMAIN)
    return [prediction(i, tasks[i % 3], correct=i % 3 != 2) for i in range(n)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
