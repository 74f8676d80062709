"""One batched look at the scheduler for every tracked job: at most one `squeue` and one `sacct`
call per refresh, however many jobs. States are normalised, and a unit counts as COMPLETED only
when it exited 0 AND the outputs its kind declares exist."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.registry import FINAL_STATES, Registry, Task
from orchestrator.core.runner import missing_outputs, read_status

STATES = (
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "REQUEUED",
)
# SLURM's job states → ours (squeue long names and sacct names agree).
SLURM_STATES = {
    "PENDING": "PENDING",
    "CONFIGURING": "RUNNING",
    "RUNNING": "RUNNING",
    "COMPLETING": "RUNNING",
    "SUSPENDED": "RUNNING",
    "STOPPED": "RUNNING",
    "SIGNALING": "RUNNING",
    "STAGE_OUT": "RUNNING",
    "RESIZING": "RUNNING",
    "RESV_DEL_HOLD": "PENDING",
    "POWER_UP_NODE": "PENDING",
    "REQUEUED": "REQUEUED",
    "REQUEUE_FED": "REQUEUED",
    "REQUEUE_HOLD": "REQUEUED",
    "COMPLETED": "COMPLETED",
    "FAILED": "FAILED",
    "SPECIAL_EXIT": "FAILED",
    "CANCELLED": "CANCELLED",
    "REVOKED": "CANCELLED",
    "DEADLINE": "TIMEOUT",
    "TIMEOUT": "TIMEOUT",
    "PREEMPTED": "PREEMPTED",
    "OUT_OF_MEMORY": "OUT_OF_MEMORY",
    "NODE_FAIL": "NODE_FAIL",
    "BOOT_FAIL": "NODE_FAIL",
}

scheduler_calls: list[list[str]] = []  # every squeue/sacct command line this process ran (benchmarks)


def normalise(slurm_state: str) -> str:
    word = slurm_state.split()[0].rstrip("+") if slurm_state else ""  # "CANCELLED by 0"
    return SLURM_STATES.get(word, "PENDING")


def _call(cmd: list[str]) -> subprocess.CompletedProcess | None:
    """Run a scheduler query; None when the tool is missing or does not answer."""
    if shutil.which(cmd[0]) is None:
        return None
    scheduler_calls.append(cmd)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


def squeue(job_ids: list[str]) -> dict[str, tuple[str, str, str]] | None:
    """key ('123' or '123_4') → (state, reason, nodes) for jobs the controller still knows,
    finished ones included (--states=all), array tasks expanded (-r); None when squeue is
    unavailable (then nothing can be concluded from a job's absence)."""
    res = _call(["squeue", "-h", "-r", "--states=all", "-j", ",".join(job_ids), "-o", "%i|%T|%r|%N"])
    if res is None or (res.returncode != 0 and "Invalid job id" not in res.stderr):
        return None
    found = {}
    for line in res.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            found[parts[0]] = (parts[1], parts[2], parts[3])
    return found


def sacct(job_ids: list[str]) -> dict[str, tuple[str, int | None, str]] | None:
    """key → (state, exit code, nodes) from accounting; None when sacct is unavailable."""
    res = _call(["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode,NodeList,Submit"])
    if res is None or res.returncode != 0:  # e.g. accounting storage disabled
        return None
    found: dict[str, tuple[str, int | None, str]] = {}
    submitted: dict[str, str] = {}
    for line in res.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5 or "[" in parts[0]:  # '123_[4-9]' = array tasks not started yet
            continue
        # A cluster whose job ids restarted has several jobs of one id: the newest is ours.
        if parts[0] in submitted and parts[4] < submitted[parts[0]]:
            continue
        code = parts[2].split(":")[0]
        found[parts[0]] = (parts[1], int(code) if code.isdigit() else None, parts[3])
        submitted[parts[0]] = parts[4]
    return found


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except (OSError, IndexError):
        return False


def local_run_state(experiment: str, run: str, registry: Registry | None = None) -> str:
    """State of a run under the local executor: its status file, else whether its controller lives."""
    status = read_status(experiment, run) or {}
    if status.get("state") in FINAL_STATES:
        return status["state"]
    reg = registry or Registry()
    tasks = [t for t in reg.tasks(experiment) if t.run == run]
    if not tasks or not _pid_alive(int(tasks[0].scheduler_id)):
        return "FAILED"
    return status.get("state", "PENDING")


def _from_status(t: Task) -> dict:
    """The job's own account (status.json), used when the scheduler's is missing."""
    s = read_status(t.experiment, t.run) or {}
    if s.get("state") in FINAL_STATES:
        return {"state": s["state"], "exit_code": s.get("exit_code"), "reason": s.get("reason") or None}
    return {}


def _slurm_updates(tasks: list[Task]) -> dict[tuple[int, int], dict]:
    ids = sorted({t.scheduler_id for t in tasks})
    queried = squeue(ids)
    live = queried or {}
    need_acct = [t for t in tasks if t.key not in live or normalise(live[t.key][0]) in FINAL_STATES]
    acct = sacct(sorted({t.scheduler_id for t in need_acct})) if need_acct else {}
    updates = {}
    for t in tasks:
        new: dict = {}
        if acct is not None and t.key in acct:
            state, code, nodes = acct[t.key]
            new = {"state": normalise(state), "exit_code": code, "node": nodes or None}
        elif t.key in live:
            state, reason, nodes = live[t.key]
            new = {"state": normalise(state), "node": nodes or None}
            if new["state"] == "PENDING" and reason not in ("None", ""):
                new["reason"] = reason
            if new["state"] in FINAL_STATES:
                new.update({k: v for k, v in _from_status(t).items() if k != "state"})
        elif queried is None:  # no scheduler to ask (e.g. off the cluster): only status files speak
            new = _from_status(t)
        else:  # neither the controller nor accounting knows it: the status file decides, no waiting
            new = _from_status(t) or {
                "state": "FAILED",
                "reason": "left the queue without accounting record or final status file (killed before it started?)",
            }
        updates[(t.job, t.task)] = new
    return updates


def _local_updates(tasks: list[Task]) -> dict[tuple[int, int], dict]:
    updates = {}
    for t in tasks:
        new = _from_status(t)
        if not new:
            if _pid_alive(int(t.scheduler_id)):
                s = read_status(t.experiment, t.run) or {}
                new = {"state": s.get("state", "PENDING")}
            else:
                new = {"state": "FAILED", "reason": "process ended without writing a final status"}
        updates[(t.job, t.task)] = new
    return updates


def refresh(registry: Registry, experiment: str | None = None) -> list[Task]:
    """Bring every open task of `experiment` (or all) up to date; return all latest tasks."""
    open_tasks = registry.tasks(experiment, only_open=True)
    updates: dict = {}
    slurm = [t for t in open_tasks if t.executor == "slurm"]
    if slurm:
        updates.update(_slurm_updates(slurm))
    updates.update(_local_updates([t for t in open_tasks if t.executor == "local"]))
    changes = []
    for t in open_tasks:
        new = updates.get((t.job, t.task), {})
        if new.get("state") == "COMPLETED":
            if new.get("exit_code") not in (0, None):
                new["state"] = "FAILED"
            missing = missing_outputs(paths.run_dir(t.experiment, t.run), t.outputs)
            if missing:
                new.update(state="FAILED", reason=f"exited 0 but declared outputs are missing: {', '.join(missing)}")
        if new.get("state") in ("FAILED",) and not new.get("reason"):
            status = _from_status(t)
            new["reason"] = status.get("reason") or f"exit code {new.get('exit_code')}"
        changed = {k: v for k, v in new.items() if getattr(t, k) != v}
        if changed:
            changes.append((t, changed))
            for k, v in changed.items():
                setattr(t, k, v)
    if changes:
        registry.update_tasks(changes)
    return registry.tasks(experiment)


def log_tail(task: Task, lines: int = 20) -> str:
    """Last lines of a task's logs (stderr then stdout), for failure reports."""
    out = []
    for stream in ("err", "out"):
        p = paths.job_log(Path(task.folder), task.key, stream=stream)
        try:
            with open(p, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            out.append(f"--- {p}\n" + "\n".join(text))
    return "\n".join(out)


def progress(tasks: list[Task]) -> Counter[str]:
    """done / running / failed / pending counts, for arrays."""
    c: Counter[str] = Counter()
    for t in tasks:
        c[
            "done"
            if t.state == "COMPLETED"
            else "running"
            if t.state == "RUNNING"
            else "pending"
            if t.state in ("PENDING", "REQUEUED")
            else "failed"
        ] += 1
    c["total"] = len(tasks)
    return c
