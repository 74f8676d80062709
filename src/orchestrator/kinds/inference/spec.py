"""The `inference` and `sweep` kinds: models × tasks, one unit (one run dir) per pair.

    kind: sweep                      # or `inference`: same keys; a model that cannot fit is an error
    models: [qwen2.5-1.5b, llama-3.1-8b, {config: mistral-7b, quantization: 8bit}]
    tasks: [coqa, {task: boolq, dataset: {data_files: data/boolq.jsonl}}]
    limit: 500                       # --set limit=10 / smoke=true / only_models=[a,b] / skip_existing=true
    gpu_memory_gb: 80                # memory of one GPU, for the estimate
    max_gpus: 4                      # most GPUs one job may use; bigger models are skipped (sweep)
    resources: {time: "04:00:00"}    # the per-job time limit

Each (model, task) unit asks for the GPUs its model needs (memory estimate, at least its
tensor_parallel_size); units of one resource shape go as ONE job array and shapes are
independent stages, so the size phases run in parallel. Units are checkpointable: on a time
limit or preemption SLURM requeues them and the run resumes from its predictions.jsonl.
Run dirs: logs/<experiment>/<model>__<task>/ (predictions.jsonl, results.json, summary.json).
"""

from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from orchestrator.core import paths
from orchestrator.core.errors import SpecError
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.spec import BaseSpec, Resources, Strict, spec_relative
from orchestrator.generation import backends
from orchestrator.generation.models import load_model
from orchestrator.generation.tasks import load_task
from orchestrator.kinds.inference.job import InferenceArgs

OUTPUTS = (paths.PREDICTIONS_FILE, paths.RESULTS_FILE, paths.SUMMARY_FILE)
ENTRY = "orchestrator.kinds.inference.job:run_inference"


class WandbOptions(Strict):
    enabled: bool = True
    project: str | None = None
    mode: Literal["offline", "online", "disabled"] | None = None  # default: WANDB_MODE, else offline


