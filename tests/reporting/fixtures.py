"""Fixture experiments in the documented result formats (docs/architecture.md), for report tests
and benchmarks. Everything is written under the current ORCH_HOME and is deterministic.

- `training_experiment("mtl")`: arms baseline and pcgrad; metrics.jsonl (pcgrad stops early and logs
  gradient-conflict diagnostics), summaries, evaluations of epoch_1..3 on two domains × two tasks with
  per-example results, registry jobs (train on 2 GPUs, an eval array with one failed task and its log).
  pcgrad is built to be clearly better on math, clearly worse on code/mbpp, and equal on code/humaneval.
- `sweep_experiment("sweep")`: three models × two tasks of inference runs with audit problems planted.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from orchestrator.core import paths
from orchestrator.core.registry import Registry

T0 = 1_700_000_000.0  # fixed clock: reports must not depend on when the fixture was built
DOMAINS = {"math": ["gsm8k", "math500"], "code": ["humaneval", "mbpp"]}
# per (arm, task): accuracy at epochs 1, 2, 3
ACCURACY = {
    ("baseline", "gsm8k"): [0.40, 0.50, 0.52],
    ("pcgrad", "gsm8k"): [0.45, 0.62, 0.70],
    ("baseline", "math500"): [0.30, 0.36, 0.38],
    ("pcgrad", "math500"): [0.33, 0.45, 0.50],
    ("baseline", "humaneval"): [0.50, 0.55, 0.55],
    ("pcgrad", "humaneval"): [0.50, 0.56, 0.56],
    ("baseline", "mbpp"): [0.60, 0.70, 0.68],
    ("pcgrad", "mbpp"): [0.62, 0.66, 0.50],
}
N_EXAMPLES = 200


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def correctness(accuracy: float, n: int, seed: int, base: np.ndarray | None = None) -> np.ndarray:
    """n booleans with exactly round(accuracy*n) True; near `base` (flipping as few as needed) when
    given, so two arms are paired the way a real model and its fine-tune are."""
    k = round(accuracy * n)
    rng = np.random.default_rng(seed)
    if base is None:
        out = np.zeros(n, dtype=bool)
        out[rng.permutation(n)[:k]] = True
        return out
    out = base.copy()
    diff = k - int(out.sum())
    pool = np.flatnonzero(~out if diff > 0 else out)
    out[rng.permutation(pool)[: abs(diff)]] = diff > 0
    return out


def eval_record(
    experiment: str, arm: str, epoch: int, domain: str, task: str, correct: np.ndarray, metric: str = "accuracy"
) -> dict:
    return {
        "schema_version": 1,
        "config": {"suite": "fixture", "task": task},
        "experiment": experiment,
        "arm": arm,
        "checkpoint": f"epoch_{epoch}",
        "epoch": epoch,
        "domain": domain,
        "task": task,
        "n": len(correct),
        "metrics": {metric: float(correct.mean()), "n_correct": int(correct.sum())},
        "primary_metric": metric,
        "higher_is_better": True,
        "per_example": [{"id": f"{task}-{i}", "correct": bool(c), "score": float(c)} for i, c in enumerate(correct)],
    }


def _register(
    experiment: str,
    stage: str,
    runs: list[dict],
    script: str | None,
    executor: str = "slurm",
    scheduler_id: str = "1001",
) -> None:
    """One job of `runs` (each: run, state, exit_code, node, started, ended, reason, log)."""
    reg = Registry()
    try:
        reg.add_experiment(experiment, "fixture", f"jobs/{experiment}.yaml", json.dumps({"name": experiment}))
        folder = paths.stage_dir(experiment, stage)
        folder.mkdir(parents=True, exist_ok=True)
        job = reg.add_job(
            scheduler_id, executor, experiment, stage, str(folder), script, [(r["run"], []) for r in runs], []
        )
        tasks = [t for t in reg.tasks(experiment, latest=False) if t.job == job]
        reg.update_tasks(
            [
                (t, {k: r[k] for k in ("state", "exit_code", "node", "started", "ended", "reason") if k in r})
                for t, r in zip(tasks, runs)
            ]
        )
        for t, r in zip(tasks, runs):
            if r.get("log"):
                t.state = r["state"]
                t.log.with_suffix(".err").write_text(r["log"])
    finally:
        reg.close()


def training_experiment(experiment: str = "mtl", epochs: dict[str, int] | None = None) -> None:
    epochs = epochs or {"baseline": 4, "pcgrad": 3}
    for arm, n_epochs in epochs.items():
        arm_dir = paths.run_dir(experiment, arm)
        lines = []
        for e in range(1, n_epochs + 1):
            rec = {
                "schema_version": 1,
                "epoch": e,
                "step": 100 * e,
                "train/loss": round(2.0 / e, 4),
                "train/reward_mean": round(0.3 + 0.05 * e, 4),
                "time_s": 600.0,
            }
            k = min(e, 3) - 1
            for dom, tasks in DOMAINS.items():
                rec[f"val/{dom}/reward"] = round(sum(ACCURACY[(arm, t)][k] for t in tasks) / len(tasks), 4)
            rec["val/reward_mean"] = round(sum(rec[f"val/{d}/reward"] for d in DOMAINS) / len(DOMAINS), 4)
            if arm == "pcgrad":
                rec["grad/cosine/code,math"] = round(-0.3 + 0.1 * e, 4)
                rec["grad/conflict_fraction"] = round(0.6 - 0.1 * e, 4)
            lines.append(rec)
        _write_jsonl(arm_dir / paths.METRICS_FILE, lines)
        stopped = arm == "pcgrad"
        _write_json(
            arm_dir / paths.SUMMARY_FILE,
            {
                "schema_version": 1,
                "config": {"arm": arm, "lr": 1e-5},
                "arm": arm,
                "final": lines[-1],
                "best": {"epoch": 3, "metric": "val/reward_mean", "value": lines[2]["val/reward_mean"]},
                "stopped_early": stopped,
                "stop_epoch": n_epochs if stopped else None,
                "stop_reason": "no improvement of val/reward_mean for 1 validation(s)"
                if stopped
                else "max_epochs reached",
                "wall_time_s": 600.0 * n_epochs,
                "device_hours": 2 * 600.0 * n_epochs / 3600,
            },
        )
    for (arm, task), accs in sorted(ACCURACY.items()):
        domain = next(d for d, ts in DOMAINS.items() if task in ts)
        for e, acc in enumerate(accs, 1):
            base = correctness(ACCURACY[("baseline", task)][e - 1], N_EXAMPLES, seed=hash_seed(task, e))
            cur = base if arm == "baseline" else correctness(acc, N_EXAMPLES, seed=hash_seed(task, e, 1), base=base)
            _write_json(
                paths.eval_result(experiment, arm, f"epoch_{e}", task),
                eval_record(experiment, arm, e, domain, task, cur),
            )
    script = "#!/bin/bash\n#SBATCH --nodes=1\n#SBATCH --gpus-per-node=2\nsrun python -m submitit.core._submit\n"
    _register(
        experiment,
        "train",
        [
            {
                "run": arm,
                "state": "COMPLETED",
                "exit_code": 0,
                "node": f"node{i + 1}",
                "started": T0,
                "ended": T0 + 600.0 * n,
            }
            for i, (arm, n) in enumerate(sorted(epochs.items()))
        ],
        script,
    )
    eval_exp = paths.eval_experiment(experiment)
    runs = [
        {
            "run": paths.eval_run(arm, "epoch_3", task),
            "state": "COMPLETED",
            "exit_code": 0,
            "node": "node2",
            "started": T0 + 3000,
            "ended": T0 + 3000 + 120,
        }
        for arm, task in sorted(ACCURACY)
    ]
    # epoch_4 of baseline: the job died while writing its result, leaving a torn file
    runs.append(
        {
            "run": paths.eval_run("baseline", "epoch_4", "gsm8k"),
            "state": "FAILED",
            "exit_code": 1,
            "node": "node2",
            "started": T0 + 3000,
            "ended": T0 + 3000 + 60,
            "reason": "command exited with 1",
            "log": "loading checkpoint\nTraceback (most recent call last):\nRuntimeError: CUDA out of memory\n",
        }
    )
    torn = paths.eval_result(experiment, "baseline", "epoch_4", "gsm8k")
    torn.parent.mkdir(parents=True, exist_ok=True)
    torn.write_text('{"schema_version": 1, "arm": "base')
    _register(eval_exp, "eval", runs, "#!/bin/bash\n#SBATCH --gpus-per-node=1\n", scheduler_id="1002")


def hash_seed(*parts: object) -> int:
    """A stable seed from parts (Python's hash() of str is salted per process)."""
    return zlib.crc32(json.dumps(parts).encode())


# --------------------------------------------------------------------------- inference sweep

MODELS = {"tiny-1b": 1.0, "mid-7b": 7.0, "big-70b": 70.0}
SWEEP_TASKS = {"coqa": "reading", "gsm8k": "math"}
SWEEP_ACC = {"tiny-1b": 0.3, "mid-7b": 0.6, "big-70b": 0.8}
N_QUESTIONS = 20


def _prediction(model: str, task: str, i: int, correct: bool) -> str:
    return f"gold {task} {i}" if correct else f"wrong {model} {i}"


def sweep_experiment(experiment: str = "sweep") -> None:
    """Planted: tiny-1b × coqa lacks token counts on 3 examples and has one error (no prediction);
    mid-7b × gsm8k has one example 10x slower and one duplicated id; big-70b × coqa also has a
    second run directory (a duplicate run); the registry job of big-70b × gsm8k failed (exit 137)."""
    for model, size in MODELS.items():
        for task, domain in SWEEP_TASKS.items():
            correct = correctness(SWEEP_ACC[model], N_QUESTIONS, seed=hash_seed(model, task))
            recs = []
            for i, c in enumerate(correct):
                rec = {
                    "schema_version": 1,
                    "id": f"q{i}",
                    "task": task,
                    "model": model,
                    "domain": domain,
                    "prompt": f"question {i}",
                    "prediction": _prediction(model, task, i, bool(c)),
                    "gold": f"gold {task} {i}",
                    "scores": {"em": float(c), "f1": float(c)},
                    "correct": bool(c),
                    "confidence": {
                        "mean": round(0.5 + 0.4 * float(c) * SWEEP_ACC[model] + 0.01 * (i % 5), 4),
                        "total": 0.1,
                    },
                    "latency_s": round(0.1 * size**0.5 + 0.001 * i, 4),
                    "prompt_tokens": 50,
                    "completion_tokens": 8,
                    "finish_reason": "stop",
                }
                recs.append(rec)
            if (model, task) == ("tiny-1b", "coqa"):
                for r in recs[:3]:
                    r["prompt_tokens"] = r["completion_tokens"] = None
                recs[5].update(prediction=None, correct=False, finish_reason="error")
            if (model, task) == ("mid-7b", "gsm8k"):
                recs[4]["latency_s"] = round(recs[4]["latency_s"] * 10, 4)
                recs.append(dict(recs[7]))
            run_dir = paths.run_dir(experiment, paths.inference_run(model, task))
            _write_jsonl(run_dir / paths.PREDICTIONS_FILE, recs)
            judged = [r["correct"] for r in recs if r["correct"] is not None]
            summary = {
                "schema_version": 1,
                "config": {"model": {"name": model, "params_b": size}, "task": task},
                "model": model,
                "task": task,
                "n": len(recs),
                "metrics": {"em": sum(judged) / len(judged), "f1": sum(judged) / len(judged)},
                "calibration": {"auroc": round(0.6 + 0.05 * size**0.25, 4), "ece": round(0.2 / size**0.25, 4)},
                "throughput_tokens_per_s": round(400 / size**0.5, 2),
                "wall_time_s": 10.0 * size**0.5,
                "load_time_s": 2.0,
                "hardware": {
                    "gpu_name": None,
                    "gpu_count": 1,
                    "gpu_memory_total_gb": 80.0,
                    "gpu_memory_peak_gb": size * 2.2,
                    "energy_wh": round(size * 1.5, 2),
                    "power_avg_w": 300.0,
                    "power_peak_w": 400.0,
                    "model_disk_gb": size * 2,
                },
            }
            _write_json(run_dir / paths.SUMMARY_FILE, summary)
            if (model, task) == ("big-70b", "coqa"):
                dup = paths.run_dir(experiment, paths.inference_run(model, task) + "-rerun")
                _write_jsonl(dup / paths.PREDICTIONS_FILE, recs[:5])
                _write_json(dup / paths.SUMMARY_FILE, summary)
    runs = [
        {
            "run": paths.inference_run(m, t),
            "state": "COMPLETED",
            "exit_code": 0,
            "node": "node1",
            "started": T0,
            "ended": T0 + 60,
        }
        for m in MODELS
        for t in SWEEP_TASKS
    ]
    runs[-1].update(state="FAILED", exit_code=137, reason="killed (OOM)", log="OOM killer\n")
    _register(experiment, "infer", runs, "#!/bin/bash\n#SBATCH --gpus-per-node=1\n", scheduler_id="2001")


# --------------------------------------------------------------------------- judge

JUDGE_MODELS = {"tiny-1b": 0.4, "big-70b": 0.8}  # judged accuracy planted per model
JUDGE_TASKS = {"gsm8k": "MATH", "medqa": "MED"}
N_JUDGED = 10
RATE_LIMITED = "gave up after 8 attempts: RateLimitError: Error code: 429"


def judge_experiment(experiment: str = "jt") -> None:
    """A judge experiment over two models × two tasks, written with the judge's own record and
    summary code (kinds.judge.verdicts / job). Planted: big-70b × medqa has 2 items without a
    verdict (rate limited: 8 attempts each) and 14 retries over 24 calls; tiny-1b × medqa was killed before
    judge_summary.json (its counts come from judged.jsonl); every other run has no retries."""
    from orchestrator.kinds.judge.job import summarise
    from orchestrator.kinds.judge.verdicts import Verdict, judged_record

    runs = []
    for model, acc in JUDGE_MODELS.items():
        for task, tag in JUDGE_TASKS.items():
            run = paths.inference_run(model, task)
            run_dir = paths.run_dir(experiment, run)
            correct = correctness(acc, N_JUDGED, seed=hash_seed("judge", model, task))
            records = []
            for i, c in enumerate(correct):
                pred = {
                    "schema_version": 1,
                    "id": f"{task}-{i}",
                    "task": task,
                    "model": model,
                    "domain": task,
                    "prompt": f"question {i}",
                    "prediction": f"answer {i}" if c else f"wrong {i}",
                    "gold": f"answer {i}",
                }
                if (model, task) == ("big-70b", "medqa") and i in (3, 4):
                    verdict = Verdict(None, "", "judge-model", attempts=8, error=RATE_LIMITED)
                else:
                    verdict = Verdict(bool(c), "planted", "judge-model", raw="{}", attempts=1)
                records.append(judged_record(pred, verdict, tag))
            _write_jsonl(run_dir / paths.JUDGED_FILE, records)
            if (model, task) == ("tiny-1b", "medqa"):
                continue  # killed before its summary
            retries = 2 * 7 if (model, task) == ("big-70b", "medqa") else 0  # the two items without verdict
            _write_json(
                run_dir / paths.JUDGE_SUMMARY_FILE,
                {
                    "schema_version": 1,
                    "config": {"type": "llm", "model": "judge-model", "api_key_env": "OPENAI_API_KEY"},
                    "experiment": experiment,
                    "predictions": f"/data/infer/{run}/predictions.jsonl",
                    "judge": "judge-model",
                    **summarise(run_dir / paths.JUDGED_FILE),
                    "duplicates_in_input": 0,
                    "skipped_already_judged": 0,
                    "calls": N_JUDGED + retries,
                    "retries": retries,
                    "backoff_s": 12.5 if retries else 0.0,
                    "wall_time_s": 30.0,
                },
            )
            runs.append(run)
    _register(
        experiment,
        "judge",
        [
            {"run": r, "state": "COMPLETED", "exit_code": 0, "node": "node1", "started": T0, "ended": T0 + 30}
            for r in sorted(runs)
        ]
        + [
            {
                "run": paths.inference_run("tiny-1b", "medqa"),
                "state": "TIMEOUT",
                "exit_code": 0,
                "node": "node2",
                "started": T0,
                "ended": T0 + 7200,
                "reason": "time limit",
            }
        ],
        "#!/bin/bash\n#SBATCH --nodes=1\n",
        scheduler_id="3001",
    )
