"""`orchestrate status` as the jobs grow: 100 / 1,000 / 3,000 registered jobs on the test SLURM
(--smoke: 10 / 30 / 100). Goals: scheduler calls constant (≤ 2 per refresh: one squeue, at most one
sacct), wall time ≤ 1 s at the largest size, growth exponent ≤ 1.1.

The jobs are real (submitted held, so they stay pending, one sbatch each as separate jobs are the
costly case for squeue), registered as one experiment per size, and cancelled whatever happens.
The issue asks for 10,000; 3,000 keeps the shared 2-core test machine usable (`--sizes` for more).

    python benchmarks/bench_status.py [--smoke] [--sizes 100 1000 10000]
        (needs the test cluster: scripts/slurm-cluster.sh up)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ORCHESTRATE, REPO, Figures, SchedulerShims, have_slurm, parse_args, timed

SIZES, SMOKE_SIZES = [100, 1000, 3000], [10, 30, 100]


def submit_held(n: int) -> list[str]:
    out = subprocess.run(
        f"for i in $(seq {n}); do sbatch --parsable --hold --time=5 --mem=10M -o /dev/null --wrap true || exit 1; done",
        shell=True,
        capture_output=True,
        text=True,
    )
    ids = out.stdout.split()  # what was submitted, even when a later sbatch failed: it is cancelled
    if out.returncode != 0:
        subprocess.run(["scancel", *ids])
        raise SystemExit(f"sbatch failed after {len(ids)} jobs: {out.stderr}")
    return ids


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
        ids += submit_held(max(sizes))
        print(f"submitted {len(ids)} held jobs", flush=True)
        reg = Registry()
        for n in sizes:  # experiment statusN: the first n jobs
            for i, job_id in enumerate(ids[:n]):
                stage = f"s{i}"
                reg.add_job(
                    job_id, "slurm", f"status{n}", stage, str(paths.stage_dir(f"status{n}", stage)), None,
                    [(f"run{i}", [])], [],
                )  # fmt: skip
        reg.close()
        shims = SchedulerShims()
        env = shims.env()
        walls, calls = [], []
        for n in sizes:
            shims.reset()
            timed([*ORCHESTRATE, "status", f"status{n}", "--json"], env)  # first refresh: every job's state
            calls.append(shims.calls("squeue") + shims.calls("sacct"))
            warm = []
            for _ in range(3):
                shims.reset()
                warm.append(timed([*ORCHESTRATE, "status", f"status{n}"], env)[0])
                calls[-1] = max(calls[-1], shims.calls("squeue") + shims.calls("sacct"))
            walls.append(min(warm))
            print(f"status over {n:,} jobs: {calls[-1]} scheduler call(s), {walls[-1]:.2f} s (table, best of 3)")
        figures.add(
            f"scheduler calls per refresh, at most over {sizes[0]:,}..{sizes[-1]:,} jobs", max(calls), ("<=", 2)
        )
        figures.add(f"status over {sizes[-1]:,} jobs ({os.cpu_count()} cores)", walls[-1], ("<=", 1.0), " s")
        figures.growth("orchestrate status", sizes, walls, "s")
        figures.save()
    finally:
        if ids:
            subprocess.run(["scancel", *ids])
            print(f"cancelled the {len(ids)} jobs")


if __name__ == "__main__":
    main()
