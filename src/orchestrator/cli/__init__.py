"""`orchestrate`: thin subcommands (one module each) over the library; no logic here.

Only the chosen subcommand's module is imported (and asked for its arguments), so `--help`,
`render`, `submit`, `status` and `logs` start fast and never import torch, transformers, ray,
vllm or wandb, whatever the other subcommands need.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from orchestrator.core.errors import SchedulerError, StorageError, UserError

COMMANDS = {
    "init": "create a project directory: orchestrate.toml, jobs/ with an example spec per kind, .gitignore",
    "demo": "the whole chain on a tiny model: train baseline vs PCGrad → eval every checkpoint → report",
    "submit": "submit a job spec (an experiment): orchestrate submit mtl-comparison",
    "render": "print the exact script sbatch receives for a spec",
    "status": "states of tracked jobs (one squeue + at most one sacct call)",
    "logs": "show (or follow) the log of a job or array task",
    "cancel": "cancel an experiment's jobs, or one job",
    "wait": "wait until an experiment's jobs end; non-zero exit if any failed",
    "list": "known specs and experiments",
    "score": "score a predictions file offline (official CoQA / SQuAD formats, weighted harness scorer)",
    "report": "markdown report of an experiment's results (plots, CSV/JSON table); prints its path",
    "eval": "evaluate the latest and best checkpoint of each arm of an experiment on a suite",
    "eval-evolution": "evaluate every checkpoint of every arm (checkpoint × task arrays)",
}


def spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="spec name in jobs/ (e.g. mtl-comparison) or a YAML path")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override any spec key (validated like the file)",
    )
    p.add_argument("--name", help="experiment name (default: the spec's name)")


def executor_argument(p: argparse.ArgumentParser) -> None:
    from orchestrator.core.executor import EXECUTORS

    p.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        help="default: $ORCH_EXECUTOR, else slurm when sbatch is found, else local",
    )


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate", description="LLM experiments on SLURM: spec → render → submit → monitor → report"
    )
    parser.add_argument("--version", action="version", version=f"orchestrate {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=name)
        if name == chosen:  # the others' arguments are not needed to parse this command line
            _module(name).add_arguments(p)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orchestrator")
    except PackageNotFoundError:  # run from a source tree (PYTHONPATH=src) without installing
        return "unknown (not installed)"


def _pin_home() -> None:
    """Jobs and local workers inherit the environment: fixing ORCH_HOME here means every process of
    this command (and every job it submits) uses the home this command found, wherever it runs."""
    from orchestrator.core import paths

    if not os.environ.get("ORCH_HOME"):
        try:
            os.environ["ORCH_HOME"] = str(paths.home())
        except UserError:
            pass  # no project: the commands that need one say so


def _module(name: str):
    return importlib.import_module(f"orchestrator.cli.{name.replace('-', '_')}_cmd")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        _pin_home()
        return _module(args._module).run(args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except SchedulerError as e:
        print(f"scheduler error: {e}", file=sys.stderr)
        return e.exit_code
    except StorageError as e:  # e.g. a full disk: the message says what and the fix
        print(f"error: {e.strerror or e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    sys.exit(main())
