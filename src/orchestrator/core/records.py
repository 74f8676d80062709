"""Result contracts in code: one pydantic model per file a job writes, used by its writer and
its readers alike (docs/results-schema.md describes the same files in prose).

Every model derives from `ResultFile`, which carries `schema_version`. Reading checks it first:
a file from a newer orchestrator, or with a version that is no version at all, is a
`SchemaVersionError` naming the file (exit 2), never a silent skip. A file without the key was
written before files were versioned (status.json) and is version 1. Keys a model does not name
are kept (`extra="allow"`): a kind may add to a shared shape (RAG's results to the per-example
record) and a reader passes them on.

Here: the shapes every kind shares (`UnitStatus` for status.json, `ExampleRecord` for the
per-example record of the generation loop, `CheckpointMeta` for a checkpoint's meta.json); a
kind's own files are modelled in `kinds/<kind>/records.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.core.errors import UserError
from orchestrator.core.files import SCHEMA_VERSION, JsonlContent, append_jsonl, read_json, read_jsonl, write_json_atomic

R = TypeVar("R", bound="ResultFile")


class SchemaVersionError(UserError):
    """A result file of a schema this orchestrator cannot read: named, with what to do."""


class RecordError(ValueError):
    """A result file (or line) that is not what its model says: named, with the keys at fault."""


def check_version(data: dict, where: str | Path) -> int:
    """The file's schema_version (1 when absent); SchemaVersionError when newer or not a version."""
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SchemaVersionError(
            f"{where}: schema_version {version!r} is not a schema version (1 to {SCHEMA_VERSION}); "
            "the file is damaged or not written by orchestrator: move it away and run the job again"
        )
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where}: schema_version {version} is newer than this orchestrator reads ({SCHEMA_VERSION}); "
            "read it with the orchestrator that wrote it, or upgrade this one"
        )
    return version


class ResultFile(BaseModel):
    """A typed result file (or one line of a JSON-lines file)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION

    @classmethod
    def parse(cls: type[R], data: Any, where: str | Path) -> R:
        """`data` as read from `where` (named in every error)."""
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        check_version(data, where)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in err['loc']) or '(file)'}: {err['msg']}" for err in e.errors()
            )
            raise RecordError(f"{where}: not a {cls.__name__} ({problems})") from None

    @classmethod
    def read(cls: type[R], path: str | Path) -> R:
        """The file at `path`: OSError when it cannot be read, RecordError when it is not JSON or
        not this model, SchemaVersionError when its version is not one we read."""
        try:
            data = read_json(Path(path))
        except ValueError as e:
            raise RecordError(f"{path}: not valid JSON ({e})") from None
        return cls.parse(data, path)

    def dump(self) -> dict[str, Any]:
        # python mode: values as given (a NaN metric stays NaN, as json.dumps writes it)
        return self.model_dump()

    def write(self, path: str | Path) -> None:
        """Atomically (core.files.write_json_atomic)."""
        write_json_atomic(Path(path), self.dump())


def append_records(path: str | Path, records: Sequence[ResultFile]) -> int:
    """One batch of JSON lines, one write + fsync (core.files.append_jsonl)."""
    return append_jsonl(Path(path), [r.dump() for r in records])


def read_records(path: str | Path, model: type[R], repair: bool = False) -> tuple[list[R], JsonlContent]:
    """The records of a JSON-lines file as `model`s, by core.files' torn-line rule (`repair`: cut
    a torn last line off). Each line's version is checked (SchemaVersionError); a line that is
    not the model is a RecordError naming the file and line. Also returns the raw content
    (torn, bad_lines) for the caller's own account."""
    content = read_jsonl(Path(path), repair=repair)
    out = [model.parse(rec, f"{path}, record {i}") for i, rec in enumerate(content.records, 1)]
    return out, content


# --------------------------------------------------------------------------- shared shapes


class UnitStatus(ResultFile):
    """logs/<exp>/<run>/status.json: the unit's own account (core/runner.py writes it; the
    monitor falls back to it when the scheduler's accounting is silent)."""

    state: str  # core.states: RUNNING, COMPLETED, FAILED, CANCELLED
    experiment: str = ""
    run: str = ""
    job_id: str = ""
    host: str = ""
    node: str = ""
    pid: int | None = None
    started: float | None = None
    exit_code: int | None = None
    reason: str = ""
    ended: float | None = None


class Confidence(BaseModel):
    model_config = ConfigDict(extra="allow")

    mean: float | None = None
    total: float | None = None


class ExampleRecord(ResultFile):
    """One line of predictions.jsonl (inference, RAG) or of an evaluation's <task>.jsonl: one
    example through the generation loop (generation/pipeline.py writes it; docs/results-schema.md)."""

    id: str
    task: str
    model: str
    domain: str | None = None
    prompt: str
    prediction: str
    gold: Any = None
    scores: dict[str, Any] = Field(default_factory=dict)  # metric → value (None: the scorer gave none)
    correct: bool | None = None
    confidence: Confidence = Field(default_factory=Confidence)
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None  # why there is no prediction (an API call that never succeeded)
    samples: list[dict[str, Any]] | None = None  # with several samples: each one's prediction and scores

    def dump(self) -> dict[str, Any]:
        # `error` and `samples` only where they apply, as the records were always written
        return self.model_dump(exclude={k for k in ("error", "samples") if getattr(self, k) is None})


class CheckpointMeta(ResultFile):
    """checkpoints/<exp>/<arm>/epoch_<N>/meta.json, written last: a checkpoint is complete when
    its meta.json reads as this model."""

    epoch: int
    step: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    experiment: str = ""
    arm: str = ""


class RunResults(ResultFile):
    """results.json of a run of the generation loop (inference, RAG): its config and every
    example's record (RAG's carry its parsed answer and score too)."""

    config: dict[str, Any] = Field(default_factory=dict)
    examples: list[dict[str, Any]] = Field(default_factory=list)
