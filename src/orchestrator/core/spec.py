"""Job specs: YAML → validated pydantic models.

A spec names a job kind, resources, environment set-up and the kind's own section. Specs may
`include:` shared defaults (paths relative to the including file; the including file wins), and
`--set a.b.c=value` overrides any key before validation, so overrides are validated the same way.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from orchestrator.core import kinds, paths
from orchestrator.core.errors import SpecError, UserError

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # experiment/stage/run names become path parts
SLURM_WORD_RE = r"^[A-Za-z0-9_.:+@%-]+$"  # partition, account, qos
CONSTRAINT_RE = r"^[A-Za-z0-9_.&|\[\]*:,!-]+$"
MODULE_RE = r"^[A-Za-z0-9_./+-]+$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
SBATCH_KEY_RE = r"^[a-z][a-z0-9-]*$"
TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
MEM_RE = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def time_to_minutes(value: str) -> int:
    """SLURM time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S → whole minutes (rounded up)."""
    m = TIME_RE.match(value)
    if not m:
        raise ValueError(
            f"bad time {value!r}: use minutes ('90'), 'HH:MM:SS' ('01:30:00') or 'D-HH:MM:SS' ('2-00:00:00')"
        )
    days, a, b, c = m.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-H[:M[:S]]
        h, mi, s = (parts + [0, 0])[:3]
        total = int(days) * 1440 + h * 60 + mi + s / 60
    elif len(parts) == 1:
        total = parts[0]
    elif len(parts) == 2:  # M:S
        total = parts[0] + parts[1] / 60
    else:
        total = parts[0] * 60 + parts[1] + parts[2] / 60
    if total <= 0:
        raise ValueError(f"time {value!r} must be longer than zero")
    return int(-(-total // 1))


def mem_to_mb(value: str) -> int:
    m = MEM_RE.match(value)
    if not m:
        raise ValueError(f"bad memory {value!r}: use a number with an optional unit K, M, G or T, e.g. '16G'")
    factor = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    return int(int(m.group(1)) * factor)


class Resources(Strict):
    """What one array task (or job) asks of the scheduler."""

    partition: str | None = Field(None, pattern=SLURM_WORD_RE)
    account: str | None = Field(None, pattern=SLURM_WORD_RE)
    qos: str | None = Field(None, pattern=SLURM_WORD_RE)
    nodes: int = Field(1, ge=1)
    tasks_per_node: int = Field(1, ge=1)
    cpus_per_task: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    mem: str | None = None
    time: str = "01:00:00"
    constraint: str | None = Field(None, pattern=CONSTRAINT_RE)
    # Hardware of one node of the target partition, when known (a cluster profile include sets
    # them): requests that cannot fit are rejected before anything reaches the scheduler.
    node_cpus: int | None = Field(None, ge=1)
    node_gpus: int | None = Field(None, ge=0)
    # Any other sbatch option, e.g. {exclusive: true, mail-type: END}.
    sbatch: dict[str, str | int | bool] = Field(default_factory=dict)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str):
            time_to_minutes(v)
        return v

    @field_validator("mem", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str):
            mem_to_mb(v)
        return v

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if not re.match(SBATCH_KEY_RE, key):
                raise ValueError(f"sbatch option {key!r} must look like 'mail-type' (lower case, dashes)")
            if key in GENERATED_SBATCH:
                raise ValueError(
                    f"sbatch option {key!r} is set by the orchestrator; use resources.{GENERATED_SBATCH[key]}"
                )
            if isinstance(value, str) and not re.match(r"^[A-Za-z0-9_.,:=+@%/\[\]*&|-]*$", value):
                raise ValueError(
                    f"sbatch option {key}={value!r} has characters that are not allowed (quotes, spaces, $, ;)"
                )
        return v

    @model_validator(mode="after")
    def _fits(self) -> Resources:
        if self.node_cpus is not None and self.tasks_per_node * self.cpus_per_task > self.node_cpus:
            raise ValueError(
                f"tasks_per_node × cpus_per_task = {self.tasks_per_node} × {self.cpus_per_task} "
                f"exceeds the {self.node_cpus} CPUs of a node (node_cpus): lower one of them"
            )
        if self.node_gpus is not None and self.gpus_per_node > self.node_gpus:
            raise ValueError(
                f"gpus_per_node = {self.gpus_per_node} exceeds the {self.node_gpus} GPUs of a node (node_gpus)"
            )
        return self

    @property
    def time_minutes(self) -> int:
        return time_to_minutes(self.time)


# sbatch options the template writes itself, and the resources field to use instead.
GENERATED_SBATCH = {
    "job-name": "(the experiment name)",
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "nodes": "nodes",
    "ntasks-per-node": "tasks_per_node",
    "cpus-per-task": "cpus_per_task",
    "gpus-per-node": "gpus_per_node",
    "mem": "mem",
    "time": "time",
    "constraint": "constraint",
    "output": "(set by the orchestrator)",
    "error": "(set by the orchestrator)",
    "array": "(planned units)",
    "dependency": "(stage after:)",
    "open-mode": "(set by the orchestrator)",
}


class Environment(Strict):
    """Set-up before the job's command: modules, a venv or conda env, variables.

    Secrets do not belong here (specs and scripts are plain files): export them in the shell that
    submits; SLURM passes the submitting environment to the job.
    """

    modules: list[str] = Field(default_factory=list)
    venv: str | None = None
    conda: str | None = Field(None, pattern=r"^[A-Za-z0-9_./-]+$")
    vars: dict[str, str | int | float | bool] = Field(default_factory=dict)
    python: str | None = None  # interpreter that runs the job; default: the submitting one

    @field_validator("modules")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        for m in v:
            if not re.match(MODULE_RE, m):
                raise ValueError(f"module name {m!r} may only contain letters, digits and _ . / + -")
        return v

    @field_validator("vars")
    @classmethod
    def _vars(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            if not re.match(ENV_NAME_RE, k):
                raise ValueError(f"environment variable name {k!r} is not a valid shell name")
        return v


class BaseSpec(Strict):
    """Fields every job kind shares. A kind subclasses it and adds its own section."""

    name: str = Field(pattern=NAME_RE)
    kind: str
    description: str | None = None
    resources: Resources = Field(default_factory=Resources)
    env: Environment = Field(default_factory=Environment)
    array_parallelism: int = Field(64, ge=1)  # array tasks running at once

    def plan(self) -> list:  # -> list[plan.Stage]
        """Stages of units, from the spec and the files it names: no secrets, no scheduler, so
        `orchestrate render` and `--dry-run` work anywhere."""
        raise NotImplementedError

    def check_submit(self) -> None:
        """What only `submit` needs from the world (an API key exported, ...): raise SpecError
        naming the field and the fix. Never called by render or --dry-run."""

    def input_files(self) -> list[tuple[str, str]]:
        """(field, absolute path) of every local file or directory the jobs will read: checked by
        `check_inputs` at submit, so a missing one is refused before anything is submitted."""
        return []

    def check_inputs(self) -> None:
        missing = [f"{field}: {path} does not exist" for field, path in self.input_files() if not Path(path).exists()]
        if missing:
            raise SpecError(
                getattr(self, "_source", self.name),
                [*missing, "relative paths are read from the spec file's directory; fix the path or create the file"],
            )

    def submit_notes(self) -> list[str]:
        """Kind-specific lines `orchestrate submit` prints after submitting (e.g. where results go)."""
        return []


# --------------------------------------------------------------------------------------------
# Paths in a spec


def spec_relative(value: str, info: ValidationInfo | None) -> str:
    """A path a spec names, made absolute: relative to the spec file's directory (load_spec passes
    it as validation context), never to where `orchestrate` runs; URLs and absolute paths stay."""
    if "://" in value or os.path.isabs(value):
        return value
    base = (info.context or {}).get("spec_dir") if info is not None else None
    return str((Path(base) if base else Path.cwd()).joinpath(value).resolve())


# --------------------------------------------------------------------------------------------
# Loading


def resolve_spec_path(ref: str | Path) -> Path:
    """`mtl-comparison` → the project's jobs/mtl-comparison.yaml, else the built-in one; a path is
    taken as is."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SpecError(str(ref), "file not found")
        return p.resolve()
    dirs = paths.jobs_dirs()
    for d in dirs:
        for suffix in (".yaml", ".yml"):
            candidate = d / f"{ref}{suffix}"
            if candidate.is_file():
                return candidate.resolve()
    known = ", ".join(sorted(list_specs())) or "none"
    where = " or ".join(str(d) for d in dirs)
    raise SpecError(str(ref), f"no such spec file or name in {where} (known: {known})")


