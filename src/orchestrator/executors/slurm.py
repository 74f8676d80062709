"""SLURM behind core's executor protocol: sbatch through submitit, squeue/sacct queries, scancel.

The script sbatch receives is exactly `render.render_stage(...)`: our executor subclass hands
submitit the rendered text instead of letting it build its own. A stage's units go in as ONE job
array (one sbatch call); dependencies become `--dependency=afterok:<job ids / array-task keys>`.
`poll` makes at most one squeue and one sacct call, however many jobs; their output is parsed by
pure functions (`parse_squeue`, `parse_sacct`), tested on recorded output in tests/executors/fixtures/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import submitit
from submitit.core import utils as submitit_utils

from orchestrator.core import paths
from orchestrator.core.errors import SchedulerError
from orchestrator.core.executor import Dependency, Launched, Note, Polled, job_env
from orchestrator.core.monitor import from_status
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.registry import Task
from orchestrator.core.runner import unit_job
from orchestrator.core.states import CANCELLED, FAILED, FINAL_STATES, NEVER_SATISFIED, PENDING, normalise

scheduler_calls: list[list[str]] = []  # every squeue/sacct command line this process ran (benchmarks)


class TemplatedSlurmExecutor(submitit.SlurmExecutor):
    """submitit's SLURM executor, submitting our rendered script and our dependencies."""

    def __init__(self, folder: Path, script: str, dependency: str | None, time_minutes: int, n_tasks: int):
        super().__init__(folder)
        self.script = script
        self.dependency = dependency
        self.parameters["time"] = time_minutes  # submitit's timeout countdown reads it
        self.n_tasks = n_tasks

    def _make_submission_file_text(self, command: str, uid: str) -> str:
        return self.script

    def _make_submission_command(self, submission_file_path: Path) -> list[str]:
        # Job ids of earlier stages are known only now, so they go on the command line and the
        # script stays a pure render of the spec.
        dep = [f"--dependency={self.dependency}"] if self.dependency else []
        return ["sbatch", "--parsable", *dep, str(submission_file_path)]

    @staticmethod
    def _get_job_id_from_submission_command(string: bytes | str) -> str:
        text = string.decode() if isinstance(string, bytes) else string
        job_id = text.strip().split(";")[0]  # --parsable: "123" or "123;cluster"
        if not job_id.isdigit():
            raise submitit_utils.FailedSubmissionError(f"could not read a job id from sbatch's answer {text!r}")
        return job_id

    def _num_tasks(self) -> int:
        return self.n_tasks

    def _internal_process_submissions(self, delayed_submissions):
        if len(delayed_submissions) == 1:
            return super()._internal_process_submissions(delayed_submissions)
        # An array: submitit's own path builds a fresh SlurmExecutor (its default script), so the
        # same steps are taken here with this executor: pickle all, ONE sbatch, then name pickles.
        folder = submitit_utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        pickles = []
        for i, d in enumerate(delayed_submissions):
            p = folder / f".array_{os.getpid()}_{i}.pkl"
            d.set_timeout(self.parameters["time"], self.max_num_timeout)
            d.dump(p)
            pickles.append(p)
        first = self._submit_command(self._submitit_command_str)
        jobs: list[submitit.Job] = [
            submitit.SlurmJob(folder=self.folder, job_id=f"{first.job_id}_{a}", tasks=list(range(self.n_tasks)))
            for a in range(len(delayed_submissions))
        ]
        for job, p in zip(jobs, pickles):
            job.paths.move_temporary_file(p, "submitted_pickle")
        return jobs


def afterok(after: list[Dependency]) -> list[str]:
    """What sbatch waits for: a whole job's id, or one array task's key ('123_4')."""
    return sorted({d.key for d in after})


# --------------------------------------------------------------------------------------------
# Queries: the exact command lines, the calls, and pure parsers of their output.


def squeue_command(job_ids: list[str]) -> list[str]:
    # --states=all: finished jobs the controller still remembers; -r: one line per array task
    return ["squeue", "-h", "-r", "--states=all", "-j", ",".join(job_ids), "-o", "%i|%T|%r|%N"]


def sacct_command(job_ids: list[str]) -> list[str]:
    # -X: the job's allocation only (no steps); -P: '|'-separated
    return ["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode,NodeList,Submit"]


def parse_squeue(stdout: str) -> dict[str, tuple[str, str, str]]:
    """key ('123' or '123_4') → (SLURM state, reason, nodes) from `squeue_command`'s output."""
    found = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            found[parts[0]] = (parts[1], parts[2], parts[3])
    return found


def parse_sacct(stdout: str) -> dict[str, tuple[str, int | None, str]]:
    """key → (SLURM state, exit code, nodes) from `sacct_command`'s output. Array tasks not
    started yet ('123_[4-9%2]') are left out: squeue speaks for them."""
    found: dict[str, tuple[str, int | None, str]] = {}
    submitted: dict[str, str] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5 or "[" in parts[0]:
            continue
        # A cluster whose job ids restarted has several jobs of one id: the newest is ours.
        if parts[0] in submitted and parts[4] < submitted[parts[0]]:
            continue
        code = parts[2].split(":")[0]  # "exit:signal"
        nodes = "" if parts[3] == "None assigned" else parts[3]
        found[parts[0]] = (parts[1], int(code) if code.isdigit() else None, nodes)
        submitted[parts[0]] = parts[4]
    return found


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
    """Jobs the controller still knows, finished ones included; None when squeue is unavailable
    (then nothing can be concluded from a job's absence)."""
    res = _call(squeue_command(job_ids))
    # a list of only forgotten ids is an error to squeue, yet a clear answer: none is known
    if res is None or (res.returncode != 0 and "Invalid job id" not in res.stderr):
        return None
    return parse_squeue(res.stdout)


