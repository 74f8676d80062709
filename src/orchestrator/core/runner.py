"""What runs inside a job: one unit of work, with its status file written atomically.

status.json is the job's own account of itself (RUNNING → COMPLETED/FAILED, exit code, reason);
the monitor prefers the scheduler's accounting and falls back to it when sacct is unavailable.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from submitit.helpers import Checkpointable

from orchestrator.core import paths
from orchestrator.core.plan import Unit


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_status(experiment: str, run: str) -> dict | None:
    try:
        return json.loads(paths.status_file(experiment, run).read_text())
    except (OSError, ValueError):
        return None


def missing_outputs(run_dir: Path, outputs: tuple[str, ...] | list[str]) -> list[str]:
    """Declared outputs that do not exist: a unit with any is not done, whatever its exit code."""
    return [o for o in outputs if not (run_dir / o).exists()]


def _rank() -> int:
    return int(os.environ.get("SLURM_PROCID") or os.environ.get("SUBMITIT_LOCAL_GLOBALID") or 0)


def _ntasks() -> int:
    return int(os.environ.get("SLURM_NTASKS") or os.environ.get("SUBMITIT_LOCAL_NTASKS") or 1)


def run_unit(experiment: str, unit: Unit, env_vars: dict | None = None) -> int:
    """Run one unit; returns its exit code, raising when it failed so the scheduler records it."""
    os.environ.update({k: str(v) for k, v in (env_vars or {}).items()})
    run_dir = paths.run_dir(experiment, unit.run)
    run_dir.mkdir(parents=True, exist_ok=True)
    status_path = paths.status_file(experiment, unit.run)
    lead = _rank() == 0  # with several tasks (srun), only rank 0 keeps the books
    job_id = (
        os.environ.get("SLURM_ARRAY_JOB_ID")
        and (f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}")
        or os.environ.get("SLURM_JOB_ID", "")
    )
    base = {
        "experiment": experiment,
        "run": unit.run,
        "job_id": job_id,
        "host": socket.gethostname(),
        "node": os.environ.get("SLURMD_NODENAME", ""),
        "pid": os.getpid(),
        "started": time.time(),
    }
    if lead:
        write_json_atomic(status_path, {**base, "state": "RUNNING"})
    module, _, func = unit.entry.partition(":")
    code, reason = 1, ""
    try:
        result = getattr(importlib.import_module(module), func)(
            run_dir=str(run_dir), experiment=experiment, **unit.kwargs()
        )
        code = result if isinstance(result, int) else 0
        reason = f"command exited with {code}" if code else ""
    except Exception as e:  # recorded, then re-raised for the scheduler
        reason = f"{type(e).__name__}: {e}"
        if lead:
            write_json_atomic(
                status_path, {**base, "state": "FAILED", "exit_code": 1, "reason": reason, "ended": time.time()}
            )
        raise
    # With several tasks, other ranks may still be writing: the monitor checks outputs once the
    # whole job has ended; a single task can check now, so afterok never follows a missing output.
    single = _ntasks() == 1
    missing = missing_outputs(run_dir, unit.outputs) if code == 0 and single else []
    if missing:
        code, reason = 1, f"exited 0 but declared outputs are missing: {', '.join(missing)}"
    if lead:
        write_json_atomic(
            status_path,
            {
                **base,
                "state": "COMPLETED" if code == 0 else "FAILED",
                "exit_code": code,
                "reason": reason,
                "ended": time.time(),
            },
        )
    if code != 0:
        # Exit with the unit's own code (no traceback to bury the command's output): the
        # scheduler's accounting then shows it.
        print(f"orchestrator: unit {unit.run} failed: {reason}", file=sys.stderr, flush=True)
        sys.exit(code)
    return code


class UnitJob:
    """What submitit pickles for one unit on SLURM (one per array task)."""

    def __init__(self, experiment: str, unit: Unit, env_vars: dict):
        self.experiment, self.unit, self.env_vars = experiment, unit, env_vars

    def __call__(self) -> int:
        return run_unit(self.experiment, self.unit, self.env_vars)


class CheckpointableUnitJob(UnitJob, Checkpointable):
    """On SLURM's USR2 (preemption, time limit) submitit requeues this same unit; the unit's
    entry point resumes from its own latest complete checkpoint."""


def unit_job(experiment: str, unit: Unit, env_vars: dict, checkpointable: bool) -> UnitJob:
    return (CheckpointableUnitJob if checkpointable else UnitJob)(experiment, unit, env_vars)


def run_local_array(
    experiment: str, units: list[Unit], env_vars: dict, parallelism: int, folder: str, wait_for: list[str]
) -> int:
    """Local executor: one controller process runs a whole array, `parallelism` units at a time,
    each in its own process and log file named as SLURM would name the array task's."""
    if wait_for and not _dependencies_ok(experiment, wait_for, units):
        return 1
    job = os.environ.get("SUBMITIT_LOCAL_JOB_ID") or str(os.getpid())
    unit_files = []
    for i, unit in enumerate(units):
        f = Path(folder) / f".unit_{job}_{i}.json"
        f.write_text(json.dumps({"experiment": experiment, "unit": unit.__dict__, "env": env_vars}))
        unit_files.append(f)

    def one(i: int) -> int:
        log = paths.job_log(Path(folder), f"{job}_{i}")
        with open(log, "ab") as out:
            return subprocess.run(
                [sys.executable, "-m", "orchestrator.core.runner", str(unit_files[i])],
                stdout=out,
                stderr=subprocess.STDOUT,
            ).returncode

    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        codes = list(pool.map(one, range(len(units))))
    if any(codes):
        raise RuntimeError(f"{sum(1 for c in codes if c)} of {len(codes)} units failed")
    return 0


def run_local(experiment: str, unit: Unit, env_vars: dict, wait_for: list[str]) -> int:
    """Local executor, single unit: wait for dependencies, then run in this process."""
    if wait_for and not _dependencies_ok(experiment, wait_for, [unit]):
        return 1
    return run_unit(experiment, unit, env_vars)


def _dependencies_ok(experiment: str, runs: list[str], units: list[Unit]) -> bool:
    """afterok for the local executor: wait until the runs we depend on end; if one did not
    complete, mark our units CANCELLED (as SLURM's kill-on-invalid-dep does)."""
    from orchestrator.core.monitor import local_run_state  # the monitor's rules decide, not a second copy

    while True:
        states = [local_run_state(*(r.split("/", 1) if "/" in r else (experiment, r))) for r in runs]
        if all(s in ("COMPLETED",) for s in states):
            return True
        bad = [r for r, s in zip(runs, states) if s not in ("PENDING", "RUNNING", "COMPLETED")]
        if bad:
            for u in units:
                write_json_atomic(
                    paths.status_file(experiment, u.run),
                    {
                        "experiment": experiment,
                        "run": u.run,
                        "state": "CANCELLED",
                        "exit_code": None,
                        "reason": f"dependency did not complete: {', '.join(bad)}",
                        "ended": time.time(),
                    },
                )
            return False
        time.sleep(0.5)


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    unit = Unit(**{**data["unit"], "outputs": tuple(data["unit"]["outputs"])})
    run_unit(data["experiment"], unit, data["env"])


if __name__ == "__main__":
    main()
