from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.cli import executor_argument, spec_arguments
from orchestrator.core import paths
from orchestrator.core.executor import Executor, choose_executor
from orchestrator.core.registry import Registry
from orchestrator.core.spec import load_spec
from orchestrator.core.submit import describe, make_plan, submit


def add_arguments(p: argparse.ArgumentParser) -> None:
    spec_arguments(p)
    executor_argument(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan and scripts; submit nothing")
    p.add_argument("--force", action="store_true", help="resubmit units that are pending, running or completed")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="one example per model (= --set smoke=true; inference, sweep, rag) as experiment <name>-smoke, "
        "so its runs never count as the full ones",
    )


def run(args: argparse.Namespace) -> int:
    overrides, name = args.overrides, args.name
    if args.smoke:
        overrides = [*overrides, "smoke=true"]
        name = name or f"{load_spec(args.spec, args.overrides).name}-smoke"
    spec = load_spec(args.spec, overrides, name)
    executor = choose_executor(args.executor)
    if args.dry_run:
        registry = Registry() if paths.registry_file().exists() else None
        plan = make_plan(spec, executor, registry, args.force)
        print(describe(plan))
        for note in spec.submit_notes():
            print(f"  {note}")
        for stage, script in plan.scripts.items():
            print(f"\n# ---- stage {stage}: script sbatch would receive ----\n{script}", end="")
        print("\n(dry run: nothing submitted)")
        return 0
    if executor.name == "slurm":
        _warn_unshared_python(spec)
    report_submitted(spec, executor, submit(spec, executor, force=args.force))
    return 0


def _warn_unshared_python(spec) -> None:
    """Jobs run the interpreter that submitted them (or env.python / env.venv): compute nodes must
    see it, which a node-local /tmp never guarantees."""
    python = spec.env.python or (f"{spec.env.venv}/bin/python" if spec.env.venv else sys.executable)
    if Path(python).resolve().is_relative_to("/tmp"):
        print(
            f"warning: jobs will run {python}, which is under /tmp: compute nodes may not see it; install "
            "orchestrator into an environment on a shared file system (or set env.python / env.venv)",
            file=sys.stderr,
        )


def report_submitted(spec, executor: Executor, submitted: list) -> None:
    """What was submitted (job ids, arrays), the kind's notes, and how to follow it."""
    if not submitted:
        print(
            f"experiment {spec.name}: nothing to submit (every unit is pending, running or completed; --force resubmits)"
        )
        return
    print(f"experiment {spec.name} ({executor.name})")
    for s in submitted:
        what = f"array of {len(s.runs)}" if len(s.runs) > 1 else "job"
        after = f", after {', '.join(s.after)}" if s.after else ""
        print(f"  stage {s.stage}: {what} {s.job_id}{after}")
    for note in spec.submit_notes():
        print(f"  {note}")
    first = submitted[0].job_id + ("_0" if len(submitted[0].runs) > 1 else "")
    print(
        f"follow with: orchestrate status {spec.name}   |   orchestrate logs {first}   |   orchestrate wait {spec.name}"
    )
