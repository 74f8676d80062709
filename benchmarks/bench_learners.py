"""Several learners: PCGrad policy-update step time with 2 learner processes (FSDP2, gloo on CPU,
NCCL on GPUs) vs. 1, on the same batch. Each of 2 learners computes half the minibatch, then pays
for the all-gathers, the reduce-scatters and PCGrad's cross-rank dot products; the ratio says what
is left of the ideal 2x. Both runs use one CPU thread per learner, so 2 learners use 2 cores.

    python benchmarks/bench_learners.py [--smoke] [--hidden 256 --layers 4 --batch 32 --repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Figures, parse_args

STEP = """
import json, statistics, sys, time, torch
from orchestrator.core.files import write_json_atomic
from orchestrator.kinds.train import distributed
from orchestrator.kinds.train.config import TrainConfig
from orchestrator.kinds.train.recipe import PPOTrainer
from orchestrator.kinds.train.samples import Request, collate

cfg, out, repeats = TrainConfig.model_validate(json.loads(sys.argv[1])), sys.argv[2], int(sys.argv[3])
trainer = PPOTrainer(cfg, "bench", "arm", out)
trainer.setup()
half = cfg.trainer.batch_size // 2  # both domains in the batch
examples = [e for d in trainer.domains for e in [x for x in trainer.train_data if x.domain == d][:half]]
requests = [Request(e.domain, e.messages, e.ground_truth, i) for i, e in enumerate(examples) for _ in range(4)]
samples = trainer.rollouts.generate(requests, seed=0) if trainer.main else None
samples = distributed.broadcast_object(samples, trainer.world)
b = collate(samples, trainer.domains, trainer.tokenizer.pad_token_id, trainer.device)
trainer._advantages(b)
idx = torch.arange(b["resp"].shape[0], device=trainer.device)
times = []
for _ in range(repeats + 1):  # first: warm-up, discarded
    distributed.all_reduce_sum(torch.zeros(1), trainer.world)  # start together
    started = time.perf_counter()
    trainer._policy_step(b, idx, diagnose=False)
    if trainer.device == "cuda":
        torch.cuda.synchronize()
    times.append(time.perf_counter() - started)
if trainer.main:
    write_json_atomic(f"{out}/bench.json", {"step_s": statistics.median(times[1:])})
trainer.cleanup()
"""


def run(cfg: dict, out: Path, learners: int, repeats: int) -> float:
    out.mkdir(parents=True)
    env = {
        **os.environ,
        "ORCH_HOME": str(out / "home"),
        "SUBMITIT_LOCAL_NTASKS": str(learners),
        "SUBMITIT_LOCAL_JOB_ID": str(os.getpid() + learners),
    }
    for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"):
        env.pop(k, None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STEP, json.dumps(cfg), str(out), str(repeats)],
            env={**env, "SUBMITIT_LOCAL_GLOBALID": str(r), "SUBMITIT_LOCAL_LOCALID": str(r)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(learners)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"learner failed:\n{err[-3000:]}")
    return json.loads((out / "bench.json").read_text())["step_s"]


def main() -> int:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--hidden", type=int, default=256)
        ap.add_argument("--layers", type=int, default=4)
        ap.add_argument("--batch", type=int, default=32, help="prompts (x4 responses)")
        ap.add_argument("--repeats", type=int, default=5)

    a = parse_args(__doc__, options)
    if a.smoke:
        a.hidden, a.layers, a.batch, a.repeats = 64, 2, 4, 1
    from orchestrator.generation.tiny import build_model
    from orchestrator.kinds.train.data import write_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_model(work / "model", hidden=a.hidden, layers=a.layers, heads=4)
        domains = {}
        for i, (d, reward) in enumerate((("arithmetic", "math"), ("copy", "exact"))):
            files = write_synthetic(d, work, a.batch, 8, seed=i)
            domains[d] = {"train": str(files["train"]), "val": str(files["val"]), "reward": reward}
        cfg = {
            "model": str(model),
            "domains": domains,
            "algorithm": {"advantage": "grpo", "group_size": 4, "kl_coef": 0.001},
            "trainer": {"batch_size": a.batch, "max_response_tokens": 8, "lr": 1e-4, "threads": 1},
            "rollout": {"workers": 0, "threads": 1},
            "mtl": {"enabled": True},
            "wandb": {"enabled": False},
        }
        one = run(cfg, work / "one", 1, a.repeats)
        two = run(cfg, work / "two", 2, a.repeats)
    print(
        f"PCGrad policy step, {a.batch * 4} responses, hidden {a.hidden} x {a.layers} layers: "
        f"1 learner {one * 1e3:.0f} ms, 2 learners {two * 1e3:.0f} ms -> speedup {one / two:.2f}x (ideal 2x)"
    )
    figures = Figures("learners", a.smoke)
    figures.add("PCGrad step, 1 learner / 2 learners (FSDP2; ideal 2x)", one / two, unit="x")
    figures.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
