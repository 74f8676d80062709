"""Named inference tasks: the YAML files in this folder (coqa, boolq, medqa, math, qa), your own
in jobs/tasks/ (or ORCH_TASKS), or a path. Each file is one `generation.task.Task`; rows → examples
is `generation.examples`.

    # jobs/tasks/my-boolq.yaml
    name: my-boolq
    dataset: {path: json, data_files: data/boolq.jsonl}
    prompt: "{{ passage }}\\nQuestion: {{ question }}?\\nAnswer yes or no.\\nAnswer:"
    gold: answer
    scorer: boolq
    correct: {metric: accuracy}

`load_task({"task": "coqa", "dataset": {"data_files": ...}})` overrides a named task's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.core import paths
from orchestrator.core.errors import SpecError
from orchestrator.core.spec import deep_merge
from orchestrator.generation.task import Task

DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


# --------------------------------------------------------------------------- loading configs


def find_task(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SpecError(name, "task config file not found")
        return path
    for d in paths.tasks_dirs():
        if (d / f"{name}.yaml").is_file():
            return d / f"{name}.yaml"
    raise SpecError(name, f"unknown task; known: {', '.join(list_tasks())} (or give a task YAML path)")


def list_tasks() -> list[str]:
    return sorted({p.stem for d in paths.tasks_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def load_task(ref: str | dict[str, Any]) -> Task:
    """A task by name or YAML path, or a mapping `{task: coqa, dataset: {data_files: ...}, ...}`
    whose keys override the named config (nested mappings merge)."""
    if isinstance(ref, dict):
        over = dict(ref)
        base = over.pop("task", None)
        data = deep_merge(_read(find_task(str(base))), over) if base else over
        ds_over = over.get("dataset")
        if base and isinstance(ds_over, dict) and "data_files" in ds_over and "path" not in ds_over:
            # local files replace the hub dataset: the loader follows the file suffix
            data["dataset"] = {"path": _loader_for(ds_over["data_files"]), "split": "train", **ds_over}
        shown = f"task {base or data.get('name', '(inline)')}"
    else:
        path = find_task(str(ref))
        data, shown = _read(path), str(path)
    try:
        return Task.model_validate(data)
    except ValidationError as e:
        raise SpecError(
            shown, [f"{'.'.join(map(str, x['loc']))}: {x['msg'].removeprefix('Value error, ')}" for x in e.errors()]
        ) from None


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(str(path), f"YAML syntax error: {e}") from None
    data.setdefault("name", path.stem)
    return data


def _loader_for(files: Any) -> str:
    first = files if isinstance(files, str) else (next(iter(files.values())) if isinstance(files, dict) else files[0])
    first = first if isinstance(first, str) else first[0]
    suffix = Path(first).suffix
    if suffix not in DATA_SUFFIXES:
        raise SpecError(
            str(first), f"data file type {suffix or '(none)'} is not supported: use {', '.join(sorted(DATA_SUFFIXES))}"
        )
    return DATA_SUFFIXES[suffix]
