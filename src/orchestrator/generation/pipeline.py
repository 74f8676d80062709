"""The one generate → score → write loop (inference and evaluation run through it).

    examples (generation.examples.build_examples)
      → requests (one per example × sample; chat template when the backend has one)
      → backend.generate, one batch at a time
      → score each generation with the task's scorer (code scorers in parallel sandboxes)
      → one record per example (docs/results-schema.md, "Per-example record")
      → append_jsonl: the batch's records in ONE write + fsync

Resumable: a rerun reads the file (a torn last line, from a kill mid-write, is cut off), skips
the ids already there and appends the rest, so a kill at any moment loses at most the batch in
flight and never writes an example twice; the backend is not even loaded when nothing is left.
Requests are seeded (`seed + k` for sample k when sampling), so a resumed run generates what an
uninterrupted one would have.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core import paths
from orchestrator.core.files import append_jsonl, first_by_id, read_json, write_json_atomic
from orchestrator.core.records import ExampleRecord, read_records
from orchestrator.generation.backends.base import Backend, Generation, Request
from orchestrator.generation.models import ModelConfig
from orchestrator.generation.task import Sampling, Task
from orchestrator.scoring.metrics import confidence_from_logprobs
from orchestrator.scoring.registry import CODE_SCORERS, get_scorer

OnBatch = Callable[[list[dict], list[Generation], float], None]


@dataclass(frozen=True)
class Scored:
    scores: dict[str, float]
    correct: bool | None


def workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def score_generation(task: Task, prediction: str, example: dict) -> Scored:
    """The task's scorer on one generation (the row is its `record`); `correct`: `task.correct`'s
    metric reaches its threshold, by default the scorer's own metric reaches 1 (None: no value)."""
    scorer = get_scorer(task.scorer)
    scores = scorer.scores(prediction, example["gold"], record=example["row"], timeout_s=task.timeout_s)
    metric, threshold = primary(task)
    if task.correct is None and metric not in scores and len(scores) == 1:
        scores = {metric: next(iter(scores.values()))}  # a user scorer's only value is its score
    value = scores.get(metric)
    return Scored(scores, None if value is None else bool(value >= threshold))


def primary(task: Task) -> tuple[str, float]:
    """The metric that decides `correct` (and an evaluation's per-example score), and its threshold."""
    if task.correct is not None:
        return task.correct.metric, task.correct.threshold
    return get_scorer(task.scorer).metric, 1.0


def runs_code(task: Task) -> bool:
    """Code scorers run the candidate against the row's tests in sandboxes (scored in parallel)."""
    return task.scorer in CODE_SCORERS


def requests_for(examples: Sequence[dict], sampling: Sampling, seed: int, chat: Callable | None) -> list[Request]:
    """One request per example × sample, in example order; ids `<id>` (one sample) or `<id>#<k>`."""
    out = []
    for ex in examples:
        prompt = chat(ex["prompt"]) if chat else ex["prompt"]
        for k in range(sampling.samples):
            out.append(
                Request(
                    id=ex["id"] if sampling.samples == 1 else f"{ex['id']}#{k}",
                    prompt=prompt,
                    max_new_tokens=sampling.max_new_tokens,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    stop=sampling.stop,
                    seed=seed + k if sampling.temperature > 0 else None,
                )
            )
    return out


def make_record(task: Task, model: str, ex: dict, gens: list[Generation], scored: list[Scored], latency: float) -> dict:
    """The per-example record (docs/results-schema.md): the first sample's prediction, scores
    averaged over samples, and `samples` (every sample) when there are several."""
    first, s0 = gens[0], scored[0]
    scores = s0.scores
    if len(gens) > 1:
        keys = list(dict.fromkeys(k for s in scored for k in s.scores))
        scores = {k: _mean([s.scores.get(k) for s in scored]) for k in keys}
    samples = None
    if len(gens) > 1:
        samples = [
            {
                "prediction": g.text,
                "scores": s.scores,
                "correct": s.correct,
                "completion_tokens": g.completion_tokens,
                "finish_reason": g.finish_reason,
            }
            for g, s in zip(gens, scored)
        ]
    return ExampleRecord(
        id=ex["id"],
        task=task.name,
        model=model,
        domain=ex["domain"],
        prompt=ex["prompt"],
        prediction=first.text,
        gold=ex["gold"],
        scores=scores,
        correct=s0.correct,
        confidence=confidence_from_logprobs(first.token_logprobs),
        latency_s=latency,
        prompt_tokens=first.prompt_tokens,
        completion_tokens=sum(g.completion_tokens for g in gens),
        finish_reason=first.finish_reason,
        error=first.error or None,
        samples=samples,
    ).dump()


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def samples_correct(record: dict) -> int:
    """How many of the record's samples are correct."""
    if "samples" in record:
        return sum(1 for s in record["samples"] if s["correct"])
    return 1 if record["correct"] else 0


