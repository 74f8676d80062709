"""Submitting: the plan is made once, submit-only checks run at submit only, and --dry-run lists
every unit."""

from __future__ import annotations

from collections import Counter

import pytest

from helpers import wait_final
from orchestrator.core import kinds
from orchestrator.core.errors import SpecError
from orchestrator.core.executor import executor_named
from orchestrator.core.plan import Stage, Unit, UnitArgs
from orchestrator.core.spec import Environment, Resources, load_spec
from orchestrator.core.submit import Plan, describe, submit
from orchestrator.kinds.command.spec import CommandSpec

CALLS: Counter[str] = Counter()


class CountedSpec(CommandSpec):
    """The command kind, counting plans and submit-only checks; the check fails on request."""

    def plan(self) -> list[Stage]:
        CALLS["plan"] += 1
        return super().plan()

    def check_submit(self) -> None:
        CALLS["check_submit"] += 1
        if self.description == "refuse":
            raise SpecError(self.name, "description: the world is not ready (export SOMETHING)")


SPEC = """\
kind: counted
description: {description}
stages:
  first: {{run: [python, -c, "print('first')"]}}
  many: {{run: [python, -c, "import sys; print(sys.argv[1])"], array: [[a], [b]], after: [first]}}
"""


@pytest.fixture
def counted(spec_file, monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "counted", f"{__name__}:CountedSpec")
    CALLS.clear()
    return lambda description="ok": spec_file("counted", SPEC.format(description=description))


def test_submit_plans_once_and_checks_the_world(counted, orch_home):
    done = submit(load_spec(counted()), executor_named("local"))
    assert CALLS == {"plan": 1, "check_submit": 1}
    assert [(s.stage, len(s.runs)) for s in done] == [("first", 1), ("many", 2)]
    assert {t.state for t in wait_final("counted", timeout=60).values()} == {"COMPLETED"}


def test_render_and_dry_run_never_check_the_world(cli, counted):
    path = counted("refuse")
    assert cli("render", path).code == 0
    res = cli("submit", path, "--dry-run", "--executor", "local")
    assert res.code == 0, res.err
    assert CALLS["check_submit"] == 0


def test_a_failed_check_submits_nothing(cli, counted, orch_home):
    res = cli("submit", counted("refuse"), "--executor", "local")
    assert res.code == 2 and "export SOMETHING" in res.err
    assert CALLS["check_submit"] == 1
    assert not (orch_home / "logs").exists()  # no registry, no lock, no job folder


def test_dry_run_lists_every_unit(cli, counted):
    res = cli("submit", counted(), "--dry-run", "--executor", "local")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert (
        "  stage many: submit array of 2, after first; 1 node(s) × 1 task(s) × 1 cpu(s), 0 gpu(s)/node, time 01:00:00"
        in lines
    )
    assert "    first  python -c 'print('\"'\"'first'\"'\"')'" in lines
    assert "    many-0  python -c 'import sys; print(sys.argv[1])' a" in lines
    assert "    many-1  python -c 'import sys; print(sys.argv[1])' b" in lines


class Typed(UnitArgs):
    model: str
    task: str
    limit: int | None = None
    extra: tuple[str, ...] = ()


class Evaluated(UnitArgs):
    model: str
    checkpoint: str
    gpus: int
    tags: list[str]
    note: str = ""


def test_describe_lists_scalar_arguments_and_skips():
    units = (
        Unit("typed", "m:f", Typed(model="tiny", task="coqa")),
        Unit("evaluated", "m:f", Evaluated(model="tiny", checkpoint="epoch_3", gpus=2, tags=["x"])),
        Unit("done", "m:f"),
    )
    stage = Stage("eval", Resources(gpus_per_node=2, time="30"), Environment(), units)
    plan = Plan(
        "exp", "slurm", [stage], todo={"eval": list(units[:2])}, skipped={"eval": [("done", "completed as job 7")]}
    )
    assert describe(plan).splitlines() == [
        "experiment exp (slurm executor)",
        "  stage eval: submit array of 2; 1 node(s) × 1 task(s) × 1 cpu(s), 2 gpu(s)/node, time 30",
        "    typed      model=tiny task=coqa",
        "    evaluated  model=tiny checkpoint=epoch_3 gpus=2",
        "    skip done: completed as job 7",
    ]