class InferenceSpec(BaseSpec):
    kind: str = "inference"
    models: list[str | dict[str, Any]] = Field(min_length=1)
    tasks: list[str | dict[str, Any]] = Field(min_length=1)
    only_models: list[str] | None = None  # run just these (names), e.g. --set only_models=[tiny]
    backend: str | None = None  # a registered local backend; default: each model's own
    backend_options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(8, ge=1)
    limit: int | None = Field(None, ge=1)
    smoke: bool = False  # one example per (model, task)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # cpu: no GPUs requested
    skip_existing: bool = False  # leave out pairs whose summary.json exists
    gpu_memory_gb: float = Field(80.0, gt=0)
    max_gpus: int | None = Field(None, ge=1)  # default: resources.node_gpus, else 8
    wandb: WandbOptions = Field(default_factory=WandbOptions)

    _models: list = PrivateAttr(default_factory=list)
    _backend = field_validator("backend")(backends.check_local_backend)
    _tasks: list = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo) -> InferenceSpec:
        models, tasks = [], []
        for i, ref in enumerate(self.models):
            try:
                models.append(load_model(ref))
            except SpecError as e:
                raise ValueError(f"models[{i}] ({ref}): {'; '.join(e.problems)}") from None
        for i, ref in enumerate(self.tasks):
            try:
                tasks.append(_absolute_files(load_task(ref), info))
            except SpecError as e:
                raise ValueError(f"tasks[{i}] ({ref}): {'; '.join(e.problems)}") from None
        for what, names in (("models", [m.name for m in models]), ("tasks", [t.name for t in tasks])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what}: {', '.join(dup)} listed twice (give inline entries a distinct name)")
        if self.only_models is not None:
            unknown = sorted(set(self.only_models) - {m.name for m in models})
            if unknown:
                raise ValueError(
                    f"only_models: {', '.join(unknown)} not in models ({', '.join(m.name for m in models)})"
                )
        self._models, self._tasks = models, tasks
        return self

    @property
    def gpu_limit(self) -> int:
        return self.max_gpus or self.resources.node_gpus or 8

    def selected_models(self) -> list:
        return [m for m in self._models if self.only_models is None or m.name in self.only_models]

    def skipped(self) -> list[tuple[str, str]]:
        """(model, reason) for models that cannot fit; the inference kind refuses them instead."""
        if self.device == "cpu":
            return []
        return [
            (m.name, reason)
            for m in self.selected_models()
            if (reason := m.fit(self.gpu_memory_gb, self.gpu_limit)[1]) is not None
        ]

    def gpus_for(self, model) -> int:
        return 0 if self.device == "cpu" else model.gpus_needed(self.gpu_memory_gb)

    def input_files(self) -> list[tuple[str, str]]:
        return [
            (f"tasks[{i}] ({t.name}).dataset.data_files", f)
            for i, t in enumerate(self._tasks)
            for f in _local_files(t.dataset.data_files)
            if "://" not in f and not any(c in f for c in "*?[")  # URLs and globs: the loader's business
        ]

    def check_submit(self) -> None:
        """What a backend cannot run where the job runs (backends.submit_problem): for vLLM, a
        quantization the installed vLLM does not list (read from vLLM itself, imported only for such a
        model), or bitsandbytes on CPU."""
        problems = [
            p
            for m in self.selected_models()
            if (p := backends.submit_problem(self.backend or m.backend, m, self.device)) is not None
        ]
        if problems:
            raise SpecError(getattr(self, "_source", self.name), problems)

    def plan(self) -> list[Stage]:
        skipped = dict(self.skipped())
        if skipped and self.kind == "inference":
            raise SpecError(
                getattr(self, "_source", self.name),
                [
                    *skipped.values(),
                    "raise max_gpus / gpu_memory_gb, quantize the model, or use kind: sweep to skip it",
                ],
            )
        for name, reason in skipped.items():
            print(f"sweep {self.name}: skipping {name}: {reason}", file=sys.stderr)
        shapes: dict[int, list[Unit]] = {}
        for model in self.selected_models():
            if model.name in skipped:
                continue
            for task in self._tasks:
                run = paths.inference_run(model.name, task.name)
                if self.skip_existing and (paths.run_dir(self.name, run) / paths.SUMMARY_FILE).exists():
                    print(
                        f"{self.kind} {self.name}: skipping {run}: summary.json exists (skip_existing)", file=sys.stderr
                    )
                    continue
                gpus = self.gpus_for(model)
                args = InferenceArgs(
                    model=model,
                    task=task,
                    backend=self.backend,
                    batch_size=self.batch_size,
                    limit=self.limit,
                    smoke=self.smoke,
                    seed=self.seed,
                    device=self.device,
                    backend_options=self.backend_options,
                    wandb=self.wandb.model_dump(),
                    gpus=gpus,
                )
                shapes.setdefault(gpus, []).append(Unit(run=run, entry=ENTRY, args=args, outputs=OUTPUTS))
        stages = []
        for gpus, units in sorted(shapes.items()):
            resources = Resources.model_validate({**self.resources.model_dump(), "gpus_per_node": gpus})
            stages.append(
                Stage(
                    name=f"infer-{gpus}gpu" if gpus else "infer-cpu",
                    resources=resources,
                    env=self.env,
                    units=tuple(units),
                    array_parallelism=self.array_parallelism,
                    checkpointable=True,
                )
            )
        if not stages:
            raise SpecError(
                getattr(self, "_source", self.name),
                "nothing to run: every (model, task) pair was "
                "skipped (see the reasons above) or filtered out by only_models",
            )
        return stages


class SweepSpec(InferenceSpec):
    """models × tasks where models that cannot fit the allowed GPUs are skipped with a reason."""

    kind: str = "sweep"


def _absolute_files(task, info: ValidationInfo):
    """Relative data files are relative to the spec file's directory (core.spec.spec_relative)."""
    files = task.dataset.data_files
    if files is None:
        return task

    def fix(f: str) -> str:
        return spec_relative(f, info)

    if isinstance(files, str):
        files = fix(files)
    elif isinstance(files, list):
        files = [fix(f) for f in files]
    else:
        files = {k: fix(v) if isinstance(v, str) else [fix(x) for x in v] for k, v in files.items()}
    return task.model_copy(update={"dataset": task.dataset.model_copy(update={"data_files": files})})


def _local_files(files) -> list[str]:
    if files is None:
        return []
    if isinstance(files, str):
        return [files]
    if isinstance(files, list):
        return list(files)
    return [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
