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

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.core import paths
from orchestrator.core.errors import SpecError, UserError

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DATA_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Strict):
    """One task of a suite: its data, how to prompt, how to score, how much to generate."""

    data: str = Field(min_length=1)  # file relative to the data root (.jsonl, .json or .parquet)
    prompt: str = Field(min_length=1)  # jinja2 template over one record's fields
    scorer: str  # a name in suites.scoring.SUITE_SCORERS, or "package.module:function"
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

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        from jinja2 import TemplateSyntaxError

        try:
            _env().parse(v)
        except TemplateSyntaxError as e:
            raise ValueError(f"prompt is not a valid jinja2 template (line {e.lineno}): {e.message}") from None
        return v

    @field_validator("scorer")
    @classmethod
    def _scorer(cls, v: str) -> str:
        from orchestrator.scoring.suite_scorers import SUITE_SCORERS

        if v not in SUITE_SCORERS and ":" not in v:
            raise ValueError(
                f"unknown scorer {v!r}; use one of {', '.join(sorted(SUITE_SCORERS))} or 'package.module:function'"
            )
        return v

    @property
    def sampling_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.samples == 1 else 0.6


class Task(_Strict):
    """A task with its place in the suite and its resolved data file."""

    name: str
    domain: str
    config: TaskConfig
    data_file: Path

    @property
    def data_format(self) -> str:
        return DATA_FORMATS[self.data_file.suffix]


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
        import re

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
        return list(dict.fromkeys(t.domain for t in self.tasks))

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
            if t.name in names or t.domain in names:
                chosen.append(t)
        return chosen

    def missing_data(self, tasks: list[Task] | None = None) -> list[str]:
        return [f"{t.domain}.{t.name}: {t.data_file}" for t in (tasks or self.tasks) if not t.data_file.is_file()]


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
    from orchestrator.core.spec import format_validation_error

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
                cfg = TaskConfig.model_validate({**suite.defaults, **body, **suite.override})
            except ValidationError as e:
                problems += [f"domains.{domain}.{name}.{p}" for p in format_validation_error(e, TaskConfig)]
                continue
            tasks.append(Task(name=name, domain=domain, config=cfg, data_file=root / cfg.data))
    if problems:
        raise SpecError(shown, problems)
    return Suite(name=suite.name, source=shown, description=suite.description, data_root=root, tasks=tuple(tasks))


def _read_raw(path: Path, stack: tuple[Path, ...]) -> tuple[dict, Path | None]:
    """The suite file as a mapping, its `base:` merged underneath (the file wins); the data
    root it names (relative to the file that names it)."""
    from orchestrator.core.spec import deep_merge

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


# --------------------------------------------------------------------------- records and prompts


def _env():
    """Sandboxed: prompts come from suite files and render data records (neither is trusted)."""
    import json

    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)
    env.filters["grid"] = lambda g: "\n".join(" ".join(str(c) for c in row) for row in g)
    env.globals["letters"] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return env


def render_prompt(task: Task, record: dict) -> str:
    from jinja2 import UndefinedError

    try:
        return _env().from_string(task.config.prompt).render(**record)
    except UndefinedError as e:
        raise UserError(
            f"task {task.name}: the prompt uses a field the data does not have ({e.message}); "
            f"fields: {', '.join(sorted(record))} (file {task.data_file})"
        ) from None


def field_value(record: dict, dotted: str) -> Any:
    """`a.b.0.c` into nested dicts/lists; KeyError when absent."""
    value: Any = record
    for part in dotted.split("."):
        if isinstance(value, list) and part.lstrip("-").isdigit():
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(dotted)
    return value


def _clean(v: Any) -> Any:
    """Arrow gives NaN for a missing float and numpy types: back to plain JSON values."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "tolist"):
        return _clean(v.tolist())
    return v


def read_examples(task: Task, limit: int | None = None) -> list[dict]:
    """The task's records through `datasets.load_dataset("json"|"parquet")`, each with an `_id`."""
    if not task.data_file.is_file():
        raise UserError(
            f"task {task.name}: data file {task.data_file} not found (set the data root with "
            "--data-root, the suite's data_root or ORCH_EVAL_DATA; formats: docs/suites.md)"
        )
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.load_dataset(task.data_format, data_files=str(task.data_file), split="train")
    rows = []
    for i, record in enumerate(ds):
        if limit is not None and i >= limit:
            break
        record = _clean(dict(record))
        try:
            rid = str(field_value(record, task.config.id_field))
        except KeyError:
            rid = str(i)
        rows.append({**record, "_id": rid})
    ids = [r["_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise UserError(f"task {task.name}: ids in {task.data_file} (field {task.config.id_field!r}) are not unique")
    return rows
