"""Report generation as the work grows: 1k / 10k / 100k per-example records (--smoke: 200 / 400 / 1k).

A fixture experiment per size in the documented formats: 2 arms × E checkpoints × 20 tasks (4
domains) of evaluation files (8 metrics and N per-example results each; E × N scaled to the size),
E epochs of training metrics per arm, the registry's jobs; plus a sweep of 5 models × 4 tasks.
Measured at each size: `collect` (reading), the statistics (`report.build`: tables, CIs, tests),
`collect` + `write_report` in one process, and `orchestrate report` end to end (process start
included). Goals: the statistics of 100k records in ≤ 2 s, the CLI in ≤ 10 s, growth exponent ≤ 1.1
(in-process figures are CPU seconds: the work itself, which a loaded shared machine barely moves).

    python benchmarks/bench_report.py [--smoke]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import ORCHESTRATE, REPO, Figures, parse_args, timed_cpu

ARMS, DOMAINS, TASKS_PER_DOMAIN = ("baseline", "pcgrad"), 4, 5
# per-example records = arms × epochs × tasks × n_per_example
SIZES = {1_000: (1, 25), 10_000: (5, 50), 100_000: (25, 100)}
SMOKE_SIZES = {200: (1, 5), 400: (1, 10), 1_000: (1, 25)}


def build(experiment: str, epochs: int, n_per_example: int) -> None:
    import numpy as np

    from orchestrator.core import paths
    from orchestrator.core.registry import Registry

    rng = np.random.default_rng(0)
    tasks = [(f"d{d}", f"d{d}_t{t}") for d in range(DOMAINS) for t in range(TASKS_PER_DOMAIN)]
    for arm in ARMS:
        lines = []
        for e in range(1, epochs + 1):
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
        for e in range(1, epochs + 1):
            for domain, task in tasks:
                correct = rng.random(n_per_example) < 0.5
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
                            "n": n_per_example,
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
    runs = [(f"run{i}", []) for i in range(len(ARMS) * epochs * len(tasks))]  # one per evaluation file
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


def measure(experiment: str, cli: bool) -> dict[str, float]:
    """CPU seconds of this process for reading, the statistics and the whole report (the work itself,
    little moved by other users of a shared machine); the CLI's wall and CPU time."""
    from orchestrator.reporting.report import build, write_report
    from orchestrator.reporting.results import collect

    t0 = time.process_time()
    res = collect(experiment)
    t1 = time.process_time()
    build(res)  # the statistics alone
    t2 = time.process_time()
    write_report(collect(experiment))
    t3 = time.process_time()
    m = {"collect_s": t1 - t0, "stats_s": t2 - t1, "in_process_s": t3 - t2, "cli_s": 0.0, "cli_cpu": 0.0}
    m["records"] = sum(len(v) for v in res.per_example.values())
    if cli:
        m["cli_s"], m["cli_cpu"], _ = timed_cpu([*ORCHESTRATE, "report", experiment, "--no-refresh"], dict(os.environ))
    return m


def main() -> None:
    args = parse_args(__doc__)
    sizes = SMOKE_SIZES if args.smoke else SIZES
    home = Path(tempfile.mkdtemp(prefix="orch-bench-report-"))
    os.environ["ORCH_HOME"] = str(home)
    sys.path.insert(0, str(REPO / "src"))
    figures = Figures("report", args.smoke)
    results = []
    if not args.smoke:
        build("warmup", 1, 5)
        measure("warmup", cli=False)  # imports and caches (matplotlib's fonts) out of the first size's figures
    for size, (epochs, n) in sizes.items():
        build(f"bench{size}", epochs, n)
        m = measure(f"bench{size}", cli=not args.smoke or size == max(sizes))  # smoke: the CLI once
        assert m["records"] == size, m
        results.append(m)
        print(
            f"{size:,} per-example records, CPU: collect {m['collect_s']:.2f} s, statistics {m['stats_s']:.2f} s, "
            f"collect + write_report {m['in_process_s']:.2f} s; CLI {m['cli_s']:.2f} s wall, {m['cli_cpu']:.2f} s CPU "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
            flush=True,
        )
    largest, ns = results[-1], list(sizes)
    machine = f" ({os.cpu_count()} cores)"
    figures.add(f"statistics of {ns[-1]:,} records, CPU{machine}", largest["stats_s"], ("<=", 2.0), " s")
    figures.add(f"orchestrate report of {ns[-1]:,} records, end to end{machine}", largest["cli_s"], ("<=", 10.0), " s")
    figures.add(f"orchestrate report of {ns[-1]:,} records, CPU", largest["cli_cpu"], ("<=", 10.0), " s")
    figures.growth("statistics, CPU", ns, [m["stats_s"] for m in results], "CPU s")
    figures.growth("collect + write_report, CPU", ns, [m["in_process_s"] for m in results], "CPU s")
    if not args.smoke:
        figures.growth("orchestrate report (CLI), CPU", ns, [m["cli_cpu"] for m in results], "CPU s")
    figures.save()


if __name__ == "__main__":
    main()
