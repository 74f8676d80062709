"""Pure: results table → report context → markdown (templates/report.md.j2) + PNG plots.

Deterministic: the same Results give byte-identical markdown (sorted everything, fixed float
formats, no clocks, paths relative to the report) and identical PNGs (Agg backend, fixed size,
style and dpi, no metadata). Which sections appear depends on what the experiment has: training,
evaluation, inference, jobs, in any mix. matplotlib is imported only when plots are drawn.

Definitions (also in docs/results-schema.md):
- compared checkpoint of an arm: its last evaluated one (highest epoch);
- domain score: the mean of its tasks' primary metrics (tasks present in both arms, for deltas);
- improvement / regression: the paired-bootstrap 95% interval of the difference excludes 0, in the
  metric's better / worse direction (metrics.METRICS decides the direction);
- best checkpoint: the best domain score over epochs (earliest on ties); overfitting: the last
  checkpoint is worse than that best by more than `overfit_threshold` (absolute).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.reporting.results import Results, Row, write_atomic
from orchestrator.reporting.significance import paired_bootstrap

FAILED_STATES = {"FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "OUT_OF_MEMORY", "NODE_FAIL"}


@dataclass(frozen=True)
class Options:
    baseline: str | None = None  # default: the arm named "baseline", else the first arm
    overfit_threshold: float = 0.02  # absolute drop of the last checkpoint below the best
    high_latency_factor: float = 3.0  # an example is slow when > factor x its run's median latency
    log_tail_lines: int = 15


# --------------------------------------------------------------------------- curves


def best_checkpoint(curve: list[tuple[int, float]], higher_is_better: bool = True) -> tuple[int, float] | None:
    """(epoch, value) of the best point of an epoch-sorted curve; the earliest on ties."""
    best = None
    for epoch, value in sorted(curve):
        if value is None or math.isnan(value):
            continue
        if best is None or (value > best[1] if higher_is_better else value < best[1]):
            best = (epoch, value)
    return best


def overfitting(
    curve: list[tuple[int, float]], higher_is_better: bool = True, threshold: float = 0.02
) -> tuple[bool, float]:
    """(flag, drop): the last point is worse than the best by more than `threshold`.

    The drop is measured at the last checkpoint, not the deepest dip, so a noisy dip the run
    recovered from is not flagged. `drop` is in the metric's units, positive = worse."""
    points = [(e, v) for e, v in sorted(curve) if v is not None and not math.isnan(v)]
    best = best_checkpoint(points, higher_is_better)
    if best is None or best[0] == points[-1][0]:
        return False, 0.0
    last = points[-1][1]
    drop = best[1] - last if higher_is_better else last - best[1]
    return drop > threshold, drop


# --------------------------------------------------------------------------- training + evaluation


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def _arms(res: Results) -> list[str]:
    return sorted({r.arm for r in res.rows if r.source in ("train", "train_summary", "eval") and r.arm})


def _overview(res: Results, arms: list[str], opts: Options) -> dict:
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
                "best": f"{s.metric} = {_num(s.value)} at {s.checkpoint}" if s and s.metric else "",
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


def _primary(res: Results) -> dict[tuple[str, str, str], Row]:
    """(arm, checkpoint, task) → the task's primary-metric row."""
    return {(r.arm, r.checkpoint, r.task): r for r in res.of("eval") if r.primary}


def _final_checkpoint(prim: dict, arm: str) -> str | None:
    cks = {(r.epoch if r.epoch is not None else -1, r.checkpoint) for (a, _, _), r in prim.items() if a == arm}
    return max(cks)[1] if cks else None


def _mark(iv, hib: bool) -> str:
    if iv is None:
        return "n/a"
    if not iv.significant:
        return ""
    return "improvement" if (iv.delta > 0) == hib else "regression"


