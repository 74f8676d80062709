"""The results table (docs/results-schema.md): one `Row` per value or job, the per-example records
beside it, and its CSV / JSON export. Pure data: the readers fill it, the report reads it."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.files import SCHEMA_VERSION
from orchestrator.scoring.metrics import METRICS


@dataclass(slots=True)
class Row:
    """One value of the results table. `source` says which fields are filled (docs/results-schema.md)."""

    source: str  # train | train_summary | eval | inference | judge | job | command (a file a unit wrote)
    experiment: str
    arm: str = ""  # training arm; the model for inference and judge rows
    run: str = ""  # run directory under logs/<exp>/ (job rows: the registry's run)
    stage: str = ""  # job rows: the spec's stage
    checkpoint: str = ""  # eval: checkpoint name; train_summary: best checkpoint
    epoch: int | None = None
    domain: str = ""
    task: str = ""
    metric: str = ""
    value: float | None = None
    higher_is_better: bool | None = None
    primary: bool = False  # eval: the task's primary metric
    n: int | None = None  # examples behind the value
    state: str = ""  # job: scheduler state; train_summary: STOPPED_EARLY | FINISHED
    exit_code: int | None = None
    node: str = ""
    started: float | None = None  # unix seconds
    ended: float | None = None
    wall_hours: float | None = None
    device_hours: float | None = None  # GPUs x wall hours; 0 without GPUs
    detail: str = ""  # job: failure reason; train_summary: stop reason; judge: the judge model
    log_tail: str = ""  # job rows of failed runs
    file: str = ""  # source file, relative to ORCH_HOME


COLUMNS = [f.name for f in fields(Row)]


@dataclass(slots=True)
class Example:
    """One inference prediction (predictions.jsonl record), the unit of matrices, votes and audits."""

    run: str
    model: str
    task: str
    domain: str
    id: str
    prediction: str | None
    correct: bool | None
    confidence: float | None  # confidence.mean
    latency_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None


@dataclass(slots=True)
class Judged:
    """One judged prediction (judged.jsonl record): the judge's verdict on one model's answer."""

    run: str
    model: str
    task: str
    domain: str  # the tag domain (MATH, MED, READ, ...)
    id: str
    correct: bool | None  # the verdict; None = no verdict
    tag: str | None  # "CN_MATH" (judged correct) / "UN_MATH" (not); None without a verdict
    judge: str
    attempts: int | None  # requests made for it (LLM judge)
    error: str | None  # why there is no verdict


@dataclass
class Results:
    experiment: str
    rows: list[Row] = field(default_factory=list)
    # (arm, checkpoint, task) → example id → per-example score of the task's primary metric
    per_example: dict[tuple[str, str, str], dict[str, float]] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    judged: list[Judged] = field(default_factory=list)
    # (model, task) → run directories holding it (more than one = a duplicate run)
    inference_runs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # arm → the paired test of its checkpoint choice (summary.json evaluation.significance_test)
    paired_tests: dict[str, str] = field(default_factory=dict)

    def of(self, source: str) -> list[Row]:
        return [r for r in self.rows if r.source == source]

    def inference_rows(self) -> list[Row]:
        """Inference rows, one run per (model, task): with duplicate runs, the one with the most examples."""
        rows = self.of("inference")
        n = {r.run: r.n or 0 for r in rows}
        keep = {key: max(sorted(runs), key=lambda run: n.get(run, 0)) for key, runs in self.inference_runs.items()}
        return [r for r in rows if keep.get((r.arm, r.task), r.run) == r.run]

    def to_records(self) -> list[dict[str, Any]]:
        return [{c: getattr(r, c) for c in COLUMNS} for r in self.rows]  # asdict() deep-copies: 5x slower

    def to_json(self) -> str:
        """One row per line, keys in column order: diffable, and fast for 10,000s of rows."""
        dump = lambda o: json.dumps(o, allow_nan=False, ensure_ascii=False)  # noqa: E731
        rows = ",\n".join(dump(r) for r in self.to_records())
        return (
            f'{{"schema_version": {SCHEMA_VERSION}, "experiment": {dump(self.experiment)},\n'
            f'"columns": {dump(COLUMNS)},\n"warnings": {dump(self.warnings)},\n"rows": [\n{rows}\n]}}\n'
        )

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in self.rows:
            w.writerow(["" if v is None else _csv_value(v) for v in (getattr(r, c) for c in COLUMNS)])
        return buf.getvalue()


def _csv_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def finite(v: Any) -> float | None:
    """A number as float, or None for missing/NaN/inf/non-numbers (bools are not scores here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def as_int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def as_str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def relative(p: Path, home: Path | None = None) -> str:
    """`p` relative to ORCH_HOME (as rows and warnings name files)."""
    try:
        return str(p.relative_to(home or paths.home()))
    except ValueError:
        return str(p)


def higher_is_better(metric: str, declared: Any = None) -> bool:
    """Direction of a metric: the metric registry first, then what the file declares, else higher."""
    m = METRICS.get(metric.rsplit("/", 1)[-1])
    if m is not None:
        return m.higher_is_better
    return declared if isinstance(declared, bool) else True


_SOURCE_ORDER = {"job": 0, "train_summary": 1, "train": 2, "eval": 3, "inference": 4, "judge": 5}


def row_order(r: Row) -> tuple:
    return (
        _SOURCE_ORDER.get(r.source, 9),
        r.arm,
        r.run,
        r.stage,
        r.epoch if r.epoch is not None else -1,
        r.checkpoint,
        r.domain,
        r.task,
        r.metric,
    )
