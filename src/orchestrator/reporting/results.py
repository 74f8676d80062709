"""Read every result file of an experiment into one table (schema: docs/results-schema.md).

Each folder of logs/<experiment>/ is read by the first kind that claims it (`Kind.read`): the
kind recorded at submit first, then the others in registry order, since an experiment's folder
may hold results of several kinds (a training experiment holds its evaluations' under eval/).
The registry gives one row per run: state, exit code, node, start/end, wall and device hours,
and the log tail of failed runs (readers.Reader.jobs).

A missing or malformed file never stops the aggregation: it becomes a warning naming the file and
what was wrong, and the rest is read. Pure reading (plus an optional registry refresh).
"""

from __future__ import annotations

from orchestrator.core import kinds, paths
from orchestrator.core.errors import UserError
from orchestrator.core.kinds import Kind
from orchestrator.core.registry import Registry
from orchestrator.reporting.readers import Reader
from orchestrator.reporting.table import COLUMNS, Example, Judged, Results, Row, row_order

__all__ = ["COLUMNS", "Example", "Judged", "Results", "Row", "collect"]

SKIP_DIRS = {"_jobs", "report"}  # submitit's folders and the report itself


def reading_order(experiment: str) -> list[Kind]:
    """Every kind, the one recorded at submit first."""
    recorded = None
    if paths.registry_file().exists():
        reg = Registry()
        try:
            recorded = reg.kind_of(experiment)
        finally:
            reg.close()
    every = kinds.all_kinds()
    return sorted(every, key=lambda k: k.name != recorded)


def collect(experiment: str, refresh: bool = False) -> Results:
    """Read every result file of `experiment` into one table. UserError when there is nothing at all
    (unknown experiment, or an experiment with neither result files nor jobs), naming where it looked."""
    exp_dir = paths.experiment_dir(experiment)
    reader = Reader(experiment)
    if paths.registry_file().exists():
        reader.jobs(experiment, refresh)
        reader.jobs(paths.eval_experiment(experiment), refresh)  # eval-evolution registers its own
    if exp_dir.is_dir():
        order = reading_order(experiment)
        for d in sorted(
            p for p in exp_dir.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith(".")
        ):
            for kind in order:
                if kind.read(reader, d):  # claimed: the folder is this kind's
                    break
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
