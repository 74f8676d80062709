"""`orchestrate submit` as the units grow, and against hand-made submission.

1. Units of one shape submitted as one stage, 100 / 1,000 / 10,000 units (--smoke: 10 / 30 / 100):
   sbatch calls (goal: = stages, one array per stage) and wall time (growth exponent ≤ 1.1).
2. 200 units (--smoke: 10): `orchestrate submit` vs a shell loop of single `sbatch` calls (how
   hand-made scripts submit per-checkpoint evaluations): calls and wall time, their ratio.
3. CLI start-up and which heavy modules the control commands import (must be none).

Everything submitted is cancelled whatever happens.

    python benchmarks/bench_submit.py [--smoke]    (needs the test cluster: scripts/slurm-cluster.sh up)
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from common import ORCHESTRATE, Figures, SchedulerShims, have_slurm, heavy_imports, parse_args, timed, timed_cpu

SIZES, SMOKE_SIZES = [100, 1000, 10000], [10, 30, 100]
LOOP, SMOKE_LOOP = 200, 10


def write_spec(home: Path, n: int) -> Path:
    spec = home / f"submit{n}.yaml"
    spec.write_text(
        "kind: command\nresources: {time: '5', mem: 50M}\narray_parallelism: 8\n"
        "stages:\n  eval:\n    run: ['true']\n    array: %s\n" % json.dumps([[str(i)] for i in range(n)])
    )
    return spec


def main() -> None:
    args = parse_args(__doc__)
    sizes, loop_n = (SMOKE_SIZES, SMOKE_LOOP) if args.smoke else (SIZES, LOOP)
    figures = Figures("submit", args.smoke)
    home = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    shims = SchedulerShims()
    env = shims.env(ORCH_HOME=str(home))
    spec = write_spec(home, loop_n)

    help_s = min(timed([*ORCHESTRATE, "--help"], env)[0] for _ in range(3))
    render_s, _ = timed([*ORCHESTRATE, "render", str(spec)], env)
    print(f"orchestrate --help: {help_s * 1000:.0f} ms (best of 3); render of {loop_n} units: {render_s * 1000:.0f} ms")
    heavy = set()
    for cmd in (
        ["--help"],
        ["render", str(spec)],
        ["submit", str(spec), "--dry-run", "--executor", "local"],
        ["status"],
        ["list"],
    ):
        found = heavy_imports(cmd, env)
        print(f"heavy imports for `orchestrate {cmd[0]}`: {', '.join(found) or 'none'}")
        heavy.update(found)
    figures.add("heavy modules imported by control commands", len(heavy), ("<=", 0))
    assert not heavy, f"control commands import {sorted(heavy)}"

    if not have_slurm():
        print("no SLURM cluster: skipping the submissions (scripts/slurm-cluster.sh up)")
        figures.save()
        return
    submitted: list[str] = []
    try:
        walls, cpus, calls = [], [], []
        for n in sizes:
            shims.reset()
            wall, cpu, out = timed_cpu([*ORCHESTRATE, "submit", str(write_spec(home, n)), "--executor", "slurm"], env)
            submitted += re.findall(r"array of \d+ (\d+)", out)
            walls.append(wall)
            cpus.append(cpu)
            calls.append(shims.calls("sbatch"))
            print(
                f"submit of {n:,} units (1 stage): {calls[-1]} sbatch call(s), {wall:.2f} s wall, {cpu:.2f} s CPU",
                flush=True,
            )
        figures.add(f"sbatch calls per stage, at most over {sizes[0]:,}..{sizes[-1]:,} units", max(calls), ("<=", 1))
        figures.growth("orchestrate submit, CPU", sizes, cpus, "CPU s")

        shims.reset()
        ours_s, out = timed([*ORCHESTRATE, "submit", str(spec), "--name", "vsloop", "--executor", "slurm"], env)
        submitted += re.findall(r"array of \d+ (\d+)", out)
        ours_calls = shims.calls("sbatch")
        shims.reset()
        loop = (
            f"for i in $(seq 0 {loop_n - 1}); do sbatch --parsable --time=5 --mem=50M -o /dev/null "
            f"--job-name=loop$i --wrap true; done"
        )
        start = time.perf_counter()
        res = subprocess.run(loop, env=env, shell=True, capture_output=True, text=True)
        loop_s = time.perf_counter() - start
        submitted += res.stdout.split()  # whatever was submitted is cancelled below
        if len(res.stdout.split()) != loop_n:
            raise SystemExit(f"the sbatch loop submitted {len(res.stdout.split())} of {loop_n}: {res.stderr}")
        loop_calls = shims.calls("sbatch")
        print(f"\nsubmitting {loop_n} units of one shape")
        print(f"  orchestrate submit : {ours_calls:4d} sbatch call(s)  {ours_s:6.2f} s")
        print(f"  shell loop         : {loop_calls:4d} sbatch call(s)  {loop_s:6.2f} s")
        figures.add(f"sbatch calls, shell loop / ours, {loop_n} units", loop_calls / ours_calls)
        figures.add(f"wall time, shell loop / ours, {loop_n} units", loop_s / ours_s, (">=", 1.0), "x")
        figures.save()
    finally:
        if submitted:
            subprocess.run(["scancel", *submitted])
            print(f"cancelled {len(submitted)} job(s)")


if __name__ == "__main__":
    main()
