"""Read every result file of an experiment into one table (schema: docs/results-schema.md).

Sources, all optional (a report works with training only, evaluation only, inference only, judge
only, or any mix):
- training arms   logs/<exp>/<arm>/metrics.jsonl, summary.json                  (readers)
- evaluation      logs/<exp>/eval/<arm>/<checkpoint>/<task>.json                 (readers)
- inference runs  logs/<exp>/<model>__<task>/predictions.jsonl, results.json, summary.json (read_runs)
- judge runs      logs/<exp>/<run>/judged.jsonl, judge_summary.json              (read_runs)
- the registry    one row per run: state, exit code, node, start/end, wall and device hours, and the
                  log tail of failed runs                                         (readers)

A missing or malformed file never stops the aggregation: it becomes a warning naming the file and
what was wrong, and the rest is read. Pure reading (plus an optional registry refresh).
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.reporting import rag, read_runs
from orchestrator.reporting.readers import Reader
from orchestrator.reporting.table import COLUMNS, Example, Judged, Results, Row, row_order

__all__ = ["COLUMNS", "Example", "Judged", "Results", "Row", "collect"]

SKIP_DIRS = {"_jobs", "eval", "report"}


def _is_training_dir(d: Path) -> bool:
    if (d / paths.METRICS_FILE).exists():
        return True
    try:
        s = json.loads((d / paths.SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(s, dict) and "arm" in s


def collect(experiment: str, refresh: bool = False) -> Results:
    """Read every result file of `experiment` into one table. UserError when there is nothing at all
    (unknown experiment, or an experiment with neither result files nor jobs), naming where it looked."""
    exp_dir = paths.experiment_dir(experiment)
    reader = Reader(experiment)
    if paths.registry_file().exists():
        reader.jobs(experiment, refresh)
        reader.jobs(paths.eval_experiment(experiment), refresh)  # eval-evolution registers its own
    if exp_dir.is_dir():
        for d in sorted(
            p for p in exp_dir.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith(".")
        ):
            if rag.is_rag_dir(d) or (d / paths.RAG_INDEX_INFO_FILE).exists():
                continue  # kind rag: reporting/rag.py reads these
            if _is_training_dir(d):
                reader.training(d)
            elif read_runs.is_judge_dir(d):
                read_runs.judge(reader, d)
            elif read_runs.is_inference_dir(d):
                read_runs.inference(reader, d)
        for f in sorted(paths.eval_dir(experiment).glob("*/*/*.json")):
            reader.evaluation(f, f.parent.parent.name, f.parent.name)
    res = reader.res
    if not exp_dir.is_dir() and not res.rows:
        raise UserError(
            f"unknown experiment {experiment!r}: no directory {exp_dir} and no jobs in "
            f"{paths.registry_file()}; `orchestrate list` shows the known ones"
        )
    if not any(r.source != "job" for r in res.rows) and not res.examples and not res.judged:
        jobs = len(res.of("job"))
        raise UserError(
            f"no results for experiment {experiment!r}: looked for training ({exp_dir}/<arm>/"
            f"{paths.METRICS_FILE}, {paths.SUMMARY_FILE}), evaluation ({paths.eval_dir(experiment)}/<arm>/"
            f"<checkpoint>/<task>.json), inference ({exp_dir}/<model>__<task>/{paths.PREDICTIONS_FILE}) and "
            f"judge ({exp_dir}/<run>/{paths.JUDGED_FILE}, {paths.JUDGE_SUMMARY_FILE}) files"
            + (f"; {jobs} job(s) are registered: `orchestrate status {experiment}`" if jobs else "")
            + (f"; problems: {'; '.join(res.warnings)}" if res.warnings else "")
        )
    res.rows.sort(key=row_order)
    return res
