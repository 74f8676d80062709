"""The inference job: one model on one task, resumable, scored, with calibration and hardware.

Called in the job as `run_inference(run_dir=..., experiment=..., model={...}, task={...}, ...)`
(the `inference`/`sweep` kinds plan it), or directly from Python. Writes to the run dir
(formats: docs/architecture.md "Result file formats"):

- predictions.jsonl: one record per example, appended + flushed + fsynced once per batch. On a
  rerun, the examples already there are skipped; a torn last line (a kill mid-write) is cut off
  first, so a kill at any moment loses at most the batch in flight and never duplicates one.
- results.json and summary.json (metrics, calibration AUROC/ECE, tokens/s, wall and load time,
  hardware), written atomically once every example is done; a CSV export when the task has one.
- W&B (offline unless WANDB_MODE/`wandb.mode` says otherwise): the summary and a per-example
  table, grouped by experiment.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.core import paths
from orchestrator.core.runner import write_json_atomic
from orchestrator.generation.backends.base import Generation, Request
from orchestrator.generation.models import ModelConfig, disk_size_gb, ensure_built
from orchestrator.generation.tasks import TaskConfig, build_examples, render_csv_row
from orchestrator.scoring.metrics import auroc, confidence_from_logprobs, expected_calibration_error
from orchestrator.scoring.scorers import load_scorer

SCHEMA_VERSION = 1
PROGRESS_FILE = ".progress.json"  # timing accounting across resumed sessions


# --------------------------------------------------------------------------- predictions file


def read_predictions(path: Path) -> list[dict]:
    """Complete records of a predictions file; a torn last line (a kill mid-write) is cut off
    the file itself so the next append starts on a fresh line. Duplicates: the first wins."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    records, seen = [], set()
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec["id"] not in seen:
            seen.add(rec["id"])
            records.append(rec)
    return records


def append_records(path: Path, records: list[dict]) -> None:
    """Append a batch of records with one write, then fsync: the batch is on disk or not started."""
    payload = "".join(json.dumps(r, ensure_ascii=False, default=_jsonable) + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "isoformat"):
        return x.isoformat()
    return str(x)


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


# --------------------------------------------------------------------------- scoring


def score_record(task: TaskConfig, prediction: str, gold: Any) -> tuple[dict[str, float], bool | None]:
    scores = load_scorer(task.scorer)(prediction, gold)
    value = scores.get(task.correct.metric)
    return scores, (None if value is None else bool(value >= task.correct.threshold))


def summarize_metrics(records: list[dict]) -> dict[str, float | None]:
    keys = sorted({k for r in records for k in r["scores"]})
    out = {}
    for k in keys:
        vals = [r["scores"][k] for r in records if r["scores"].get(k) is not None]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


def calibration(records: list[dict], which: str = "mean") -> dict[str, float | None]:
    """AUROC and ECE of confidence (exp mean token logprob) against correctness; None where
    undefined (no confident records, or only one class for AUROC)."""
    pairs = [
        (r["confidence"][which], r["correct"])
        for r in records
        if r["confidence"].get(which) is not None and r["correct"] is not None
    ]
    if not pairs:
        return {"auroc": None, "ece": None}
    conf, corr = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"auroc": _finite(auroc(conf, corr)), "ece": _finite(expected_calibration_error(conf, corr))}


# --------------------------------------------------------------------------- the job


