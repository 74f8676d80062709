"""Task configs (YAML, like short lm-eval tasks): where the data is, a jinja prompt, the gold
answer, the scorer, generation settings.

    # src/orchestrator/tasks/boolq.yaml (or your own in jobs/tasks/, or a path)
    name: boolq
    dataset: {path: google/boolq, split: validation}        # hub name, or:
    # dataset: {path: json, data_files: data/boolq.jsonl}   # local json/jsonl/parquet/csv, always
    id: "idx"                         # jinja expression over a row (+ `idx`, the row's index)
    prompt: "{{ passage }}\\nQuestion: {{ question }}?\\nAnswer yes or no.\\nAnswer:"
    gold: "answer"                    # jinja expression: may yield a bool, a list, ...
    scorer: boolq                     # scorers.SCORERS name or "module:function"
    correct: {metric: accuracy, threshold: 1.0}   # what counts as correct for calibration
    generation: {max_new_tokens: 128}

Data always goes through `datasets.load_dataset`. `preprocess: coqa` turns CoQA stories
(official JSON or the hub layout) into one example per turn with the conversation so far.
`--limit N` draws N examples with a seeded RNG (same N and seed → same examples), `--smoke` one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.core import paths
from orchestrator.core.errors import SpecError, UserError

DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    path: str  # "json" | "parquet" | "csv" (local files) or a hub dataset name
    name: str | None = None  # hub config name
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    split: str = "train"
    field: str | None = None  # json: the key holding the records (CoQA's official files: "data")


class TaskGeneration(_Strict):
    max_new_tokens: int | None = Field(None, ge=1)  # None → the model's default
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: tuple[str, ...] | None = None


class Correct(_Strict):
    metric: str
    threshold: float = 1.0  # correct when scores[metric] >= threshold


class CsvExport(_Strict):
    """A submission CSV (a harness's format): header → jinja expression over the record."""

    file: str = "submission.csv"
    columns: dict[str, str] = Field(min_length=1)


class TaskConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    description: str = ""
    dataset: DatasetSpec
    preprocess: Literal["coqa"] | None = None
    id: str = "id if id is defined else idx"
    prompt: str
    gold: str
    domain: str | None = None
    scorer: str
    correct: Correct
    generation: TaskGeneration = Field(default_factory=TaskGeneration)
    csv: CsvExport | None = None

    @field_validator("prompt", "gold", "id")
    @classmethod
    def _jinja(cls, v: str, info) -> str:
        from jinja2 import TemplateSyntaxError

        try:
            (_env().from_string(v) if info.field_name == "prompt" else _env().compile_expression(v))
        except TemplateSyntaxError as e:
            raise ValueError(f"jinja syntax error: {e.message}") from None
        return v

    @property
    def domain_name(self) -> str:
        return self.domain or self.name


def _env():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)


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


def load_task(ref: str | dict[str, Any]) -> TaskConfig:
    """A task by name or YAML path, or a mapping `{task: coqa, dataset: {data_files: ...}, ...}`
    whose keys override the named config (nested mappings merge)."""
    from orchestrator.core.spec import deep_merge

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
        return TaskConfig.model_validate(data)
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


# --------------------------------------------------------------------------- examples


def load_rows(ds: DatasetSpec) -> list[dict[str, Any]]:
    """Rows of the dataset through `datasets.load_dataset` (local files or a hub name)."""
    import datasets

    kwargs: dict[str, Any] = {"split": ds.split}
    if ds.data_files is not None:
        kwargs["data_files"] = ds.data_files
    if ds.field is not None:
        kwargs["field"] = ds.field
    try:
        data = datasets.load_dataset(ds.path, ds.name, **kwargs)
    except FileNotFoundError as e:
        raise UserError(f"dataset {ds.path} ({ds.data_files or ds.split}): file not found: {e}") from None
    except (ConnectionError, OSError, ValueError) as e:
        hint = "" if ds.data_files else " (hub unreachable? give local files: dataset.data_files)"
        raise UserError(f"cannot load dataset {ds.path!r} split {ds.split!r}{hint}: {e}") from None
    return [dict(r) for r in data]


def coqa_turns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per CoQA turn: story, history [{question, answer}], question, answers (all golds),
    story_id, turn_id. Reads the official JSON (questions/answers as lists of records with
    `input_text`/`turn_id`, `additional_answers`) and the hub layout (questions as strings,
    answers as {"input_text": [...]})."""
    if rows and "story" not in rows[0] and "data" in rows[0]:  # official file read without field: data
        rows = [story for r in rows for story in r["data"]]
    out = []
    for n, story in enumerate(rows):
        story_id = story.get("id") or story.get("source_id") or f"story{n}"
        qs, ans = story["questions"], story["answers"]
        if isinstance(ans, dict):  # hub layout
            questions = [str(q) for q in qs]
            answers = list(ans["input_text"])
            turn_ids = list(range(1, len(questions) + 1))
        else:
            questions = [q["input_text"] for q in qs]
            answers = [a["input_text"] for a in ans]
            turn_ids = [int(q["turn_id"]) for q in qs]
        extra = story.get("additional_answers") or {}
        history: list[dict[str, str]] = []
        for q, a, t in zip(questions, answers, turn_ids):
            golds = [a]
            for other in extra.values():  # each annotator's answers, matched by turn
                if other is None:
                    continue
                match = [x["input_text"] for x in other if int(x["turn_id"]) == t]
                golds += match
            out.append(
                {
                    "story": story["story"],
                    "story_id": story_id,
                    "turn_id": t,
                    "history": list(history),
                    "question": q,
                    "answers": golds,
                    "id": f"{story_id}_{t}",
                }
            )
            history.append({"question": q, "answer": a})
    return out


def select(n: int, limit: int | None, seed: int) -> list[int]:
    """Indices of the examples to run: all, or `limit` drawn with a seeded RNG, in dataset order."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def build_examples(
    task: TaskConfig, limit: int | None = None, seed: int = 0, smoke: bool = False
) -> list[dict[str, Any]]:
    """[{id, prompt, gold, domain, row}] for the run, ids unique (a duplicate is a UserError)."""
    rows = load_rows(task.dataset)
    if task.preprocess == "coqa":
        rows = coqa_turns(rows)
    env = _env()
    prompt_t = env.from_string(task.prompt)
    id_e, gold_e = env.compile_expression(task.id, undefined_to_none=False), env.compile_expression(task.gold)
    chosen = select(len(rows), 1 if smoke else limit, seed)
    examples, seen = [], set()
    for i in chosen:
        ctx = {**rows[i], "idx": i}
        try:
            ex_id, prompt, gold = str(id_e(**ctx)), prompt_t.render(**ctx), gold_e(**ctx)
        except Exception as e:  # noqa: BLE001 -- a template error names the task and row
            raise UserError(
                f"task {task.name}: row {i} does not fit the task's templates ({type(e).__name__}: "
                f"{e}); row keys: {sorted(rows[i])}"
            ) from None
        if ex_id in seen:
            raise UserError(f"task {task.name}: duplicate example id {ex_id!r} (row {i}); make `id:` unique")
        seen.add(ex_id)
        examples.append({"id": ex_id, "prompt": prompt, "gold": gold, "domain": task.domain_name, "row": ctx})
    return examples


def render_csv_row(task: TaskConfig, record: dict[str, Any]) -> dict[str, str]:
    env = _env()
    return {col: str(env.compile_expression(expr)(**record)) for col, expr in task.csv.columns.items()}
