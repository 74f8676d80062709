"""SLURM: sbatch through submitit, squeue/sacct queries, scancel.

The script sbatch receives is exactly `render.render_stage(...)`: our executor subclass hands
submitit the rendered text instead of letting it build its own. A stage's units go in as ONE job
array (one sbatch call). Query output is parsed by pure functions (`parse_squeue`,
`parse_sacct`), tested on recorded output in tests/executors/fixtures/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import submitit
from submitit.core import utils as submitit_utils

from orchestrator.core import paths
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.runner import unit_job

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


def submit_stage(experiment: str, stage: Stage, units: list[Unit], script: str, deps: list[str]) -> str:
    """One sbatch call for the stage's units (an array when several); afterok on `deps` (job
    ids). Returns the job id; submitit's FailedSubmissionError when sbatch refuses."""
    r = stage.resources
    ex = TemplatedSlurmExecutor(
        paths.stage_dir(experiment, stage.name),
        script,
        "afterok:" + ":".join(deps) if deps else None,
        r.time_minutes,
        r.nodes * r.tasks_per_node,
    )
    fns = [unit_job(experiment, u, dict(stage.env.vars), stage.checkpointable) for u in units]
    if len(fns) == 1:
        return ex.submit(fns[0]).job_id
    return ex.submit_array(fns)[0].job_id.split("_")[0]


def cancel(job_id: str) -> None:
    """scancel a job ('123') or one array task ('123_4')."""
    subprocess.run(["scancel", job_id], capture_output=True, timeout=60)


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
