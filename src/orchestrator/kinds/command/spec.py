"""The `command` kind: run any command line, optionally as an array over argument sets.

    kind: command
    stages:
      prepare:
        run: python prepare.py --out {run_dir}/data.json
        outputs: [data.json]
      train:
        after: [prepare]
        run: [python, train.py]
        array: [[--lr, "0.1"], [--lr, "0.01"]]   # one array task per argument set

The command is executed without a shell (an argument list), so no value is ever interpreted
by one; for pipes, write `run: [bash, -c, "..."]` yourself. `{run_dir}`, `{experiment}`,
`{index}` in arguments are replaced by the unit's values in the job (`job.execute`).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from orchestrator.core.plan import Stage, Unit
from orchestrator.core.spec import NAME_RE, BaseSpec, Resources, Strict, deep_merge
from orchestrator.kinds.command.job import CommandArgs


def _argv(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split {value!r} into arguments: {e}") from None
    return value


def safe_relative(p: str) -> str:
    path = Path(p)
    if path.is_absolute() or ".." in path.parts or not p.strip():
        raise ValueError(f"output {p!r} must be a path inside the run directory (relative, no '..')")
    return p


class CommandStage(Strict):
    run: list[str] = Field(min_length=1)
    array: list[list[str]] | None = None
    after: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    workdir: str | None = None  # default: the directory `orchestrate submit` ran in
    resources: dict[str, Any] = Field(default_factory=dict)  # overrides of the spec's resources

    _split = field_validator("run", mode="before")(_argv)

    @field_validator("array", mode="before")
    @classmethod
    def _array(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = [_argv(x) if isinstance(x, str) else x for x in v]
            if not v:
                raise ValueError("array: give at least one argument set, or leave array out")
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, v: list[str]) -> list[str]:
        return [safe_relative(p) for p in v]


class CommandSpec(BaseSpec):
    kind: str = "command"
    stages: dict[str, CommandStage] = Field(min_length=1)

    @model_validator(mode="after")
    def _stage_names(self) -> CommandSpec:
        for name, stage in self.stages.items():
            if not re.match(NAME_RE, name):
                raise ValueError(f"stage name {name!r}: use letters, digits, '.', '_' and '-' only")
            for dep in stage.after:
                if dep not in self.stages:
                    raise ValueError(f"stages.{name}.after: unknown stage {dep!r} (stages: {', '.join(self.stages)})")
            Resources.model_validate(deep_merge(self.resources.model_dump(), stage.resources))
        return self

    def plan(self) -> list[Stage]:
        stages = []
        workdir_default = os.getcwd()
        for name, st in self.stages.items():
            resources = Resources.model_validate(deep_merge(self.resources.model_dump(), st.resources))
            arg_sets = st.array if st.array is not None else [[]]
            units = tuple(
                Unit(
                    run=name if st.array is None else f"{name}-{i}",
                    entry="orchestrator.kinds.command.job:execute",
                    args=CommandArgs(argv=(*st.run, *extra), workdir=st.workdir or workdir_default, index=i),
                    outputs=tuple(st.outputs),
                )
                for i, extra in enumerate(arg_sets)
            )
            stages.append(
                Stage(
                    name=name,
                    resources=resources,
                    env=self.env,
                    units=units,
                    after=tuple(st.after),
                    array_parallelism=self.array_parallelism,
                )
            )
        return stages
