"""`orchestrate submit mtl-comparison-tiny` on the real two-node test cluster: both arms learn,
with Ray rollout actors, checkpoints and early stopping as configured; a job requeued with
`scontrol requeue` resumes from its latest checkpoint and ends where an uninterrupted twin does."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from helpers import wait_final
from orchestrator.core import checkpoints, paths
from orchestrator.core.registry import Registry

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

VOLATILE = ("time_s", "train/update_s")


def lines(experiment: str, arm: str) -> list[dict]:
    return [json.loads(x) for x in (paths.run_dir(experiment, arm) / "metrics.jsonl").read_text().splitlines()]


def summary(experiment: str, arm: str) -> dict:
    return json.loads((paths.run_dir(experiment, arm) / "summary.json").read_text())


def test_mtl_comparison_tiny_on_slurm(cli, slurm_home):
    res = cli(
        "submit",
        "mtl-comparison-tiny",
        "--executor",
        "slurm",
        "--name",
        "mtl-e2e",
        "--set",
        "trainer.epochs=12",
        "--set",
        "trainer.test_freq=4",
        "--set",
        "trainer.save_freq=4",
        "--set",
        "early_stopping.min_epochs=12",
    )
    assert res.code == 0, res.err
    ids = re.findall(r"stage (prepare|baseline|pcgrad): job (\d+)", res.out)
    assert [s for s, _ in ids] == ["prepare", "baseline", "pcgrad"]
    assert "orchestrate status mtl-e2e" in res.out and "W&B (offline, group mtl-e2e, run pcgrad)" in res.out
    tasks = wait_final("mtl-e2e", timeout=1200, interval=3)
    assert {r: t.state for r, t in tasks.items()} == {
        "prepare": "COMPLETED",
        "baseline": "COMPLETED",
        "pcgrad": "COMPLETED",
    }, {r: (t.state, t.reason) for r, t in tasks.items()}
    for arm in ("baseline", "pcgrad"):
        m, s = lines("mtl-e2e", arm), summary("mtl-e2e", arm)
        assert s["final"]["val/reward_mean"] >= m[0]["val/reward_mean"] + 0.15, (arm, m[0], s["final"])
        assert s["stop_epoch"] == 12 and s["config"]["mtl"]["enabled"] is (arm == "pcgrad")
        assert "grad/conflict_fraction" in m[-1]
        kept = checkpoints.epochs("mtl-e2e", arm)
        best = checkpoints.best("mtl-e2e", arm)
        assert checkpoints.latest("mtl-e2e", arm).name == "epoch_12"
        assert set(kept[-2:]) | {int(best.name.split("_")[1])} == set(kept)  # keep_last 2, plus the best
    runs = sorted(p.name for p in paths.wandb_dir().rglob("offline-run-*"))
    assert [r for r in runs if r.endswith("mtl-e2e-baseline")] and [r for r in runs if r.endswith("mtl-e2e-pcgrad")], (
        runs
    )


@pytest.mark.parametrize("how", ["scontrol", "usr2", "scontrol-2learners"])
def test_requeued_arm_resumes_to_the_same_result(cli, slurm_home, how):
    # Two identical arms; one is interrupted in the middle of its run, either requeued by hand
    # (`scontrol requeue`) or sent SLURM's pre-timeout/preemption signal USR2, on which submitit
    # checkpoints and requeues the job itself. With two learners (one per node) the requeued job
    # meets again at the same rendezvous and reloads both shards from the whole checkpoint.
    exp = f"mtl-requeue-{how}"
    learners = ["--set", "resources.nodes=2", "--set", "resources.cpus_per_task=1"] if "2learners" in how else []
    res = cli(
        "submit",
        "mtl-comparison-tiny",
        "--executor",
        "slurm",
        "--name",
        exp,
        *learners,
        "--set",
        "arms.pcgrad.mtl.enabled=false",
        "--set",
        "trainer.epochs=8",
        "--set",
        "trainer.test_freq=2",
        "--set",
        "trainer.save_freq=2",
        "--set",
        "trainer.keep_last=10",
        "--set",
        "early_stopping.enabled=false",
        "--set",
        "rollout.workers=0",
        "--set",
        "wandb.enabled=false",
    )
    assert res.code == 0, res.err
    job = dict(re.findall(r"stage (\w+): job (\d+)", res.out))["pcgrad"]
    latest = paths.latest_checkpoint_file(exp, "pcgrad")
    deadline = time.monotonic() + 900
    while not (latest.exists() and latest.read_text().strip() == "epoch_2"):
        assert time.monotonic() < deadline, "no epoch-2 checkpoint"
        assert not (paths.run_dir(exp, "pcgrad") / "summary.json").exists(), "finished before requeue"
        time.sleep(0.2)
    cmd = ["scontrol", "requeue", job] if how.startswith("scontrol") else ["scancel", "--signal=USR2", job]
    subprocess.run(cmd, check=True, capture_output=True)
    tasks = wait_final(exp, timeout=1200, interval=3)
    assert {t.state for t in tasks.values()} == {"COMPLETED"}, {r: (t.state, t.reason) for r, t in tasks.items()}
    requeued = summary(exp, "pcgrad")
    assert requeued["resumed_from"] is not None  # it really restarted from a checkpoint
    assert requeued["learners"] == (2 if learners else 1)
    strip = lambda ls: [{k: v for k, v in x.items() if k not in VOLATILE} for x in ls]  # noqa: E731
    assert strip(lines(exp, "pcgrad")) == strip(lines(exp, "baseline"))
    from safetensors.torch import load_file

    a = load_file(paths.checkpoint_dir(exp, "baseline", 8) / "model.safetensors")
    b = load_file(paths.checkpoint_dir(exp, "pcgrad", 8) / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    rows = Registry().db.execute("SELECT scheduler_id FROM jobs WHERE experiment = ?", (exp,)).fetchall()
    assert job in {r[0] for r in rows}


def test_two_learners_on_two_nodes(cli, slurm_home):
    # One learner task per node: they meet at node1's NodeAddr (both test nodes are 127.0.0.1 on
    # one host), shard the models, and rank 0 drives the Ray rollout actor.
    exp = "mtl-2learners"
    res = cli(
        "submit",
        "mtl-comparison-tiny",
        "--executor",
        "slurm",
        "--name",
        exp,
        "--set",
        "resources.nodes=2",
        "--set",
        "resources.cpus_per_task=1",
        "--set",
        "trainer.epochs=4",
        "--set",
        "trainer.test_freq=2",
        "--set",
        "trainer.save_freq=2",
        "--set",
        "early_stopping.enabled=false",
        "--set",
        "wandb.enabled=false",
    )
    assert res.code == 0, res.err
    jobs = dict(re.findall(r"stage (\w+): job (\d+)", res.out))
    tasks = wait_final(exp, timeout=1200, interval=3)
    assert {r: t.state for r, t in tasks.items()} == {
        "prepare": "COMPLETED",
        "baseline": "COMPLETED",
        "pcgrad": "COMPLETED",
    }, {r: (t.state, t.reason) for r, t in tasks.items()}
    for arm in ("baseline", "pcgrad"):
        s = summary(exp, arm)
        assert s["learners"] == 2 and s["stop_epoch"] == 4
        assert [x["epoch"] for x in lines(exp, arm)] == [0, 1, 2, 3, 4]  # rank 0 alone logs: no line twice
        folder = paths.stage_dir(exp, arm)
        logs = [paths.job_log(folder, jobs[arm], task).read_text() for task in (0, 1)]
        assert "learner 0 of 2 on node1" in logs[0] and "learner 1 of 2 on node2" in logs[1]
        # the checkpoint holds the whole model (gathered from both shards) and loads as is
        from transformers import AutoModelForCausalLM

        trained = AutoModelForCausalLM.from_pretrained(checkpoints.latest(exp, arm)).state_dict()
        initial = AutoModelForCausalLM.from_pretrained(s["config"]["model"]).state_dict()
        assert trained.keys() == initial.keys()
        assert all(trained[k].shape == initial[k].shape for k in initial)
        assert any(not trained[k].equal(initial[k]) for k in initial)  # and it trained
