"""Evaluation suites: YAML files of domains → tasks (docs/suites.md).

    name: reasoning
    defaults: {max_tokens: 2048, samples: 1}
    domains:
      math:
        aime:
          data: math/aime_2024.jsonl            # relative to the data root
          prompt: "{{ problem }}\\nPut the final answer in \\\\boxed{}."
          gold: answer                          # field (dotted path) holding the reference
          scorer: math
          max_tokens: 4096
          samples: 8

A suite is found by name in ORCH_SUITES, jobs/suites/ and the built-in suites/, or given as a path.
Data files live under a data root: the command's `--data-root`, else the suite's own
`data_root:` (relative to the suite file), else ORCH_EVAL_DATA, else ORCH_HOME/data/eval.
Pure pydantic + yaml + jinja2: loading a suite never imports torch or datasets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.core import paths
from orchestrator.core.errors import SpecError, UserError
from orchestrator.core.spec import deep_merge, format_validation_error
from orchestrator.generation.task import DatasetSpec, Task, TaskGeneration
from orchestrator.scoring.registry import CODE_SCORERS, check_scorer_ref

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DATA_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteTask(_Strict):
    """A task as a suite file writes it (compact keys); `to_task` makes it a `generation.task.Task`."""

    data: str = Field(min_length=1)  # file relative to the data root (.jsonl, .json or .parquet)
    prompt: str = Field(min_length=1)  # jinja2 template over one record's fields
    scorer: str  # a scorer name, or "package.module:function"
    gold: str = "answer"  # dotted path of the reference in a record ("test.0.output"); unused by code scorers
    id_field: str = "id"  # dotted path of a record's id; the row number when absent
    max_tokens: int = Field(1024, ge=1)
    samples: int = Field(1, ge=1, le=1024)  # generations per example (pass@k, avg@n)
    temperature: float | None = Field(None, ge=0.0)  # default: 0 (greedy) for 1 sample, 0.6 for several
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()
    timeout_s: float = Field(10.0, gt=0)  # code scorers: per test program
    resources: dict[str, Any] = Field(default_factory=dict)  # overrides of the eval job's resources
    description: str = ""

    @field_validator("data")
    @classmethod
    def _data(cls, v: str) -> str:
        suffix = Path(v).suffix
        if suffix not in DATA_FORMATS:
            raise ValueError(f"data file {v!r} must end in one of {', '.join(DATA_FORMATS)}")
        if Path(v).is_absolute() or ".." in Path(v).parts:
            raise ValueError(f"data file {v!r} must be relative to the data root (no leading /, no '..')")
        return v

    @field_validator("scorer")
    @classmethod
    def _scorer(cls, v: str) -> str:
        return check_scorer_ref(v)

    def to_task(self, name: str, domain: str, data_root: Path) -> Task:
        temperature = self.temperature if self.temperature is not None else (0.0 if self.samples == 1 else 0.6)
        return Task(
            name=name,
            description=self.description,
            domain=domain,
            dataset=DatasetSpec(
                path=DATA_FORMATS[Path(self.data).suffix], data_files=str(data_root / self.data), split="train"
            ),
            id=f"{self.id_field!r} | field(idx)",
            prompt=self.prompt,
            gold=None if self.scorer in CODE_SCORERS else f"{self.gold!r} | field",
            scorer=self.scorer,
            generation=TaskGeneration(
                max_new_tokens=self.max_tokens,
                temperature=temperature,
                top_p=self.top_p,
                stop=self.stop,
                samples=self.samples,
            ),
            timeout_s=self.timeout_s,
            resources=self.resources,
        )


class SuiteFile(_Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
    data_root: str | None = None  # relative to the suite file
    base: str | None = None  # another suite (name or path) whose domains this one starts from
    defaults: dict[str, Any] = Field(default_factory=dict)  # keys of a task, applied to every task
    override: dict[str, Any] = Field(default_factory=dict)  # keys of a task that win over every task's own
    domains: dict[str, dict[str, dict[str, Any]]] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> SuiteFile:
        seen: dict[str, str] = {}
        for domain, tasks in self.domains.items():
            if not re.match(NAME, domain):
                raise ValueError(f"domain name {domain!r}: use letters, digits, '.', '_' and '-'")
            if not tasks:
                raise ValueError(f"domains.{domain}: give at least one task")
            for task in tasks:
                if not re.match(NAME, task) or "__" in task:
                    raise ValueError(
                        f"domains.{domain}.{task}: task names use letters, digits, '.', '_', '-' (no '__')"
                    )
                if task in seen:
                    raise ValueError(
                        f"task {task!r} is in both domains {seen[task]!r} and {domain!r}: names are unique"
                    )
                seen[task] = domain
        return self


class Suite(_Strict):
    name: str
    source: str
    description: str
    data_root: Path
    tasks: tuple[Task, ...]

    @property
    def domains(self) -> list[str]:
        return list(dict.fromkeys(t.domain_name for t in self.tasks))

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise UserError(f"suite {self.name}: no task {name!r} (tasks: {', '.join(t.name for t in self.tasks)})")

    def select(self, names: list[str] | None) -> list[Task]:
        """Tasks by task or domain name (all when `names` is empty)."""
        if not names:
            return list(self.tasks)
        chosen, known = [], {t.name for t in self.tasks} | set(self.domains)
        for n in names:
            if n not in known:
                raise UserError(
                    f"suite {self.name}: {n!r} is neither a task nor a domain "
                    f"(domains: {', '.join(self.domains)}; tasks: {', '.join(t.name for t in self.tasks)})"
                )
        for t in self.tasks:
            if t.name in names or t.domain_name in names:
                chosen.append(t)
        return chosen

    def missing_data(self, tasks: list[Task] | None = None) -> list[str]:
        return [
            f"{t.domain_name}.{t.name}: {t.dataset.data_files}"
            for t in (tasks or self.tasks)
            if not Path(str(t.dataset.data_files)).is_file()
        ]


def resolve_suite_path(ref: str | Path) -> Path:
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise UserError(f"suite file {ref} not found")
        return p.resolve()
    for d in paths.suites_dirs():
        for suffix in (".yaml", ".yml"):
            if (d / f"{ref}{suffix}").is_file():
                return (d / f"{ref}{suffix}").resolve()
    known = sorted({x.stem for d in paths.suites_dirs() if d.is_dir() for x in d.glob("*.y*ml")})
    raise UserError(
        f"no suite {ref!r} in {', '.join(str(d) for d in paths.suites_dirs())} "
        f"(known: {', '.join(known) or 'none'}); give a name or a YAML path"
    )


def load_suite(ref: str | Path, data_root: str | Path | None = None) -> Suite:
    """Read and validate a suite; SpecError (exit 2) naming the file and key on any problem."""
    path = resolve_suite_path(ref)
    shown = str(path)
    raw, own_root = _read_raw(path, ())
    try:
        suite = SuiteFile.model_validate(raw)
    except ValidationError as e:
        raise SpecError(shown, format_validation_error(e, SuiteFile)) from None
    if data_root is not None:
        root = Path(data_root)
    elif own_root is not None:
        root = own_root
    else:
        root = paths.eval_data_root()
    root = root.resolve()
    tasks, problems = [], []
    for domain, entries in suite.domains.items():
        for name, body in entries.items():
            if not isinstance(body, dict):
                problems.append(f"domains.{domain}.{name}: a task is a mapping (data, prompt, scorer, ...)")
                continue
            try:
                entry = SuiteTask.model_validate({**suite.defaults, **body, **suite.override})
                tasks.append(entry.to_task(name, domain, root))
            except ValidationError as e:
                schema = SuiteTask if e.title == SuiteTask.__name__ else Task
                problems += [f"domains.{domain}.{name}.{p}" for p in format_validation_error(e, schema)]
    if problems:
        raise SpecError(shown, problems)
    return Suite(name=suite.name, source=shown, description=suite.description, data_root=root, tasks=tuple(tasks))


def _read_raw(path: Path, stack: tuple[Path, ...]) -> tuple[dict, Path | None]:
    """The suite file as a mapping, its `base:` merged underneath (the file wins); the data
    root it names (relative to the file that names it)."""
    shown = str(path)
    if path in stack:
        raise SpecError(shown, f"base: cycle {' → '.join(p.name for p in (*stack, path))}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(shown, f"YAML syntax error: {e}") from None
    if not isinstance(raw, dict):
        raise SpecError(shown, "a suite is a mapping with name, domains: {domain: {task: {...}}}")
    raw.setdefault("name", path.stem)
    root = path.parent / raw["data_root"] if isinstance(raw.get("data_root"), str) else None
    base = raw.get("base")
    if isinstance(base, str):
        base_path = path.parent / base if base.endswith((".yaml", ".yml")) else resolve_suite_path(base)
        if not base_path.is_file():
            raise SpecError(shown, f"base: suite file {base_path} not found")
        base_raw, base_root = _read_raw(base_path.resolve(), (*stack, path))
        for key in ("name", "description", "data_root", "base"):
            base_raw.pop(key, None)
        raw = deep_merge(base_raw, raw)
        root = root or base_root
    return raw, root