def _comparisons(res: Results, arms: list[str], opts: Options) -> dict | None:
    prim = _primary(res)
    eval_arms = sorted({a for a, _, _ in prim})
    if len(eval_arms) < 2:
        return None
    base = opts.baseline if opts.baseline in eval_arms else ("baseline" if "baseline" in eval_arms else eval_arms[0])
    base_ck = _final_checkpoint(prim, base)
    out = []
    for arm in [a for a in eval_arms if a != base]:
        ck = _final_checkpoint(prim, arm)
        tasks, domains = [], defaultdict(list)
        for (a, c, task), ra in sorted(prim.items(), key=lambda kv: (kv[1].domain, kv[0][2])):
            if a != base or c != base_ck or (arm, ck, task) not in prim:
                continue
            rb = prim[(arm, ck, task)]
            pa = res.per_example.get((base, base_ck, task), {})
            pb = res.per_example.get((arm, ck, task), {})
            iv = paired_bootstrap([(pa, pb)]) if pa and pb else None
            row = _delta_row(ra.value, rb.value, iv, ra.higher_is_better is not False)
            row.update(task=task, domain=ra.domain, metric=ra.metric)
            tasks.append(row)
            domains[ra.domain].append((ra, rb, pa, pb))
        dom_rows = []
        for dom, items in sorted(domains.items()):
            hib = items[0][0].higher_is_better is not False
            if any((i[0].higher_is_better is not False) != hib for i in items):
                res.warnings.append(
                    f"domain {dom!r} mixes metrics of opposite directions; its mean uses {items[0][0].metric}'s"
                )
            pairs = [(pa, pb) for _, _, pa, pb in items if pa and pb]
            iv = paired_bootstrap(pairs) if len(pairs) == len(items) else None
            row = _delta_row(_mean([i[0].value for i in items]), _mean([i[1].value for i in items]), iv, hib)
            row.update(domain=dom, tasks=len(items), metric=", ".join(sorted({i[0].metric for i in items})))
            dom_rows.append(row)
        out.append({"arm": arm, "checkpoint": ck, "tasks": tasks, "domains": dom_rows})
    return {"baseline": base, "baseline_checkpoint": base_ck, "arms": out}


def _delta_row(a: float | None, b: float | None, iv, hib: bool) -> dict:
    delta = b - a if a is not None and b is not None else None
    rel = delta / abs(a) if delta is not None and a else None
    return {
        "a": a,
        "b": b,
        "delta": delta,
        "rel": rel,
        "low": iv.low if iv else None,
        "high": iv.high if iv else None,
        "n": iv.n if iv else None,
        "mark": _mark(iv, hib),
        "higher_is_better": hib,
    }


def _curves(res: Results) -> tuple[str, dict[str, dict[str, list[tuple[int, float]]]], dict[str, bool]]:
    """domain → arm → [(epoch, score)], from evaluations when there are any, else training validation."""
    curves: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    hib: dict[str, bool] = {}
    source = "evaluation"
    for r in _primary(res).values():
        if r.epoch is not None and r.value is not None:
            curves[r.domain or "all"][r.arm][r.epoch].append(r.value)
            hib.setdefault(r.domain or "all", r.higher_is_better is not False)
    if not curves:
        source = "training validation"
        for r in res.of("train"):
            if r.domain and r.metric == f"val/{r.domain}/reward" and r.value is not None:
                curves[r.domain][r.arm][r.epoch].append(r.value)
                hib.setdefault(r.domain, r.higher_is_better is not False)
    flat = {
        d: {a: sorted((e, sum(v) / len(v)) for e, v in eps.items()) for a, eps in sorted(arms.items())}
        for d, arms in sorted(curves.items())
    }
    return source, flat, hib


