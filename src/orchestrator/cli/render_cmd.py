from __future__ import annotations

import argparse

from orchestrator.cli import spec_arguments
from orchestrator.core.errors import UserError
from orchestrator.core.plan import stages_of
from orchestrator.core.render import render_stage
from orchestrator.core.spec import load_spec


def add_arguments(p: argparse.ArgumentParser) -> None:
    spec_arguments(p)
    p.add_argument("--stage", help="only this stage's script")


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.overrides, args.name)
    stages = stages_of(spec)
    if args.stage:
        stages = [s for s in stages if s.name == args.stage]
        if not stages:
            raise UserError(f"--stage {args.stage!r}: no such stage in {args.spec}")
    texts = [render_stage(spec.name, s, source=getattr(spec, "_source", "-")) for s in stages]
    if len(texts) == 1:
        print(texts[0], end="")
    else:
        for s, t in zip(stages, texts):
            print(f"# ==== stage {s.name} ====\n{t}", end="")
    return 0
