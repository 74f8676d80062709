"""Two learner processes (gloo, FSDP2-sharded models) make the same PPO update as one.

Each learner holds half of every parameter and takes half of every minibatch; PCGrad's dot
products and norms go across both (`distributed_dot`), so the arm's update must not depend on
the number of learners. The processes are started as submitit's local executor starts a job's
tasks (SUBMITIT_LOCAL_* variables), which is also how `train/distributed.py` finds its rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from orchestrator.core.spec import deep_merge

pytestmark = pytest.mark.slow

STEP = textwrap.dedent("""
    import json, sys, torch
    from orchestrator.kinds.train.spec import TrainConfig
    from orchestrator.kinds.train import distributed
    from orchestrator.kinds.train.recipe import PPOTrainer

    cfg, out = TrainConfig.model_validate(json.loads(sys.argv[1])), sys.argv[2]
    trainer = PPOTrainer(cfg, "exp", "arm", out)
    trainer.setup()
    before = distributed.full_state_dict(trainer.policy)
    critic_before = distributed.full_state_dict(trainer.critic) if trainer.critic is not None else {}
    stats = trainer.train_step(trainer.train_data[:4] + trainer.train_data[-4:], diagnose=True)  # both domains
    after = distributed.full_state_dict(trainer.policy)
    critic = distributed.full_state_dict(trainer.critic) if trainer.critic is not None else {}
    if trainer.main:
        stats.pop("samples")
        torch.save({"before": before, "after": after, "critic": critic, "critic_before": critic_before, "stats": stats,
                    "world": trainer.world.size}, f"{out}/step.pt")
    trainer.cleanup()
""")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from orchestrator.kinds.train.entry import prepare

    d = tmp_path_factory.mktemp("prepared")
    prepare(str(d), "x", ["arithmetic", "copy"], {}, n_train=16, n_val=4, seed=0)
    return d


# A random tiny model rarely earns the built-in rewards: these give every response a graded score,
# so advantages (and the update) are not zero. Opposite preferences make the domains conflict.
REWARDS = """
def more_digits(text, truth):
    return sum(c.isdigit() for c in text) / max(len(text), 1)

def fewer_digits(text, truth):
    return 1.0 - more_digits(text, truth)
"""


def config(prepared: Path, **over) -> dict:
    (prepared / "graded_rewards.py").write_text(REWARDS)
    base = {
        "model": str(prepared / "model"),
        "domains": {
            d: {
                "train": str(prepared / f"data/{d}_train.parquet"),
                "val": str(prepared / f"data/{d}_val.parquet"),
                "reward": f"graded_rewards:{r}",
            }
            for d, r in (("arithmetic", "more_digits"), ("copy", "fewer_digits"))
        },
        "algorithm": {"advantage": "grpo", "group_size": 4, "kl_coef": 0.01},
        "trainer": {
            "batch_size": 8,
            "mini_batches": 2,
            "ppo_epochs": 1,
            "lr": 3e-3,
            "max_response_tokens": 3,
            "threads": 1,
            "seed": 3,
        },
        "rollout": {"workers": 0, "threads": 1},
        "wandb": {"enabled": False},
    }
    return deep_merge(base, over)


TRAIN = textwrap.dedent("""
    import json, sys
    from orchestrator.kinds.train.entry import train_entry
    train_entry(sys.argv[2], "exp", "arm", json.loads(sys.argv[1]))