def read_done(predictions: Path) -> dict[str, dict]:
    """The finished records of a predictions file by id (torn last line cut off: about to append);
    each one an `ExampleRecord` (a newer schema_version or a foreign line is an error naming it)."""
    records, _ = read_records(predictions, ExampleRecord, repair=True)
    return {r["id"]: r for r in first_by_id(r.dump() for r in records)}


def run(
    task: Task,
    examples: list[dict],
    predictions: Path,
    open_backend: Callable[[], Backend],
    *,
    model: str,
    sampling: Sampling,
    batch_size: int,
    seed: int = 0,
    on_batch: OnBatch | None = None,
    log: Callable[[str], None] = lambda m: print(m, flush=True),
) -> list[dict]:
    """Generate, score and append what `predictions` lacks; the records of `examples`, in order."""
    done = read_done(predictions)
    todo = [ex for ex in examples if ex["id"] not in done]
    log(
        f"{model} × {task.name}: {len(examples)} examples, {len(examples) - len(todo)} already done, {len(todo)} to run"
    )
    if todo:
        backend = open_backend()
        code = runs_code(task)
        pool = ThreadPoolExecutor(max_workers=workers() if code else 1)
        try:
            chat = getattr(backend, "apply_chat_template", None)
            k = sampling.samples
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                t = time.perf_counter()
                gens = backend.generate(requests_for(batch, sampling, seed, chat))
                latency = time.perf_counter() - t
                jobs = [(g.text, ex) for i, ex in enumerate(batch) for g in gens[i * k : (i + 1) * k]]
                scored = list(pool.map(lambda j: score_generation(task, j[0], j[1]), jobs))
                records = [
                    make_record(task, model, ex, gens[i * k : (i + 1) * k], scored[i * k : (i + 1) * k], latency)
                    for i, ex in enumerate(batch)
                ]
                append_jsonl(predictions, records)
                done.update((r["id"], r) for r in records)
                if on_batch is not None:
                    on_batch(records, gens, latency)
                log(f"  {start + len(batch)}/{len(todo)} ({latency:.2f}s)")
        finally:
            pool.shutdown()
            backend.close()
    return [done[ex["id"]] for ex in examples]


def run_in_job(
    task: Task,
    examples: list[dict],
    out: Path,
    model: ModelConfig,
    *,
    backend: str,
    backend_options: dict,
    batch_size: int,
    device: str,
    seed: int,
    started: float,
) -> tuple[list[dict], dict]:
    """`run` as a job runs it (inference, RAG): into `out`/predictions.jsonl, the backend opened
    only when there is work (its load timed), the hardware measured meanwhile, and the run's
    accounting kept in `out`/.progress.json across resumed sessions, rewritten after every batch:
    generate_s, completion_tokens, load_time_s, wall_time_s (from `started`), hardware, api (an
    API backend's calls/retries/back-off). Returns (records, progress)."""
    from orchestrator.generation.backends import load_backend
    from orchestrator.generation.hardware import HardwareMonitor
    from orchestrator.generation.models import disk_size_gb, ensure_built

    progress_file = out / paths.PROGRESS_FILE
    try:
        progress = read_json(progress_file)
    except (OSError, ValueError):
        progress = {}
    for key in ("generate_s", "wall_time_s", "completion_tokens"):
        progress.setdefault(key, 0)
    opened: list[Backend] = []

    def open_backend() -> Backend:
        ensure_built(model)
        t0 = time.perf_counter()
        options = {"batch_size": batch_size, "device": device, **backend_options}
        opened.append(load_backend(backend, model, **options))
        progress["load_time_s"] = time.perf_counter() - t0
        return opened[0]

    def on_batch(records: list[dict], gens: list[Generation], latency: float) -> None:
        progress["completion_tokens"] += sum(g.completion_tokens for g in gens)
        progress["generate_s"] += latency
        write_json_atomic(progress_file, progress)

    hw = HardwareMonitor().start()
    try:
        records = run(
            task,
            examples,
            out / paths.PREDICTIONS_FILE,
            open_backend,
            model=model.name,
            sampling=task.sampling(model.generation),
            batch_size=batch_size,
            seed=seed,
            on_batch=on_batch,
        )
    finally:
        hw.stop()
    hardware = hw.metrics()
    if hardware["gpu_name"] is None and progress.get("hardware"):
        hardware = progress["hardware"]  # a resumed session that only finalised keeps the GPU session's
    hardware["model_disk_gb"] = None if model.remote else disk_size_gb(model.path)
    progress["hardware"] = hardware
    progress["wall_time_s"] += time.perf_counter() - started
    stats = getattr(opened[0], "stats", None) if opened else None
    if stats is not None:
        progress["api"] = {k: progress.get("api", {}).get(k, 0) + v for k, v in vars(stats).items()}
    write_json_atomic(progress_file, progress)
    return records, progress
