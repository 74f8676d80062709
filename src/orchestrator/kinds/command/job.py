"""The `command` kind in the job: run one argument list, without a shell."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from orchestrator.core.plan import UnitArgs


class CommandArgs(UnitArgs):
    """One unit of a command stage: the argument list (placeholders still in), where it runs,
    and its index in the stage's array (0 without one)."""

    argv: tuple[str, ...]
    workdir: str
    index: int = 0

    def describe(self) -> str:
        return shlex.join(self.argv)


def execute(run_dir: str, experiment: str, argv: list[str] | tuple[str, ...], workdir: str, index: int = 0) -> int:
    """In the job: run the argument list (no shell) with `{run_dir}`, `{experiment}` and `{index}`
    filled in; the unit's exit code is the command's."""
    values = {"{run_dir}": run_dir, "{experiment}": experiment, "{index}": str(index)}
    filled = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace(key, value)
        filled.append(arg)
    # `python` in a command means the job's interpreter (the submitting venv), as after `activate`.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, ORCH_RUN_DIR=run_dir, ORCH_EXPERIMENT=experiment, ORCH_INDEX=str(index))
    return subprocess.run(filled, cwd=workdir, env=env).returncode
