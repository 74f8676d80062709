"""Submission: plan, skip what is already done, submit stage by stage, all or nothing.

An executor (core/executor.py, chosen by the caller) makes the calls; this module decides what
goes in. Units of one stage go in as ONE job array; stages chain with afterok (`Dependency`).
Submissions of one experiment are serialised by a file lock, and units already pending, running or
completed are not resubmitted unless forced, so two simultaneous submits yield one set of jobs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from orchestrator.core import paths
from orchestrator.core.executor import Dependency, Executor
from orchestrator.core.files import locked
from orchestrator.core.monitor import refresh
from orchestrator.core.plan import Stage, Unit, stages_of
from orchestrator.core.registry import Registry, RegistryUnwritable
from orchestrator.core.render import render_stage
from orchestrator.core.spec import BaseSpec
from orchestrator.core.states import ACTIVE_STATES, CANCELLED, COMPLETED


@dataclass
class Submitted:
    stage: str
    job_id: str
    runs: list[str]
    after: list[str] = field(default_factory=list)  # what it waits for, as the executor names it


@dataclass
class Plan:
    """What a submit will do: per stage, the units to submit and those skipped (with why)."""

    experiment: str
    executor: str  # its name
    stages: list[Stage]
    todo: dict[str, list[Unit]] = field(default_factory=dict)
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)


def experiment_lock(experiment: str) -> AbstractContextManager[None]:
    """Serialises submissions of one experiment (two at once make one set of jobs)."""
    return locked(paths.submit_lock(experiment))


def make_plan(
    spec: BaseSpec, executor: Executor, registry: Registry | None, force: bool, stages: list[Stage] | None = None
) -> Plan:
    """`stages`: the spec's plan when the caller has made it already (planning may read files)."""
    plan = Plan(spec.name, executor.name, stages if stages is not None else stages_of(spec))
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


def submit(spec: BaseSpec, executor: Executor, force: bool = False) -> list[Submitted]:
    """Submit every stage that has work; all or nothing: if one submission fails, those already
    made by this call are cancelled."""
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
                deps = dependencies(stage, plan, done, active)
                for u in units:  # an old attempt's status must not speak for the new one
                    paths.status_file(spec.name, u.run).unlink(missing_ok=True)
                launched = executor.submit(spec.name, stage, units, plan.scripts[stage.name], deps)
                try:
                    registry.add_job(
                        launched.job_id,
                        executor.name,
                        spec.name,
                        stage.name,
                        str(paths.stage_dir(spec.name, stage.name)),
                        launched.script,
                        [(u.run, list(u.outputs)) for u in units],
                        launched.after,
                    )
                except Exception:
                    executor.cancel([launched.job_id])  # a job nobody tracks must not run
                    raise
                done.append(Submitted(stage.name, launched.job_id, [u.run for u in units], launched.after))
        except Exception:
            executor.cancel([s.job_id for s in done])
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
            raise
    return done


def dependencies(stage: Stage, plan: Plan, done: list[Submitted], active: dict) -> list[Dependency]:
    """What this stage waits for: its `after` stages submitted by this call (whole jobs), their
    units still active from an earlier submit, and its `after_runs` still active."""
    deps: set[Dependency] = set()
    by_stage = {s.stage: s for s in done}
    for name in stage.after:
        if name in by_stage:
            deps.add(Dependency(plan.experiment, tuple(by_stage[name].runs), by_stage[name].job_id))
        dep_stage = next(s for s in plan.stages if s.name == name)
        deps.update(Dependency.on(active[u.run]) for u in dep_stage.units if u.run in active)
    # another experiment's unit: wait only while it is unfinished
    deps.update(Dependency.on(active[ref]) for ref in stage.after_runs if ref in active)
    return sorted(deps, key=lambda d: (d.experiment, d.job_id, d.task or 0, d.runs))


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
