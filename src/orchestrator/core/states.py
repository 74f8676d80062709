"""The one set of job states: what the registry stores, the monitor reports and reports count."""

from __future__ import annotations

PENDING, RUNNING, REQUEUED = "PENDING", "RUNNING", "REQUEUED"
COMPLETED, FAILED, CANCELLED, TIMEOUT = "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"
PREEMPTED, OUT_OF_MEMORY, NODE_FAIL = "PREEMPTED", "OUT_OF_MEMORY", "NODE_FAIL"

ACTIVE_STATES = frozenset({PENDING, RUNNING, REQUEUED})
FINAL_STATES = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, OUT_OF_MEMORY, NODE_FAIL})
FAILED_STATES = FINAL_STATES - {COMPLETED}  # ended without a result

# SLURM's job states → ours (squeue long names and sacct names agree).
SLURM_STATES = {
    "PENDING": PENDING, "CONFIGURING": RUNNING, "RUNNING": RUNNING, "COMPLETING": RUNNING,
    "SUSPENDED": RUNNING, "STOPPED": RUNNING, "SIGNALING": RUNNING, "STAGE_OUT": RUNNING,
    "RESIZING": RUNNING, "RESV_DEL_HOLD": PENDING, "POWER_UP_NODE": PENDING,
    "REQUEUED": REQUEUED, "REQUEUE_FED": REQUEUED, "REQUEUE_HOLD": REQUEUED,
    "COMPLETED": COMPLETED, "FAILED": FAILED, "SPECIAL_EXIT": FAILED, "CANCELLED": CANCELLED,
    "REVOKED": CANCELLED, "DEADLINE": TIMEOUT, "TIMEOUT": TIMEOUT, "PREEMPTED": PREEMPTED,
    "OUT_OF_MEMORY": OUT_OF_MEMORY, "NODE_FAIL": NODE_FAIL, "BOOT_FAIL": NODE_FAIL,
}  # fmt: skip


def normalise(slurm_state: str) -> str:
    """SLURM's state text → ours. sacct adds detail ("CANCELLED by 0"), squeue may add "+";
    a state we do not know counts as PENDING, so it is asked about again rather than closed."""
    word = slurm_state.split()[0].rstrip("+") if slurm_state.strip() else ""
    return SLURM_STATES.get(word, PENDING)


# squeue's reason for a job whose dependency can never be satisfied (an upstream unit failed).
NEVER_SATISFIED = "DependencyNeverSatisfied"


def dependency_reason(upstream: str, state: str | None) -> str:
    """Why a unit was cancelled: the upstream unit ("<experiment>/<run> (job <key>)") that did not complete."""
    return f"dependency never satisfied: {upstream} ended {state or 'without completing'}"
