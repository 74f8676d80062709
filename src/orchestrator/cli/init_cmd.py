"""`orchestrate init [DIR]`: a project directory of one's own (docs/architecture.md, "Projects")."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import UserError

# One built-in spec per kind to copy from, with the data folder (beside it) it reads.
EXAMPLES = {
    "command": ("hello", None),
    "inference": ("infer-tiny", "data/infer-tiny"),
    "sweep": ("coqa-sweep", None),
    "judge": ("judge-tagging", None),
    "train": ("mtl-comparison-tiny", None),
    "rag": ("rag-tiny", "data/rag-tiny"),
}

CONFIG = """\
# orchestrator project: `orchestrate` run anywhere below this directory uses it.
# Specs in jobs/ and templates in templates/ come before the built-ins of the same name
# (`orchestrate list` shows which is which); relative paths in a spec are read from its directory.

# Where logs/ and checkpoints/ go (relative to this file), e.g. a group scratch file system.
# ORCH_HOME overrides it.
home = "."

# slurm or local; default: slurm when sbatch is on PATH. --executor / ORCH_EXECUTOR override it.
# executor = "slurm"

# Defaults for every spec's resources (a spec's own values win).
[resources]
# account = "my-group"
# partition = "gpu"
"""

GITIGNORE = "logs/\ncheckpoints/\nindexes/\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", default=".", help="the project directory (created if needed; default: here)")


def run(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    if (root / paths.PROJECT_FILE).exists():
        raise UserError(f"{root / paths.PROJECT_FILE} exists: {root} is already a project")
    if any(root.is_relative_to(Path(d).resolve()) for d in (sys.prefix, paths.PACKAGE_DIR.parent)):
        raise UserError(f"{root} is inside the Python installation; choose a directory of your own")
    jobs = root / "jobs"
    clashes = [f"jobs/{name}.yaml" for name, _ in EXAMPLES.values() if (jobs / f"{name}.yaml").exists()]
    if clashes:
        raise UserError(f"{root}: {', '.join(clashes)} exist; init a new directory or move them away")
    jobs.mkdir(parents=True, exist_ok=True)
    for name, data in EXAMPLES.values():
        shutil.copyfile(paths.BUILTIN_JOBS / f"{name}.yaml", jobs / f"{name}.yaml")
        if data and not (jobs / data).exists():
            shutil.copytree(paths.BUILTIN_JOBS / data, jobs / data)
    (root / "templates").mkdir(exist_ok=True)
    if not (root / ".gitignore").exists():
        (root / ".gitignore").write_text(GITIGNORE)
    (root / paths.PROJECT_FILE).write_text(CONFIG)  # last: a project exists once its marker does
    print(f"project {root}:")
    print(f"  {paths.PROJECT_FILE}   home, executor, resource defaults")
    print(
        f"  jobs/              one example spec per kind: {', '.join(f'{n} ({k})' for k, (n, _) in EXAMPLES.items())}"
    )
    print("  templates/         your own sbatch templates (same name as a built-in: yours is used)")
    print(f"next: cd {root} && orchestrate list && orchestrate submit hello && orchestrate status")
    return 0
