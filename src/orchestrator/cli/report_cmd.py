from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.core import kinds, paths
from orchestrator.core.files import write_atomic
from orchestrator.core.registry import Registry


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


def _recorded_kind(experiment: str) -> str | None:
    if not paths.registry_file().exists():
        return None
    reg = Registry()
    try:
        return reg.kind_of(experiment)
    finally:
        reg.close()


def run(args: argparse.Namespace) -> int:
    from orchestrator.reporting.report import Options, write_report
    from orchestrator.reporting.results import collect

    out = Path(args.out) if args.out else paths.report_dir(args.experiment)
    # A kind may write a report of its own (rag): the kind recorded at submit decides; an experiment
    # the registry does not know (results copied from elsewhere) asks every kind.
    recorded = _recorded_kind(args.experiment)
    candidates = [kinds.get(recorded)] if recorded in kinds.refs() else kinds.all_kinds()
    for kind in candidates:
        own = kind.write_report(args.experiment, out, args.format)
        if own is not None:
            print(own)
            return 0
    res = collect(args.experiment, refresh=not args.no_refresh)
    if args.format == "md":
        target = write_report(res, out, Options(baseline=args.baseline, overfit_threshold=args.overfit_threshold))
    else:
        target = out / f"results.{args.format}"
        write_atomic(target, res.to_csv() if args.format == "csv" else res.to_json())
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(target)
    return 0
