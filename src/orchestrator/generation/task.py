"""The one task schema: where the rows are, how to prompt, the gold answer, the scorer, how to
generate. Inference tasks (`generation/tasks/*.yaml`) are written in this form; an evaluation
suite (`kinds/eval/suites/`) is a list of these, built from its own compact YAML keys.

    name: boolq
    dataset: {path: google/boolq, split: validation}        # hub name, or:
    # dataset: {path: json, data_files: data/boolq.jsonl}   # local json/jsonl/parquet/csv, always
    id: "idx"                         # jinja expression over a row (+ `idx`, the row's index)
    prompt: "{{ passage }}\\nQuestion: {{ question }}?\\nAnswer yes or no.\\nAnswer:"
    gold: "answer"                    # jinja expression: may yield a bool, a list, ...
    scorer: boolq                     # a scorer name or "package.module:function"
    correct: {metric: accuracy, threshold: 1.0}   # what counts as correct (default: the
                                                  # scorer's own metric reaching 1.0)
    generation: {max_new_tokens: 128, samples: 1}

Prompts and expressions go through ONE sandboxed jinja environment (`environment()`): strict
undefined, filters `json`, `grid` and `field` (`'test.0.output' | field` is that dotted path in
the row, `'id' | field(idx)` with a default), the global `letters` (option letters); `a.b` on a
mapping reads its key first. Pure pydantic + jinja2: loading a task never imports torch or datasets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateSyntaxError, pass_context
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


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
    temperature: float | None = Field(None, ge=0.0)  # None → the model's default
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: tuple[str, ...] | None = None
    samples: int = Field(1, ge=1, le=1024)  # generations per example (pass@k, avg@n)


class Correct(_Strict):
    metric: str
    threshold: float = 1.0  # correct when scores[metric] >= threshold


class CsvExport(_Strict):
    """A submission CSV (a harness's format): header → jinja expression over the record."""

    file: str = "submission.csv"
    columns: dict[str, str] = Field(min_length=1)


class Task(_Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
    domain: str | None = None  # default: the task's name
    dataset: DatasetSpec
    preprocess: Literal["coqa"] | None = None
    id: str = "id if id is defined else idx"
    prompt: str
    gold: str | None = None  # None: the scorer needs no reference (code runs its own tests)
    scorer: str
    correct: Correct | None = None  # None: the scorer's own metric reaching 1.0
    generation: TaskGeneration = Field(default_factory=TaskGeneration)
    timeout_s: float = Field(10.0, gt=0)  # code scorers: per test program
    resources: dict[str, Any] = Field(default_factory=dict)  # evaluation: over the job's resources
    csv: CsvExport | None = None

    @field_validator("prompt", "gold", "id")
    @classmethod
    def _jinja(cls, v: str | None, info) -> str | None:
        if v is None:
            return v
        try:
            env = environment()
            env.parse(v) if info.field_name == "prompt" else env.compile_expression(v)
        except TemplateSyntaxError as e:
            raise ValueError(
                f"jinja syntax error: not a valid jinja2 template (line {e.lineno}): {e.message}"
            ) from None
        return v

    @property
    def domain_name(self) -> str:
        return self.domain or self.name

    def sampling(self, defaults: Any = None) -> Sampling:
        """The request settings: the task's own, else `defaults` (a model's `generation`)."""
        g = self.generation

        def pick(own: Any, key: str, fallback: Any) -> Any:
            return own if own is not None else getattr(defaults, key, fallback)

        return Sampling(
            max_new_tokens=pick(g.max_new_tokens, "max_new_tokens", 256),
            temperature=pick(g.temperature, "temperature", 0.0),
            top_p=pick(g.top_p, "top_p", 1.0),
            stop=tuple(pick(g.stop, "stop", ())),
            samples=g.samples,
        )


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    samples: int = 1


# --------------------------------------------------------------------------- jinja


def field_value(record: Mapping, dotted: str) -> Any:
    """`a.b.0.c` into nested dicts/lists; KeyError when absent."""
    value: Any = record
    for part in dotted.split("."):
        if isinstance(value, list) and part.lstrip("-").isdigit():
            try:
                value = value[int(part)]
            except IndexError:
                raise KeyError(dotted) from None
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            raise KeyError(dotted)
    return value


@pass_context
def _field(ctx, dotted: str, *default: Any) -> Any:
    try:
        return field_value(ctx.get_all(), dotted)
    except KeyError:
        if default:
            return default[0]
        raise KeyError(f"no field {dotted!r}") from None


class _RecordEnvironment(SandboxedEnvironment):
    """Rows are mappings: `row.items` is the key "items" when there is one, not dict.items."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_ENV: SandboxedEnvironment | None = None


def environment() -> SandboxedEnvironment:
    """THE jinja environment of prompts, ids, golds and CSV columns (sandboxed: task files and
    data rows are not trusted)."""
    global _ENV
    if _ENV is None:
        env = _RecordEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
        env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)
        env.filters["grid"] = lambda g: "\n".join(" ".join(str(c) for c in row) for row in g)
        env.globals["letters"] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        env.filters["field"] = _field
        _ENV = env
    return _ENV
