"""The question × model results matrix every kind that scores answers per example shares (inference
correctness, judge verdicts): one row per (task, id), a cell per model (1, 0, or None)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from orchestrator.reporting.table import Example


def latest(examples: list[Example]) -> dict[tuple[str, str], dict[str, Example]]:
    """(task, id) → model → its record; a re-run id (resumed run) keeps its last record."""
    q: dict[tuple[str, str], dict[str, Example]] = defaultdict(dict)
    for e in examples:
        q[(e.task, e.id)][e.model] = e
    return q


def results_matrix(examples: list[Example], models: list[str]) -> dict[str, Any]:
    """Question x model correctness (1, 0, or None when the model has no judged answer)."""
    rows, all_right, none_right, split = [], 0, 0, 0
    for (task, qid), by_model in sorted(latest(examples).items()):
        cells = [None if m not in by_model or by_model[m].correct is None else int(by_model[m].correct) for m in models]
        judged = [c for c in cells if c is not None]
        if judged:
            all_right += all(judged)
            none_right += not any(judged)
            split += 0 < sum(judged) < len(judged)
        rows.append({"task": task, "id": qid, "cells": cells})
    return {
        "models": models,
        "rows": rows,
        "n": len(rows),
        "all_correct": all_right,
        "none_correct": none_right,
        "disagree": split,
    }


def matrix_csv(matrix: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "id", *matrix["models"]])
    for r in matrix["rows"]:
        w.writerow([r["task"], r["id"], *("" if c is None else c for c in r["cells"])])
    return buf.getvalue()
