"""Pure: results table → report context → markdown (templates/report.md.j2) + PNG plots.

Deterministic: the same Results give byte-identical markdown (sorted everything, fixed float
formats, no clocks, paths relative to the report) and identical PNGs (Agg backend, fixed size,
style and dpi, no metadata). Which sections appear depends on what the experiment has: training,
evaluation, inference, judge verdicts, jobs, in any mix. matplotlib is imported only when plots
are drawn. The analyses live beside it: `compare` (arms, curves, gradients), `sweep` (inference),
`judging` (judge verdicts); definitions in docs/results-schema.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from orchestrator.core import paths
from orchestrator.core.files import write_atomic
from orchestrator.core.states import FAILED_STATES
from orchestrator.reporting import compare, judging, sweep
from orchestrator.reporting.compare import best_checkpoint, overfitting
from orchestrator.reporting.formatting import FILTERS, num
from orchestrator.reporting.table import Results, Row

__all__ = ["Options", "best_checkpoint", "build", "overfitting", "render_markdown", "write_report"]


@dataclass(frozen=True)
class Options:
    baseline: str | None = None  # default: the arm named "baseline", else the first arm
    overfit_threshold: float = 0.02  # absolute drop of the last checkpoint below the best
    high_latency_factor: float = 3.0  # an example is slow when > factor x its run's median latency
    log_tail_lines: int = 15


def _overview(res: Results, arms: list[str], opts: Options) -> dict:
    """Arms (state, epochs, early stop, best), jobs per stage, failures with their log tails."""
    jobs = res.of("job")
    by_run = {(r.experiment, r.run): r for r in jobs}
    summaries = {r.arm: r for r in res.of("train_summary")}
    last_epoch: dict[str, int] = {}
    for r in res.of("train"):
        last_epoch[r.arm] = max(last_epoch.get(r.arm, 0), r.epoch)
    arm_rows = []
    for arm in arms:
        s, job = summaries.get(arm), by_run.get((res.experiment, arm))
        arm_rows.append(
            {
                "arm": arm,
                "state": job.state if job else "",
                "node": job.node if job else "",
                "epochs": last_epoch.get(arm),
                "wall_hours": job.wall_hours if job and job.wall_hours is not None else (s.wall_hours if s else None),
                "device_hours": job.device_hours
                if job and job.device_hours is not None
                else (s.device_hours if s else None),
                "stopped_early": s.state == "STOPPED_EARLY" if s else None,
                "stop_epoch": s.epoch if s else None,
                "stop_reason": s.detail if s else "",
                "best": f"{s.metric} = {num(s.value)} at {s.checkpoint}" if s and s.metric else "",
            }
        )
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in jobs:
        groups[(r.experiment, r.stage)].append(r)
    job_rows = []
    for (exp, stage), rs in sorted(groups.items()):
        states: dict[str, int] = defaultdict(int)
        for r in rs:
            states[r.state] += 1
        job_rows.append(
            {
                "experiment": exp,
                "stage": stage,
                "n": len(rs),
                "states": ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
                "wall_hours": sum((r.wall_hours or 0.0 for r in rs), 0.0),
                "device_hours": sum((r.device_hours or 0.0 for r in rs), 0.0),
            }
        )
    failures = [
        {
            "experiment": r.experiment,
            "run": r.run,
            "stage": r.stage,
            "state": r.state,
            "exit_code": r.exit_code,
            "node": r.node,
            "reason": r.detail,
            "log_tail": "\n".join(r.log_tail.splitlines()[-opts.log_tail_lines :]),
        }
        for r in sorted(jobs, key=lambda r: (r.experiment, r.stage, r.run))
        if r.state in FAILED_STATES
    ]
    return {
        "arms": arm_rows,
        "jobs": job_rows,
        "failures": failures,
        "total_wall_hours": sum((r.wall_hours or 0.0 for r in jobs), 0.0),
        "total_device_hours": sum((r.device_hours or 0.0 for r in jobs), 0.0),
    }


# --------------------------------------------------------------------------- assemble


def build(res: Results, opts: Options = Options()) -> dict[str, Any]:
    """Everything the report shows, as plain data (the plots and the template read only this)."""
    arms = compare.arms_of(res)
    overview = _overview(res, arms, opts)
    cmp = compare.comparisons(res, opts.baseline)
    evo = compare.evolution(res, opts.overfit_threshold)
    inference = sweep.section(res, opts.high_latency_factor)
    judge = judging.section(res)
    recs = compare.recommendations(cmp, evo, overview)
    recs += sweep.recommendations(inference) if inference else []
    recs += judging.recommendations(judge) if judge else []
    return {
        "experiment": res.experiment,
        "overview": overview,
        "comparison": cmp,
        "evolution": evo,
        "choice": compare.checkpoint_choice(res),
        "gradients": compare.gradients(res),
        "recommendations": recs,
        "inference": inference,
        "judge": judge,
        "warnings": sorted(res.warnings),
        "plots": {},
    }


def render_markdown(ctx: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in paths.templates_dirs()]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    return env.get_template("report.md.j2").render(**ctx)


def plots(ctx: dict[str, Any]) -> dict[str, bytes]:
    """name → PNG bytes. Same context, same bytes."""
    from orchestrator.reporting import plots as plotting

    return plotting.draw_all(ctx)


def write_report(res: Results, out_dir: Path | None = None, opts: Options = Options()) -> Path:
    """report.md, plots/*.png, results.csv/json (and the sweep's and judge's CSV/JSON files) under out_dir."""
    out = out_dir or paths.report_dir(res.experiment)
    ctx = build(res, opts)
    images = plots(ctx)
    ctx["plots"] = {name: f"plots/{name}" for name in sorted(images)}
    markdown = render_markdown(ctx)
    for name, data in images.items():
        write_atomic(out / "plots" / name, data)
    write_atomic(out / "results.csv", res.to_csv())
    write_atomic(out / "results.json", res.to_json())
    inf = ctx["inference"]
    if inf:
        write_atomic(out / "results_matrix.csv", sweep.matrix_csv(inf["matrix"]))
        write_atomic(out / "scaling.csv", sweep.scaling_csv(inf["scaling"]))
        write_atomic(out / "scaling.json", json.dumps(inf["scaling"]["rows"], indent=1, sort_keys=True) + "\n")
    judge = ctx["judge"]
    if judge and judge["matrix"]:
        write_atomic(out / "judge_matrix.csv", sweep.matrix_csv(judge["matrix"]))
    report = out / "report.md"
    write_atomic(report, markdown)
    return report
