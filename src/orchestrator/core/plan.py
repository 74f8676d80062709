"""Units of work: what a spec expands to before rendering and submission.

A Stage is one sbatch call (a job, or a job array when it has several units); a Unit is one
array task, with a run directory of its own under logs/<experiment>/<run>/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.core.spec import Environment, Resources


class UnitArgs(BaseModel):
    """The typed arguments of one entry point, validated when the plan is made (a kind declares
    one subclass per entry point, next to it). The runner passes the fields as keyword
    arguments, so an entry point reads like any function: `run(run_dir, experiment, *, task, ...)`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields}

    def describe(self) -> str:
        """What the unit runs, in one line for `submit --dry-run` (scalar fields by default)."""
        return " ".join(f"{k}={v}" for k, v in self.kwargs().items() if isinstance(v, (str, int, float)) and v != "")


@dataclass(frozen=True)
class Unit:
    run: str  # run name: logs/<experiment>/<run>/
    entry: str  # "module:function" the job calls with (run_dir=..., experiment=..., **args)
    args: UnitArgs = field(default_factory=UnitArgs)
    outputs: tuple[str, ...] = ()  # files (relative to the run dir) that prove the unit finished


@dataclass(frozen=True)
class Stage:
    name: str
    resources: Resources
    env: Environment
    units: tuple[Unit, ...]
    after: tuple[str, ...] = ()  # stages that must complete first (afterok)
    # Units of OTHER experiments that must complete first, as "<experiment>/<run>" (e.g. the
    # training arm whose checkpoints an evaluation reads); afterok on those still queued/running.
    after_runs: tuple[str, ...] = ()
    array_parallelism: int = 64
    checkpointable: bool = False  # SLURM signals before the time limit so the job can requeue
    template: str = "sbatch.sh.j2"  # a kind may extend the base template (e.g. to start Ray)
    template_vars: dict = field(default_factory=dict)  # extra variables for that template


def stages_of(spec) -> list[Stage]:
    """The spec's stages in submission order; SpecError (exit 2) when the plan is inconsistent."""
    from orchestrator.core.errors import SpecError

    stages = spec.plan()
    problems = check_stages(stages)
    if problems:
        raise SpecError(getattr(spec, "_source", spec.name), problems)
    return order(stages)


def check_stages(stages: list[Stage]) -> list[str]:
    """Problems in a plan: duplicate names, unknown or cyclic `after:` references."""
    problems, names = [], [s.name for s in stages]
    runs = [u.run for s in stages for u in s.units]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"stage {dup!r} is defined twice")
    for dup in sorted({r for r in runs if runs.count(r) > 1}):
        problems.append(f"run {dup!r} is produced by two units: give them distinct names")
    known = set(names)
    for s in stages:
        for dep in s.after:
            if dep not in known:
                problems.append(f"stages.{s.name}.after: unknown stage {dep!r} (stages: {', '.join(names)})")
    if not problems:
        try:
            order(stages)
        except ValueError as e:
            problems.append(str(e))
    return problems


def order(stages: list[Stage]) -> list[Stage]:
    """Topological order, so a stage is submitted after the stages it depends on."""
    by_name, done, out = {s.name: s for s in stages}, set(), []

    def visit(s: Stage, trail: tuple[str, ...]) -> None:
        if s.name in done:
            return
        if s.name in trail:
            raise ValueError(f"stages form a cycle: {' → '.join((*trail, s.name))}")
        for dep in s.after:
            visit(by_name[dep], (*trail, s.name))
        done.add(s.name)
        out.append(s)

    for s in stages:
        visit(s, ())
    return out
