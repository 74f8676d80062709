"""`orchestrate eval-evolution EXPERIMENT`: every checkpoint of every arm on a suite."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from orchestrator.cli.eval_cmd import add_arguments as common

    common(p)


def run(args: argparse.Namespace) -> int:
    from orchestrator.cli.eval_cmd import submit_eval

    return submit_eval(args, "all")