def run_inference(
    run_dir: str,
    experiment: str,
    model: dict,
    task: dict,
    backend: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    smoke: bool = False,
    seed: int = 0,
    device: str = "auto",
    backend_options: dict | None = None,
    wandb: dict | None = None,
) -> int:
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_cfg = ModelConfig.model_validate(model)
    task_cfg = TaskConfig.model_validate(task)
    backend_name = backend or model_cfg.backend
    config = {
        "model": model_cfg.model_dump(mode="json"),
        "task": task_cfg.model_dump(mode="json"),
        "backend": backend_name,
        "batch_size": batch_size,
        "limit": limit,
        "smoke": smoke,
        "seed": seed,
        "device": device,
        "backend_options": backend_options or {},
        "experiment": experiment,
    }

    examples = build_examples(task_cfg, limit=limit, seed=seed, smoke=smoke)
    pred_path = out / paths.PREDICTIONS_FILE
    done = {r["id"]: r for r in read_predictions(pred_path)}
    todo = [ex for ex in examples if ex["id"] not in done]
    progress = _read_progress(out)
    print(
        f"inference {model_cfg.name} × {task_cfg.name}: {len(examples)} examples, {len(examples) - len(todo)} "
        f"already done, {len(todo)} to run",
        flush=True,
    )

    from orchestrator.generation.hardware import HardwareMonitor

    hw = HardwareMonitor().start()
    try:
        if todo:
            ensure_built(model_cfg)
            new = _generate(
                model_cfg,
                task_cfg,
                backend_name,
                todo,
                batch_size,
                device,
                backend_options or {},
                seed,
                pred_path,
                out,
                progress,
            )
            done.update({r["id"]: r for r in new})
    finally:
        hw.stop()

    records = [done[ex["id"]] for ex in examples]
    progress["wall_time_s"] = progress.get("wall_time_s", 0.0) + (time.perf_counter() - started)
    hardware = hw.metrics()
    if hardware["gpu_name"] is None and progress.get("hardware"):
        hardware = progress["hardware"]  # a resumed session that only finalised keeps the GPU session's
    hardware["model_disk_gb"] = disk_size_gb(model_cfg.path)
    progress["hardware"] = hardware
    write_json_atomic(out / PROGRESS_FILE, progress)

    summary = {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "model": model_cfg.name,
        "task": task_cfg.name,
        "n": len(records),
        "metrics": summarize_metrics(records),
        "calibration": calibration(records),
        "throughput_tokens_per_s": (
            progress["completion_tokens"] / progress["generate_s"] if progress.get("generate_s") else None
        ),
        "wall_time_s": progress["wall_time_s"],
        "load_time_s": progress.get("load_time_s"),
        "hardware": hardware,
    }
    write_json_atomic(
        out / paths.RESULTS_FILE, {"schema_version": SCHEMA_VERSION, "config": config, "examples": records}
    )
    if task_cfg.csv is not None:
        _write_csv(out / task_cfg.csv.file, task_cfg, records, examples)
    write_json_atomic(out / paths.SUMMARY_FILE, summary)
    print(f"done: {json.dumps(summary['metrics'])} calibration {json.dumps(summary['calibration'])}", flush=True)
    if wandb is None or wandb.get("enabled", True):
        log_wandb(experiment, out.name, summary, records, wandb or {})
    return 0


