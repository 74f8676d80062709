from __future__ import annotations

import argparse

from orchestrator.core import kinds, paths
from orchestrator.core.errors import SpecError
from orchestrator.core.registry import Registry
from orchestrator.core.spec import _load_with_includes


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print(f"kinds: {', '.join(kinds.names())}")  # built-in and those other packages register
    print(f"specs in {paths.JOBS_DIR}:")
    for f in sorted(paths.JOBS_DIR.glob("*.y*ml")):
        try:
            data = _load_with_includes(f.resolve(), f.resolve().parent, str(f))  # kind may come from an include
        except SpecError as e:
            data = {"kind": "(invalid)", "description": e.problems[0]}
        desc = data.get("description") or ""
        print(f"  {f.stem:<24} {data.get('kind', '?'):<10} {desc}")
    exps = Registry().experiments() if paths.registry_file().exists() else []
    print("experiments:" if exps else "experiments: none yet")
    for e in exps:
        print(f"  {e['name']:<24} {e['kind']:<10} {e['spec_path']}")
    return 0
