"""Training benchmarks, ratios measured in one run (CPU unless a GPU is present):

1. PPO policy-update step time of each multi-task method (torchjd weighting of the 2 domains'
   gradient Gramian) / the baseline's (sum of per-domain losses, one backward) on the same rollout
   batch, and the communication a method adds per step (one T x T all-reduce). Target <= 1.3.
2. Rollout throughput (samples/s) with 2 Ray rollout workers vs. 1. Target >= 1.7x.

    python benchmarks/bench_train.py [--smoke] [--hidden 128 --layers 4 --repeats 10 --requests 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import Figures, parse_args

from orchestrator.kinds.train.methods import METHODS


def setup_trainer(work: Path, hidden: int, layers: int, batch: int):
    os.environ["ORCH_HOME"] = str(work / "home")
    from orchestrator.generation.tiny import build_model
    from orchestrator.kinds.train.config import TrainConfig
    from orchestrator.kinds.train.data import write_synthetic
    from orchestrator.kinds.train.recipe import PPOTrainer

    model = build_model(work / "model", hidden=hidden, layers=layers, heads=4)
    domains = {}
    for i, (d, reward) in enumerate((("arithmetic", "math"), ("copy", "exact"))):
        files = write_synthetic(d, work, batch, 8, seed=i)
        domains[d] = {"train": str(files["train"]), "val": str(files["val"]), "reward": reward}
    cfg = TrainConfig.model_validate(
        {
            "model": str(model),
            "domains": domains,
            "algorithm": {"advantage": "grpo", "group_size": 4, "kl_coef": 0.001},
            "trainer": {"batch_size": batch, "max_response_tokens": 8, "lr": 1e-4},
            "rollout": {"workers": 0},
            "wandb": {"enabled": False},
        }
    )
    trainer = PPOTrainer(cfg, "bench", "arm", work / "run")
    trainer.setup()
    return trainer, cfg


def bench_step(trainer, repeats: int, methods: list[str]) -> dict[str, float]:
    """Median seconds of one policy update on one fixed batch: the baseline and each method."""
    import torch

    from orchestrator.kinds.train.aggregation import Aggregator
    from orchestrator.kinds.train.samples import Request, collate

    half = trainer.cfg.trainer.batch_size // 2  # both domains in the batch
    examples = [e for d in trainer.domains for e in [x for x in trainer.train_data if x.domain == d][:half]]
    requests = [Request(e.domain, e.messages, e.ground_truth, i) for i, e in enumerate(examples) for _ in range(4)]
    samples = trainer.rollouts.generate(requests, seed=0)
    b = collate(samples, trainer.domains, trainer.tokenizer.pad_token_id, trainer.device)
    trainer._advantages(b)
    idx = torch.arange(b["resp"].shape[0], device=trainer.device)
    assert len(trainer._by_domain(b, idx)) == 2
    arms = {"baseline": None, **{m: Aggregator(m, len(trainer.domains), 0) for m in methods}}
    times: dict[str, list[float]] = {a: [] for a in arms}
    sync = torch.cuda.synchronize if trainer.device == "cuda" else (lambda: None)
    for _ in range(repeats + 1):  # first round: warm-up, discarded
        for arm, aggregator in arms.items():  # interleaved: the machine's drift hits every arm alike
            trainer.aggregator = aggregator
            sync()
            t0 = time.perf_counter()
            trainer._policy_step(b, idx, diagnose=False)
            sync()
            times[arm].append(time.perf_counter() - t0)
    return {arm: statistics.median(ts[1:]) for arm, ts in times.items()}


def bench_rollout(model_dir: str, n_requests: int, micro_batch: int) -> dict[int, float]:
    """Samples per second with 1 and 2 Ray rollout workers (1 CPU, 1 thread each), the same
    requests split between the workers, each generating `micro_batch` sequences at a time."""
    from orchestrator.kinds.train.rollout import Rollouts
    from orchestrator.kinds.train.samples import Request

    requests = [
        Request("copy", [{"role": "user", "content": f"copy: {chr(97 + i % 8)}"}], "a", i) for i in range(n_requests)
    ]
    kwargs = dict(
        model_path=model_dir,
        rewards={"copy": "exact"},
        max_new_tokens=16,
        temperature=1.0,
        threads=1,
        micro_batch=micro_batch,
    )
    out = {}
    for n in (1, 2):
        r = Rollouts(n, kwargs, num_cpus=1)
        r.generate(requests[: 4 * n], seed=0)  # warm-up: actors up, weights loaded
        t0 = time.perf_counter()
        samples = r.generate(requests, seed=1)
        out[n] = len(samples) / (time.perf_counter() - t0)
        r.close()
    return out


def main() -> int:
    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--hidden", type=int, default=128)
        p.add_argument("--layers", type=int, default=4)
        p.add_argument("--batch", type=int, default=16, help="prompts per step (x4 responses)")
        p.add_argument("--repeats", type=int, default=15)
        p.add_argument("--requests", type=int, default=512)
        p.add_argument("--micro-batch", type=int, default=32, help="sequences a rollout worker generates at once")
        p.add_argument("--skip-rollout", action="store_true", help="only the update-step ratios (no Ray)")
        p.add_argument("--methods", default=",".join(METHODS), help="multi-task methods to time (comma-separated)")

    args = parse_args(__doc__, options)
    if args.smoke:
        args.hidden, args.layers, args.batch, args.repeats, args.requests, args.micro_batch = 32, 2, 4, 2, 16, 4
    figures = Figures("train", args.smoke)
    import torch

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        trainer, cfg = setup_trainer(Path(tmp), args.hidden, args.layers, args.batch)
        n_params = sum(p.numel() for p in trainer.policy.parameters())
        steps = bench_step(trainer, args.repeats, args.methods.split(","))
        trainer.cleanup()
        where = (
            torch.cuda.get_device_name()
            if trainer.device == "cuda"
            else f"cpu, torch threads {torch.get_num_threads()}"
        )
        t = len(trainer.domains)
        print(
            f"policy update, {t} domains, {args.batch * 4} responses, {n_params / 1e6:.2f}M params, {where}, "
            f"cpus {os.cpu_count()}: baseline {steps['baseline'] * 1000:.1f} ms"
        )
        for method, s in steps.items():
            if method != "baseline":
                print(f"  {method:<12} {s * 1000:7.1f} ms -> ratio {s / steps['baseline']:.2f} (target <= 1.3)")
        print(
            f"  extra communication per step with several learners: one all-reduce of the {t}x{t} fp32 Gramian "
            f"({t * t * 4} bytes), beside the gradient's reduce-scatter ({n_params * 4 / 1e6:.1f} MB)"
        )
        for method, s in steps.items():
            if method != "baseline":
                figures.add(f"policy update step, {method} / baseline", s / steps["baseline"], ("<=", 1.3), "x")
        if args.skip_rollout:
            figures.save()
            return 0
        rates = bench_rollout(cfg.model, args.requests, args.micro_batch)
        print(
            f"rollout, {args.requests} requests x 16 tokens, micro-batch {args.micro_batch}: 1 worker {rates[1]:.1f} samples/s, "
            f"2 workers {rates[2]:.1f} samples/s -> speed-up {rates[2] / rates[1]:.2f}x (target >= 1.7)"
        )
        figures.add("rollout samples/s, 2 Ray workers / 1", rates[2] / rates[1], (">=", 1.7), "x")
    figures.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
