"""What runs inside a job: one unit of work, with its status file written atomically.

status.json (`core.records.UnitStatus`) is the job's own account of itself (RUNNING →
COMPLETED/FAILED, exit code, reason); the monitor prefers the scheduler's accounting and falls
back to it when sacct is unavailable.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from submitit.helpers import Checkpointable

from orchestrator.core import paths
from orchestrator.core.plan import Unit
from orchestrator.core.records import RecordError, UnitStatus
from orchestrator.core.refs import load_ref
from orchestrator.core.states import COMPLETED, FAILED, RUNNING


def read_status(experiment: str, run: str) -> dict | None:
    """The unit's status.json as a dict of `UnitStatus`'s keys; None when there is none or it is
    unreadable (a unit that never started, a torn copy). A newer schema_version is an error."""
    try:
        return UnitStatus.read(paths.status_file(experiment, run)).dump()
    except (OSError, RecordError):
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
        UnitStatus(**base, state=RUNNING).write(status_path)  # a failure here: nothing has run yet
    code, reason = 1, ""
    try:
        result = load_ref(unit.entry)(run_dir=str(run_dir), experiment=experiment, **unit.args.kwargs())
        code = result if isinstance(result, int) else 0
        reason = f"command exited with {code}" if code else ""
    except Exception as e:  # recorded, then re-raised for the scheduler
        reason = f"{type(e).__name__}: {e}"
        if lead:
            _write_status(status_path, UnitStatus(**base, state=FAILED, exit_code=1, reason=reason, ended=time.time()))
        raise
    # With several tasks, other ranks may still be writing: the monitor checks outputs once the
    # whole job has ended; a single task can check now, so afterok never follows a missing output.
    single = _ntasks() == 1
    missing = missing_outputs(run_dir, unit.outputs) if code == 0 and single else []
    if missing:
        code, reason = 1, f"exited 0 but declared outputs are missing: {', '.join(missing)}"
    if lead:
        state = COMPLETED if code == 0 else FAILED
        final = UnitStatus(**base, state=state, exit_code=code, reason=reason, ended=time.time())
        if not _write_status(status_path, final) and code == 0:
            code = 1  # no COMPLETED on record: say FAILED to the scheduler too, so nothing follows
            reason = "could not record the unit's end (see above); run it again"
    if code != 0:
        # Exit with the unit's own code (no traceback to bury the command's output): the
        # scheduler's accounting then shows it.
        print(f"orchestrator: unit {unit.run} failed: {reason}", file=sys.stderr, flush=True)
        sys.exit(code)
    return code


def _write_status(path: Path, status: UnitStatus) -> bool:
    """Write the status file; on a failed write (a full disk) say why on stderr and go on, so
    the job's own error is the one the scheduler and the log show."""
    try:
        status.write(path)
        return True
    except OSError as e:
        print(f"orchestrator: {e}", file=sys.stderr, flush=True)
        return False


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
