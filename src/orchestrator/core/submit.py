"""Submission through submitit: its SLURM executor on a cluster, its local executor elsewhere.

The script sbatch receives is exactly `render.render_stage(...)`: our executor subclass hands
submitit the rendered text instead of letting it build its own. Units of one stage go in as ONE
job array (one sbatch call); stages chain with afterok. Submissions of one experiment are
serialised by a file lock, and units already pending, running or completed are not resubmitted
unless forced, so two simultaneous submits yield one set of jobs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import submitit
from submitit.core import utils as submitit_utils

from orchestrator.core import paths, runner
from orchestrator.core.errors import SchedulerError, SpecError
from orchestrator.core.monitor import refresh
from orchestrator.core.plan import Stage, Unit, stages_of
from orchestrator.core.registry import ACTIVE_STATES, Registry
from orchestrator.core.render import render_stage
from orchestrator.core.spec import BaseSpec


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


def choose_executor(requested: str | None) -> str:
    choice = requested or os.environ.get("ORCH_EXECUTOR") or ("slurm" if shutil.which("sbatch") else "local")
    if choice not in ("slurm", "local"):
        raise SpecError("--executor", f"{choice!r} is not an executor; use slurm or local")
    if choice == "slurm" and shutil.which("sbatch") is None:
        raise SpecError("--executor", "slurm was asked for but sbatch is not on PATH; use --executor local")
    return choice


@dataclass
class Submitted:
    stage: str
    job_id: str
    runs: list[str]
    after: list[str] = field(default_factory=list)  # what it waits for: job ids (slurm), runs (local)


@dataclass
class Plan:
    """What a submit will do: per stage, the units to submit and those skipped (with why)."""

    experiment: str
    executor: str
    stages: list[Stage]
    todo: dict[str, list[Unit]] = field(default_factory=dict)
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)


@contextmanager
def experiment_lock(experiment: str) -> Iterator[None]:
    lock = paths.submit_lock(experiment)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_plan(spec: BaseSpec, executor: str, registry: Registry | None, force: bool) -> Plan:
    plan = Plan(spec.name, executor, stages_of(spec))
    current = {t.run: t for t in refresh(registry, spec.name)} if registry else {}
    for stage in plan.stages:
        todo, skipped = [], []
        for u in stage.units:
            t = current.get(u.run)
            if not force and t is not None and (t.state in ACTIVE_STATES or t.state == "COMPLETED"):
                skipped.append((u.run, f"{t.state.lower()} as job {t.key}"))
            else:
                todo.append(u)
        plan.todo[stage.name], plan.skipped[stage.name] = todo, skipped
        if todo:  # rendering errors surface here, before anything is submitted
            plan.scripts[stage.name] = render_stage(spec.name, stage, len(todo), getattr(spec, "_source", "-"))
    return plan


def submit(spec: BaseSpec, executor: str, force: bool = False) -> list[Submitted]:
    """Submit every stage that has work; all or nothing: if one sbatch fails, those already
    submitted by this call are cancelled."""
    for stage in stages_of(spec):  # a bad plan or template fails before any state is touched
        render_stage(spec.name, stage, source=getattr(spec, "_source", "-"))
    registry = Registry()
    with experiment_lock(spec.name):
        plan = make_plan(spec, executor, registry, force)
        registry.add_experiment(spec.name, spec.kind, getattr(spec, "_source", ""), spec.model_dump_json())
        active = {t.run: t for t in registry.tasks(spec.name) if t.state in ACTIVE_STATES}
        for other in sorted({r.split("/", 1)[0] for s in plan.stages for r in s.after_runs}):
            active.update({f"{other}/{t.run}": t for t in refresh(registry, other) if t.state in ACTIVE_STATES})
        done: list[Submitted] = []
        try:
            for stage in plan.stages:
                units = plan.todo[stage.name]
                if not units:
                    continue
                deps = _dependencies(stage, plan, done, active)
                for u in units:  # an old attempt's status must not speak for the new one
                    paths.status_file(spec.name, u.run).unlink(missing_ok=True)
                job_id = (_submit_slurm if executor == "slurm" else _submit_local)(spec.name, stage, units, plan, deps)
                registry.add_job(
                    job_id,
                    executor,
                    spec.name,
                    stage.name,
                    str(paths.stage_dir(spec.name, stage.name)),
                    plan.scripts[stage.name] if executor == "slurm" else None,
                    [(u.run, list(u.outputs)) for u in units],
                    [d for d in deps],
                )
                done.append(Submitted(stage.name, job_id, [u.run for u in units], deps))
        except Exception as e:
            for s in done:
                cancel_job(s.job_id, executor)
            if done:
                with registry.transaction() as db:
                    db.execute(
                        "UPDATE tasks SET state='CANCELLED', reason='rolled back: a later stage failed to submit' "
                        "WHERE job IN (SELECT id FROM jobs WHERE scheduler_id IN (%s))" % ",".join("?" * len(done)),
                        [s.job_id for s in done],
                    )
            if isinstance(e, (submitit_utils.FailedSubmissionError, submitit_utils.FailedJobError)):
                raise SchedulerError(f"sbatch refused stage {stage.name}: {e}") from None
            raise
    return done


def _dependencies(stage: Stage, plan: Plan, done: list[Submitted], active: dict) -> list[str]:
    """Job ids (slurm) or run names (local; "<experiment>/<run>" for another experiment's) this
    stage waits for: unfinished units of its `after` and its `after_runs`."""
    deps: list[str] = []
    by_stage = {s.stage: s for s in done}
    for name in stage.after:
        if name in by_stage:
            deps += [by_stage[name].job_id] if plan.executor == "slurm" else by_stage[name].runs
        dep_stage = next(s for s in plan.stages if s.name == name)
        for u in dep_stage.units:
            t = active.get(u.run)
            if t is not None:
                deps.append(t.scheduler_id if plan.executor == "slurm" else u.run)
    for ref in stage.after_runs:  # another experiment's unit: wait only while it is unfinished
        t = active.get(ref)
        if t is not None:
            deps.append(t.key if plan.executor == "slurm" else ref)
    return sorted(set(deps))


def _submit_slurm(experiment: str, stage: Stage, units: list[Unit], plan: Plan, deps: list[str]) -> str:
    r = stage.resources
    ex = TemplatedSlurmExecutor(
        paths.stage_dir(experiment, stage.name),
        plan.scripts[stage.name],
        "afterok:" + ":".join(deps) if deps else None,
        r.time_minutes,
        r.nodes * r.tasks_per_node,
    )
    fns = [runner.unit_job(experiment, u, dict(stage.env.vars), stage.checkpointable) for u in units]
    if len(fns) == 1:
        return ex.submit(fns[0]).job_id
    return ex.submit_array(fns)[0].job_id.split("_")[0]


def _submit_local(experiment: str, stage: Stage, units: list[Unit], plan: Plan, deps: list[str]) -> str:
    folder = paths.stage_dir(experiment, stage.name)
    ex = submitit.LocalExecutor(folder)
    env_vars = dict(stage.env.vars)
    r = stage.resources
    # One unit runs as many tasks as on SLURM (e.g. one per learner); an array's controller is one.
    ex.update_parameters(
        timeout_min=r.time_minutes, tasks_per_node=r.nodes * r.tasks_per_node if len(units) == 1 else 1
    )
    if len(units) == 1:
        job = ex.submit(runner.run_local, experiment, units[0], env_vars, deps)
    else:
        job = ex.submit(runner.run_local_array, experiment, units, env_vars, stage.array_parallelism, str(folder), deps)
    return job.job_id


def cancel_job(job_id: str, executor: str) -> None:
    if executor == "slurm":
        subprocess.run(["scancel", job_id], capture_output=True, timeout=60)
    else:
        _kill_tree(int(job_id.split("_")[0]))


def _kill_tree(pid: int) -> None:
    """The local controller and everything it started (array units run as child processes)."""
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


def describe(plan: Plan) -> str:
    """Human-readable plan for --dry-run."""
    lines = [f"experiment {plan.experiment} ({plan.executor} executor)"]
    for s in plan.stages:
        r = s.resources
        todo, skipped = plan.todo[s.name], plan.skipped[s.name]
        shape = f"{r.nodes} node(s) × {r.tasks_per_node} task(s) × {r.cpus_per_task} cpu(s), {r.gpus_per_node} gpu(s)/node, time {r.time}"
        after = f", after {', '.join((*s.after, *s.after_runs))}" if s.after or s.after_runs else ""
        kind = f"array of {len(todo)}" if len(todo) > 1 else "1 job" if todo else "nothing"
        lines.append(f"  stage {s.name}: submit {kind}{after}; {shape}")
        for run, why in skipped:
            lines.append(f"    skip {run}: {why}")
    return "\n".join(lines)
