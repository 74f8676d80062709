"""The report frame every kind shares: results table → context → markdown (templates/report.md.j2)
+ PNG plots. The frame draws the overview (jobs, failures), the recommendations and the data
problems; each kind adds its sections (`Kind.sections`: data, a markdown template, plots, files).

Deterministic: the same Results give byte-identical markdown (sorted everything, fixed float
formats, no clocks, paths relative to the report) and identical PNGs (Agg backend, fixed size,
style and dpi, no metadata). Which sections appear depends on what the experiment has: training,
evaluation, inference, judge verdicts, jobs, in any mix. matplotlib is imported only when plots
are drawn. Definitions in docs/results-schema.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from orchestrator.core import kinds, paths
from orchestrator.core.files import write_atomic
from orchestrator.core.kinds import Section
from orchestrator.core.states import FAILED_STATES
from orchestrator.reporting.formatting import FILTERS
from orchestrator.reporting.table import Results, Row

__all__ = ["Options", "build", "render", "render_markdown", "write_report"]

FAILURES_ORDER = 50  # the failed-runs advice: after the training sections' advice, before the runs'


@dataclass(frozen=True)
class Options:
    baseline: str | None = None  # default: the arm named "baseline", else the first arm
    overfit_threshold: float = 0.02  # absolute drop of the last checkpoint below the best
    high_latency_factor: float = 3.0  # an example is slow when > factor x its run's median latency
    log_tail_lines: int = 15


def _overview(res: Results, opts: Options) -> dict:
    """Jobs per stage, and failures with their log tails."""
    jobs = res.of("job")
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
        "jobs": job_rows,
        "failures": failures,
        "total_wall_hours": sum((r.wall_hours or 0.0 for r in jobs), 0.0),
        "total_device_hours": sum((r.device_hours or 0.0 for r in jobs), 0.0),
    }


def _failures_advice(overview: dict) -> list[str]:
    if not overview["failures"]:
        return []
    runs = sorted({f["run"] for f in overview["failures"]})
    return [
        f"{len(runs)} run(s) failed ({', '.join(runs[:5])}{', ...' if len(runs) > 5 else ''}): "
        f"see Failures, fix and resubmit (submit skips completed units)."
    ]


# --------------------------------------------------------------------------- assemble


def assemble(res: Results, opts: Options = Options()) -> tuple[dict[str, Any], list[Section]]:
    """The report context and every kind's sections, in report order (`Section.order`, then the
    kinds' registry order)."""
    overview = _overview(res, opts)
    sections = [s for kind in kinds.all_kinds() for s in kind.sections(res, opts)]
    sections.sort(key=lambda s: s.order)
    recs = [r for s in sections if s.order < FAILURES_ORDER for r in s.recommendations]
    recs += _failures_advice(overview)
    recs += [r for s in sections if s.order >= FAILURES_ORDER for r in s.recommendations]
    ctx: dict[str, Any] = {"experiment": res.experiment, "overview": overview}
    for s in sections:
        ctx.update(s.context)
    ctx.update(recommendations=recs, warnings=sorted(res.warnings), plots={})
    return ctx, sections


def build(res: Results, opts: Options = Options()) -> dict[str, Any]:
    """Everything the report shows, as plain data (the plots and the templates read only this)."""
    return assemble(res, opts)[0]


def render(template: Path, ctx: dict[str, Any]) -> str:
    """A template file (the frame, or a kind's section) with the report's filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    return env.get_template(template.name).render(**ctx)


def render_markdown(ctx: dict[str, Any], sections: list[Section]) -> str:
    """The frame, with each kind's sections rendered (with the whole context) into their places."""
    inside: list[str] = []  # the Overview's
    after: list[str] = []
    for s in sections:
        if s.template is not None:
            (inside if s.overview else after).append(render(s.template, ctx))
    return render(paths.template_file("report.md.j2"), {**ctx, "overview_sections": inside, "sections": after})


def write_report(res: Results, out_dir: Path | None = None, opts: Options = Options()) -> Path:
    """report.md, plots/*.png, results.csv/json and the kinds' own files (CSV/JSON) under out_dir."""
    out = out_dir or paths.report_dir(res.experiment)
    ctx, sections = assemble(res, opts)
    images = {name: data for s in sections if s.plots for name, data in s.plots().items()}
    ctx["plots"] = {name: f"plots/{name}" for name in sorted(images)}
    markdown = render_markdown(ctx, sections)
    for name, data in images.items():
        write_atomic(out / "plots" / name, data)
    write_atomic(out / "results.csv", res.to_csv())
    write_atomic(out / "results.json", res.to_json())
    for s in sections:
        for name, text in s.files.items():
            write_atomic(out / name, text)
    report = out / "report.md"
    write_atomic(report, markdown)
    return report
