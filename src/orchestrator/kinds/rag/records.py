"""The RAG kind's files (docs/wattbot.md): an answer run's `summary.json` is a `RagSummary`
(predictions.jsonl and results.json are the shared `core.records` shapes)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from orchestrator.core.records import ResultFile


class RagSummary(ResultFile):
    config: dict[str, Any] = Field(default_factory=dict)
    model: str = ""
    backend: str = ""
    params_b: float | None = None
    retrieval_config: str = ""
    n: int = 0
    score: dict[str, Any] = Field(default_factory=dict)  # the WattBot metrics
    score_ci: dict[str, Any] = Field(default_factory=dict)
    retrieval: dict[str, Any] = Field(default_factory=dict)  # retriever, k, recall_at_k, n_answerable, time_s
    malformed: int = 0
    errors: int = 0
    latency_s: dict[str, Any] = Field(default_factory=dict)
    tokens: dict[str, Any] = Field(default_factory=dict)
    cost_usd: float = 0.0
    api: dict[str, Any] | None = None
    wall_time_s: float | None = None
    generate_s: float | None = None
    load_time_s: float | None = None
    hardware: dict[str, Any] = Field(default_factory=dict)
