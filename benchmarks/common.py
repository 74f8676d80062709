"""Helpers for benchmarks: the `--smoke` flag, figures (printed, and saved as JSON for `make bench`'s
table), growth exponents and their plots, scheduler calls counted through PATH shims, timed commands."""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
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
    wall, _, out = timed_cpu(cmd, env, shell)
    return wall, out


def timed_cpu(cmd: list[str] | str, env: dict | None = None, shell: bool = False) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the command and what it ran, stdout). The CPU time barely
    moves with the load other users put on a shared machine: growth curves use it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, shell=shell, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"command failed ({res.returncode}): {cmd}\n{res.stdout}\n{res.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu, res.stdout


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


def parse_args(doc: str | None, configure=None) -> argparse.Namespace:
    """The benchmark's arguments: `--smoke` (its smallest size: seconds, for CI) plus its own."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="smallest size: checks that it runs, figures mean little")
    if configure:
        configure(p)
    return p.parse_args()


def growth_exponent(sizes: list[float], costs: list[float]) -> float:
    """Least-squares slope of log(cost) over log(size): 1 = linear, 0 = constant."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(c, 1e-9)) for c in costs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


class Figures:
    """One benchmark's figures: each printed as it is measured, all written at exit to
    $ORCH_BENCH_OUT/<benchmark>.json when `make bench` (benchmarks/run.py) asks for them.
    A target is (op, value) with op '<=' or '>='; a figure without one is only reported."""

    def __init__(self, benchmark: str, smoke: bool = False) -> None:
        self.benchmark, self.smoke = benchmark, smoke
        self.rows: list[dict] = []
        self.curves: list[dict] = []

    def add(self, figure: str, value: float, target: tuple[str, float] | None = None, unit: str = "") -> None:
        met = None if target is None else (value <= target[1] if target[0] == "<=" else value >= target[1])
        self.rows.append(
            {"figure": figure, "value": value, "unit": unit, "target": list(target) if target else None, "met": met}
        )
        goal = f" (target {target[0]} {target[1]:g}{unit}: {'met' if met else 'MISSED'})" if target else ""
        print(f"  {figure}: {value:.4g}{unit}{goal}", flush=True)

    def growth(self, figure: str, sizes: list[int], costs: list[float], unit: str, goal: float = 1.1) -> float:
        """How `costs` grow with `sizes` (three sizes or more): the exponent is a figure, the curve is plotted."""
        for n, c in zip(sizes, costs):
            print(f"  {figure} at {n:,}: {c:.4g} {unit}", flush=True)
        exponent = growth_exponent(sizes, costs)
        self.curves.append({"figure": figure, "sizes": sizes, "costs": costs, "unit": unit, "exponent": exponent})
        self.add(f"{figure}: growth exponent ({sizes[0]:,}..{sizes[-1]:,})", exponent, ("<=", goal))
        return exponent

    def save(self) -> None:
        out = os.environ.get("ORCH_BENCH_OUT")
        if out:
            data = {"benchmark": self.benchmark, "smoke": self.smoke, "figures": self.rows, "curves": self.curves}
            Path(out, f"{self.benchmark}.json").write_text(json.dumps(data, indent=1))
