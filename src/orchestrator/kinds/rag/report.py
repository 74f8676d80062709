"""The report of the `rag` kind, its own rather than the shared frame (docs/wattbot.md): report.md,
plots/ and the CSV/JSON files, from the analyses of `analysis.py`. Its run folders (and index
folders) are claimed by `read` so that no other kind's reader takes them for inference runs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.files import write_atomic
from orchestrator.core.kinds import Section
from orchestrator.kinds.rag.analysis import SCALING_KEYS, comparison, is_rag_dir, load, matrix_csv, rag_runs, section
from orchestrator.reporting.readers import Reader
from orchestrator.scoring import wattbot


def read(reader: Reader, run_dir: Path) -> bool:
    """RAG runs and indexes have no rows in the shared table: this kind reports them itself."""
    return is_rag_dir(run_dir) or (run_dir / paths.RAG_INDEX_INFO_FILE).exists()


def sections(results: Any, options: Any) -> list[Section]:
    return []


def write_report(experiment: str, out: Path, fmt: str) -> Path | None:
    """`fmt` md: report.md with plots and the files; csv / json: the comparison table only. None
    when the experiment has no RAG runs."""
    if not rag_runs(experiment):
        return None
    if fmt == "md":
        return write_markdown_report(experiment, out)
    rows = comparison(load(experiment))
    target = out / f"comparison.{fmt}"
    write_atomic(target, comparison_csv(rows) if fmt == "csv" else json.dumps(rows, indent=1, sort_keys=True) + "\n")
    return target


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(value: Any, ci: Any) -> str:
    return _f(value) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(ctx: dict[str, Any], plots: list[str]) -> str:
    lines = [f"# RAG report: {ctx['experiment']}", ""]
    if ctx["states"]:
        lines.append(f"{ctx['passed']} of {len(ctx['states'])} runs completed.")
        lines += [
            f"- {s['run']}: {s['state']} {s['reason']}".rstrip() for s in ctx["states"] if s["state"] != "COMPLETED"
        ]
        lines.append("")
    lines += ["## Model comparison (95% bootstrap CIs)", ""]
    lines += [
        "| run | overall | value_accuracy | ref_overlap | na_recall | latency s | tokens in/out | cost $ | energy Wh |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ctx["comparison"]:
        lines.append(
            f"| {r['run']}{' (API)' if r['api'] else ''} | "
            + " | ".join(_ci(r[m], r[f"{m}_ci"]) for m in wattbot.METRICS)
            + f" | {_f(r['latency_s'])} | {r['prompt_tokens']}/{r['completion_tokens']} | {_f(r['cost_usd'], 4)} | {_f(r['energy_wh'])} |"
        )
    lines += ["", "Per-question scores of every run: `results_matrix.csv`.", "", "## Ensembles", ""]
    if ctx["ensembles"]:
        lines += [
            "| ensemble | config | members | overall | value_accuracy | ref_overlap | na_recall |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in ctx["ensembles"]:
            lines.append(
                f"| {e['name']} | {e['config']} | {e['members']} | "
                + " | ".join(_ci(e[m], e["ci"][m]) for m in wattbot.METRICS)
                + " |"
            )
    else:
        lines.append("(one model per configuration: nothing to combine)")
    lines += [
        "",
        "## Retrieval quality",
        "",
        "| config | retriever | k | recall@k | answerable | retrieval s | mean overall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ctx["retrieval"]:
        lines.append(
            f"| {r['config']} | {r['retriever']} | {r['k']} | {_f(r['recall_at_k'])} | {r['n_answerable']} | {_f(r['time_s'])} | {_f(r['mean_overall'])} |"
        )
    lines += [
        "",
        "## Audit",
        "",
        "| run | missing tokens | high latency | error rate | malformed rate | score mismatch | duplicate ids | duplicate of |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in ctx["audit"]:
        lines.append(
            f"| {a['run']} | {a['missing_tokens']} | {a['high_latency']} | {_f(a['error_rate'])} | {_f(a['malformed_rate'])} | "
            f"{'yes' if a['score_mismatch'] else 'no'} | {a['duplicate_ids']} | {a['duplicate_of'] or '–'} |"
        )
    if ctx["scaling"]:
        lines += [
            "",
            "## Scaling",
            "",
            "`scaling_comparison.csv` / `.json`: "
            + ", ".join(f"{r['model']} ({r['params_b']}B): {_f(r['overall'])}" for r in ctx["scaling"]),
        ]
    lines += ["", "## Plots", ""] + [f"![{p}](plots/{p})" for p in plots]
    return "\n".join(lines) + "\n"


def comparison_csv(rows: list[dict]) -> str:
    keys = [k for k in (rows[0] if rows else {}) if not k.endswith("_ci")]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_markdown_report(experiment: str, out: Path | None = None) -> Path:
    from orchestrator.kinds.rag import plots as rag_plots

    out = out or paths.report_dir(experiment)
    ctx = section(experiment)
    images = rag_plots.draw_all(ctx)
    for name, data in images.items():
        write_atomic(out / "plots" / name, data)
    m = ctx["matrix"]
    write_atomic(out / "results_matrix.csv", matrix_csv(m["ids"], m["runs"], m["cells"]))
    write_atomic(out / "comparison.json", json.dumps(ctx["comparison"], indent=1, sort_keys=True) + "\n")
    write_atomic(out / "comparison.csv", comparison_csv(ctx["comparison"]))
    write_atomic(out / "ensembles.json", json.dumps(ctx["ensembles"], indent=1, sort_keys=True) + "\n")
    write_atomic(out / "audit.json", json.dumps(ctx["audit"], indent=1, sort_keys=True) + "\n")
    if ctx["scaling"]:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(SCALING_KEYS), lineterminator="\n")
        w.writeheader()
        w.writerows(ctx["scaling"])
        write_atomic(out / "scaling_comparison.csv", buf.getvalue())
        write_atomic(out / "scaling_comparison.json", json.dumps(ctx["scaling"], indent=1, sort_keys=True) + "\n")
    report = out / "report.md"
    write_atomic(report, markdown(ctx, sorted(images)))
    return report
