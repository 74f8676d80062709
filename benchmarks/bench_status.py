"""`orchestrate status` as the jobs grow: 100 / 1,000 / 10,000 units on the test SLURM (--smoke:
10 / 30 / 100). Goals: scheduler calls constant (≤ 2 per refresh: one squeue, at most one sacct),
wall time ≤ 1 s at the largest size, growth exponent ≤ 1.1.

Each size is one real array of that many tasks, submitted held (it stays pending), registered as
one experiment as `orchestrate submit` registers a stage (a job, a row per array task), and
cancelled whatever happens. One sbatch per size keeps the shared 2-core test machine usable; squeue
still lists every task (`-r`), and status reads and merges a state per unit.

    python benchmarks/bench_status.py [--smoke] [--sizes 100 1000 10000]
        (needs the test cluster: scripts/slurm-cluster.sh up)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ORCHESTRATE, REPO, Figures, SchedulerShims, have_slurm, parse_args, timed, timed_cpu

SIZES, SMOKE_SIZES = [100, 1000, 10000], [10, 30, 100]


def submit_held_array(n: int) -> str:
    out = subprocess.run(
        ["sbatch", "--parsable", "--hold", f"--array=0-{n - 1}", "--time=5", "--mem=10M", "-o", "/dev/null"]
        + ["--wrap", "true"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"sbatch --array=0-{n - 1} failed: {out.stderr}")
    return out.stdout.strip().split(";")[0]


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument("--sizes", type=int, nargs="+"))
    sizes = args.sizes or (SMOKE_SIZES if args.smoke else SIZES)
    figures = Figures("status", args.smoke)
    if not have_slurm():
        print("no SLURM cluster: nothing to measure (scripts/slurm-cluster.sh up)")
        figures.save()
        return
    home = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    os.environ["ORCH_HOME"] = str(home)
    sys.path.insert(0, str(REPO / "src"))
    from orchestrator.core import paths
    from orchestrator.core.registry import Registry

    ids: list[str] = []
    try:
        reg = Registry()
        for n in sizes:
            ids.append(submit_held_array(n))
            folder = str(paths.stage_dir(f"status{n}", "eval"))
            reg.add_job(ids[-1], "slurm", f"status{n}", "eval", folder, None, [(f"run{i}", []) for i in range(n)], [])
        reg.close()
        print(f"submitted {len(ids)} held arrays of {', '.join(map(str, sizes))} tasks", flush=True)
        shims = SchedulerShims()
        env = shims.env()
        walls, cpus, calls = [], [], []
        for n in sizes:
            shims.reset()
            timed([*ORCHESTRATE, "status", f"status{n}", "--json"], env)  # first refresh: every job's state
            calls.append(shims.calls("squeue") + shims.calls("sacct"))
            warm = []
            for _ in range(3):
                shims.reset()
                warm.append(timed_cpu([*ORCHESTRATE, "status", f"status{n}"], env)[:2])
                calls[-1] = max(calls[-1], shims.calls("squeue") + shims.calls("sacct"))
            walls.append(min(w for w, _ in warm))
            cpus.append(min(c for _, c in warm))
            print(
                f"status over {n:,} units: {calls[-1]} scheduler call(s), {walls[-1]:.2f} s wall, "
                f"{cpus[-1]:.2f} s CPU (table, best of 3; load average {os.getloadavg()[0]:.1f})"
            )
        figures.add(
            f"scheduler calls per refresh, at most over {sizes[0]:,}..{sizes[-1]:,} units", max(calls), ("<=", 2)
        )
        figures.add(f"status over {sizes[-1]:,} units ({os.cpu_count()} cores)", walls[-1], ("<=", 1.0), " s")
        figures.growth("orchestrate status, CPU", sizes, cpus, "CPU s")
        figures.save()
    finally:
        if ids:
            subprocess.run(["scancel", *ids])
            print(f"cancelled the {len(ids)} arrays")


if __name__ == "__main__":
    main()
