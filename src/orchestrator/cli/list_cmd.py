from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import yaml

    from .. import paths
    from ..registry import Registry

    print(f"specs in {paths.JOBS_DIR}:")
    for f in sorted(paths.JOBS_DIR.glob("*.y*ml")):
        try:
            data = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError:
            data = {"kind": "(unreadable YAML)"}
        desc = data.get("description") or ""
        print(f"  {f.stem:<24} {data.get('kind', '?'):<10} {desc}")
    exps = Registry().experiments() if paths.registry_file().exists() else []
    print("experiments:" if exps else "experiments: none yet")
    for e in exps:
        print(f"  {e['name']:<24} {e['kind']:<10} {e['spec_path']}")
    return 0
