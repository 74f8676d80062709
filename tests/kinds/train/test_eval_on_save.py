"""Evaluate as you train (`evaluation.every_save`) on the tiny preset, under SLURM and locally:
every saved checkpoint is evaluated (pruned ones too), early stopping on eval/mean stops where a
rule computed by hand over the arrived results says, a requeued arm ends identically, and the
report has its checkpoint-choice section. Kept short: 10 epochs, the two-task demo suite."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from helpers import wait_final
from orchestrator.core import checkpoints, paths
from orchestrator.core.registry import Registry

pytestmark = pytest.mark.slow

EPOCHS, LAG, MIN_DELTA = 10, 1, 0.05
SETTINGS = {
    "evaluation.every_save": "true",
    "evaluation.decision_lag": str(LAG),  # deterministic stop epoch: decided at N + LAG
    "evaluation.wait_s": "900",  # a loaded CI host: never decide without the results
    "early_stopping.metric": "eval/mean",
    "early_stopping.min_epochs": "2",
    "early_stopping.patience": "1",
    "early_stopping.min_delta": str(MIN_DELTA),
    "trainer.epochs": str(EPOCHS),
    "trainer.test_freq": "2",
    "trainer.save_freq": "2",
    "trainer.keep_last": "1",
    "rollout.workers": "0",
    "wandb.enabled": "false",
}
VOLATILE = ("time_s", "train/update_s")


def submit(cli, exp: str, executor: str, *extra: str):
    sets = [x for k, v in SETTINGS.items() for x in ("--set", f"{k}={v}")]
    res = cli("submit", "mtl-comparison-tiny", "--executor", executor, "--name", exp, *sets, *extra)
    assert res.code == 0, res.err
    return res


def summary(exp: str, arm: str) -> dict:
    return json.loads((paths.run_dir(exp, arm) / paths.SUMMARY_FILE).read_text())


def eval_mean(exp: str, arm: str, ckpt: str) -> float:
    results = [json.loads(p.read_text()) for p in sorted((paths.eval_dir(exp) / arm / ckpt).glob("*.json"))]
    assert len(results) == 2, ckpt  # add, copy
    return sum(r["metrics"][r["primary_metric"]] for r in results) / len(results)


def hand_rule(
    exp: str, arm: str, saved: list[int], patience: int = 1, min_delta: float = MIN_DELTA, min_epochs: int = 2
) -> int | None:
    """The checkpoint whose held-out score stops the arm: `patience` evaluated checkpoints in a row
    without a gain > min_delta over the best so far, at a checkpoint epoch >= min_epochs."""
    best, bad = None, 0
    for n in saved:
        v = eval_mean(exp, arm, paths.checkpoint_name(n))
        if best is None or v - best > min_delta:
            best, bad = v, 0
        else:
            bad += 1
        if bad >= patience and n >= min_epochs:
            return n
    return None


def check_arm(exp: str, arm: str) -> dict:
    s = summary(exp, arm)
    ev = s["evaluation"]
    saved = sorted(paths.checkpoint_epoch(c) or 0 for c in ev["checkpoints"])
    # every saved checkpoint was evaluated, including those retention deleted afterwards
    assert ev["outstanding"] == [] and ev["wait"].startswith("every evaluation arrived"), ev
    on_disk = set(checkpoints.epochs(exp, arm))
    assert set(saved) - on_disk, (saved, on_disk)  # keep_last 1: some were pruned...
    for n in saved:  # ...and still have their results
        assert eval_mean(exp, arm, paths.checkpoint_name(n)) == pytest.approx(ev["checkpoints"][f"epoch_{n}"]["value"])
    stop = hand_rule(exp, arm, saved)
    if stop is None:
        assert (s["stopped_early"], s["stop_epoch"], ev["decision"]) == (False, EPOCHS, None), s["stop_reason"]
    elif stop + LAG > EPOCHS:  # due only after the last epoch: recorded, too late to stop
        assert (s["stopped_early"], s["stop_epoch"]) == (False, EPOCHS) and ev["decision"]["after_training"]
    else:
        assert s["stopped_early"] and ev["decision"]["checkpoint_epoch"] == stop, (stop, ev["decision"])
        assert s["stop_epoch"] == stop + LAG and ev["decision"]["epochs_past_decision"] == LAG
        assert ev["decision"]["after_training"] is False
    assert s["best_heldout"]["metric"] == "eval/mean" and s["best_reward"]["metric"] == "val/reward_mean"
    assert s["best"] == s["best_heldout"]
    assert checkpoints.best(exp, arm).name == s["best_heldout"]["checkpoint"]  # the pointer follows held-out
    print(f"{exp}/{arm}: saved {saved}, hand rule stops at {stop}, stop_epoch {s['stop_epoch']}: {s['stop_reason']}")
    return s


def check_registry(exp: str) -> None:
    tasks = wait_final(f"{exp}-eval", timeout=300, interval=2)  # refreshed: local units too
    assert tasks and {t.state for t in tasks.values()} == {"COMPLETED"}, {
        r: (t.state, t.reason) for r, t in tasks.items()
    }
    # one array per saved checkpoint (its tasks), never one job per unit
    jobs = Registry().db.execute("SELECT n_tasks FROM jobs WHERE experiment = ?", (f"{exp}-eval",)).fetchall()
    assert jobs and all(n == 2 for (n,) in jobs)


def check_report(cli, exp: str) -> None:
    res = cli("report", exp)
    assert res.code == 0, res.err
    text = (paths.report_dir(exp) / "report.md").read_text()
    assert "## Checkpoint choice" in text and "reward-best" in text and "held-out-best" in text


@pytest.mark.slurm
def test_eval_on_save_on_slurm_with_requeue(cli, slurm_home):
    """Two identical arms; pcgrad (mtl off) is requeued mid-run and must end as baseline does."""
    exp = "evsave-slurm"
    res = submit(cli, exp, "slurm", "--set", "arms.pcgrad.mtl.enabled=false")
    job = dict(re.findall(r"stage (\w+): job (\d+)", res.out))["pcgrad"]
    latest = paths.latest_checkpoint_file(exp, "pcgrad")
    deadline = time.monotonic() + 900
    while not (latest.exists() and latest.read_text().strip() == "epoch_4"):
        assert time.monotonic() < deadline, "no epoch-4 checkpoint"
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    tasks = wait_final(exp, timeout=1500, interval=3)
    assert {t.state for t in tasks.values()} == {"COMPLETED"}, {r: (t.state, t.reason) for r, t in tasks.items()}
    a, b = check_arm(exp, "baseline"), check_arm(exp, "pcgrad")
    assert b["resumed_from"] is not None
    same = ("stop_epoch", "stopped_early", "stop_reason", "best", "best_heldout", "best_reward")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    strip = lambda ev: {c: {k: v for k, v in d.items() if k != "at"} for c, d in ev["checkpoints"].items()}  # noqa: E731
    assert strip(a["evaluation"]) == strip(b["evaluation"])
    assert a["evaluation"]["decision"] == b["evaluation"]["decision"]
    check_registry(exp)
    check_report(cli, exp)


def test_eval_on_save_locally(cli, orch_home):
    exp = "evsave-local"
    submit(cli, exp, "local")
    tasks = wait_final(exp, timeout=1500, interval=2)
    assert {t.state for t in tasks.values()} == {"COMPLETED"}, {r: (t.state, t.reason) for r, t in tasks.items()}
    for arm in ("baseline", "pcgrad"):
        check_arm(exp, arm)
    check_registry(exp)
    check_report(cli, exp)


def test_the_issue_command_stops_both_arms_on_the_held_out_score(cli, orch_home):
    """`orchestrate submit mtl-comparison-tiny --set evaluation.every_save=true --set
    early_stopping.metric=eval/mean`, the preset's own numbers (save_freq 2, patience 3 evaluated
    checkpoints, min_epochs 10, decision_lag 3, 20 epochs): both arms stop early, for the
    checkpoint the hand rule picks over the arrived results, decision_lag epochs past it."""
    from orchestrator.core.spec import load_spec

    cfg = load_spec("mtl-comparison-tiny").arm_config("baseline")  # the preset's numbers, include: resolved
    es, lag, epochs = cfg.early_stopping, cfg.evaluation.decision_lag, cfg.trainer.epochs
    assert lag is not None and lag > 0  # training goes on while the evaluation runs
    exp = "evsave-issue"
    res = cli(
        "submit", "mtl-comparison-tiny", "--executor", "local", "--name", exp,
        "--set", "evaluation.every_save=true", "--set", "early_stopping.metric=eval/mean",
        "--set", "wandb.enabled=false",
    )  # fmt: skip
    assert res.code == 0, res.err
    tasks = wait_final(exp, timeout=1500, interval=2)
    assert {t.state for t in tasks.values()} == {"COMPLETED"}, {r: (t.state, t.reason) for r, t in tasks.items()}
    for arm in ("baseline", "pcgrad"):
        s = summary(exp, arm)
        ev = s["evaluation"]
        saved = sorted(paths.checkpoint_epoch(c) or 0 for c in ev["checkpoints"])
        assert ev["outstanding"] == [] and all("value" in c for c in ev["checkpoints"].values()), ev
        assert set(saved) - set(checkpoints.epochs(exp, arm))  # pruned ones were evaluated too
        stop = hand_rule(exp, arm, saved, es.patience, es.min_delta, es.min_epochs)
        assert stop is not None and stop + lag < epochs, (saved, stop)
        assert s["stopped_early"] and "eval/mean" in s["stop_reason"], s["stop_reason"]
        assert ev["decision"] == {
            "checkpoint_epoch": stop, "epoch": stop + lag, "epochs_past_decision": lag, "after_training": False
        }  # fmt: skip
        assert s["stop_epoch"] == stop + lag and s["best"] == s["best_heldout"]
        print(f"{arm}: saved {saved}, stop decided for {stop} at {stop + lag}, wall {s['wall_time_s']:.0f}s")
    check_report(cli, exp)
