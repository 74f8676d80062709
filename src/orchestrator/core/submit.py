"""Submission: plan, skip what is already done, submit stage by stage, all or nothing.

The executors (`executors.slurm`, `executors.local`) make the calls; this module decides what
goes in. Units of one stage go in as ONE job array; stages chain with afterok. Submissions of one
experiment are serialised by a file lock, and units already pending, running or completed are not
resubmitted unless forced, so two simultaneous submits yield one set of jobs.
"""

from __future__ import annotations

import os
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from submitit.core import utils as submitit_utils

from orchestrator.core import paths
from orchestrator.core.errors import SchedulerError, SpecError
from orchestrator.core.files import locked
from orchestrator.core.monitor import refresh
from orchestrator.core.plan import Stage, Unit, stages_of
from orchestrator.core.registry import Registry, RegistryUnwritable
from orchestrator.core.render import render_stage
from orchestrator.core.spec import BaseSpec
from orchestrator.core.states import ACTIVE_STATES, CANCELLED, COMPLETED
from orchestrator.executors import local, slurm


def choose_executor(requested: str | None) -> str:
    default = paths.project_config().get("executor")  # orchestrate.toml's `executor`
    choice = requested or os.environ.get("ORCH_EXECUTOR") or default or ("slurm" if shutil.which("sbatch") else "local")
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


def experiment_lock(experiment: str) -> AbstractContextManager[None]:
    """Serialises submissions of one experiment (two at once make one set of jobs)."""
    return locked(paths.submit_lock(experiment))


def make_plan(
    spec: BaseSpec, executor: str, registry: Registry | None, force: bool, stages: list[Stage] | None = None
) -> Plan:
    """`stages`: the spec's plan when the caller has made it already (planning may read files)."""
    plan = Plan(spec.name, executor, stages if stages is not None else stages_of(spec))
    current = {t.run: t for t in refresh(registry, spec.name)} if registry else {}
    for stage in plan.stages:
        todo, skipped = [], []
        for u in stage.units:
            t = current.get(u.run)
            if not force and t is not None and (t.state in ACTIVE_STATES or t.state == COMPLETED):
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
    stages = stages_of(spec)
    for stage in stages:  # a bad plan or template fails before any state is touched
        render_stage(spec.name, stage, source=getattr(spec, "_source", "-"))
    spec.check_inputs()  # every file the jobs will read is there
    spec.check_submit()  # what only a real submit needs (an API key exported, ...)
    registry = Registry()
    with experiment_lock(spec.name):
        plan = make_plan(spec, executor, registry, force, stages)
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
                if executor == "slurm":
                    job_id = slurm.submit_stage(spec.name, stage, units, plan.scripts[stage.name], deps)
                else:
                    job_id = local.submit_stage(spec.name, stage, units, deps)
                try:
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
                except Exception:
                    cancel_job(job_id, executor)  # a job nobody tracks must not run
                    raise
                done.append(Submitted(stage.name, job_id, [u.run for u in units], deps))
        except Exception as e:
            for s in done:
                cancel_job(s.job_id, executor)
            if done:
                try:
                    with registry.transaction() as db:
                        db.execute(
                            "UPDATE tasks SET state=?, reason='rolled back: a later stage failed to submit' "
                            "WHERE job IN (SELECT id FROM jobs WHERE scheduler_id IN (%s))" % ",".join("?" * len(done)),
                            [CANCELLED, *(s.job_id for s in done)],
                        )
                except RegistryUnwritable:
                    pass  # the jobs are cancelled; the next refresh records it from the scheduler
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


def cancel_job(job_id: str, executor: str) -> None:
    (slurm.cancel if executor == "slurm" else local.cancel)(job_id)


def describe(plan: Plan) -> str:
    """Human-readable plan for --dry-run: per stage its resources, then one line per unit (run
    name and what it runs), and the units skipped with why."""
    lines = [f"experiment {plan.experiment} ({plan.executor} executor)"]
    for s in plan.stages:
        r = s.resources
        todo, skipped = plan.todo[s.name], plan.skipped[s.name]
        shape = (
            f"{r.nodes} node(s) × {r.tasks_per_node} task(s) × {r.cpus_per_task} cpu(s), "
            f"{r.gpus_per_node} gpu(s)/node{f', mem {r.mem}' if r.mem else ''}, time {r.time}"
        )
        after = f", after {', '.join((*s.after, *s.after_runs))}" if s.after or s.after_runs else ""
        kind = f"array of {len(todo)}" if len(todo) > 1 else "1 job" if todo else "nothing"
        lines.append(f"  stage {s.name}: submit {kind}{after}; {shape}")
        width = max((len(u.run) for u in todo), default=0)
        for u in todo:
            lines.append(f"    {u.run:<{width}}  {u.args.describe()}".rstrip())
        for run, why in skipped:
            lines.append(f"    skip {run}: {why}")
    return "\n".join(lines)
