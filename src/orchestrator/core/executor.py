"""Where jobs run, behind one protocol: `Executor` (submit a stage with its dependencies, cancel,
poll), its two implementations in `executors/` (`slurm`, `local`), and the one function that
picks one (`choose_executor`).

Core never imports an executor: `EXECUTORS` maps names to `module:Class` references resolved
only when that executor is used (core/refs.py), and nothing outside `executors/` and `cli/`
tests an executor's name. Dependencies are expressed once (`Dependency`) and each executor
translates them (SLURM: afterok on job ids / array-task keys; local: polling the runs' states).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrator.core import paths
from orchestrator.core.errors import SpecError
from orchestrator.core.refs import load_ref

if TYPE_CHECKING:
    from orchestrator.core.plan import Stage, Unit
    from orchestrator.core.registry import Task

# name → class; with no --executor or ORCH_EXECUTOR, the first one usable here is the default.
EXECUTORS = {
    "slurm": "orchestrator.executors.slurm:SlurmExecutor",
    "local": "orchestrator.executors.local:LocalExecutor",
}

# Set in every unit's environment to the executor that runs it, so what a job submits (evaluate
# on save, a command calling `orchestrate submit`) goes to the same executor by default.
ENV_VAR = "ORCH_EXECUTOR"


@dataclass(frozen=True)
class Dependency:
    """Units a stage waits for (afterok): `runs` of `experiment`, run by the job `job_id`: all of
    it, or only its array task `task`. A failed one cancels the waiting stage."""

    experiment: str
    runs: tuple[str, ...]
    job_id: str
    task: int | None = None

    @property
    def key(self) -> str:
        """The scheduler's name for what is waited on: '123' (a job) or '123_4' (an array task)."""
        return self.job_id if self.task is None else f"{self.job_id}_{self.task}"

    @classmethod
    def on(cls, t: Task) -> Dependency:
        """Wait for one unit already submitted (of this experiment or another)."""
        return cls(t.experiment, (t.run,), t.scheduler_id, t.task if t.n_tasks > 1 else None)


@dataclass(frozen=True)
class Launched:
    """What an executor did with a stage: the job id, what it waits for as the registry records it
    (job ids / keys, or `<experiment>/<run>` refs: core/monitor.py names failed upstreams from
    them), and the script it runs when that is the rendered one (None: it runs the units itself)."""

    job_id: str
    after: list[str] = field(default_factory=list)
    script: str | None = None


@dataclass(frozen=True)
class Note:
    """Something `status` and `wait` tell the user about the executor (a part of SLURM not
    answering). `unreachable`: nothing could be asked at all; `wait` gives up after a while."""

    text: str
    unreachable: bool = False

    def __str__(self) -> str:
        return self.text


@dataclass
class Polled:
    """One look at some tasks: per task (job, task) the fields the executor knows now (`state`,
    `exit_code`, `reason`, `node`; absent: unknown), and notes for the user."""

    updates: dict[tuple[int, int], dict] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)


@runtime_checkable
class Executor(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """Why it cannot run jobs from here ("sbatch is not on PATH"); None when it can."""
        ...

    def submit(
        self, experiment: str, stage: Stage, units: list[Unit], script: str, after: list[Dependency]
    ) -> Launched:
        """Start `units` of `stage` (one job, an array when several) once `after` completed;
        `script` is the stage's rendered sbatch text."""
        ...

    def cancel(self, ids: list[str]) -> None:
        """End jobs ('123') or array tasks ('123_4') this executor started."""
        ...

    def poll(self, tasks: list[Task]) -> Polled:
        """Current states of open tasks it runs, in one look (no call per task)."""
        ...


def executor_named(name: str) -> Executor:
    """The executor registered as `name`, its module imported now."""
    if name not in EXECUTORS:
        raise SpecError("--executor", f"{name!r} is not an executor; use {' or '.join(EXECUTORS)}")
    return load_ref(EXECUTORS[name])()


def choose_executor(requested: str | None = None) -> Executor:
    """The one place an executor is picked: `requested` (--executor), else ORCH_EXECUTOR (which a
    job's environment sets to the executor running it), else the project's orchestrate.toml
    `executor`, else the first of `EXECUTORS` usable here (slurm when sbatch is on PATH, else
    local). SpecError (exit 2) when it cannot run here."""
    name = requested or os.environ.get(ENV_VAR) or paths.project_config().get("executor")
    if not name:
        return next(ex for ex in map(executor_named, EXECUTORS) if ex.unavailable() is None)
    executor = executor_named(name)
    problem = executor.unavailable()
    if problem:
        usable = [n for n in EXECUTORS if executor_named(n).unavailable() is None]
        raise SpecError("--executor", f"{name} was asked for but {problem}; use --executor {' or '.join(usable)}")
    return executor


def job_env(stage: Stage, executor: Executor) -> dict[str, str | int | float | bool]:
    """What a unit's process gets in its environment: ENV_VAR, then the stage's `env.vars`."""
    return {ENV_VAR: executor.name, **stage.env.vars}
