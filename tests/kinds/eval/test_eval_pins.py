"""The eval kind's side of the pins (core/checkpoints.py): a submit pins what it planned, and a
"pending" unit leaves pinned checkpoints to their own units."""

from __future__ import annotations

import json

import pytest

from orchestrator.core import checkpoints, paths
from orchestrator.core.checkpoints import CheckpointGone
from orchestrator.core.files import write_json_atomic


def _fake(epoch: int) -> None:
    d = paths.checkpoint_dir("exp", "arm", epoch)
    d.mkdir(parents=True)
    (d / paths.CHECKPOINT_META).write_text(json.dumps({"epoch": epoch}))
    paths.latest_checkpoint_file("exp", "arm").write_text(d.name + "\n")


def test_eval_submit_pins_what_it_planned_and_refuses_when_one_vanished(orch_home):
    from helpers import FIXTURES
    from orchestrator.kinds.eval.spec import EvalSpec

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
    assert checkpoints.pinned("exp", "arm") == {"epoch_1", "epoch_2"}
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
    assert checkpoints.pinned("exp", "arm") == {"epoch_1", "epoch_2"}


def test_pending_unit_leaves_pinned_checkpoints_to_their_own_units(orch_home):
    from orchestrator.kinds.eval.job import resolve

    for epoch in (1, 2, 3):
        _fake(epoch)
    write_json_atomic(paths.eval_result("exp", "arm", "epoch_1", "t"), {"n": 1})
    result = paths.eval_result("exp", "arm", "epoch_2", "t")
    checkpoints.pin("exp", "arm", "epoch_2", "exp-eval", "arm__epoch_2__t", result)  # its own unit is queued
    assert [c.name for c in resolve("exp", "arm", "pending", "t", "val/reward_mean")] == ["epoch_3"]
