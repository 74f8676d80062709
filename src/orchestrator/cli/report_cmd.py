from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.files import write_atomic
from orchestrator.reporting.report import Options, write_report
from orchestrator.reporting.results import collect


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment name (its results under logs/<experiment>/)")
    p.add_argument("--out", help="output directory (default: logs/<experiment>/report/)")
    p.add_argument(
        "--format",
        choices=("md", "csv", "json"),
        default="md",
        help="md: report.md with plots and the table as CSV/JSON (default); csv/json: only the table",
    )
    p.add_argument("--baseline", help="arm the others are compared with (default: 'baseline', else the first arm)")
    p.add_argument(
        "--overfit-threshold",
        type=float,
        default=0.02,
        help="flag overfitting when the last checkpoint is this much below the best (metric units)",
    )
    p.add_argument("--no-refresh", action="store_true", help="use the registry as is (no squeue/sacct call)")


def run(args: argparse.Namespace) -> int:
    from orchestrator.reporting import rag

    if rag.is_rag_experiment(args.experiment):  # kind rag: its own sections (docs/wattbot.md)
        out = Path(args.out) if args.out else paths.report_dir(args.experiment)
        if args.format == "md":
            print(rag.write_report(args.experiment, out))
            return 0
        rows = rag.comparison(rag.load(args.experiment))
        target = out / f"comparison.{args.format}"
        text = rag.comparison_csv(rows) if args.format == "csv" else json.dumps(rows, indent=1, sort_keys=True) + "\n"
        write_atomic(target, text)
        print(target)
        return 0
    res = collect(args.experiment, refresh=not args.no_refresh)
    out = Path(args.out) if args.out else paths.report_dir(args.experiment)
    if args.format == "md":
        target = write_report(res, out, Options(baseline=args.baseline, overfit_threshold=args.overfit_threshold))
    else:
        target = out / f"results.{args.format}"
        write_atomic(target, res.to_csv() if args.format == "csv" else res.to_json())
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(target)
    return 0
