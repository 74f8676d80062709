"""`orchestrate eval-evolution EXPERIMENT`: every checkpoint of every arm on a suite."""

from __future__ import annotations

import argparse

from orchestrator.cli.eval_cmd import add_arguments as common
from orchestrator.cli.eval_cmd import submit_eval


def add_arguments(p: argparse.ArgumentParser) -> None:
    common(p)


def run(args: argparse.Namespace) -> int:
    return submit_eval(args, "all")
