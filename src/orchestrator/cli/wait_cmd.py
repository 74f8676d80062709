from __future__ import annotations

import argparse
import time

from orchestrator.core.errors import UserError
from orchestrator.core.executor import Note
from orchestrator.core.monitor import progress, refresh
from orchestrator.core.registry import Registry


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between scheduler polls")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 3)")
    p.add_argument(
        "--unreachable-timeout",
        type=float,
        default=900.0,
        help="give up when neither squeue nor sacct has answered for this many seconds (exit 4)",
    )


def run(args: argparse.Namespace) -> int:
    """Until every unit has ended (0: all completed, 1: some did not), --timeout passes (3) or
    SLURM stays unreachable for --unreachable-timeout (4): every way out says why."""
    reg = Registry()
    start, last, last_notes = time.monotonic(), None, None
    unreachable_since: float | None = None
    while True:
        notes: list[Note] = []
        tasks = refresh(reg, args.experiment, notes=notes)
        if not tasks:
            raise UserError(f"no tracked jobs for experiment {args.experiment!r}")
        c = progress(tasks)
        line = f"{args.experiment}: {c['done']} done, {c['running']} running, {c['pending']} pending, {c['failed']} failed of {c['total']}"
        if line != last:
            print(line, flush=True)
            last = line
        if notes != last_notes:  # e.g. the controller restarting: said once, and when it answers again
            for note in notes:
                print(f"note: {note}", flush=True)
            if last_notes and not notes:
                print("note: SLURM answers again", flush=True)
            last_notes = notes
        now = time.monotonic()
        if all(t.final for t in tasks):
            bad = [t for t in tasks if t.state != "COMPLETED"]
            for t in bad:
                print(f"  {t.key} {t.run}: {t.state} {t.reason or ''}")
            return 1 if bad else 0
        if args.timeout is not None and now - start > args.timeout:
            print(f"timed out after {args.timeout:.0f}s with units still running or pending")
            return 3
        unreachable_since = (unreachable_since or now) if any(n.unreachable for n in notes) else None
        if unreachable_since is not None and now - unreachable_since > args.unreachable_timeout:
            print(f"gave up: SLURM (squeue and sacct) has not answered for {now - unreachable_since:.0f}s")
            return 4
        time.sleep(args.interval)
