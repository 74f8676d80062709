"""`orchestrate eval EXPERIMENT`: the latest and best checkpoint of each arm on a suite."""

from __future__ import annotations

import argparse

from orchestrator.cli import executor_argument
from orchestrator.cli.submit_cmd import report_submitted
from orchestrator.core import paths
from orchestrator.core.checkpoints import Evaluator, evaluator, submit_evaluation
from orchestrator.core.errors import SpecError
from orchestrator.core.executor import choose_executor
from orchestrator.core.registry import Registry
from orchestrator.core.spec import _control_chars, apply_override
from orchestrator.core.submit import describe, make_plan


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="the training experiment (checkpoints/<experiment>/<arm>/epoch_<N>/)")
    p.add_argument("--suite", default="reasoning", help="suite name (jobs/suites/, built-in) or YAML path")
    p.add_argument("--tasks", help="comma-separated task or domain names (default: the whole suite)")
    p.add_argument("--arms", help="comma-separated arms (default: every arm)")
    p.add_argument(
        "--data-root",
        help="directory of the suite's data files (default: the suite's data_root, "
        "else $ORCH_EVAL_DATA, else ORCH_HOME/data/eval)",
    )
    p.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    p.add_argument("--tensor-parallel", type=int, default=1, help="GPUs per model (vLLM tensor parallelism)")
    p.add_argument("--limit", type=int, help="at most this many examples per task")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="any eval spec key, e.g. resources.gpus_per_node=1 or batch_size=16",
    )
    executor_argument(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan; submit nothing")
    p.add_argument(
        "--force", action="store_true", help="resubmit units the registry has as pending, running or completed"
    )


def build_spec(args: argparse.Namespace, checkpoints: str) -> Evaluator:
    shown = f"orchestrate eval {args.experiment}"
    data = {
        "experiment": args.experiment,
        "suite": args.suite,
        "checkpoints": checkpoints,
        "backend": args.backend,
        "tensor_parallel_size": args.tensor_parallel,
        "tasks": [t for t in (args.tasks or "").split(",") if t],
        "arms": [a for a in (args.arms or "").split(",") if a],
    }
    for key in ("data_root", "limit"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    for assignment in args.overrides:
        apply_override(data, assignment, shown)
    problems = _control_chars(data)
    if problems:
        raise SpecError(shown, problems)
    return evaluator(data, shown)  # the eval kind, by name


def submit_eval(args: argparse.Namespace, checkpoints: str) -> int:
    spec = build_spec(args, checkpoints)
    executor = choose_executor(args.executor)
    summary = spec.plan_summary()  # discovery first: zero checkpoints fails here, naming where we looked
    if args.dry_run:
        registry = Registry() if paths.registry_file().exists() else None
        print(summary)
        print(describe(make_plan(spec, executor, registry, args.force)))
        print("(dry run: nothing submitted)")
        return 0
    print(summary)
    # retention racing this plan: plan again from the arguments
    spec, submitted = submit_evaluation(spec, executor, force=args.force, again=lambda: build_spec(args, checkpoints))
    report_submitted(spec, executor, submitted)
    return 0


def run(args: argparse.Namespace) -> int:
    return submit_eval(args, "final")
