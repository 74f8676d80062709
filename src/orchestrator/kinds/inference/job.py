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
from orchestrator.core.files import write_atomic
from orchestrator.core.plan import UnitArgs
from orchestrator.core.records import RunResults
from orchestrator.generation import pipeline
from orchestrator.generation.examples import build_examples, render_csv_row
from orchestrator.generation.models import ModelConfig
from orchestrator.generation.task import Task
from orchestrator.kinds.inference.records import InferenceSummary
from orchestrator.scoring.metrics import auroc, expected_calibration_error


class InferenceArgs(UnitArgs):
    """What one inference unit runs: `run_inference(run_dir, experiment, **args.kwargs())`."""

    model: ModelConfig
    task: Task
    backend: str | None = None  # default: the model's own
    batch_size: int = 8
    limit: int | None = None
    smoke: bool = False
    seed: int = 0
    device: str = "auto"
    backend_options: dict[str, Any] = {}
    wandb: dict[str, Any] | None = None
    gpus: int | None = None  # what the plan asked for (shown by --dry-run, kept in the config)

    def describe(self) -> str:
        gpus = "" if self.gpus is None else f" gpus={self.gpus}"
        return f"model={self.model.name} task={self.task.name}{gpus}"


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


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
    model: ModelConfig | dict,
    task: Task | dict,
    backend: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    smoke: bool = False,
    seed: int = 0,
    device: str = "auto",
    backend_options: dict | None = None,
    wandb: dict | None = None,
    gpus: int | None = None,
) -> int:
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_cfg = ModelConfig.model_validate(model)
    task_cfg = Task.model_validate(task)
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
    records, progress = pipeline.run_in_job(
        task_cfg,
        examples,
        out,
        model_cfg,
        backend=backend_name,
        backend_options=backend_options or {},
        batch_size=batch_size,
        device=device,
        seed=seed,
        started=started,
    )

    summary_file = InferenceSummary(
        config=config,
        model=model_cfg.name,
        task=task_cfg.name,
        n=len(records),
        metrics=summarize_metrics(records),
        calibration=calibration(records),
        throughput_tokens_per_s=(
            progress["completion_tokens"] / progress["generate_s"] if progress.get("generate_s") else None
        ),
        wall_time_s=progress["wall_time_s"],
        load_time_s=progress.get("load_time_s"),
        hardware=progress["hardware"],
    )
    RunResults(config=config, examples=records).write(out / paths.RESULTS_FILE)
    if task_cfg.csv is not None:
        _write_csv(out / task_cfg.csv.file, task_cfg, records, examples)
    summary_file.write(out / paths.SUMMARY_FILE)
    summary = summary_file.dump()
    print(f"done: {json.dumps(summary['metrics'])} calibration {json.dumps(summary['calibration'])}", flush=True)
    if wandb is None or wandb.get("enabled", True):
        log_wandb(experiment, out.name, summary, records, wandb or {})
    return 0


def _write_csv(path: Path, task: Task, records: list[dict], examples: list[dict]) -> None:
    assert task.csv is not None
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(task.csv.columns))
    writer.writeheader()
    for rec, ex in zip(records, examples):
        writer.writerow(render_csv_row(task, {**rec, "row": ex["row"]}))
    write_atomic(path, buf.getvalue())


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
