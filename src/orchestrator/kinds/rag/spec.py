"""The `rag` kind: models × retrieval configurations over one corpus and one question set.

    kind: rag
    corpus: data/wattbot/corpus            # documents, or a metadata CSV (id, title, url, path)
    questions: data/wattbot/train_QA.csv   # WattBot CSV (or JSONL with the same fields)
    models: [qwen2.5-7b, gpt-4o-mini]      # jobs/models/*.yaml; a missing config is skipped with its reason
    retrieval: {retriever: hybrid, top_k: 5, embedder: BAAI/bge-small-en-v1.5, chunking: {size: 200}}
    grid: {retriever: [bm25, dense, hybrid], top_k: [3, 5]}   # an ablation: every combination
    time_limits: {qwen2.5-72b: "04:00:00"}  # per model (default resources.time)
    family: qwen2.5                        # a scaling study: every model config of the family
    smoke: true                            # one question per model

Stages: `index` (one unit per (corpus, chunking, embedder) whose index is not on disk yet, CPU),
then `answer-<shape>` arrays, one per (GPUs, time limit), waiting afterok on `index`. An index
already complete (same content hash) is not rebuilt: its stage is left out. Run names:
`<model>__<config>`; index runs `index-<key>`; indexes live in ORCH_HOME/indexes/<key>/.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from orchestrator.core import paths
from orchestrator.core.errors import SpecError
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.spec import BaseSpec, Resources, spec_relative, time_to_minutes
from orchestrator.generation.models import ModelConfig, list_models, load_model
from orchestrator.kinds.rag.config import DEFAULT_PROMPT, Retrieval, expand
from orchestrator.kinds.rag.job import IndexArgs, RagArgs

ANSWER_OUTPUTS = (paths.PREDICTIONS_FILE, paths.RESULTS_FILE, paths.SUMMARY_FILE, paths.RAG_SUBMISSION_FILE)
INDEX_ENTRY = "orchestrator.kinds.rag.job:build_index"
ANSWER_ENTRY = "orchestrator.kinds.rag.job:rag_answer"


class RagSpec(BaseSpec):
    kind: str = "rag"
    corpus: str
    questions: str
    models: list[str | dict[str, Any]] = Field(default_factory=list)
    family: str | None = None  # add every jobs/models config of this family (by size)
    only_models: list[str] | None = None
    retrieval: Retrieval = Field(default_factory=Retrieval)
    grid: dict[str, list[Any]] | None = None
    # jinja over `question` and `chunks` [{doc_id, chunk_id, text, score}]: a file (specs hold no newlines)
    prompt_file: str | None = None
    max_new_tokens: int | None = Field(None, ge=1)  # default: the model's
    batch_size: int = Field(8, ge=1)
    limit: int | None = Field(None, ge=1)
    smoke: bool = False
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    time_limits: dict[str, str] = Field(default_factory=dict)
    skip_existing: bool = False  # leave out runs whose summary.json exists
    gpu_memory_gb: float = Field(80.0, gt=0)
    max_gpus: int | None = Field(None, ge=1)
    index_gpus: int = Field(0, ge=0)  # GPUs for the index stage (embedding a large corpus)

    _models: list[ModelConfig] = PrivateAttr(default_factory=list)
    _skipped: list[tuple[str, str]] = PrivateAttr(default_factory=list)
    _configs: list[Retrieval] = PrivateAttr(default_factory=list)
    _fingerprint: str | None = PrivateAttr(None)
    _prompt: str = PrivateAttr(DEFAULT_PROMPT)

    @field_validator("corpus", "questions", "prompt_file")
    @classmethod
    def _absolute(cls, v: str | None, info: ValidationInfo) -> str | None:
        return v if v is None else spec_relative(v, info)  # relative to the spec file's directory

    @field_validator("time_limits")
    @classmethod
    def _times(cls, v: dict[str, str]) -> dict[str, str]:
        for t in v.values():
            time_to_minutes(t)
        return v

    @model_validator(mode="after")
    def _load(self) -> RagSpec:
        refs = list(self.models)
        if self.family:
            family = sorted(
                (m for m in map(_loadable, list_models()) if m and m.family == self.family and not m.remote),
                key=lambda m: m.params_b or 0,
            )
            if not family:
                raise ValueError(f"family {self.family!r}: no model config in {paths.models_dir()} has it")
            refs += [m.name for m in family if m.name not in refs]
        if not refs:
            raise ValueError("models: name at least one model (or a `family`)")
        for ref in refs:
            try:
                self._models.append(load_model(ref))
            except SpecError as e:  # one bad config must not stop the benchmark: skipped, with why
                self._skipped.append(
                    (str(ref.get("config", ref.get("name")) if isinstance(ref, dict) else ref), "; ".join(e.problems))
                )
        for key in self.grid or {}:
            if key not in Retrieval.model_fields or key == "name":
                raise ValueError(f"grid.{key}: not a retrieval setting ({', '.join(sorted(Retrieval.model_fields))})")
            if not isinstance(self.grid[key], list) or not self.grid[key]:
                raise ValueError(f"grid.{key}: a non-empty list of values")
        self._configs = expand(self.retrieval, self.grid)
        if self.prompt_file is not None:
            try:
                self._prompt = Path(self.prompt_file).read_text()
            except OSError as e:
                raise ValueError(f"prompt_file: cannot read {self.prompt_file} ({e.strerror})") from None
            from orchestrator.generation.task import environment

            environment().parse(self._prompt)
        return self

    def skipped(self) -> list[tuple[str, str]]:
        """(model, reason): configs that do not load, models that cannot fit, finished runs."""
        out = list(self._skipped)
        if self.device != "cpu":
            limit = self.max_gpus or self.resources.node_gpus or 8
            out += [(m.name, r) for m in self.selected() if (r := m.fit(self.gpu_memory_gb, limit)[1])]
        return out

    def selected(self) -> list[ModelConfig]:
        return [m for m in self._models if self.only_models is None or m.name in self.only_models]

    def index_for(self, cfg: Retrieval) -> str:
        """The index key of a configuration (the corpus is hashed once per plan)."""
        from orchestrator.kinds.rag import corpus, retrieval

        if self._fingerprint is None:
            # A corpus not there yet (render on another machine) gets a key of its path; submit
            # refuses to run it (check_submit), so that key never names a built index.
            present = Path(self.corpus).exists()
            self._fingerprint = corpus.fingerprint(self.corpus) if present else f"missing:{self.corpus}"
        return retrieval.index_key(self._fingerprint, cfg.chunking, cfg.embedder)

    def input_files(self) -> list[tuple[str, str]]:
        named = (("questions", self.questions), ("corpus", self.corpus), ("prompt_file", self.prompt_file))
        return [(k, v) for k, v in named if v is not None]

    def check_submit(self) -> None:
        """API models read their key in the job: it must be exported in the submitting shell (render and
        --dry-run need none; the data files are checked by check_inputs)."""
        import os

        skip = dict(self.skipped())
        missing = [
            f"model {m.name}: ${m.api.api_key_env} is not set: export it in this shell (SLURM passes it on)"
            for m in self.selected()
            if m.api is not None and m.api.key_required and m.name not in skip and not os.environ.get(m.api.api_key_env)
        ]
        if missing:
            raise SpecError(getattr(self, "_source", self.name), missing)

    def plan(self) -> list[Stage]:
        from orchestrator.kinds.rag import retrieval

        source = getattr(self, "_source", self.name)
        skip = dict(self.skipped())
        for name, reason in skip.items():
            print(f"rag {self.name}: skipping {name}: {reason}", file=sys.stderr)
        index_units: dict[str, Unit] = {}
        shapes: dict[tuple[int, str], list[Unit]] = {}
        for cfg in self._configs:
            key = self.index_for(cfg)
            where = retrieval.index_dir(key)
            if not retrieval.is_complete(where) and key not in index_units:
                args = IndexArgs(
                    corpus=self.corpus,
                    chunking=cfg.chunking,
                    embedder=cfg.embedder,
                    index_dir=str(where),
                    device="cpu" if self.device == "cpu" or not self.index_gpus else "auto",
                )
                index_units[key] = Unit(
                    run=f"index-{key}", entry=INDEX_ENTRY, args=args, outputs=(paths.RAG_INDEX_INFO_FILE,)
                )
            for model in self.selected():
                if model.name in skip:
                    continue
                run = paths.rag_run(model.name, cfg.label())
                if self.skip_existing and (paths.run_dir(self.name, run) / paths.SUMMARY_FILE).exists():
                    print(f"rag {self.name}: skipping {run}: summary.json exists (skip_existing)", file=sys.stderr)
                    continue
                gpus = 0 if self.device == "cpu" else model.gpus_needed(self.gpu_memory_gb)
                args = RagArgs(
                    model=model,
                    questions=self.questions,
                    index_dir=str(where),
                    retrieval=cfg,
                    config=cfg.label(),
                    prompt=self._prompt,
                    max_new_tokens=self.max_new_tokens,
                    batch_size=self.batch_size,
                    limit=self.limit,
                    smoke=self.smoke,
                    seed=self.seed,
                    device=self.device,
                    backend_options=self.backend_options,
                    gpus=gpus,
                )
                time = self.time_limits.get(model.name, self.resources.time)
                shapes.setdefault((gpus, time), []).append(
                    Unit(run=run, entry=ANSWER_ENTRY, args=args, outputs=ANSWER_OUTPUTS)
                )
        if not shapes:
            raise SpecError(source, "nothing to run: every model was skipped (reasons above) or filtered out")
        stages = []
        if index_units:
            res = Resources.model_validate({**self.resources.model_dump(), "gpus_per_node": self.index_gpus})
            stages.append(
                Stage(
                    name="index",
                    resources=res,
                    env=self.env,
                    units=tuple(index_units.values()),
                    array_parallelism=self.array_parallelism,
                )
            )
        for (gpus, time), units in sorted(shapes.items()):
            res = Resources.model_validate({**self.resources.model_dump(), "gpus_per_node": gpus, "time": time})
            name = f"answer-{gpus}gpu" if gpus else "answer-cpu"
            if len({t for g, t in shapes if g == gpus}) > 1:
                name += f"-{time_to_minutes(time)}m"
            stages.append(
                Stage(
                    name=name,
                    resources=res,
                    env=self.env,
                    units=tuple(units),
                    after=("index",) if index_units else (),
                    array_parallelism=self.array_parallelism,
                    checkpointable=True,
                )
            )
        return stages


def _loadable(name: str) -> ModelConfig | None:
    """A model config, or None when it does not load (reported when it is asked for by name)."""
    try:
        return load_model(name)
    except SpecError:
        return None
