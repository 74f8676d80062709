"""Evaluate as you train: an arm's wall time with `evaluation.every_save` vs without, one run each.

The tiny preset (both arms, same seed, same schedule) is trained twice: plain, then with every
saved checkpoint submitted for evaluation on the demo suite. The trainer never waits for the
evaluations; what it pays is the submit itself (printed per checkpoint) and the CPU the evaluation
jobs take. On the local executor they share the training's cores and run niced (executors/local.py
`yield_to_submitting_job`): goal ≤ 1.5× the training alone on 2 cores, and every checkpoint still
evaluated before the experiment ends. The arms' own `wall_time_s` (summary.json: training, without
the final wait for outstanding evaluations) is compared. On SLURM an evaluation has its own allocation.

    python benchmarks/bench_eval_on_save.py [--smoke] [--executor local|slurm] [--epochs 8]
        (--smoke: 2 epochs, one checkpoint evaluated)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import ORCHESTRATE, Figures, parse_args, timed


def run(home: Path, name: str, executor: str, epochs: int, every_save: bool) -> dict[str, dict]:
    env = dict(os.environ, ORCH_HOME=str(home))
    sets = {
        "trainer.epochs": epochs,
        "trainer.save_freq": 2,
        "trainer.test_freq": 2,
        "early_stopping.enabled": "false",
        "rollout.workers": 0,
        "wandb.enabled": "false",
        "evaluation.every_save": str(every_save).lower(),
        "evaluation.wait_s": 3600,  # the final wait (not in wall_time_s): every checkpoint evaluated
    }
    args = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    timed([*ORCHESTRATE, "submit", "mtl-comparison-tiny", "--name", name, "--executor", executor, *args], env=env)
    timed([*ORCHESTRATE, "wait", name, "--timeout", "3600"], env=env)
    out = {}
    for arm in ("baseline", "pcgrad"):
        s = json.loads((home / "logs" / name / arm / "summary.json").read_text())
        logs = "".join(p.read_text() for p in (home / "logs" / name / "_jobs" / arm).glob("*.out"))
        submits = [float(x) for x in re.findall(r"evaluation submitted .*\[([\d.]+)s\]", logs)]
        ev = s.get("evaluation") or {}
        evaluated = [c for c, v in (ev.get("checkpoints") or {}).items() if "missing" not in v]
        out[arm] = {
            "wall_s": s["wall_time_s"],
            "submits": submits,
            "wait": ev.get("wait"),
            "evaluated": len(evaluated) if not ev.get("outstanding") else 0,
        }
    return out


def main() -> None:
    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--executor", choices=["local", "slurm"], default="local")
        p.add_argument("--epochs", type=int, default=8)

    a = parse_args(__doc__, options)
    if a.smoke:
        a.epochs = 2
    home = Path(tempfile.mkdtemp(prefix="bench-evalsave-"))
    tag = f"{os.getpid()}-{int(time.time())}"
    plain = run(home, f"bench-plain-{tag}", a.executor, a.epochs, False)
    evald = run(home, f"bench-evalsave-{tag}", a.executor, a.epochs, True)
    print(f"evaluate-on-save benchmark ({a.executor} executor, tiny preset, {a.epochs} epochs, checkpoint every 2)")
    ratios = []
    for arm in plain:
        r = evald[arm]["wall_s"] / plain[arm]["wall_s"]
        ratios.append(r)
        subs = evald[arm]["submits"]
        print(
            f"  {arm:9s} wall {plain[arm]['wall_s']:6.1f}s plain, {evald[arm]['wall_s']:6.1f}s with evaluation "
            f"(ratio {r:.2f}); {len(subs)} submits, median {statistics.median(subs) if subs else 0:.2f}s each; "
            f"final wait: {evald[arm]['wait']}"
        )
    print(f"ratio (with / without evaluation), mean over arms: {statistics.mean(ratios):.2f}")
    figures = Figures("eval_on_save", a.smoke)
    figures.add(
        f"training wall time, with evaluate-on-save / alone ({a.executor}, {os.cpu_count()} cores)",
        statistics.mean(ratios),
        ("<=", 1.5) if a.executor == "local" else None,
        "x",
    )
    saved = {arm: len(evald[arm]["submits"]) for arm in evald}
    figures.add(
        "checkpoints evaluated before the experiment ended / submitted",
        sum(evald[arm]["evaluated"] for arm in evald) / max(1, sum(saved.values())),
        (">=", 1.0),
    )
    figures.save()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
