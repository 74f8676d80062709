"""The evaluation job: one checkpoint × one suite task → logs/<exp>/eval/<arm>/<checkpoint>/<task>.json.

Generation and scoring go through the one pipeline (`generation.pipeline`), as inference does:
the inference backends (transformers; vLLM with tensor parallelism when `backend: vllm` and
`tensor_parallel_size` > 1), the task's scorer (code in the sandbox), one per-example record
appended per batch to `<task>.jsonl` beside the result. A killed evaluation resumes from that file:
finished examples are not generated again. The result `<task>.json` is written atomically once
every example is done. `checkpoint` is a directory name ("epoch_3"), or resolved when the job runs,
after training ended: "final" (the arm's latest and best) or "pending" (every checkpoint of the arm
without a result yet, except those pinned by a unit of their own).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.checkpoints import DEFAULT_BEST_METRIC, pinned, read_arm, unpin
from orchestrator.core.errors import UserError
from orchestrator.core.plan import UnitArgs
from orchestrator.generation import pipeline
from orchestrator.generation.backends import load_backend
from orchestrator.generation.examples import build_examples
from orchestrator.generation.models import ModelConfig, safe_name
from orchestrator.generation.task import Task
from orchestrator.kinds.eval.records import EvalResult
from orchestrator.kinds.eval.suites import load_suite
from orchestrator.scoring.registry import get_scorer, higher_is_better
from orchestrator.scoring.sandbox import pass_at_k

ENTRY = "orchestrator.kinds.eval.job:evaluate_checkpoint"


class EvalArgs(UnitArgs):
    """What one eval unit runs: `evaluate_checkpoint(run_dir, experiment, **args.kwargs())`."""

    train_experiment: str
    arm: str
    checkpoint: str  # epoch_<N> | "final" | "pending"
    task: str
    suite: str  # name or YAML path
    data_root: str | None = None
    backend: str = "transformers"
    batch_size: int = 8
    tensor_parallel_size: int = 1
    limit: int | None = None
    best_metric: str = DEFAULT_BEST_METRIC
    config: dict | None = None

    def describe(self) -> str:
        gpus = f" tp={self.tensor_parallel_size}" if self.tensor_parallel_size > 1 else ""
        return f"model={self.arm}/{self.checkpoint} task={self.task} backend={self.backend}{gpus}"


def resolve(train_experiment: str, arm: str, checkpoint: str, task: str, best_metric: str) -> list:
    """The Checkpoint objects a unit evaluates (complete, latest, best: core/checkpoints.py)."""
    found = read_arm(train_experiment, arm, best_metric, higher_is_better(best_metric))
    by_name = {c.name: c for c in found.complete}
    if checkpoint == "final":
        chosen = [c for c in (found.latest, found.best) if c is not None]
    elif checkpoint == "pending":  # a pinned one is its own unit's (queued or running): not twice
        held = pinned(train_experiment, arm)
        chosen = [
            c
            for c in found.complete
            if c.name not in held and not paths.eval_result(train_experiment, arm, c.name, task).exists()
        ]
    elif checkpoint in by_name:
        chosen = [by_name[checkpoint]]
    else:
        raise UserError(
            f"{train_experiment}/{arm}: no complete checkpoint {checkpoint!r} in "
            f"{paths.arm_checkpoints_dir(train_experiment, arm)} (have: {', '.join(by_name) or 'none'})"
        )
    if checkpoint != "pending" and not chosen:
        raise UserError(
            f"{train_experiment}/{arm}: no checkpoint to evaluate in {paths.arm_checkpoints_dir(train_experiment, arm)}"
        )
    return list({c.name: c for c in chosen}.values())


def _max_length(checkpoint_dir: Path, default: int = 4096) -> int:
    try:
        cfg = json.loads((checkpoint_dir / "config.json").read_text())
        return int(cfg.get("max_position_embeddings") or default)
    except (OSError, ValueError, TypeError):
        return default


def evaluate_checkpoint(
    run_dir: str,
    experiment: str,
    train_experiment: str,
    arm: str,
    checkpoint: str,
    task: str,
    suite: str,
    data_root: str | None = None,
    backend: str = "transformers",
    batch_size: int = 8,
    tensor_parallel_size: int = 1,
    limit: int | None = None,
    best_metric: str = DEFAULT_BEST_METRIC,
    config: dict | None = None,
) -> int:
    """Entry point of one eval unit (see the module docstring); returns 0 when every result is written."""
    suite_obj = load_suite(suite, data_root)
    t = suite_obj.task(task)
    for ckpt in resolve(train_experiment, arm, checkpoint, task, best_metric):
        started = time.time()
        result = evaluate_one(train_experiment, arm, ckpt, t, backend, batch_size, tensor_parallel_size, limit)
        sampling = t.sampling()
        result.config = {
            **(config or {}),
            "suite": suite_obj.name,
            "suite_file": suite_obj.source,
            "data_file": str(t.dataset.data_files),
            "checkpoint_path": str(ckpt.path),
            "backend": backend,
            "tensor_parallel_size": tensor_parallel_size,
            "limit": limit,
            "max_tokens": sampling.max_new_tokens,
            "samples": sampling.samples,
            "temperature": sampling.temperature,
            "scorer": t.scorer,
        }
        result.wall_time_s = time.time() - started
        result.write(paths.eval_result(train_experiment, arm, ckpt.name, task))
        unpin(train_experiment, arm, ckpt.name, experiment, Path(run_dir).name)  # retention may delete it now
        print(
            f"{arm}/{ckpt.name}/{task}: {result.primary_metric} = {result.metrics[result.primary_metric]:.4f} "
            f"(n={result.n})",
            flush=True,
        )
    return 0


def evaluate_one(
    train_experiment: str,
    arm: str,
    ckpt,
    task: Task,
    backend: str,
    batch_size: int,
    tensor_parallel_size: int,
    limit: int | None,
) -> EvalResult:
    """Generate and score what `<task>.jsonl` lacks (resuming a killed run), then the result."""
    examples = build_examples(task, limit=limit, seeded=False)
    if not examples:
        raise UserError(f"task {task.name}: {task.dataset.data_files} has no examples")
    model = ModelConfig(
        name=safe_name(f"{arm}-{ckpt.name}"),
        path=str(ckpt.path),
        backend=backend,
        tensor_parallel_size=tensor_parallel_size,
        max_length=_max_length(ckpt.path),
    )
    sampling = task.sampling()
    records = pipeline.run(
        task,
        examples,
        paths.eval_predictions(train_experiment, arm, ckpt.name, task.name),
        lambda: load_backend(backend, model, batch_size=batch_size),
        model=model.name,
        sampling=sampling,
        batch_size=batch_size,
    )
    return eval_result(train_experiment, arm, ckpt, task, records, sampling.samples)


def eval_result(train_experiment: str, arm: str, ckpt, task: Task, records: list[dict], samples: int) -> EvalResult:
    """The result file's content from the per-example records (docs/architecture.md)."""
    code = pipeline.runs_code(task)
    metric = pipeline.primary(task)[0]
    per_example = [
        {
            "id": r["id"],
            "correct": bool(r["correct"]),
            "score": r["scores"].get(metric) or 0.0,
            "samples_correct": pipeline.samples_correct(r),
            "completion_tokens": r["completion_tokens"],
        }
        for r in records
    ]
    n = len(records)
    metrics = {"accuracy": sum(p["score"] for p in per_example) / n}
    for key in sorted({k for r in records for k in r["scores"] if k.endswith(("_in_domain", "_out_domain"))}):
        values = [r["scores"][key] for r in records if key in r["scores"]]  # CoQA by domain (scorers.score_coqa)
        metrics[key] = sum(values) / len(values)
    if code or samples > 1:
        for k in sorted({1, samples}):
            metrics[f"pass@{k}"] = sum(pass_at_k(samples, p["samples_correct"], k) for p in per_example) / n
    return EvalResult(
        experiment=train_experiment,
        arm=arm,
        checkpoint=ckpt.name,
        epoch=ckpt.epoch,
        step=ckpt.step,
        domain=task.domain_name,
        task=task.name,
        n=n,
        samples=samples,
        metrics=metrics,
        primary_metric="pass@1" if code else "accuracy",
        higher_is_better=get_scorer(task.scorer).higher_is_better,  # the direction of every metric above
        per_example=per_example,
    )