def _read_progress(out: Path) -> dict:
    try:
        return json.loads((out / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return {"completion_tokens": 0, "generate_s": 0.0}


def _generate(
    model: ModelConfig,
    task: TaskConfig,
    backend_name: str,
    todo: list[dict],
    batch_size: int,
    device: str,
    backend_options: dict,
    seed: int,
    pred_path: Path,
    out: Path,
    progress: dict,
) -> list[dict]:
    from orchestrator.generation.backends import load_backend

    t0 = time.perf_counter()
    options = dict(backend_options)
    if backend_name == "transformers":
        options.setdefault("batch_size", batch_size)
        options.setdefault("device", device)
    backend = load_backend(backend_name, model, **options)
    progress["load_time_s"] = time.perf_counter() - t0
    chat = getattr(backend, "apply_chat_template", None)
    gen = model.generation
    tg = task.generation
    settings = dict(
        max_new_tokens=tg.max_new_tokens or gen.max_new_tokens,
        temperature=gen.temperature if tg.temperature is None else tg.temperature,
        top_p=gen.top_p if tg.top_p is None else tg.top_p,
        stop=tuple(gen.stop if tg.stop is None else tg.stop),
    )
    written = []
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            reqs = [
                Request(
                    id=ex["id"],
                    prompt=chat(ex["prompt"]) if chat else ex["prompt"],
                    seed=seed if settings["temperature"] > 0 else None,
                    **settings,
                )
                for ex in batch
            ]
            t = time.perf_counter()
            gens = backend.generate(reqs)
            latency = time.perf_counter() - t
            records = [_record(model, task, ex, g, latency) for ex, g in zip(batch, gens)]
            append_records(pred_path, records)
            written += records
            progress["completion_tokens"] = progress.get("completion_tokens", 0) + sum(
                g.completion_tokens for g in gens
            )
            progress["generate_s"] = progress.get("generate_s", 0.0) + latency
            write_json_atomic(out / PROGRESS_FILE, progress)
            print(f"  {start + len(batch)}/{len(todo)} ({latency:.2f}s)", flush=True)
    finally:
        backend.close()
    return written


def _record(model: ModelConfig, task: TaskConfig, ex: dict, g: Generation, latency: float) -> dict:
    scores, correct = score_record(task, g.text, ex["gold"])
    return {
        "schema_version": SCHEMA_VERSION,
        "id": ex["id"],
        "task": task.name,
        "model": model.name,
        "domain": ex["domain"],
        "prompt": ex["prompt"],
        "prediction": g.text,
        "gold": ex["gold"],
        "scores": scores,
        "correct": correct,
        "confidence": confidence_from_logprobs(g.token_logprobs),
        "latency_s": latency,
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "finish_reason": g.finish_reason,
    }


def _write_csv(path: Path, task: TaskConfig, records: list[dict], examples: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(task.csv.columns))
    writer.writeheader()
    for rec, ex in zip(records, examples):
        writer.writerow(render_csv_row(task, {**rec, "row": ex["row"]}))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- W&B


def log_wandb(experiment: str, run: str, summary: dict, records: list[dict], options: dict) -> str | None:
    """Log the summary and a per-example table to W&B (group = experiment); offline unless
    configured. Returns the W&B run directory, or None when logging was not possible (a
    warning, never a failed run)."""
    try:
        import wandb
    except ImportError:
        print("warning: wandb is not installed; skipping W&B logging", file=sys.stderr)
        return None
    mode = options.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    directory = paths.wandb_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        wb = wandb.init(
            project=options.get("project") or "orchestrator",
            group=experiment,
            name=run,
            job_type="inference",
            dir=str(directory),
            mode=mode,
            config=summary["config"],
            reinit=True,
        )
        flat = {f"metrics/{k}": v for k, v in summary["metrics"].items()}
        flat.update({f"calibration/{k}": v for k, v in summary["calibration"].items()})
        flat.update({f"hardware/{k}": v for k, v in summary["hardware"].items() if not isinstance(v, str)})
        flat.update(
            n=summary["n"],
            throughput_tokens_per_s=summary["throughput_tokens_per_s"],
            wall_time_s=summary["wall_time_s"],
            load_time_s=summary["load_time_s"],
        )
        wb.summary.update({k: v for k, v in flat.items() if v is not None})
        columns = ["id", "prediction", "gold", "correct", "confidence_mean", "latency_s", "completion_tokens"]
        table = wandb.Table(
            columns=columns,
            data=[
                [
                    r["id"],
                    r["prediction"],
                    json.dumps(r["gold"], default=str),
                    r["correct"],
                    r["confidence"]["mean"],
                    r["latency_s"],
                    r["completion_tokens"],
                ]
                for r in records
            ],
        )
        wb.log({"examples": table})
        run_dir = wb.dir
        wb.finish()
        return run_dir
    except Exception as e:  # noqa: BLE001 -- W&B trouble must not fail an inference run
        print(f"warning: W&B logging failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m orchestrator.kinds.inference.job ARGS.json`: run_inference with the keyword arguments in the file."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(
            "usage: python -m orchestrator.kinds.inference.job ARGS.json  (run_inference keyword arguments)",
            file=sys.stderr,
        )
        return 2
    return run_inference(**json.loads(Path(argv[0]).read_text()))


if __name__ == "__main__":
    sys.exit(main())
