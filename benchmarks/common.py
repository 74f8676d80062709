"""Helpers for benchmarks: count scheduler calls through PATH shims, time whole commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORCHESTRATE = [sys.executable, "-m", "orchestrator"]


class SchedulerShims:
    """Wrappers for sbatch/squeue/sacct/scancel that log each call, then run the real tool."""

    TOOLS = ("sbatch", "squeue", "sacct", "scancel", "scontrol")

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="orch-shims-"))
        self.log = self.dir / "calls.log"
        self.log.touch()
        for tool in self.TOOLS:
            real = shutil.which(tool)
            if real is None:
                continue
            shim = self.dir / tool
            shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> {self.log}\nexec {real} "$@"\n')
            shim.chmod(0o755)

    def env(self, **extra: str) -> dict:
        return dict(os.environ, PATH=f"{self.dir}:{os.environ['PATH']}", **extra)

    def calls(self, tool: str | None = None) -> int:
        lines = self.log.read_text().splitlines()
        return sum(1 for line in lines if tool is None or line.split()[0] == tool)

    def reset(self) -> None:
        self.log.write_text("")


def timed(cmd: list[str] | str, env: dict | None = None, shell: bool = False) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, shell=shell, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"command failed ({res.returncode}): {cmd}\n{res.stdout}\n{res.stderr}")
    return elapsed, res.stdout


def heavy_imports(args: list[str], env: dict) -> list[str]:
    """Heavy modules a CLI invocation imports (python -X importtime)."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    heavy = ("torch", "transformers", "ray", "vllm", "wandb")
    found = set()
    for line in res.stderr.splitlines():
        if "import time:" in line:
            name = line.rsplit("|", 1)[-1].strip()
            if name.split(".")[0] in heavy:
                found.add(name.split(".")[0])
    return sorted(found)


def have_slurm() -> bool:
    if shutil.which("sbatch") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0
