"""Ray inside a SLURM allocation, on the real two-node test cluster (node1 and node2 are both
127.0.0.1, so the head and the worker of a job share a host, as two jobs on one real node do)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import wait_final
from orchestrator.core import paths
from orchestrator.core.executor import executor_named
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.registry import Registry
from orchestrator.core.spec import BaseSpec, Environment
from orchestrator.core.submit import submit
from orchestrator.kinds.train.ray_cluster import ray_template_vars

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROBE_DIR = Path(__file__).parent / "ray_jobs"
sys.path.insert(0, str(PROBE_DIR))  # the job imports the driver (and its args) from there too
from ray_probe import ProbeArgs  # noqa: E402


class RayProbeSpec(BaseSpec):
    """One driver unit in a 2-node Ray job (the shape a training kind's stage has)."""

    kind: str = "ray-probe"
    actors: int = 4
    join_timeout_s: int = 120
    worker_args: tuple[str, ...] = ()

    def plan(self) -> list[Stage]:
        env = Environment(vars={"PYTHONPATH": str(PROBE_DIR)})
        unit = Unit("probe", "ray_probe:probe", ProbeArgs(n=self.actors), outputs=("placement.json",))
        tvars = ray_template_vars(
            self.resources,
            join_timeout_s=self.join_timeout_s,
            object_store_mb=100,
            worker_ports=30,
            worker_args=self.worker_args,
        )
        return [Stage("probe", self.resources, env, (unit,), template="ray.sh.j2", template_vars=tvars)]


def probe_spec(name: str, **kw) -> RayProbeSpec:
    return RayProbeSpec(
        name=name, resources={"nodes": 2, "tasks_per_node": 1, "cpus_per_task": 2, "time": "10", "mem": "1500M"}, **kw
    )


def job_of(experiment: str) -> str:
    (job,) = [r[0] for r in Registry().db.execute("SELECT scheduler_id FROM jobs WHERE experiment = ?", (experiment,))]
    return job


def job_text(experiment: str) -> str:
    """Everything the job left in files others may read: submission script, scheduler logs."""
    folder = paths.stage_dir(experiment, "probe")
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(folder.glob("*")) if p.suffix in (".sh", ".out", ".err")
    )


def ray_processes(job: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", f"ray-{job}-"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_two_ray_jobs_at_once_place_actors_on_both_nodes(slurm_home):
    specs = [probe_spec("ray-a"), probe_spec("ray-b")]
    for spec in specs:
        submit(spec, executor_named("slurm"))
    tasks = {s.name: wait_final(s.name, timeout=420)["probe"] for s in specs}
    records = {}
    for spec in specs:
        t = tasks[spec.name]
        assert t.state == "COMPLETED", (t.state, t.reason, job_text(spec.name)[-4000:])
        rec = json.loads((paths.run_dir(spec.name, "probe") / "placement.json").read_text())
        records[spec.name] = rec
        assert rec["ray_nodes"] == ["node1", "node2"]  # one Ray node per SLURM node, both joined
        assert sorted(rec["placed"]) == ["node1", "node1", "node2", "node2"]  # round-robin over both
        assert rec["seen"] == rec["placed"]  # the actors' own SLURM step agrees
        assert rec["address"].startswith("127.0.0.1:")  # NodeAddr, not `hostname`
    a, b = records["ray-a"], records["ray-b"]
    assert a["address"] != b["address"]
    assert a["started"] < b["ended"] and b["started"] < a["ended"], "the two Ray clusters did not run at once"

    registry_bytes = paths.registry_file().read_bytes()
    for spec in specs:
        run = paths.run_dir(spec.name, "probe")
        token_file = run / "token.secret"
        assert token_file.stat().st_mode & 0o077 == 0
        token = token_file.read_text()
        assert re.fullmatch(r"[0-9a-f]{64}", token), "the job had no per-job token"
        text = job_text(spec.name)
        assert "ray_cluster wait" in text and "joined" in text  # the files searched are the right ones
        assert token not in text  # nor in the submission script or any log
        assert token.encode() not in registry_bytes
        job = job_of(spec.name)
        script = subprocess.run(["scontrol", "write", "batch_script", job, "-"], capture_output=True, text=True)
        assert token not in script.stdout
    assert records["ray-a"]["job_id"] != records["ray-b"]["job_id"]
    for rec in records.values():  # every node's Ray stopped and its temp dir removed
        deadline = time.time() + 30
        while (
            ray_processes(rec["job_id"]) or list(Path("/tmp").glob(f"ray-{rec['job_id']}-*"))
        ) and time.time() < deadline:
            time.sleep(1)
        assert not ray_processes(rec["job_id"])
        assert not list(Path("/tmp").glob(f"ray-{rec['job_id']}-*"))


def test_a_worker_that_cannot_join_fails_the_job_with_a_clear_error(slurm_home):
    spec = probe_spec("ray-nojoin", join_timeout_s=25, worker_args=("--no-such-ray-flag",))
    submit(spec, executor_named("slurm"))
    t = wait_final(spec.name, timeout=300)["probe"]
    assert t.state == "FAILED" and t.exit_code != 0
    err = (paths.stage_dir(spec.name, "probe") / f"{job_of(spec.name)}_0_log.err").read_text()
    assert "node2 did not join the Ray cluster" in err and "joined: node1" in err
    assert not (paths.run_dir(spec.name, "probe") / "placement.json").exists()  # the driver never ran
