from __future__ import annotations

import argparse

from orchestrator.core import kinds, paths
from orchestrator.core.errors import SpecError
from orchestrator.core.registry import Registry
from orchestrator.core.spec import _load_with_includes, list_specs


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print(f"kinds: {', '.join(kinds.names())}")  # built-in and those other packages register
    builtin = paths.BUILTIN_JOBS.resolve()
    print("specs (a project's spec hides the built-in of the same name):")
    for name, f in sorted(list_specs().items()):
        f = f.resolve()
        try:
            data = _load_with_includes(f, f.parent, str(f))  # kind may come from an include
        except SpecError as e:
            data = {"kind": "(invalid)", "description": e.problems[0]}
        origin = "built-in" if f.is_relative_to(builtin) else str(f.parent)
        print(f"  {name:<24} {data.get('kind', '?'):<10} {origin:<10} {data.get('description') or ''}")
    exps = Registry().experiments() if paths.registry_file().exists() else []
    print("experiments:" if exps else "experiments: none yet")
    for e in exps:
        print(f"  {e['name']:<24} {e['kind']:<10} {e['spec_path']}")
    return 0
