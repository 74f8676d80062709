"""The evaluation job: one checkpoint × one suite task → logs/<exp>/eval/<arm>/<checkpoint>/<task>.json.

Generation goes through the inference backends (transformers; vLLM with tensor parallelism when
`backend: vllm` and `tensor_parallel_size` > 1); scoring through `suites.scoring` (code in the
sandbox). `checkpoint` is a directory name ("epoch_3"), or resolved when the job runs, after
training ended: "final" (the arm's latest and best) or "pending" (every checkpoint of the arm
without a result yet). The result file is written once, atomically, at the end.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.errors import UserError

SCHEMA_VERSION = 1


def resolve(train_experiment: str, arm: str, checkpoint: str, task: str, best_metric: str) -> list:
    """The Checkpoint objects a unit evaluates."""
    from orchestrator.kinds.eval.discover import discover

    found = discover(train_experiment, [arm], best_metric, require=False)[arm]
    by_name = {c.name: c for c in found.checkpoints}
    if checkpoint == "final":
        chosen = [c for c in (found.latest, found.best) if c is not None]
    elif checkpoint == "pending":
        chosen = [c for c in found.checkpoints if not paths.eval_result(train_experiment, arm, c.name, task).exists()]
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


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    best_metric: str = "val/reward_mean",
    config: dict | None = None,
) -> int:
    """Entry point of one eval unit (see the module docstring); returns 0 when every result is written."""
    from orchestrator.kinds.eval.suites import load_suite

    suite_obj = load_suite(suite, data_root)
    t = suite_obj.task(task)
    for ckpt in resolve(train_experiment, arm, checkpoint, task, best_metric):
        started = time.time()
        result = evaluate_one(train_experiment, arm, ckpt, t, backend, batch_size, tensor_parallel_size, limit)
        result["config"] = {
            **(config or {}),
            "suite": suite_obj.name,
            "suite_file": suite_obj.source,
            "data_file": str(t.data_file),
            "checkpoint_path": str(ckpt.path),
            "backend": backend,
            "tensor_parallel_size": tensor_parallel_size,
            "limit": limit,
            "max_tokens": t.config.max_tokens,
            "samples": t.config.samples,
            "temperature": t.config.sampling_temperature,
            "scorer": t.config.scorer,
        }
        result["wall_time_s"] = time.time() - started
        from orchestrator.core.runner import write_json_atomic

        write_json_atomic(paths.eval_result(train_experiment, arm, ckpt.name, task), result)
        print(
            f"{arm}/{ckpt.name}/{task}: {result['primary_metric']} = {result['metrics'][result['primary_metric']]:.4f} "
            f"(n={result['n']})",
            flush=True,
        )
    return 0


def evaluate_one(
    train_experiment: str,
    arm: str,
    ckpt,
    task,
    backend: str,
    batch_size: int,
    tensor_parallel_size: int,
    limit: int | None,
) -> dict:
    from orchestrator.generation.backends import load_backend
    from orchestrator.generation.backends.base import Request
    from orchestrator.generation.models import ModelConfig, safe_name
    from orchestrator.kinds.eval.suites import field_value, read_examples, render_prompt
    from orchestrator.scoring.sandbox import pass_at_k
    from orchestrator.scoring.suite_scorers import CODE_SCORERS, score

    cfg = task.config
    examples = read_examples(task, limit)
    if not examples:
        raise UserError(f"task {task.name}: {task.data_file} has no examples")
    model = ModelConfig(
        name=safe_name(f"{arm}-{ckpt.name}"),
        path=str(ckpt.path),
        backend=backend,
        tensor_parallel_size=tensor_parallel_size,
        max_length=_max_length(ckpt.path),
    )
    options = {"batch_size": batch_size} if backend == "transformers" else {}
    engine = load_backend(backend, model, **options)
    try:
        template = getattr(engine, "apply_chat_template", None)
        requests = []
        for ex in examples:
            prompt = render_prompt(task, ex)
            prompt = template(prompt) if template else prompt
            for k in range(cfg.samples):
                requests.append(
                    Request(
                        id=f"{ex['_id']}#{k}",
                        prompt=prompt,
                        max_new_tokens=cfg.max_tokens,
                        temperature=cfg.sampling_temperature,
                        top_p=cfg.top_p,
                        stop=cfg.stop,
                        seed=k if cfg.samples > 1 else None,
                    )
                )
        generations = engine.generate(requests)
    finally:
        engine.close()

    def gold_of(ex: dict):
        if cfg.scorer in CODE_SCORERS:
            return None  # code is judged by its tests, not a reference answer
        try:
            return field_value(ex, cfg.gold)
        except KeyError:
            raise UserError(
                f"task {task.name}: record {ex['_id']} has no gold field {cfg.gold!r} (fields: {', '.join(sorted(ex))})"
            ) from None

    jobs = [
        (g.text, ex, gold_of(ex))
        for i, ex in enumerate(examples)
        for g in generations[i * cfg.samples : (i + 1) * cfg.samples]
    ]
    workers = _workers() if cfg.scorer in CODE_SCORERS else 1  # sandboxes run in parallel processes
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scores = list(pool.map(lambda j: score(cfg.scorer, j[0], j[1], j[2], timeout_s=cfg.timeout_s), jobs))

    per_example, correct_counts = [], []
    for i, ex in enumerate(examples):
        s = scores[i * cfg.samples : (i + 1) * cfg.samples]
        correct_counts.append(sum(1 for x in s if x >= 1.0))
        per_example.append(
            {
                "id": ex["_id"],
                "correct": s[0] >= 1.0,
                "score": sum(s) / len(s),
                "samples_correct": correct_counts[-1],
                "completion_tokens": sum(
                    g.completion_tokens for g in generations[i * cfg.samples : (i + 1) * cfg.samples]
                ),
            }
        )
    n = len(examples)
    metrics = {"accuracy": sum(p["score"] for p in per_example) / n}
    if cfg.scorer in CODE_SCORERS or cfg.samples > 1:
        for k in sorted({1, cfg.samples}):
            metrics[f"pass@{k}"] = sum(pass_at_k(cfg.samples, c, k) for c in correct_counts) / n
    primary = "pass@1" if cfg.scorer in CODE_SCORERS else "accuracy"
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment": train_experiment,
        "arm": arm,
        "checkpoint": ckpt.name,
        "epoch": ckpt.epoch,
        "step": ckpt.step,
        "domain": task.domain,
        "task": task.name,
        "n": n,
        "samples": cfg.samples,
        "metrics": metrics,
        "primary_metric": primary,
        "higher_is_better": True,
        "per_example": per_example,
    }
