from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.core.monitor import refresh
from orchestrator.core.registry import Registry


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job id (123), array task (123_4), or EXPERIMENT/RUN")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing as the log grows, until the job ends")
    p.add_argument("--err", action="store_true", help="the stderr log instead of stdout")


def run(args: argparse.Namespace) -> int:
    reg = Registry()
    if "/" in args.job:
        exp, _, run_name = args.job.partition("/")
        tasks = [t for t in reg.tasks(exp) if t.run == run_name]
    else:
        tasks = reg.find_job(args.job)
    if not tasks:
        raise UserError(f"no tracked job {args.job!r}: see `orchestrate status` for ids")
    if len(tasks) > 1:
        print(
            f"# {args.job} is an array of {len(tasks)}; showing task {tasks[0].key} (ask for e.g. {tasks[-1].key})",
            file=sys.stderr,
        )
    task = tasks[0]
    log = paths.job_log(Path(task.folder), task.key, stream="err" if args.err else "out")
    pos = 0
    while True:
        if log.exists():
            with open(log, "rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        elif not args.follow:
            raise UserError(f"log {log} does not exist yet (state: {task.state})")
        if not args.follow:
            return 0
        states = {t.run: t for t in refresh(reg, task.experiment)}
        if states[task.run].final:
            return 0
        time.sleep(1)
