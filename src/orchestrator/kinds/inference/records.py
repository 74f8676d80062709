"""The inference kind's files (docs/architecture.md, "Result file formats"): `summary.json` is an
`InferenceSummary`; predictions.jsonl and results.json are the shared `core.records.ExampleRecord`
and `core.records.RunResults`."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from orchestrator.core.records import ResultFile


class InferenceSummary(ResultFile):
    """logs/<exp>/<model>__<task>/summary.json: the run's metrics, calibration, speed and hardware."""

    config: dict[str, Any] = Field(default_factory=dict)
    model: str = ""
    task: str = ""
    n: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict)  # metric → mean over examples
    calibration: dict[str, Any] = Field(default_factory=dict)  # auroc, ece
    throughput_tokens_per_s: float | None = None
    wall_time_s: float | None = None
    load_time_s: float | None = None
    hardware: dict[str, Any] = Field(default_factory=dict)  # null values without a GPU