def sacct(job_ids: list[str]) -> dict[str, tuple[str, int | None, str]] | None:
    """Accounting records; None when sacct is unavailable (e.g. accounting storage disabled)."""
    res = _call(sacct_command(job_ids))
    if res is None or res.returncode != 0:
        return None
    return parse_sacct(res.stdout)


# --------------------------------------------------------------------------------------------
# The executor (core/executor.py's protocol): sbatch, scancel, and one squeue + at most one
# sacct per poll.

# What `poll` says when part of SLURM does not answer (`status` and `wait` print it).
NO_CONTROLLER = Note("the SLURM controller (squeue) does not answer: states from accounting and the jobs' status files")
NO_ACCOUNTING = Note("SLURM accounting (sacct/slurmdbd) does not answer: states from squeue and the jobs' status files")
NO_SCHEDULER = Note("neither squeue nor sacct answers: states from the jobs' status files only", unreachable=True)


class SlurmExecutor:
    name = "slurm"

    def unavailable(self) -> str | None:
        return None if shutil.which("sbatch") else "sbatch is not on PATH"

    def submit(
        self, experiment: str, stage: Stage, units: list[Unit], script: str, after: list[Dependency]
    ) -> Launched:
        """One sbatch call for the stage's units (an array when several), afterok on `after`.
        SchedulerError when sbatch refuses."""
        keys = afterok(after)
        r = stage.resources
        ex = TemplatedSlurmExecutor(
            paths.stage_dir(experiment, stage.name),
            script,
            "afterok:" + ":".join(keys) if keys else None,
            r.time_minutes,
            r.nodes * r.tasks_per_node,
        )
        env = job_env(stage, self)
        fns = [unit_job(experiment, u, env, stage.checkpointable) for u in units]
        try:
            job_id = ex.submit(fns[0]).job_id if len(fns) == 1 else ex.submit_array(fns)[0].job_id.split("_")[0]
        except (submitit_utils.FailedSubmissionError, submitit_utils.FailedJobError) as e:
            raise SchedulerError(f"sbatch refused stage {stage.name}: {e}") from None
        return Launched(job_id, keys, script)

    def cancel(self, ids: list[str]) -> None:
        """scancel jobs ('123') or array tasks ('123_4')."""
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60)

    def poll(self, tasks: list[Task]) -> Polled:
        """States of SLURM tasks from squeue (live), sacct (ended) and the jobs' status files."""
        polled = Polled()
        ids = sorted({t.scheduler_id for t in tasks})
        queried = squeue(ids)
        live = queried or {}
        need_acct = [t for t in tasks if t.key not in live or normalise(live[t.key][0]) in FINAL_STATES]
        acct = sacct(sorted({t.scheduler_id for t in need_acct})) if need_acct else {}
        if queried is None or acct is None:
            both = queried is None and acct is None
            polled.notes.append(NO_SCHEDULER if both else NO_CONTROLLER if queried is None else NO_ACCOUNTING)
        never: set[str] = set()  # jobs pending on a dependency that can never be satisfied
        for t in tasks:
            new: dict = {}
            if t.key in live and normalise(live[t.key][0]) == PENDING and live[t.key][1] == NEVER_SATISFIED:
                # submitted without --kill-on-invalid-dep (or SLURM kept it): it would wait forever
                new = {"state": CANCELLED, "reason": NEVER_SATISFIED}
                never.add(t.scheduler_id)
            elif acct is not None and t.key in acct:
                state, code, nodes = acct[t.key]
                new = {"state": normalise(state), "exit_code": code, "node": nodes or None}
            elif t.key in live:
                state, reason, nodes = live[t.key]
                new = {"state": normalise(state), "node": nodes or None}
                if (new["state"] == PENDING and reason not in ("None", "")) or reason == NEVER_SATISFIED:
                    new["reason"] = reason
                if new["state"] in FINAL_STATES:
                    new.update({k: v for k, v in from_status(t).items() if k != "state"})
            elif queried is None or acct is None:
                # a part of SLURM that would know does not answer: only a final status file may close
                # the unit; otherwise it keeps its last known state until SLURM answers again
                new = from_status(t)
            else:  # neither the controller nor accounting knows it: the status file decides, no waiting
                new = from_status(t) or {
                    "state": FAILED,
                    "reason": "left the queue without accounting record or final status file (killed before it started?)",
                }
            if acct is not None and t.key in acct and t.key in live and live[t.key][1] == NEVER_SATISFIED:
                new["reason"] = NEVER_SATISFIED  # sacct has the state, squeue why (core/monitor.py names it)
            polled.updates[(t.job, t.task)] = new
        self.cancel(sorted(never))  # end them, so the queue and the registry agree
        return polled