def _trained(curve: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Points that are checkpoints: epoch 0 is the validation before training (plotted, never chosen)."""
    return [p for p in curve if p[0] >= 1] or curve


def _evolution(res: Results, opts: Options) -> dict | None:
    source, curves, hib = _curves(res)
    if not curves:
        return None
    rows = []
    for dom, arms in curves.items():
        for arm, curve in arms.items():
            trained = _trained(curve)
            best = best_checkpoint(trained, hib[dom])
            flag, drop = overfitting(trained, hib[dom], opts.overfit_threshold)
            rows.append(
                {
                    "domain": dom,
                    "arm": arm,
                    "epochs": len(curve),
                    "best_epoch": best[0] if best else None,
                    "best": best[1] if best else None,
                    "last_epoch": curve[-1][0],
                    "last": curve[-1][1],
                    "drop": drop,
                    "overfit": flag,
                }
            )
    return {
        "source": source,
        "curves": curves,
        "rows": rows,
        "threshold": opts.overfit_threshold,
        "higher_is_better": hib,
    }


def _gradients(res: Results) -> dict | None:
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in res.of("train"):
        if r.metric.startswith("grad/") and r.value is not None:
            series[r.arm][r.metric].append((r.epoch, r.value))
    if not series:
        return None
    rows = []
    for arm, metrics in sorted(series.items()):
        for metric, pts in sorted(metrics.items()):
            vals = [v for _, v in sorted(pts)]
            rows.append(
                {
                    "arm": arm,
                    "metric": metric,
                    "mean": sum(vals) / len(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "last": vals[-1],
                    "epochs": len(vals),
                }
            )
    return {"rows": rows, "series": {a: dict(sorted(m.items())) for a, m in sorted(series.items())}}


def _recommendations(cmp: dict | None, evo: dict | None, overview: dict) -> list[str]:
    recs = []
    if cmp:
        for c in cmp["arms"]:
            better = [d["domain"] for d in c["domains"] if d["mark"] == "improvement"]
            worse = [d["domain"] for d in c["domains"] if d["mark"] == "regression"]
            worse_tasks = [f"{t['task']} ({t['domain']})" for t in c["tasks"] if t["mark"] == "regression"]
            untested = [d["domain"] for d in c["domains"] if d["mark"] == "n/a"]
            vs = f"**{c['arm']}** vs **{cmp['baseline']}**"
            if better and not worse:
                recs.append(f"Use {c['arm']}: {vs} improves {', '.join(better)} significantly and regresses no domain.")
            elif worse and not better:
                recs.append(
                    f"Keep {cmp['baseline']}: {vs} regresses {', '.join(worse)} significantly and improves none."
                )
            elif better and worse:
                recs.append(
                    f"Mixed: {vs} improves {', '.join(better)} but regresses {', '.join(worse)}; "
                    f"choose by the domains that matter."
                )
            else:
                recs.append(
                    f"No significant domain difference for {vs}: keep {cmp['baseline']} (the simpler arm) "
                    f"or evaluate on more examples."
                )
            if worse_tasks:
                recs.append(f"Regressing tasks under {c['arm']}: {', '.join(worse_tasks)}.")
            if untested:
                recs.append(
                    f"No per-example results for {', '.join(untested)} ({c['arm']}): differences there are untested."
                )
    if evo:
        by_arm: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for dom, arms in evo["curves"].items():
            sign = 1 if evo["higher_is_better"][dom] else -1
            for arm, curve in arms.items():
                for e, v in _trained(curve):
                    by_arm[arm][e].append(sign * v)
        n_dom = len(evo["curves"])
        for arm, eps in sorted(by_arm.items()):
            full = {e: sum(v) / len(v) for e, v in eps.items() if len(v) == n_dom}
            if full:
                e = max(sorted(full), key=lambda k: full[k])
                recs.append(f"Checkpoint for {arm}: epoch {e} (best mean over {n_dom} domain(s), {evo['source']}).")
        over = [f"{r['domain']} ({r['arm']}, peak epoch {r['best_epoch']})" for r in evo["rows"] if r["overfit"]]
        if over:
            recs.append(f"Overfitting after the peak: {', '.join(over)}: stop there or regularise.")
    if overview["failures"]:
        runs = sorted({f["run"] for f in overview["failures"]})
        recs.append(
            f"{len(runs)} run(s) failed ({', '.join(runs[:5])}{', ...' if len(runs) > 5 else ''}): "
            f"see Failures, fix and resubmit (submit skips completed units)."
        )
    return recs


# --------------------------------------------------------------------------- inference sweeps


def _inference(res: Results, opts: Options) -> dict | None:
    rows = res.inference_rows()
    if not rows and not res.examples:
        return None
    from orchestrator.reporting.sweep import audit, ensemble_table, results_matrix, scaling

    values: dict[tuple[str, str], dict[str, float | None]] = defaultdict(dict)
    for r in rows:
        values[(r.arm, r.task)][r.metric] = r.value
        values[(r.arm, r.task)].setdefault("n", r.n)
    models = sorted({m for m, _ in values} | {e.model for e in res.examples})
    size = {
        m: next((v.get("params_b") for (mm, _), v in values.items() if mm == m and v.get("params_b")), None)
        for m in models
    }
    models.sort(key=lambda m: (size[m] is None, size[m] or 0, m))
    cols = [
        c
        for c in (
            "em",
            "f1",
            "accuracy",
            "auroc",
            "ece",
            "latency_s_mean",
            "throughput_tokens_per_s",
            "hardware/energy_wh",
        )
        if any(v.get(c) is not None for v in values.values())
    ]
    table = [
        {"model": m, "task": t, "params_b": size[m], "n": v.get("n"), "values": [v.get(c) for c in cols]}
        for (m, t), v in sorted(values.items(), key=lambda kv: (models.index(kv[0][0]), kv[0][1]))
    ]
    scale = scaling(res, models, size)
    return {
        "models": models,
        "columns": cols,
        "table": table,
        "scaling": scale,
        "matrix": results_matrix(res.examples, models),
        "ensemble": ensemble_table(res.examples, scale["ranking"]),
        "audit": audit(res, opts.high_latency_factor),
    }


def _sweep_recommendations(inf: dict) -> list[str]:
    recs = []
    rows = {r["model"]: r for r in inf["scaling"]["rows"]}
    ranked = [m for m in inf["scaling"]["ranking"] if rows[m]["score"] is not None]
    if ranked:
        best = rows[ranked[0]]
        recs.append(f"Best model: {best['model']} (score {_num(best['score'])}).")
        close = [
            rows[m]
            for m in ranked
            if rows[m]["params_b"]
            and best["params_b"]
            and rows[m]["params_b"] < best["params_b"]
            and best["score"] - rows[m]["score"] <= 0.05
        ]
        if close:
            small = min(close, key=lambda r: (r["params_b"], r["model"]))
            recs.append(
                f"{small['model']} ({_num(small['params_b'], 1)}B) scores within 0.05 of it "
                f"({_num(small['score'])}) at a fraction of the size."
            )
    overall = next((e for e in inf["ensemble"] if e["task"] == "all"), None)
    if overall and overall["gain"] > 0:
        strategy = max(("majority", "first_non_blank", "confidence"), key=lambda s: overall[s])
        recs.append(
            f"Ensemble by {strategy} beats the best single model ({overall['best_model']}) by "
            f"{_signed(overall['gain'])} overall."
        )
    if inf["audit"]["flagged"]:
        recs.append(
            f"{inf['audit']['flagged']} inference run(s) flagged in the audit: check them before trusting their scores."
        )
    return recs


# --------------------------------------------------------------------------- assemble


def build(res: Results, opts: Options = Options()) -> dict[str, Any]:
    """Everything the report shows, as plain data (the plots and the template read only this)."""
    arms = _arms(res)
    overview = _overview(res, arms, opts)
    cmp = _comparisons(res, arms, opts)
    evo = _evolution(res, opts)
    grads = _gradients(res)
    inference = _inference(res, opts)
    recs = _recommendations(cmp, evo, overview) + (_sweep_recommendations(inference) if inference else [])
    return {
        "experiment": res.experiment,
        "overview": overview,
        "comparison": cmp,
        "evolution": evo,
        "gradients": grads,
        "recommendations": recs,
        "inference": inference,
        "warnings": sorted(res.warnings),
        "plots": {},
    }


# --------------------------------------------------------------------------- formatting


def _num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def _signed(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def _rate(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.1f}%"


def _pct(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:+.1f}%"


def _cell(x: Any) -> str:
    """Markdown table cell text: no pipes or newlines."""
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(ctx: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(num=_num, signed=_signed, pct=_pct, rate=_rate, cell=_cell)
    return env.get_template("report.md.j2").render(**ctx)


# --------------------------------------------------------------------------- plots


def plots(ctx: dict[str, Any]) -> dict[str, bytes]:
    """name → PNG bytes. Same context, same bytes."""
    from orchestrator.reporting import plots as plotting

    return plotting.draw_all(ctx)


# --------------------------------------------------------------------------- write


def write_report(res: Results, out_dir: Path | None = None, opts: Options = Options()) -> Path:
    """report.md, plots/*.png, results.csv/json (and the sweep CSV/JSON files) under out_dir."""
    import json

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
        from orchestrator.reporting.sweep import matrix_csv, scaling_csv

        write_atomic(out / "results_matrix.csv", matrix_csv(inf["matrix"]))
        write_atomic(out / "scaling.csv", scaling_csv(inf["scaling"]))
        write_atomic(out / "scaling.json", json.dumps(inf["scaling"]["rows"], indent=1, sort_keys=True) + "\n")
    report = out / "report.md"
    write_atomic(report, markdown)
    return report
