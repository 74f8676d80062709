"""The PPO recipe on the tiny preset's model and synthetic domains (CPU, fixed seed).

- both arms (baseline: sum of per-domain gradients; pcgrad: PCGrad over them) learn;
- a run killed mid-way and resumed ends with the same metrics and weights as an uninterrupted one;
- early stopping stops a real run as configured, and checkpoints keep the last K plus the best.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.core import paths
from orchestrator.core.spec import deep_merge

pytestmark = pytest.mark.slow

VOLATILE = ("time_s", "train/update_s")  # wall-clock figures: the only values allowed to differ


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from orchestrator.kinds.train.entry import prepare

    d = tmp_path_factory.mktemp("prepared")
    prepare(str(d), "x", ["arithmetic", "copy"], {}, n_train=64, n_val=32, seed=0)
    return d


def config(prepared: Path, **over) -> dict:
    base = {
        "model": str(prepared / "model"),
        "domains": {
            d: {
                "train": str(prepared / f"data/{d}_train.parquet"),
                "val": str(prepared / f"data/{d}_val.parquet"),
                "reward": r,
            }
            for d, r in (("arithmetic", "math"), ("copy", "exact"))
        },
        "algorithm": {"advantage": "grpo", "group_size": 8, "kl_coef": 0.0},
        "trainer": {
            "epochs": 12,
            "batch_size": 32,
            "mini_batches": 2,
            "ppo_epochs": 2,
            "lr": 3e-3,
            "max_response_tokens": 1,
            "test_freq": 4,
            "save_freq": 4,
            "keep_last": 2,
            "threads": 1,
        },
        "early_stopping": {"enabled": False},
        "rollout": {"workers": 0, "threads": 1},
        "wandb": {"enabled": False},
    }
    return deep_merge(base, over)


def run_arm(experiment: str, arm: str, cfg: dict) -> dict:
    from orchestrator.kinds.train.entry import train_entry

    run_dir = paths.run_dir(experiment, arm)
    run_dir.mkdir(parents=True, exist_ok=True)
    assert train_entry(run_dir=str(run_dir), experiment=experiment, arm=arm, config=cfg) == 0
    return json.loads((run_dir / "summary.json").read_text())


def metric_lines(experiment: str, arm: str) -> list[dict]:
    return [json.loads(x) for x in (paths.run_dir(experiment, arm) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "arm, over",
    [
        ("baseline", {"mtl": {"enabled": False}}),
        # the multi-task arm samples through one Ray rollout actor that gets new weights every step
        ("pcgrad", {"mtl": {"enabled": True, "method": "pcgrad"}, "rollout": {"workers": 1, "num_cpus": 0.5}}),
    ],
)
def test_tiny_arm_learns(orch_home, prepared, arm, over):
    summary = run_arm("tiny", arm, config(prepared, **over))
    lines = metric_lines("tiny", arm)
    before, after = lines[0]["val/reward_mean"], summary["final"]["val/reward_mean"]
    assert lines[0]["epoch"] == 0 and [x["epoch"] for x in lines[1:]] == list(range(1, 13))
    assert after >= before + 0.15, f"{arm}: validation reward {before:.3f} -> {after:.3f}"
    assert summary["final"]["train/reward_mean"] > lines[1]["train/reward_mean"] + 0.15
    for x in lines[1:]:  # gradient-conflict diagnostics every epoch, in both arms
        assert -1.0 <= x["grad/cosine/arithmetic,copy"] <= 1.0 and 0.0 <= x["grad/conflict_fraction"] <= 1.0
    assert all("val/arithmetic/reward" in x for x in lines if x["epoch"] % 4 == 0)
    assert not any("val/reward_mean" in x for x in lines if x["epoch"] % 4)
    assert summary["stopped_early"] is False and summary["stop_epoch"] == 12 and summary["arm"] == arm
    assert summary["best"]["metric"] == "val/reward_mean" and summary["best"]["value"] >= after
    assert summary["wall_time_s"] > 0 and summary["device_hours"] > 0 and summary["schema_version"] == 1
    from transformers import AutoModelForCausalLM

    latest = (paths.arm_checkpoints_dir("tiny", arm) / "latest").read_text().strip()
    assert latest == "epoch_12"
    AutoModelForCausalLM.from_pretrained(paths.arm_checkpoints_dir("tiny", arm) / latest)  # loads as is
    meta = json.loads((paths.checkpoint_dir("tiny", arm, 12) / "meta.json").read_text())
    assert (
        meta["epoch"] == 12 and meta["step"] == lines[-1]["step"] and meta["config"]["mtl"] == summary["config"]["mtl"]
    )


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


def test_killed_and_resumed_run_equals_uninterrupted(orch_home, prepared):
    import torch

    cfg = config(
        prepared,
        algorithm={"advantage": "gae", "group_size": 2, "kl_coef": 0.01},
        domains={"arithmetic": {"max_train": 16}, "copy": {"max_train": 16}},
        trainer={"epochs": 6, "batch_size": 16, "test_freq": 2, "save_freq": 2, "keep_last": 5},
        mtl={"enabled": True},
    )
    run_arm("straight", "arm", cfg)

    # the same run in a process killed (SIGKILL) right after its epoch-2 checkpoint...
    code = (
        "import json, sys; from orchestrator.kinds.train.entry import train_entry; "
        "train_entry(run_dir=sys.argv[1], experiment='resumed', arm='arm', config=json.loads(sys.argv[2]))"
    )
    run_dir = paths.run_dir("resumed", "arm")
    run_dir.mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir), json.dumps(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = paths.latest_checkpoint_file("resumed", "arm")
    deadline = time.monotonic() + 240
    while not (latest.exists() and latest.read_text().strip() == "epoch_2"):
        assert proc.poll() is None and time.monotonic() < deadline, "trainer ended before its epoch-2 checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "summary.json").exists()
    # ...then started again: it resumes from the latest complete checkpoint
    summary = run_arm("resumed", "arm", cfg)
    assert summary["resumed_from"] and summary["resumed_from"].endswith(("epoch_2", "epoch_4"))

    strip = lambda lines: [{k: v for k, v in x.items() if k not in VOLATILE} for x in lines]  # noqa: E731
    assert strip(metric_lines("resumed", "arm")) == strip(metric_lines("straight", "arm"))
    a = _weights(paths.checkpoint_dir("straight", "arm", 6))
    b = _weights(paths.checkpoint_dir("resumed", "arm", 6))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, _ = __import__("orchestrator.kinds.train.checkpoint", fromlist=["x"]).load_state(
        paths.checkpoint_dir("straight", "arm", 6)
    )
    sb, _ = __import__("orchestrator.kinds.train.checkpoint", fromlist=["x"]).load_state(
        paths.checkpoint_dir("resumed", "arm", 6)
    )
    assert all(torch.equal(sa["critic"][k], sb["critic"][k]) for k in sa["critic"])  # the critic too


def test_early_stopping_in_a_real_run(orch_home, prepared):
    # a learning rate too small to change any greedy answer: the validation reward stays flat
    cfg = config(
        prepared,
        algorithm={"group_size": 2},
        domains={"arithmetic": {"max_train": 8, "max_val": 8}, "copy": {"max_train": 8, "max_val": 8}},
        trainer={"epochs": 10, "batch_size": 16, "lr": 1e-12, "test_freq": 1, "save_freq": 1, "keep_last": 1},
        early_stopping={"enabled": True, "min_epochs": 2, "patience": 2, "min_delta": 0.001},
    )
    # an earlier attempt killed before its first checkpoint left lines behind: they are redone, not duplicated
    paths.run_dir("es", "arm").mkdir(parents=True)
    (paths.run_dir("es", "arm") / "metrics.jsonl").write_text('{"epoch": 0, "val/reward_mean": 0.5}\n{"epoch": 1}\n')
    summary = run_arm("es", "arm", cfg)
    assert summary["stopped_early"] is True and summary["stop_epoch"] == 3
    assert summary["best"]["epoch"] == 1 and "for 2 validations" in summary["stop_reason"]
    assert [x["epoch"] for x in metric_lines("es", "arm")] == [0, 1, 2, 3]
    from orchestrator.core import checkpoints

    assert checkpoints.epochs("es", "arm") == [1, 3]  # keep_last 1, plus the best
    assert checkpoints.best("es", "arm").name == "epoch_1" and checkpoints.latest("es", "arm").name == "epoch_3"
    # a finished run started again does not train further
    again = run_arm("es", "arm", cfg)
    assert again["stop_epoch"] == 3 and [x["epoch"] for x in metric_lines("es", "arm")] == [0, 1, 2, 3]
