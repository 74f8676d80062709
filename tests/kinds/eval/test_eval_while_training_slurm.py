"""The issue's reproduction on the two-node test cluster: evaluation planned while a training
experiment runs. A cancelled upstream ends its waiting evaluation (CANCELLED, naming it) and
`wait` returns at once; retention keeps every planned checkpoint until it is evaluated."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from helpers import wait_final
from orchestrator.core import checkpoints, paths
from orchestrator.core.registry import Registry

pytestmark = pytest.mark.slurm


def test_evaluation_waiting_on_a_cancelled_training_is_cancelled_and_wait_returns(cli, spec_file, slurm_home):
    """A `command` unit stands in for a training arm: one complete checkpoint (already evaluated)
    and more to come, so eval-evolution plans only units that wait (afterok) for it."""
    train = spec_file("up", "kind: command\nstages:\n  arm:\n    run: [sleep, '300']\n")
    res = cli("submit", train, "--executor", "slurm")
    assert res.code == 0, res.err
    (upstream,) = Registry().tasks("up")
    ckpt = paths.checkpoint_dir("up", "arm", 1)
    ckpt.mkdir(parents=True)
    (ckpt / paths.CHECKPOINT_META).write_text(json.dumps({"epoch": 1}))
    data = slurm_home / "data"
    data.mkdir()
    for task, file in (("add", "arithmetic_heldout.parquet"), ("copy", "copy_heldout.parquet")):
        (data / file).write_text("")  # never read: the only units planned are cancelled
        paths.eval_result("up", "arm", "epoch_1", task).parent.mkdir(parents=True, exist_ok=True)
        paths.eval_result("up", "arm", "epoch_1", task).write_text("{}")
    res = cli("eval-evolution", "up", "--suite", "demo", "--data-root", data, "--executor", "slurm")
    assert res.code == 0, res.err
    tasks = Registry().tasks("up-eval")
    assert sorted(t.run for t in tasks) == ["arm__pending__add", "arm__pending__copy"]
    assert {tuple(t.depends_on) for t in tasks} == {(upstream.key,)}
    (script,) = {Registry().db.execute("SELECT script FROM jobs WHERE experiment='up-eval'").fetchone()[0]}
    assert "#SBATCH --kill-on-invalid-dep=yes\n" in script
    subprocess.run(["scancel", upstream.key], check=True, timeout=60)
    start = time.monotonic()
    res = cli("wait", "up-eval", "--interval", "1", "--timeout", "120")
    took = time.monotonic() - start
    assert res.code == 1, res.out
    assert took < 30, f"wait took {took:.0f}s"
    reason = f"dependency never satisfied: up/arm (job {upstream.key}) ended CANCELLED"
    for t in Registry().tasks("up-eval"):
        assert (t.state, t.reason) == ("CANCELLED", reason)
    assert res.out.count(f"CANCELLED {reason}") == 2, res.out
    print(f"wait returned 1 after {took:.1f}s")


@pytest.mark.slow
def test_eval_evolution_while_training_evaluates_every_planned_checkpoint(cli, slurm_home):
    """mtl-comparison-tiny saving every 2 epochs and keeping 2; eval-evolution twice while it trains."""
    exp = "mtl-pins"
    res = cli(
        "submit",
        "mtl-comparison-tiny",
        "--executor",
        "slurm",
        "--name",
        exp,
        "--set",
        "trainer.save_freq=2",
        "--set",
        "trainer.keep_last=2",
        "--set",
        "trainer.epochs=14",
        "--set",
        "early_stopping.min_epochs=14",
    )
    assert res.code == 0, res.err
    data = paths.prepare_dir(exp) / "data"
    planned: set[tuple[str, str]] = set()
    arms = ("baseline", "pcgrad")

    def latest() -> int:
        return min(max(checkpoints.epochs(exp, a), default=0) for a in arms)

    def evolve(after_epoch: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while latest() <= after_epoch:
            assert time.monotonic() < deadline, f"no checkpoint after epoch {after_epoch} in {timeout}s"
            time.sleep(1)
        seen = latest()
        # The units start a minute later (sbatch --begin), as on a busy cluster: meanwhile the
        # trainer saves several checkpoints, and keep_last=2 alone would delete the planned ones.
        r = cli(
            "eval-evolution", exp, "--suite", "demo", "--data-root", data, "--executor", "slurm",
            "--set", "resources.sbatch.begin=now+60",
        )  # fmt: skip
        assert r.code == 0, r.err + r.out
        print(r.out)
        for t in Registry().tasks(f"{exp}-eval"):
            arm, ckpt, _ = t.run.split("__")
            if ckpt.startswith("epoch_"):
                planned.add((arm, ckpt))
        return seen

    first_seen = evolve(0, 1500)
    first = set(planned)
    evolve(first_seen + 2, 1500)  # later: picks up the checkpoints saved since
    assert planned > first, (first, planned)
    train = wait_final(exp, timeout=1800, interval=3)
    assert {r: t.state for r, t in train.items()} == dict.fromkeys(("prepare", "baseline", "pcgrad"), "COMPLETED")
    evals = wait_final(f"{exp}-eval", timeout=1800, interval=3)
    bad = {r: (t.state, t.reason) for r, t in evals.items() if t.state != "COMPLETED"}
    assert not bad, bad
    for arm, ckpt in sorted(planned):
        for task in ("add", "copy"):
            assert paths.eval_result(exp, arm, ckpt, task).is_file(), (arm, ckpt, task)
    logs = "".join(p.read_text(errors="replace") for p in paths.experiment_dir(f"{exp}-eval").rglob("*_log.*"))
    assert "no complete checkpoint" not in logs
    for arm in ("baseline", "pcgrad"):
        assert checkpoints.pinned(exp, arm) == set()  # every evaluation released its pin
        assert re.search(r"epoch_14", ",".join(c.name for c in checkpoints.read_arm(exp, arm).complete))
    print(f"planned and evaluated: {sorted(planned)}")
