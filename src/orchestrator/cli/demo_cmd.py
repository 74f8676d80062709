"""`orchestrate demo`: the whole chain on a tiny model, as a user would type it —
train both arms (baseline vs PCGrad), each checkpoint evaluated as it is saved → evaluate any
checkpoint not yet evaluated (eval-evolution skips the others) → report."""

from __future__ import annotations

import argparse
import time

from orchestrator.cli import executor_argument, main
from orchestrator.core import paths
from orchestrator.core.executor import choose_executor


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="demo", help="experiment name (default: demo)")
    executor_argument(p)
    p.add_argument("--force", action="store_true", help="run again even if the experiment already completed")


def run(args: argparse.Namespace) -> int:
    executor = choose_executor(args.executor).name
    exp, start = args.name, time.monotonic()
    force = ["--force"] if args.force else []
    data_root = paths.run_dir(exp, "prepare") / "data"
    steps = [
        (
            "1/3 train the tiny model, baseline and PCGrad arms; each checkpoint evaluated when saved",
            [
                [
                    "submit",
                    "mtl-comparison-tiny",
                    "--name",
                    exp,
                    "--executor",
                    executor,
                    *force,
                    # the preset's checkpoint every 2 epochs, more of them kept on disk
                    "--set",
                    "trainer.keep_last=5",
                    # each checkpoint evaluated on the demo suite as it is saved, early stopping on
                    # that score; the report compares the reward-best and held-out-best checkpoints
                    "--set",
                    "evaluation.every_save=true",
                    "--set",
                    "early_stopping.metric=eval/mean",
                ],
                ["wait", exp],
            ],
        ),
        (
            "2/3 evaluate any checkpoint not evaluated yet",
            [
                [
                    "eval-evolution",
                    exp,
                    "--suite",
                    "demo",
                    "--data-root",
                    str(data_root),
                    "--executor",
                    executor,
                    "--set",
                    "array_parallelism=2",
                    *force,
                ],
                ["wait", f"{exp}-eval"],
            ],
        ),
        ("3/3 write the comparison report", [["report", exp]]),
    ]
    for title, commands in steps:
        print(f"\n== {title}  [{time.monotonic() - start:.0f}s]", flush=True)
        for argv in commands:
            print("$ orchestrate " + " ".join(argv), flush=True)
            code = main(argv)
            if code != 0:
                print(f"demo stopped: `orchestrate {argv[0]}` exited {code} (see orchestrate status {exp})")
                return code
    print(
        f"\ndemo finished in {time.monotonic() - start:.0f}s; report: {paths.experiment_dir(exp) / 'report' / 'report.md'}"
    )
    return 0
