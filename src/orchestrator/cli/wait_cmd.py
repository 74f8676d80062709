from __future__ import annotations

import argparse
import time

from orchestrator.core.errors import UserError
from orchestrator.core.monitor import progress, refresh
from orchestrator.core.registry import Registry


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between scheduler polls")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 3)")


def run(args: argparse.Namespace) -> int:
    reg = Registry()
    start, last = time.monotonic(), None
    while True:
        tasks = refresh(reg, args.experiment)
        if not tasks:
            raise UserError(f"no tracked jobs for experiment {args.experiment!r}")
        c = progress(tasks)
        line = f"{args.experiment}: {c['done']} done, {c['running']} running, {c['pending']} pending, {c['failed']} failed of {c['total']}"
        if line != last:
            print(line, flush=True)
            last = line
        if all(t.final for t in tasks):
            bad = [t for t in tasks if t.state != "COMPLETED"]
            for t in bad:
                print(f"  {t.key} {t.run}: {t.state} {t.reason or ''}")
            return 1 if bad else 0
        if args.timeout is not None and time.monotonic() - start > args.timeout:
            print(f"timed out after {args.timeout:.0f}s")
            return 3
        time.sleep(args.interval)
