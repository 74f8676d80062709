"""The judge kind's files (docs/results-schema.md, "Judge files"): each line of `judged.jsonl` is
a `JudgedRecord`, `judge_summary.json` a `JudgeSummary`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.records import ResultFile


class VerdictRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    correct: bool | None  # None: no verdict (`error` says why)
    explanation: str = ""
    judge: str = ""  # the judge model, or rule:<name>
    raw: str | None = None  # the judge's reply as received
    attempts: int = 0
    error: str | None = None


class JudgedRecord(ResultFile):
    """The prediction record as read (its keys kept), its tag domain, the verdict and the tagged response."""

    id: Any
    prediction: Any = None
    tag_domain: str
    verdict: VerdictRecord
    tagged_response: str | None = None  # prediction + " <CN_DOMAIN>" | " <UN_DOMAIN>"; None without a verdict


class DomainCounts(BaseModel):
    n: int = 0
    correct: int = 0
    no_verdict: int = 0


class JudgeSummary(ResultFile):
    config: dict[str, Any] = Field(default_factory=dict)  # names the key's variable, never the key
    experiment: str = ""
    predictions: str = ""
    judge: str = ""
    n: int = 0
    correct: int = 0
    incorrect: int = 0
    no_verdict: int = 0
    accuracy: float | None = None  # correct / items with a verdict
    by_domain: dict[str, DomainCounts] = Field(default_factory=dict)
    duplicates_in_input: int = 0
    skipped_already_judged: int = 0
    calls: int = 0
    retries: int = 0
    backoff_s: float = 0.0
    wall_time_s: float | None = None