""")


def run_learners(script: str, cfg: dict, out: Path, learners: int, home: Path) -> None:
    """`learners` processes, started as submitit's local executor starts a job's tasks."""
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ORCH_HOME": str(home),
        "SUBMITIT_LOCAL_NTASKS": str(learners),
        "PYTHONPATH": os.pathsep.join([str(Path(cfg["model"]).parent), *sys.path]),  # graded_rewards
        "SUBMITIT_LOCAL_JOB_ID": str(os.getpid() + learners * 7 + len(str(out))),
    }
    for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"):
        env.pop(k, None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(cfg), str(out)],
            env={**env, "SUBMITIT_LOCAL_GLOBALID": str(r), "SUBMITIT_LOCAL_LOCALID": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(learners)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, o in zip(procs, outputs):
        assert p.returncode == 0, o[-3000:]


def run_step(cfg: dict, out: Path, learners: int, home: Path) -> dict:
    run_learners(STEP, cfg, out, learners, home)
    return torch.load(out / "step.pt", weights_only=False)


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def assert_same_update(one: dict, two: dict, update: float) -> None:
    """Equal up to float rounding. Adam divides by sqrt(v): a weight whose gradient is almost 0 can
    move by a visible fraction of lr on a rounding difference, so a handful of elements may differ
    by more than 1e-6 (at most 0.1% of them, each by at most 2% of the update); a real difference
    in the gradient (per-shard PCGrad dots, a wrong loss weight) moves the update by its own size."""
    diffs = torch.cat([(one[k] - two[k]).abs().flatten() for k in one])
    assert float(diffs.max()) < 0.02 * update, float(diffs.max())
    assert float((diffs > 1e-6).float().mean()) < 1e-3


@pytest.mark.parametrize("arm,advantage", [("pcgrad", "grpo"), ("baseline", "grpo"), ("pcgrad", "gae")])
def test_two_learners_make_the_single_learner_update(prepared, tmp_path, arm, advantage):
    over = {"mtl": {"enabled": arm == "pcgrad"}, "algorithm": {"advantage": advantage}}
    if advantage == "gae":
        over["algorithm"]["group_size"] = 1
    cfg = config(prepared, **over)
    one = run_step(cfg, tmp_path / "one", 1, tmp_path / "home1")
    two = run_step(cfg, tmp_path / "two", 2, tmp_path / "home2")
    assert (one["world"], two["world"]) == (1, 2)

    update = max_diff(one["after"], one["before"])
    assert update > 1e-3  # the step moved the weights: the comparison below means something
    assert max_diff(one["before"], two["before"]) == 0.0
    assert_same_update(one["after"], two["after"], update)
    if advantage == "gae":
        assert_same_update(one["critic"], two["critic"], max_diff(one["critic"], one["critic_before"]))

    s1, s2 = one["stats"], two["stats"]
    for p1, p2 in zip(s1["policy"], s2["policy"]):
        for key in ("policy_loss", "clipfrac", "grad_norm"):
            assert p2[key] == pytest.approx(p1[key], rel=1e-4, abs=1e-6), key
        if "conflict" in p1:  # cosines from dot products over the whole (sharded) gradient
            for pair, cos in p1["conflict"]["pairs"].items():
                assert p2["conflict"]["pairs"][pair] == pytest.approx(cos, abs=1e-5)
    assert any(p.get("conflict", {}).get("pairs") for p in s1["policy"])  # both domains were in a minibatch


def test_a_run_resumes_with_another_number_of_learners(prepared, tmp_path):
    """Checkpoints hold whole weights and name-keyed optimizer state: 2 learners save, 1 resumes."""
    from orchestrator.kinds.train import checkpoint

    home, out = tmp_path / "home", tmp_path / "run"
    cfg = config(
        prepared,
        trainer={"epochs": 2, "save_freq": 2, "test_freq": 2},
        mtl={"enabled": True},
        early_stopping={"enabled": False},
    )
    run_learners(TRAIN, cfg, out, 2, home)
    first = json.loads((out / "summary.json").read_text())
    assert first["learners"] == 2 and first["stop_epoch"] == 2
    cfg["trainer"]["epochs"] = 3
    run_learners(TRAIN, cfg, out, 1, home)
    second = json.loads((out / "summary.json").read_text())
    assert second["learners"] == 1 and second["stop_epoch"] == 3
    assert second["resumed_from"].endswith("epoch_2")
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3]
    state, _ = checkpoint.load_state(Path(second["resumed_from"]))
    assert state["learners"] == 2 and state["optimizer"]["state"]  # Adam moments, keyed by parameter name


def update_cosine(a: dict, b: dict) -> float:
    u = torch.cat([(a["after"][k] - a["before"][k]).flatten() for k in a["after"]])
    v = torch.cat([(b["after"][k] - b["before"][k]).flatten() for k in b["after"]])
    return float(torch.nn.functional.cosine_similarity(u, v, dim=0))


def test_memory_options_keep_the_update(prepared, tmp_path):
    """Gradient checkpointing recomputes the same gradients; bf16 mixed precision (FSDP2, fp32
    master weights) moves the weights the way fp32 does, with one learner or two."""
    base = config(prepared, mtl={"enabled": True})
    fp32 = run_step(base, tmp_path / "fp32", 1, tmp_path / "h0")
    ckpt = run_step(
        deep_merge(base, {"trainer": {"gradient_checkpointing": True}}), tmp_path / "ckpt", 1, tmp_path / "h1"
    )
    assert_same_update(fp32["after"], ckpt["after"], max_diff(fp32["after"], fp32["before"]))
    bf16 = deep_merge(base, {"trainer": {"mixed_precision": "bf16"}})
    one, two = (
        run_step(bf16, tmp_path / "bf16-1", 1, tmp_path / "h2"),
        run_step(bf16, tmp_path / "bf16-2", 2, tmp_path / "h3"),
    )
    for run in (one, two):
        assert all(v.dtype == torch.float32 for v in run["after"].values())  # the master weights stay fp32
        assert update_cosine(run, fp32) > 0.9
    assert update_cosine(one, two) > 0.95
