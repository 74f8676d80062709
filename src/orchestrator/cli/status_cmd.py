from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from orchestrator.core.executor import Note
from orchestrator.core.monitor import log_tail, progress, refresh
from orchestrator.core.registry import Registry
from orchestrator.core.states import FAILED_STATES, FINAL_STATES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", nargs="?", help="one experiment (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--runs", action="store_true", help="one row per run (array task): a pass/fail table")
    p.add_argument(
        "--watch", action="store_true", help="live table, refreshed every --interval seconds until every job has ended"
    )
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=None, help="--watch: stop after this many seconds (exit 3)")


def snapshot(experiment: str | None, notes: list[Note] | None = None) -> list[dict]:
    """One refresh → one record per job (array tasks summarised, failures with their log tail).
    `notes` receives what the monitor says about SLURM (a part of it not answering)."""
    tasks = refresh(Registry(), experiment, notes=notes)
    jobs: dict[tuple, list] = {}
    for t in tasks:
        jobs.setdefault((t.experiment, t.stage, t.scheduler_id, t.job), []).append(t)
    out = []
    for (exp, stage, job_id, _), ts in jobs.items():
        c = progress(ts)
        states = {t.state for t in ts}
        state = (
            ts[0].state
            if len(states) == 1
            else ("RUNNING" if c["running"] else "PENDING" if c["pending"] else "FAILED")
        )
        out.append(
            {
                "experiment": exp,
                "stage": stage,
                "job_id": job_id,
                "executor": ts[0].executor,
                "state": state,
                "progress": {k: c[k] for k in ("done", "running", "pending", "failed", "total")},
                "tasks": [
                    {
                        "task": t.task,
                        "key": t.key,
                        "run": t.run,
                        "state": t.state,
                        "exit_code": t.exit_code,
                        "reason": t.reason,
                        "node": t.node,
                        "log": str(t.log),
                        **({"log_tail": log_tail(t)} if t.state in FAILED_STATES else {}),
                    }
                    for t in ts
                ],
            }
        )
    return out


def table(records: list[dict], notes: Sequence[Note] = ()):
    t = Table(show_lines=False, caption="\n".join(f"note: {n}" for n in notes) or None)
    for col in ("experiment", "stage", "job", "state", "done/run/fail/total", "detail"):
        t.add_column(col)
    for r in records:
        p = r["progress"]
        failed = [x for x in r["tasks"] if x["state"] in FAILED_STATES]
        detail = (
            f"{failed[0]['run']}: {failed[0]['reason'] or failed[0]['state']}"
            if failed
            else (r["tasks"][0]["reason"] or "")
        )
        color = {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow"}.get(r["state"], "red")
        t.add_row(
            r["experiment"],
            r["stage"],
            r["job_id"],
            f"[{color}]{r['state']}[/]",
            f"{p['done']}/{p['running']}/{p['failed']}/{p['total']}",
            detail or "",
        )
    return t


def runs_table(records: list[dict], notes: Sequence[Note] = ()):
    t = Table(show_lines=False, caption="\n".join(f"note: {n}" for n in notes) or None)
    for col in ("experiment", "run", "job", "state", "exit", "node", "detail"):
        t.add_column(col)
    for r in records:
        for x in r["tasks"]:
            color = {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow"}.get(x["state"], "red")
            t.add_row(
                r["experiment"],
                x["run"],
                x["key"],
                f"[{color}]{x['state']}[/]",
                "" if x["exit_code"] is None else str(x["exit_code"]),
                x["node"] or "",
                x["reason"] or "",
            )
    return t


def _ended(records: list[dict]) -> bool:
    return bool(records) and all(x["state"] in FINAL_STATES for r in records for x in r["tasks"])


def watch(args: argparse.Namespace, console: Console) -> int:
    """The live table until every job has ended (0) or --timeout passes (3); Ctrl-C stops it too."""
    view = runs_table if args.runs else table
    start = time.monotonic()
    notes: list[Note] = []
    records = snapshot(args.experiment, notes)
    with Live(view(records, notes), console=console, refresh_per_second=1) as live:
        while not _ended(records):
            if args.timeout is not None and time.monotonic() - start > args.timeout:
                console.print(f"stopped watching after {args.timeout:.0f}s: jobs still running or pending")
                return 3
            time.sleep(args.interval)
            notes = []
            records = snapshot(args.experiment, notes)
            live.update(view(records, notes))
    console.print("every job has ended" if records else "no tracked jobs")
    return 0


def run(args: argparse.Namespace) -> int:
    notes: list[Note] = []
    if args.json:
        records = snapshot(args.experiment, notes)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print(json.dumps(records, indent=1))
        return 0
    console = Console()
    if args.watch:
        return watch(args, console)
    records = snapshot(args.experiment, notes)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    if not records:
        print("no tracked jobs" + (f" for experiment {args.experiment}" if args.experiment else ""))
        return 0
    console.print(runs_table(records) if args.runs else table(records))
    passed = sum(1 for r in records for x in r["tasks"] if x["state"] == "COMPLETED")
    total = sum(len(r["tasks"]) for r in records)
    console.print(f"{passed} of {total} runs passed")
    for r in records:
        for x in r["tasks"]:
            if x.get("log_tail"):
                head = escape(f"{x['key']} ({x['run']}) {x['state']}")
                console.print(f"[red]{head}[/]: " + escape(f"{x['reason'] or ''}\n{x['log_tail']}"))
    return 0
