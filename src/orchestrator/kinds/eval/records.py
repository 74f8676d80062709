"""The eval kind's files: `logs/<exp>/eval/<arm>/<checkpoint>/<task>.json` is an `EvalResult`;
`<task>.jsonl` (per example, resumable) is the shared `core.records.ExampleRecord`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.records import ResultFile


class ExampleScore(BaseModel):
    """One example of a result: what paired tests (reports, held-out early stopping) read."""

    model_config = ConfigDict(extra="allow")

    id: str
    correct: bool
    score: float
    samples_correct: int | None = None
    completion_tokens: int | None = None


class EvalResult(ResultFile):
    """One task of one checkpoint, computed from its per-example records."""

    config: dict[str, Any] = Field(default_factory=dict)
    experiment: str
    arm: str
    checkpoint: str
    epoch: int | None = None
    step: int | None = None
    domain: str = ""
    task: str
    n: int
    samples: int = 1
    metrics: dict[str, float]
    primary_metric: str
    higher_is_better: bool = True
    per_example: list[ExampleScore] = Field(default_factory=list)
    wall_time_s: float | None = None
