"""Retention that knows about evaluation: a pinned checkpoint survives `prune` until its
evaluation has written its result or ended; then the keep policy applies on the next save."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.core import paths
from orchestrator.core.files import write_json_atomic
from orchestrator.core.registry import Registry
from orchestrator.kinds.train import checkpoint


def _fake(epoch: int) -> None:
    d = paths.checkpoint_dir("exp", "arm", epoch)
    d.mkdir(parents=True)
    (d / paths.CHECKPOINT_META).write_text(json.dumps({"epoch": epoch}))
    paths.latest_checkpoint_file("exp", "arm").write_text(d.name + "\n")


def _pin(epoch: int, run: str | None = None) -> str:
    name = paths.checkpoint_name(epoch)
    run = run or f"arm__{name}__t"
    return checkpoint.pin("exp", "arm", name, "exp-eval", run, paths.eval_result("exp", "arm", name, "t"))


def test_pinned_checkpoints_survive_retention_until_their_result_exists(orch_home):
    for epoch in (1, 2, 3):
        _fake(epoch)
    assert _pin(1) == "new" and _pin(2) == "new"
    assert _pin(1) == "held"  # a second submit keeps the first one's pin (and its time)
    assert _pin(9) == "gone" and not paths.checkpoint_pin("exp", "arm", "epoch_9", "exp-eval", "x").exists()
    assert checkpoint.prune("exp", "arm", keep_last=1) == []
    assert checkpoint.epochs("exp", "arm") == [1, 2, 3]
    assert checkpoint.read_arm("exp", "arm").notes == []  # .pins/ is no checkpoint
    # epoch_1's evaluation writes its result (and unpins); epoch_2's is still running
    write_json_atomic(paths.eval_result("exp", "arm", "epoch_1", "t"), {"n": 1})
    _fake(4)
    assert checkpoint.prune("exp", "arm", keep_last=1) == [1, 3]
    assert checkpoint.epochs("exp", "arm") == [2, 4]
    assert not paths.checkpoint_pin("exp", "arm", "epoch_1", "exp-eval", "arm__epoch_1__t").exists()
    checkpoint.unpin("exp", "arm", "epoch_2", "exp-eval", "arm__epoch_2__t")  # what the eval job does
    _fake(5)
    assert checkpoint.prune("exp", "arm", keep_last=1) == [2, 4]
    assert not list(paths.arm_checkpoints_dir("exp", "arm").glob(".epoch_*"))  # renamed away, then deleted


def test_a_pin_is_released_when_its_unit_ended_after_it(orch_home):
    for epoch in (1, 2, 3):
        _fake(epoch)
    # an earlier attempt of epoch_1's unit failed before this pin: it says nothing of the new one
    old = {"state": "FAILED", "ended": time.time() - 60}
    write_json_atomic(paths.status_file("exp-eval", "arm__epoch_1__t"), old)
    assert _pin(1) == "new" and _pin(2) == "new"
    assert checkpoint.pinned("exp", "arm") == {"epoch_1", "epoch_2"}
    # the new attempt of epoch_1 fails (its status file); epoch_2's is cancelled while pending
    # (only the registry knows): neither holds its checkpoint any more
    write_json_atomic(paths.status_file("exp-eval", "arm__epoch_1__t"), {"state": "FAILED", "ended": time.time()})
    reg = Registry()
    reg.add_job("77", "slurm", "exp-eval", "eval", "f", "", [("arm__epoch_2__t", [])], [])
    (t,) = reg.tasks("exp-eval")
    assert checkpoint.pinned("exp", "arm") == {"epoch_2"}  # queued: still held
    reg.update_tasks([(t, {"state": "CANCELLED"})])
    assert checkpoint.pinned("exp", "arm") == set()
    assert checkpoint.prune("exp", "arm", keep_last=1) == [1, 2]


def test_eval_submit_pins_what_it_planned_and_refuses_when_one_vanished(orch_home):
    from helpers import FIXTURES
    from orchestrator.kinds.eval.spec import CheckpointGone, EvalSpec

    def spec() -> EvalSpec:
        return EvalSpec.model_validate(
            {
                "experiment": "exp",
                "suite": str(FIXTURES / "suites" / "tiny.yaml"),
                "checkpoints": "all",
                "tasks": ["math500"],
            }
        )

    for epoch in (1, 2):
        _fake(epoch)
    first = spec()
    first.plan()
    first.check_submit()  # what `submit` calls after planning
    assert checkpoint.pinned("exp", "arm") == {"epoch_1", "epoch_2"}
    pin = json.loads(paths.checkpoint_pin("exp", "arm", "epoch_2", "exp-eval", "arm__epoch_2__math500").read_text())
    assert pin["experiment"] == "exp-eval" and pin["result"].endswith("eval/arm/epoch_2/math500.json")
    # a later call plans epoch_3 too, but retention deletes epoch_3 before it is pinned
    _fake(3)
    second = spec()
    second.plan()
    paths.checkpoint_dir("exp", "arm", 3).rename(paths.arm_checkpoints_dir("exp", "arm") / ".epoch_3.old-1")
    with pytest.raises(CheckpointGone, match="arm/epoch_3"):
        second.check_submit()
    # nothing of the failed submit holds a checkpoint; the first submit's pins are untouched
    assert checkpoint.pinned("exp", "arm") == {"epoch_1", "epoch_2"}


def test_pending_unit_leaves_pinned_checkpoints_to_their_own_units(orch_home):
    from orchestrator.kinds.eval.job import resolve

    for epoch in (1, 2, 3):
        _fake(epoch)
    write_json_atomic(paths.eval_result("exp", "arm", "epoch_1", "t"), {"n": 1})
    _pin(2)  # its own unit is queued
    assert [c.name for c in resolve("exp", "arm", "pending", "t", "val/reward_mean")] == ["epoch_3"]
