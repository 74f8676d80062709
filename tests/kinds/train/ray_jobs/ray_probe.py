"""Driver run inside a templates/ray.sh.j2 job by tests/train/test_ray_cluster.py (put on the job's
PYTHONPATH by the test): places actors with `spread` and records where each one ran."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from orchestrator.core.plan import UnitArgs


class ProbeArgs(UnitArgs):
    n: int  # actors to place


class Where:
    def slurm_node(self) -> str:
        # The environment of the raylet that started this worker: the SLURM step on that node.
        return os.environ.get("SLURMD_NODENAME", "")


def probe(run_dir: str, experiment: str, n: int) -> int:
    from orchestrator.kinds.train.ray_cluster import connect, node_names, node_of, spread

    started = time.time()
    # The test checks that this token appears in no script or log: it needs to know it.
    fd = os.open(Path(run_dir) / "token.secret", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.environ.get("RAY_AUTH_TOKEN", ""))
    connect()
    import ray

    actors = spread(Where, n, actor_options={"num_cpus": 0.25})
    record = {
        "address": os.environ["RAY_ADDRESS"],
        "job_id": os.environ["SLURM_JOB_ID"],
        "ray_nodes": sorted(node_names().values()),
        "placed": [node_of(a) for a in actors],
        "seen": ray.get([a.slurm_node.remote() for a in actors]),
        "started": started,
    }
    time.sleep(5)  # hold the cluster a moment, so two jobs overlap for certain
    record["ended"] = time.time()
    (Path(run_dir) / "placement.json").write_text(json.dumps(record))
    return 0
