"""Aggregating 10,000 result records into a report: wall time (target ≤ 2 s).

A fixture experiment in the documented formats: 2 arms × 25 checkpoints × 20 tasks (4 domains)
of evaluation files (8 metrics and 100 per-example results each), 25 epochs of training metrics per
arm, 1,250 registry jobs; plus a sweep of 5 models × 4 tasks. Measured: `collect` + `write_report`
in one process (what `orchestrate report` does after start-up), and the CLI end to end.

    python benchmarks/bench_report.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ORCHESTRATE, REPO

ARMS, EPOCHS, DOMAINS, TASKS_PER_DOMAIN, N_PER_EXAMPLE = ("baseline", "pcgrad"), 25, 4, 5, 100


def build(experiment: str) -> None:
    import numpy as np

    from orchestrator.core import paths
    from orchestrator.core.registry import Registry

    rng = np.random.default_rng(0)
    tasks = [(f"d{d}", f"d{d}_t{t}") for d in range(DOMAINS) for t in range(TASKS_PER_DOMAIN)]
    for arm in ARMS:
        lines = []
        for e in range(1, EPOCHS + 1):
            rec = {
                "schema_version": 1,
                "epoch": e,
                "step": e * 10,
                "train/loss": 1 / e,
                "train/kl": 0.01 * e,
                "val/reward_mean": 0.5,
                "grad/conflict_fraction": 0.3,
                "grad/cosine/d0,d1": -0.1,
                "time_s": 60.0,
            }
            rec.update({f"val/d{d}/reward": float(rng.random()) for d in range(DOMAINS)})
            lines.append(json.dumps(rec))
        (paths.run_dir(experiment, arm)).mkdir(parents=True, exist_ok=True)
        (paths.run_dir(experiment, arm) / paths.METRICS_FILE).write_text("\n".join(lines) + "\n")
        for e in range(1, EPOCHS + 1):
            for domain, task in tasks:
                correct = rng.random(N_PER_EXAMPLE) < 0.5
                metrics = {"accuracy": float(correct.mean()), **{f"m{i}": float(rng.random()) for i in range(7)}}
                path = paths.eval_dir(experiment) / arm / f"epoch_{e}" / f"{task}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(
                    json.dumps(
                        {
                            "schema_version": 1,
                            "config": {},
                            "experiment": experiment,
                            "arm": arm,
                            "checkpoint": f"epoch_{e}",
                            "epoch": e,
                            "domain": domain,
                            "task": task,
                            "n": N_PER_EXAMPLE,
                            "metrics": metrics,
                            "primary_metric": "accuracy",
                            "higher_is_better": True,
                            "per_example": [
                                {"id": str(i), "correct": bool(c), "score": float(c)} for i, c in enumerate(correct)
                            ],
                        }
                    )
                )
    for m in range(5):
        for t in range(4):
            run = paths.run_dir(experiment, f"model{m}__task{t}")
            run.mkdir(parents=True, exist_ok=True)
            preds = [
                {
                    "id": f"q{i}",
                    "model": f"model{m}",
                    "task": f"task{t}",
                    "prediction": str(i % (m + 2)),
                    "correct": bool(i % (m + 2) == 0),
                    "confidence": {"mean": 0.5},
                    "latency_s": 0.1,
                    "prompt_tokens": 10,
                    "completion_tokens": 2,
                    "finish_reason": "stop",
                }
                for i in range(50)
            ]
            (run / paths.PREDICTIONS_FILE).write_text("".join(json.dumps(p) + "\n" for p in preds))
            (run / paths.SUMMARY_FILE).write_text(
                json.dumps(
                    {
                        "schema_version": 1,
                        "config": {"model": {"params_b": m + 1}},
                        "model": f"model{m}",
                        "task": f"task{t}",
                        "n": 50,
                        "metrics": {"em": 0.5, "f1": 0.6},
                        "calibration": {"auroc": 0.7, "ece": 0.1},
                        "throughput_tokens_per_s": 100.0,
                        "wall_time_s": 10.0,
                        "load_time_s": 1.0,
                        "hardware": {"energy_wh": 1.0, "gpu_count": 1},
                    }
                )
            )
    reg = Registry()
    runs = [(f"run{i}", []) for i in range(1250)]
    job = reg.add_job(  # one transaction of its own
        "9001",
        "slurm",
        experiment,
        "eval",
        str(paths.stage_dir(experiment, "eval")),
        "#SBATCH --gpus-per-node=1\n",
        runs,
        [],
    )
    tasks_ = reg.tasks(experiment)
    reg.update_tasks(
        [
            (
                t,
                {
                    "state": "COMPLETED" if t.task % 50 else "FAILED",
                    "exit_code": 0 if t.task % 50 else 1,
                    "started": 1e9,
                    "ended": 1e9 + 60,
                },
            )
            for t in tasks_
            if t.job == job
        ]
    )
    reg.close()


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-bench-report-"))
    os.environ["ORCH_HOME"] = str(home)
    sys.path.insert(0, str(REPO / "src"))
    build("bench")
    from orchestrator.reporting.report import write_report
    from orchestrator.reporting.results import collect

    start, cpu0 = time.perf_counter(), time.process_time()
    res = collect("bench")
    collected = time.perf_counter()
    report = write_report(res)
    done, cpu = time.perf_counter(), time.process_time() - cpu0
    n = len(res.rows)
    per_example = sum(len(v) for v in res.per_example.values())
    print(
        f"aggregated {n} result records ({per_example} per-example scores, {len(res.examples)} predictions) "
        f"into {report.relative_to(home)}"
    )
    print(
        f"in-process: collect {collected - start:.2f} s + report {done - collected:.2f} s = {done - start:.2f} s wall, "
        f"{cpu:.2f} s CPU (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    t0 = time.perf_counter()
    out = subprocess.run(
        [*ORCHESTRATE, "report", "bench", "--no-refresh"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
    )
    cli_s = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    print(f"orchestrate report (CLI, process start included): {cli_s:.2f} s")
    print(
        f"target ≤ 2 s over {n} records → {'ok' if done - start <= 2 else 'MISSED'} (in-process wall), "
        f"{'ok' if cpu <= 2 else 'MISSED'} (in-process CPU), "
        f"{'ok' if cli_s <= 2 else 'MISSED'} (CLI)"
    )


if __name__ == "__main__":
    main()
