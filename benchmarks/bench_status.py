"""`orchestrate status` over 1,000 registered jobs: scheduler calls (target ≤ 2) and wall time
(target ≤ 1 s). The jobs are real (submitted held, so they stay pending), registered as one
experiment, then cancelled.

    python benchmarks/bench_status.py        (needs the test cluster: scripts/slurm-cluster.sh up)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ORCHESTRATE, REPO, SchedulerShims, have_slurm, timed

N = 1000


def main() -> None:
    if not have_slurm():
        print("no SLURM cluster: nothing to measure (scripts/slurm-cluster.sh up)")
        return
    home = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    os.environ["ORCH_HOME"] = str(home)
    sys.path.insert(0, str(REPO / "src"))
    from orchestrator.core import paths
    from orchestrator.core.registry import Registry

    start = time.perf_counter()
    out = subprocess.run(
        f"for i in $(seq {N}); do sbatch --parsable --hold --time=5 --mem=10M -o /dev/null --wrap true; done",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ids = out.split()
    print(f"submitted {len(ids)} held jobs in {time.perf_counter() - start:.1f} s")
    reg = Registry()
    with reg.transaction():
        for i, job_id in enumerate(ids):
            reg.add_job(
                job_id,
                "slurm",
                "bench1000",
                f"s{i}",
                str(paths.stage_dir("bench1000", f"s{i}")),
                None,
                [(f"run{i}", [])],
                [],
            )
    shims = SchedulerShims()
    env = shims.env()
    try:
        cold_s, _ = timed([*ORCHESTRATE, "status", "bench1000", "--json"], env)
        calls = {t: shims.calls(t) for t in ("squeue", "sacct")}
        warm = []
        for _ in range(3):
            shims.reset()
            warm.append(timed([*ORCHESTRATE, "status", "bench1000"], env)[0])
        print(
            f"orchestrate status over {N} jobs: {calls['squeue']} squeue + {calls['sacct']} sacct call(s); "
            f"wall {cold_s:.2f} s (first, --json), {min(warm):.2f} s (table, best of 3)"
        )
        print(
            f"targets: calls ≤ 2 → {'ok' if sum(calls.values()) <= 2 else 'MISSED'}; "
            f"wall ≤ 1 s → {'ok' if min(warm) <= 1 else 'MISSED'}"
        )
    finally:
        subprocess.run(["scancel", *ids])


if __name__ == "__main__":
    main()
