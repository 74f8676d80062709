"""The local executor (no SLURM), behind core's executor protocol: submitit's LocalExecutor runs
one controller process per stage.

A single unit runs in the controller; an array's controller runs its units `parallelism` at a
time, each in its own process (`python -m orchestrator.executors.local UNIT_FILE`) with the log
file SLURM would write for that array task. The job id is the controller's pid. Dependencies are
waited for here by polling the runs' states (afterok: every run of a `Dependency`, recorded as
`<experiment>/<run>`), states come from the status files and whether the controller lives, and
cancelling kills the process tree.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import submitit

from orchestrator.core import paths
from orchestrator.core.executor import Dependency, Launched, Polled, job_env
from orchestrator.core.monitor import from_status
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.records import UnitStatus
from orchestrator.core.registry import Registry, Task
from orchestrator.core.runner import read_status, run_unit
from orchestrator.core.states import CANCELLED, COMPLETED, FAILED, FINAL_STATES, PENDING, RUNNING, dependency_reason


class LocalExecutor:
    name = "local"

    def unavailable(self) -> str | None:
        return None  # runs wherever Python does

    def submit(
        self, experiment: str, stage: Stage, units: list[Unit], script: str, after: list[Dependency]
    ) -> Launched:
        """Start the stage's controller, which first waits for the runs of `after`. The job id is
        the controller's pid; the rendered script is not used."""
        wait_for = run_refs(after)
        folder = paths.stage_dir(experiment, stage.name)
        ex = submitit.LocalExecutor(folder)
        env = job_env(stage, self)
        r = stage.resources
        # One unit runs as many tasks as on SLURM (e.g. one per learner); an array's controller is one.
        ex.update_parameters(
            timeout_min=r.time_minutes, tasks_per_node=r.nodes * r.tasks_per_node if len(units) == 1 else 1
        )
        if len(units) == 1:
            job = ex.submit(run_local, experiment, units[0], env, wait_for)
        else:
            job = ex.submit(run_local_array, experiment, units, env, stage.array_parallelism, str(folder), wait_for)
        yield_to_submitting_job(int(job.job_id))
        return Launched(job.job_id, wait_for)

    def cancel(self, ids: list[str]) -> None:
        for job_id in ids:
            kill_tree(int(job_id.split("_")[0]))

    def poll(self, tasks: list[Task]) -> Polled:
        """A final status file speaks; otherwise a unit runs while its controller lives."""
        polled = Polled()
        for t in tasks:
            new = from_status(t)
            if not new:
                if pid_alive(int(t.scheduler_id)):
                    s = read_status(t.experiment, t.run) or {}
                    new = {"state": s.get("state", PENDING)}
                else:
                    new = {"state": FAILED, "reason": "process ended without writing a final status"}
            polled.updates[(t.job, t.task)] = new
        return polled


def run_refs(after: list[Dependency]) -> list[str]:
    """The runs a controller waits for, as `<experiment>/<run>`."""
    return sorted({f"{d.experiment}/{run}" for d in after for run in d.runs})


BACKGROUND_NICE = 19  # ORCH_LOCAL_BACKGROUND_NICE: 0 gives evaluations the training's priority


def yield_to_submitting_job(pid: int) -> None:
    """A stage submitted from inside a running local job (evaluation on save, submitted by the
    trainer) runs at a lower CPU priority, it and the unit processes it starts (they inherit it):
    on one machine it then takes only the cores the job that submitted it leaves idle, instead of
    half of them, and catches up when that job waits or ends. SLURM gives it its own allocation."""
    if not os.environ.get("SUBMITIT_LOCAL_JOB_ID"):  # submitted by a user's command: normal priority
        return
    nice = int(os.environ.get("ORCH_LOCAL_BACKGROUND_NICE", BACKGROUND_NICE))
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, pid) + nice))
    except OSError:
        pass  # the controller already ended: nothing left to slow down


def run_local(experiment: str, unit: Unit, env_vars: dict, wait_for: list[str]) -> int:
    """Controller of a single unit: wait for dependencies, then run it in this process."""
    if wait_for and not _dependencies_ok(experiment, wait_for, [unit]):
        return 1
    return run_unit(experiment, unit, env_vars)


def run_local_array(
    experiment: str, units: list[Unit], env_vars: dict, parallelism: int, folder: str, wait_for: list[str]
) -> int:
    """Controller of an array: each unit in its own process and log file, as SLURM's tasks."""
    if wait_for and not _dependencies_ok(experiment, wait_for, units):
        return 1
    job = os.environ.get("SUBMITIT_LOCAL_JOB_ID") or str(os.getpid())
    unit_files = []
    for i, unit in enumerate(units):
        # pickled, as submitit does on SLURM: a unit's typed arguments come back as they were
        f = Path(folder) / f".unit_{job}_{i}.pkl"
        f.write_bytes(pickle.dumps({"experiment": experiment, "unit": unit, "env": env_vars}))
        unit_files.append(f)

    def one(i: int) -> int:
        log = paths.job_log(Path(folder), f"{job}_{i}")
        with open(log, "ab") as out:
            return subprocess.run(
                [sys.executable, "-m", "orchestrator.executors.local", str(unit_files[i])],
                stdout=out,
                stderr=subprocess.STDOUT,
            ).returncode

    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        codes = list(pool.map(one, range(len(units))))
    if any(codes):
        raise RuntimeError(f"{sum(1 for c in codes if c)} of {len(codes)} units failed")
    return 0


def pid_alive(pid: int) -> bool:
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
    if not tasks or not pid_alive(int(tasks[0].scheduler_id)):
        return FAILED
    return status.get("state", PENDING)


def _dependencies_ok(experiment: str, refs: list[str], units: list[Unit]) -> bool:
    """afterok: wait until the runs we depend on (`<experiment>/<run>`) end; if one did not
    complete, mark our units CANCELLED (as SLURM's kill-on-invalid-dep does)."""
    while True:
        states = [local_run_state(r.split("/", 1)[0], r.split("/", 1)[1]) for r in refs]
        if all(s == COMPLETED for s in states):
            return True
        bad = [(r, s) for r, s in zip(refs, states) if s not in (PENDING, RUNNING, COMPLETED)]
        if bad:
            reason = "; ".join(dependency_reason(r, s) for r, s in bad)
            for u in units:
                UnitStatus(experiment=experiment, run=u.run, state=CANCELLED, reason=reason, ended=time.time()).write(
                    paths.status_file(experiment, u.run)
                )
            return False
        time.sleep(0.5)


def kill_tree(pid: int) -> None:
    """The controller and everything it started (array units run as child processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass


def main() -> None:
    """One array task, in its own process: `python -m orchestrator.executors.local UNIT_FILE`."""
    data = pickle.loads(Path(sys.argv[1]).read_bytes())
    run_unit(data["experiment"], data["unit"], data["env"])


if __name__ == "__main__":
    main()