def list_specs() -> dict[str, Path]:
    """Spec name → file, the project's (or ORCH_JOBS') before the built-ins of the same name."""
    found: dict[str, Path] = {}
    for d in paths.jobs_dirs():
        for f in sorted(d.glob("*.y*ml")) if d.is_dir() else []:
            found.setdefault(f.stem, f)
    return found


def _read_yaml(path: Path, shown: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(shown, f"YAML syntax error{where}: {problem}") from None
    except OSError as e:
        raise SpecError(shown, f"cannot read: {e.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(shown, f"the top level must be a mapping of keys, not a {type(data).__name__}")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_with_includes(path: Path, root: Path, shown: str, stack: tuple[Path, ...] = ()) -> dict:
    if path in stack:
        chain = " → ".join(p.name for p in (*stack, path))
        raise SpecError(shown, f"include cycle: {chain}")
    data = _read_yaml(path, shown if not stack else str(path))
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise SpecError(shown, "include: must be a file path or a list of file paths")
    merged: dict = {}
    roots = (root, paths.BUILTIN_JOBS.resolve())  # a project's spec may include the built-in defaults
    base = next((r for r in roots if path.is_relative_to(r)), root)
    for inc in includes:
        target = (path.parent / inc).resolve()
        builtin = (roots[1] / path.parent.relative_to(base) / inc).resolve()
        if not target.is_file() and builtin.is_file():
            target = builtin
        if not any(target.is_relative_to(r) for r in roots):
            raise SpecError(shown, f"include {inc!r} points outside {root}: keep shared defaults beside the specs")
        if not target.is_file():
            raise SpecError(shown, f"include {inc!r}: file not found ({target})")
        merged = deep_merge(merged, _load_with_includes(target, root, shown, (*stack, path)))
    return deep_merge(merged, data)


def apply_override(data: dict, assignment: str, shown: str) -> None:
    """`a.b.c=value`: value is read as YAML (so 3 is an int, true a bool, [1,2] a list)."""
    key, sep, raw = assignment.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(re.match(r"^[A-Za-z0-9_-]+$", p) for p in parts):
        raise SpecError(shown, f"--set {assignment!r}: write it as key.path=value, e.g. resources.gpus_per_node=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for i, p in enumerate(parts[:-1]):
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise SpecError(shown, f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping")
        node = child
    node[parts[-1]] = value


def _control_chars(data: Any, loc: str = "") -> list[str]:
    """Newlines and other control characters would break out of a script line: refuse them anywhere."""
    found = []
    if isinstance(data, dict):
        for k, v in data.items():
            found += _control_chars(k, loc) if isinstance(k, str) and re.search(r"[\x00-\x1f\x7f]", k) else []
            found += _control_chars(v, f"{loc}.{k}" if loc else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += _control_chars(v, f"{loc}[{i}]")
    elif isinstance(data, str) and re.search(r"[\x00-\x08\x0a-\x1f\x7f]", data):
        found.append(f"{loc or 'key'}: contains a newline or control character ({data!r}); write it on one line")
    return found


def kind_class(kind: Any, shown: str) -> type[BaseSpec]:
    """The spec model of a kind, from the kind registry (core/kinds.py: built-in and plugins)."""
    if not isinstance(kind, str):
        raise SpecError(shown, f"kind: {kind!r} is not a job kind; use one of: {', '.join(kinds.names())}")
    try:
        return kinds.get(kind).spec
    except (UserError, ValueError) as e:
        raise SpecError(shown, str(e)) from None


def format_validation_error(err: ValidationError, model: type[BaseModel]) -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, e["loc"][:-1])
            msg = f"unknown key; valid keys here: {', '.join(allowed)}" if allowed else "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(f"{loc}: {msg.removeprefix('Value error, ')}")
    return problems


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the model along `loc` to list the keys that are valid at that point."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            current = _model_in(current)  # dict[str, Model] values
            continue
        current = _model_in(field.annotation)
    return sorted(getattr(current, "model_fields", {})) if current is not None else []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_spec(ref: str | Path, overrides: Sequence[str] = (), name: str | None = None) -> BaseSpec:
    """Read, include, override and validate a spec. Raises SpecError (exit code 2) on any problem."""
    path = resolve_spec_path(ref)
    shown = str(ref)
    data = _load_with_includes(path, path.parent, shown)
    defaults = paths.project_config().get("resources")  # orchestrate.toml [resources]: account, partition, ...
    if isinstance(defaults, dict):
        data = deep_merge({"resources": defaults}, data)
    for assignment in overrides:
        apply_override(data, assignment, shown)
    if name is not None:
        data["name"] = name
    data.setdefault("name", path.stem)
    problems = _control_chars(data)
    if problems:
        raise SpecError(shown, problems)
    if "kind" not in data:
        raise SpecError(shown, f"kind: required key is missing; use one of: {', '.join(kinds.names())}")
    cls = kind_class(data["kind"], shown)
    try:
        spec = cls.model_validate(data, context={"spec_dir": str(path.parent)})
    except ValidationError as e:
        raise SpecError(shown, format_validation_error(e, cls)) from None
    object.__setattr__(spec, "_source", str(path))
    return spec
