from __future__ import annotations

import argparse

from orchestrator.core.errors import UserError
from orchestrator.core.executor import executor_named
from orchestrator.core.monitor import refresh
from orchestrator.core.registry import Registry


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="an experiment name, or a job id (123, 123_4)")


def run(args: argparse.Namespace) -> int:
    reg = Registry()
    tasks = [t for t in refresh(reg, args.target) if not t.final] or [
        t for t in reg.find_job(args.target) if not t.final
    ]
    if not tasks and not reg.find_job(args.target) and not reg.tasks(args.target):
        raise UserError(f"{args.target!r} is neither a tracked experiment nor a job id")
    jobs = sorted({(t.executor, t.key if "_" in args.target else t.scheduler_id) for t in tasks})
    for name in sorted({name for name, _ in jobs}):
        executor_named(name).cancel([job_id for n, job_id in jobs if n == name])
    reg.update_tasks([(t, {"state": "CANCELLED", "reason": "cancelled by user"}) for t in tasks])
    print(f"cancelled {len(jobs)} job(s), {len(tasks)} unit(s)" if jobs else "nothing to cancel: all jobs have ended")
    return 0
